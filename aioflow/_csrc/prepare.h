/* Packet preparation, between reading and counting: the BPF filter and the decode (read_packet,
 * which the read-ahead thread can run), then defragmentation and the first-fragment table (in
 * packet order), the flow key and hash, and copies of what the capture buffer holds (headers for
 * headers=N; the payload when a meter reads payloads). */
#ifndef AIOFLOW_PREPARE_H
#define AIOFLOW_PREPARE_H
#include "source.h"   /* first: it sets the feature macros libpcap's headers need */

#include <stdint.h>

#include "aioflow.h"
#include "defrag.h"
#include "early_fragments.h"
#include "flowtable.h"
#include "fragments.h"
#include "packet.h"

typedef struct {
    af_source *source;               /* its filter caches a link type's program */
    const af_table *table;           /* the key's hash seed and buckets (prefetched) */
    af_frag_table *frags;            /* first fragments' ports */
    af_early_frags *early;           /* later fragments held for their first */
    af_defrag *defrag;               /* NULL unless defragmenting */
    int copy_payload;                /* a meter reads payloads */
    int copy_l3;                     /* a meter reads whole IP packets: network and transport headers too */
    int prefetch_bucket;             /* counting runs right after on this core: prefetch the bucket */
    unsigned decode_flags;           /* AF_DECODE_*: what the enabled meters need decoded */
    uint32_t worker, workers;        /* workers > 1: packets of other workers' flows are marked foreign */
} af_prepare;

/* The first half: filter and decode into q. Returns 0 when the packet was counted aside here
 * (into st, whose counters: the read-ahead thread keeps its own). */
int af_read_packet(const af_prepare *pp, af_stats *st, const af_frame *f, af_queued *q);
/* The second half (`data` is the decoded frame; the payload is copied to payload_to). Returns 0
 * when the packet was counted aside or held by the defragmenter. */
int af_prepare_packet(const af_prepare *pp, af_stats *st, af_queued *q, const u_char *data, uint8_t *payload_to);
/* The counting thread's own reading, in one call: af_read_packet, the defragmenter's give-ups as
 * of the packet's time (what they hand over is counted before queue position `at`), then
 * af_prepare_packet. 1 when q is a flow packet to queue. */
int af_prepare_frame(const af_prepare *pp, af_stats *st, const af_frame *f, af_queued *q, uint32_t at,
                     uint8_t *payload_to);
/* af_prepare_packet in two steps, for a reading thread that picks the packet's worker (and so
 * where its copies go) by its hash: the key and hash (0 as af_prepare_packet), then the copies. */
int af_prepare_key(const af_prepare *pp, af_stats *st, af_queued *q, const u_char *data);
void af_prepare_copy(const af_prepare *pp, af_queued *q, uint8_t *payload_to);
/* A later fragment held for `first` (a first fragment about to be counted), prepared into q with
 * first's ports (1), or 0 when none is left: count each before first, they came before it. */
int af_prepare_early(const af_prepare *pp, af_stats *st, const af_queued *first, af_queued *q);
/* A fragment of a datagram the defragmenter gave up and handed over, to be counted before queue
 * position `before` (any, with `all`), prepared into q (1), or 0 when none is left. */
int af_prepare_unmerged(const af_prepare *pp, uint32_t before, int all, af_queued *q);
/* With copy_l3: bytes of the IP packet af_prepare_packet copies (headers, then the payload that
 * follows them in the frame; a first fragment's too), 0 for a later fragment. */
static inline uint32_t af_l3_bytes(const af_prepare *pp, const af_packet *p) {
    if (!pp->copy_l3 || p->frag == AF_FRAG_LATER || !p->l3) return 0;
    uint32_t n = p->l3_headers_len + (p->payload ? p->payload_len : 0);
    return n < AF_MAX_PAYLOAD ? n : AF_MAX_PAYLOAD;
}
/* Payload bytes af_prepare_packet copies for this decoded packet (payload meters: not fragments);
 * with an IP packet copy (af_l3_bytes), the payload is the part of it after the headers and
 * af_prepare_packet cuts this to what that copy holds. */
static inline uint32_t af_payload_bytes(const af_prepare *pp, const af_packet *p) {
    uint32_t n = pp->copy_payload && p->frag == AF_FRAG_NONE && p->payload ? p->payload_len : 0;
    return n < AF_MAX_PAYLOAD ? n : AF_MAX_PAYLOAD;
}
/* Bytes af_prepare_packet copies in all. */
static inline uint32_t af_copy_bytes(const af_prepare *pp, const af_packet *p) {
    uint32_t whole = af_l3_bytes(pp, p);
    return whole ? whole : af_payload_bytes(pp, p);
}

#endif
