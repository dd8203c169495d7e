/* Remembers the ports of first IP fragments so later fragments of the same datagram count toward
 * the right flow. A fixed direct-mapped table: a newer datagram overwrites an older one in its
 * slot (counted), and entries older than a timeout are ignored. Full reassembly is elsewhere.
 *
 * A later fragment whose first has not come yet is held (a copy of its decoded packet) in a ring
 * of at most max_fragment_datagrams fragments, oldest first, chained by datagram slot, until its
 * first fragment is counted (it is counted just before, in its own time order) or fragment_timeout
 * of packet time passes; at the bound the oldest goes. One that goes, or is still held when the
 * source ends, is set aside fragment_orphan with a decode event saying why. Held fragments count
 * in packets_read and defrag_fragments_held, so conservation holds at any moment. */
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

/* A later fragment held for its first (its packet's pointers cleared; raw: its headers' copy). */
typedef struct {
    af_packet p;
    uint64_t ts_ns;
    uint32_t caplen;
    uint32_t next, prev;      /* its slot's chain, ring index + 1 (0: none) */
    uint8_t held;             /* 0: released or dropped, its ring place waits for the oldest to pass */
    uint8_t raw[sizeof(((af_header *)0)->raw)];
} af_frag_early;

typedef struct {
    af_frag_entry slots[AF_FRAG_SLOTS];
    uint64_t seed;
    uint64_t tracked, evictions;
    af_frag_early *early;     /* ring of early_cap places; NULL: nothing is held (defragmenting) */
    uint32_t early_cap, early_head, early_used;   /* places from the oldest, released ones included */
    uint32_t early_held;      /* of those, still held */
    uint64_t early_timeout_ns;
    uint32_t early_chain[AF_FRAG_SLOTS];          /* newest held of each slot, ring index + 1 */
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

/* Room to hold `cap` early fragments for timeout_ns (0: hold none). -1 when out of memory. */
int af_frag_init(af_frag_table *t, uint64_t seed, uint32_t cap, uint64_t timeout_ns);
void af_frag_free(af_frag_table *t);

void af_frag_remember(af_frag_table *t, const af_packet *pkt, uint64_t ts_ns);
/* Sets pkt's ports from its first fragment; returns 0 when that fragment was not seen. */
int af_frag_lookup(const af_frag_table *t, af_packet *pkt, uint64_t ts_ns);

/* Holds a later fragment whose first was not seen (raw: its first raw_len header bytes). Returns
 * 0 when nothing can be held (the caller sets it aside). Counted into st. */
int af_frag_hold(af_frag_table *t, af_stats *st, const af_packet *pkt, uint64_t ts_ns, uint32_t caplen,
                 const uint8_t *raw, uint32_t raw_len);
/* The oldest fragment held for first's datagram, with first's ports, out of the table (1), or 0. */
int af_frag_release(af_frag_table *t, af_stats *st, const af_packet *first, af_frag_early *out);
/* Sets aside (fragment_orphan) what was held fragment_timeout before now_ns. */
void af_frag_expire(af_frag_table *t, af_stats *st, uint64_t now_ns);
/* The source ended: sets aside everything still held. */
void af_frag_flush(af_frag_table *t, af_stats *st);

#endif
