/* Later IP fragments that arrive before their first fragment (without defragment): each is held (a
 * copy of its decoded packet) in a ring of at most max_fragment_datagrams fragments, oldest first,
 * chained by datagram slot, until its first fragment is counted (it is counted just before, in its
 * own time order) or fragment_timeout of packet time passes; at the bound the oldest goes. One that
 * goes, or is still held when the source ends, is set aside fragment_orphan with a decode event
 * saying why. Held fragments count in packets_read and defrag_fragments_held, so conservation
 * holds at any moment. (First fragments' ports: fragments.h; full reassembly: defrag.h.) */
#ifndef AIOFLOW_EARLY_FRAGMENTS_H
#define AIOFLOW_EARLY_FRAGMENTS_H
#include <stdint.h>

#include "aioflow.h"
#include "decode.h"

#define AF_EARLY_SLOTS 4096

/* A later fragment held for its first (its packet's pointers cleared; raw: its headers' copy). */
typedef struct {
    af_packet p;
    uint64_t ts_ns;
    uint32_t caplen, wire_len;
    uint32_t next, prev;      /* its slot's chain, ring index + 1 (0: none) */
    uint8_t held;             /* 0: released or dropped, its ring place waits for the oldest to pass */
    uint8_t raw[sizeof(((af_header *)0)->raw)];
} af_frag_early;

typedef struct {
    uint64_t seed;
    af_frag_early *ring;      /* cap places; NULL: nothing is held (defragmenting) */
    uint32_t cap, head, used; /* places from the oldest, released ones included */
    uint32_t held;            /* of those, still held */
    uint64_t timeout_ns;
    uint32_t chain[AF_EARLY_SLOTS];   /* newest held of each slot, ring index + 1 */
} af_early_frags;

/* Room to hold `cap` early fragments for timeout_ns (0: hold none). -1 when out of memory. */
int af_early_init(af_early_frags *t, uint64_t seed, uint32_t cap, uint64_t timeout_ns);
void af_early_free(af_early_frags *t);
/* Holds a later fragment whose first was not seen (raw: its first raw_len header bytes). Returns
 * 0 when nothing can be held (the caller sets it aside). Counted into st. */
int af_early_hold(af_early_frags *t, af_stats *st, const af_packet *pkt, uint64_t ts_ns, uint32_t caplen,
                  uint32_t wire_len, const uint8_t *raw, uint32_t raw_len);
/* The oldest fragment held for first's datagram, with first's ports, out of the ring (1), or 0. */
int af_early_release(af_early_frags *t, af_stats *st, const af_packet *first, af_frag_early *out);
/* Sets aside (fragment_orphan) what was held fragment_timeout before now_ns. */
void af_early_expire(af_early_frags *t, af_stats *st, uint64_t now_ns);
/* The source ended: sets aside everything still held. */
void af_early_flush(af_early_frags *t, af_stats *st);

#endif
