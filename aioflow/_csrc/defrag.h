/* IPv4 and IPv6 defragmentation in a bounded table preallocated at open (no malloc per packet).
 *
 * A datagram in progress holds the ranges of its fragments (at most max_fragments_per_datagram),
 * its first fragment's header, and its data in fixed-size blocks of a shared pool of
 * max_fragment_memory bytes, placed at their offset so completion is one copy out.
 *
 * Overlap policy (IPv4 and IPv6 alike, as Linux since 4.19): a fragment repeating exactly the
 * range of one already held is a duplicate and is ignored (RFC 5722 errata 3089); any other
 * overlap gives up the whole datagram (RFC 5722; for IPv4 this also defeats overlap evasion).
 *
 * Counting (the engine's conservation: packets_read = packets_in_flows + aside + held): a
 * fragment held in the table counts as read and held. When a datagram completes, the fragment
 * completing it becomes the datagram (counted in its flow by the engine) and the others move
 * from held to aside "fragment_merged". Fragments of a datagram given up move from held to aside
 * "fragment_dropped", the datagram being counted once under its reason (enum af_defrag_reason).
 * A datagram given up leaves a tombstone until its timeout, so its later fragments are dropped
 * too instead of starting a datagram that cannot complete.
 *
 * When its fragments were there but could not be made one datagram (overlap, inconsistent,
 * truncated, too big: not a memory bound, which a flood meets, nor a datagram that never
 * completed, of which tshark's reassembly and Zeek count nothing), giving up loses no fragment
 * that has a flow: each held fragment is handed over to be counted as it would be without
 * defragment (the first
 * fragment by its own ports, which join the first-fragment table of fragments.h; the later ones
 * by those ports), with its own time, lengths and TTL, and the fragment that made it give up and
 * later ones of the datagram pass through as they are (af_defrag_add's *unmerged). Each counts a
 * "fragment_unmerged" decode event. Handed-over fragments wait, still held, in a ring of
 * 2 * max_fragments_per_datagram (what does not fit goes aside as before, counted) until the
 * pipeline counts them before the packet at the queue position set by af_defrag_position. A
 * later fragment whose first fragment's ports are unknown (fragments.h) has no flow: it goes
 * aside, as without defragment. */
#ifndef AIOFLOW_DEFRAG_H
#define AIOFLOW_DEFRAG_H
#include <stdint.h>

#include "aioflow.h"
#include "decode.h"
#include "early_fragments.h"
#include "fragments.h"

#define AF_DEFRAG_BLOCK 512u          /* pool granularity: fragments are multiples of 8 bytes */
#define AF_DEFRAG_HEADER_MAX 256u     /* IPv4 header, or IPv6 header + unfragmentable extensions */
#define AF_DEFRAG_DLT_RAW 101         /* LINKTYPE_RAW: how a reassembled datagram is decoded */

typedef struct af_defrag af_defrag;

/* NULL when out of memory. Counts into stats (packets_read, aside, defrag_* fields); handed-over
 * first fragments' ports go into frags. */
af_defrag *af_defrag_new(const af_config *cfg, uint64_t seed, af_stats *stats, af_frag_table *frags);
void af_defrag_free(af_defrag *d);

/* Takes one fragment (pkt->frag != AF_FRAG_NONE; `end` is the end of the captured frame;
 * `decoded`: its af_decode result). Returns NULL when the fragment was held or
 * dropped (and counted), or with *unmerged set when its datagram was given up and it is to be
 * counted as it is (not counted here); else the reassembled datagram (an IP packet of *len
 * bytes, valid until the next call) when this fragment completed it; *captured and *wire are
 * then the captured bytes and the frames' lengths on the wire (wire_len each) of all its
 * fragments. */
const uint8_t *af_defrag_add(af_defrag *d, const af_packet *pkt, int decoded, const uint8_t *end, uint32_t caplen,
                             uint32_t wire_len, uint64_t ts_ns, uint32_t *len, uint32_t *captured, uint32_t *wire,
                             int *unmerged);
/* The queue position fragments handed over from now on are counted before. */
void af_defrag_position(af_defrag *d, uint32_t position);
/* The oldest fragment handed over to be counted before queue position `before` (any, with `all`),
 * out of the ring and no longer held (1), or 0. Its packet has its flow's ports. */
int af_defrag_release(af_defrag *d, uint32_t before, int all, af_frag_early *out);
/* Gives up datagrams whose first fragment is fragment_timeout older than now_ns. */
void af_defrag_expire(af_defrag *d, uint64_t now_ns);
/* Gives up datagrams timed out as of now_ns; what they hand over is counted before queue position
 * `position`. */
static inline void af_defrag_give_up(af_defrag *d, uint32_t position, uint64_t now_ns) {
    af_defrag_position(d, position);
    af_defrag_expire(d, now_ns);
}
/* The source ended: gives up every datagram still incomplete ("unfinished"). */
void af_defrag_flush(af_defrag *d);
/* Fills the gauges of stats (datagrams in progress, memory in use). */
void af_defrag_gauges(const af_defrag *d, af_stats *out);

#endif
