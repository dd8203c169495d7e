/* Remembers the ports of first IP fragments so later fragments of the same datagram count toward
 * the right flow. A fixed direct-mapped table: a newer datagram overwrites an older one in its
 * slot (counted), and entries older than a timeout are ignored. Full reassembly is elsewhere.
 * Later fragments that come before their first wait for it in early_fragments.h. */
#ifndef AIOFLOW_FRAGMENTS_H
#define AIOFLOW_FRAGMENTS_H
#include <stdint.h>
#include <string.h>

#include "aioflow.h"
#include "decode.h"

#define AF_FRAG_SLOTS 4096
#define AF_FRAG_TIMEOUT_NS (60ULL * 1000000000ULL)   /* as Linux's ipfrag_time */

typedef struct {
    uint8_t src[16], dst[16];
    uint32_t id;
    uint8_t ver, proto, used, _pad;
    uint16_t sport, dport;
    uint64_t ts_ns;
} af_frag_entry;

typedef struct {
    af_frag_entry slots[AF_FRAG_SLOTS];
    uint64_t seed;
    uint64_t tracked, evictions;
} af_frag_table;

/* Mixes a datagram's two 16-byte addresses into h (also the defragmenter's hash). */
static inline uint64_t af_mix_addresses(uint64_t h, const uint8_t *src, const uint8_t *dst) {
    for (int i = 0; i < 16; i += 4) {
        uint32_t a, b;
        memcpy(&a, src + i, 4);
        memcpy(&b, dst + i, 4);
        h = (h ^ a ^ ((uint64_t)b << 32)) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    return h;
}

/* t zeroed (calloc) before. */
void af_frag_init(af_frag_table *t, uint64_t seed);

void af_frag_remember(af_frag_table *t, const af_packet *pkt, uint64_t ts_ns);
/* Sets pkt's ports from its first fragment; returns 0 when that fragment was not seen. */
int af_frag_lookup(const af_frag_table *t, af_packet *pkt, uint64_t ts_ns);

#endif
