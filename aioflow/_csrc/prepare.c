#include "prepare.h"

#include <string.h>

/* Inline in af_read_packet and af_prepare_frame: once per packet. */
__attribute__((always_inline)) static inline int read_packet(const af_prepare *pp, af_stats *st, const af_frame *f,
                                                             af_queued *q) {
    uint64_t ts = f->ts_ns;
    /* packets_read counts a packet once it is put aside or counted in a flow (or held by the
     * defragmenter), so that packets_read == packets_in_flows + aside (+ defrag_fragments_held)
     * holds at any moment, queue or not */
    st->bytes_read += f->caplen;
    if (st->first_ns == 0 || ts < st->first_ns) st->first_ns = ts;
    if (!af_source_pass(pp->source, f)) {
        st->aside[AF_ASIDE_FILTERED]++;
        st->packets_read++;
        return 0;
    }
    q->ts = q->clock = ts;
    q->caplen = f->caplen;
    q->wire_len = f->len;
    q->dlt = f->dlt;
    q->decoded = af_decode(f->dlt, f->data, f->caplen, &q->p, pp->decode_flags);
    q->pending = 0;
    /* once per captured frame (a fragment decoded again later, or its datagram, counts nothing) */
    for (uint16_t ev = q->p.events; ev; ev &= (uint16_t)(ev - 1)) st->decode_events[__builtin_ctz(ev)]++;
    return 1;
}

int af_read_packet(const af_prepare *pp, af_stats *st, const af_frame *f, af_queued *q) { return read_packet(pp, st, f, q); }

/* A datagram reassembled from fragments is decoded again from its IP header: what the layers
 * around it said (VLAN, Ethernet addresses, the tunnel it came out of) stays. */
static void keep_outer(af_packet *p, const af_packet *outer) {
    p->vlan_id = outer->vlan_id;
    memcpy(p->mac, outer->mac, sizeof p->mac);
    if (!p->tunnel_type) {
        p->tunnel_id = outer->tunnel_id;
        p->tunnel_type = outer->tunnel_type;
        p->tunnel_ip_version = outer->tunnel_ip_version;
        memcpy(p->tunnel_src, outer->tunnel_src, sizeof p->tunnel_src);
        memcpy(p->tunnel_dst, outer->tunnel_dst, sizeof p->tunnel_dst);
    }
}

/* The flow key and hash of a decoded packet (whose ports are known). */
__attribute__((always_inline)) static inline void make_key(const af_prepare *pp, af_queued *q) {
    const af_packet *p = &q->p;
    q->sender = af_key_make(&q->key, p->ip_version, p->src, p->sport, p->dst, p->dport,
                            p->protocol, p->vlan_id);
    q->hash = af_flow_hash(pp->table, &q->key, p->tunnel_id);
    q->foreign = pp->workers > 1 && af_worker_of(q->hash, pp->workers) != pp->worker;
    if (pp->prefetch_bucket) __builtin_prefetch(&pp->table->buckets[q->hash & pp->table->mask]);
}

/* Without defragment, a later fragment whose first is unknown: held for it (1), else 0. */
static int hold_early(const af_prepare *pp, af_stats *st, const af_queued *q) {
    const af_packet *p = &q->p;
    uint32_t raw = pp->table->headers_per_flow ? p->l3_headers_len : 0;
    return af_early_hold(pp->early, st, p, q->ts, q->caplen, q->wire_len, p->l3, raw);
}

/* Inline in af_prepare_packet (the counting thread's own reading, once per packet). */
__attribute__((always_inline)) static inline int prepare_key(const af_prepare *pp, af_stats *st, af_queued *q,
                                                             const u_char *data) {
    af_packet *p = &q->p;
    int r = q->decoded;
    uint64_t ts = q->ts;
    uint32_t caplen = q->caplen;
    if (pp->defrag && p->frag != AF_FRAG_NONE) {   /* held (counted there) until its datagram is whole */
        uint32_t len;
        int unmerged;   /* its datagram was given up: counted as it is, as without defragment */
        const uint8_t *whole = af_defrag_add(pp->defrag, p, r, data + caplen, caplen, q->wire_len, ts, &len, &caplen,
                                             &q->wire_len, &unmerged);
        if (!whole && !unmerged) return 0;
        if (whole) {
            af_packet outer = *p;
            r = af_decode(AF_DEFRAG_DLT_RAW, whole, len, p, pp->decode_flags);
            keep_outer(p, &outer);
            /* its transport checksum, checkable only now (its fragments' events were counted) */
            if (p->checksum_bad & AF_BAD_TRANSPORT) st->decode_events[AF_EVENT_BAD_CHECKSUM]++;
        }
    }
    if (!pp->defrag && p->frag != AF_FRAG_NONE) af_early_expire(pp->early, st, ts);
    if (r == AF_DECODED && p->frag == AF_FRAG_LATER && !af_frag_lookup(pp->frags, p, ts)) {
        if (hold_early(pp, st, q)) return 0;
        r = AF_ASIDE_FRAGMENT_ORPHAN;
    }
    if (r != AF_DECODED) {
        st->aside[r]++;
        st->packets_read++;
        return 0;
    }
    if (p->frag == AF_FRAG_FIRST) af_frag_remember(pp->frags, p, ts);
    q->caplen = caplen;
    make_key(pp, q);
    return 1;
}

__attribute__((always_inline)) static inline void prepare_copy(const af_prepare *pp, af_queued *q,
                                                               uint8_t *payload_to) {
    af_packet *p = &q->p;
    if (q->foreign) {   /* counted by another worker: only its time is read here, nothing to copy */
        q->l3_len = q->l3_headers = q->payload_len = 0;
        q->payload = NULL;
        p->l3 = NULL;
        p->payload = NULL;
        return;
    }
    if (pp->table->headers_per_flow) {
        uint32_t n = p->l3_headers_len < sizeof q->raw ? p->l3_headers_len : (uint32_t)sizeof q->raw;
        memcpy(q->raw, p->l3, n);
    }
    q->l3_len = af_l3_bytes(pp, p);
    q->payload_len = af_payload_bytes(pp, p);
    if (q->l3_len) {   /* the payload follows its headers in the frame: one copy of the IP packet */
        memcpy(payload_to, p->l3, q->l3_len);
        q->l3_headers = q->l3_len < p->l3_headers_len ? q->l3_len : p->l3_headers_len;
        if (q->payload_len > q->l3_len - q->l3_headers) q->payload_len = q->l3_len - q->l3_headers;
    } else {
        q->l3_headers = 0;
        if (q->payload_len) memcpy(payload_to, p->payload, q->payload_len);
    }
    q->payload = payload_to ? payload_to + q->l3_headers : NULL;
    p->l3 = NULL;   /* points into libpcap's buffer, which the next read reuses */
    p->payload = NULL;
}

int af_prepare_key(const af_prepare *pp, af_stats *st, af_queued *q, const u_char *data) {
    return prepare_key(pp, st, q, data);
}

void af_prepare_copy(const af_prepare *pp, af_queued *q, uint8_t *payload_to) { prepare_copy(pp, q, payload_to); }

int af_prepare_packet(const af_prepare *pp, af_stats *st, af_queued *q, const u_char *data, uint8_t *payload_to) {
    if (!prepare_key(pp, st, q, data)) return 0;
    prepare_copy(pp, q, payload_to);
    return 1;
}

int af_prepare_frame(const af_prepare *pp, af_stats *st, const af_frame *f, af_queued *q, uint32_t at,
                     uint8_t *payload_to) {
    if (!read_packet(pp, st, f, q)) return 0;
    if (pp->defrag) af_defrag_give_up(pp->defrag, at, q->ts);   /* before this packet */
    if (!prepare_key(pp, st, q, f->data)) return 0;
    prepare_copy(pp, q, payload_to);
    return 1;
}

/* A fragment that was held (early_fragments.h, defrag.h) into q, keyed. */
static void prepare_held(const af_prepare *pp, const af_frag_early *e, af_queued *q) {
    q->p = e->p;
    q->ts = e->ts_ns;
    q->caplen = e->caplen;
    q->wire_len = e->wire_len;
    q->decoded = AF_DECODED;
    q->pending = 0;
    q->payload = NULL;
    q->payload_len = 0;
    q->l3_len = q->l3_headers = 0;
    memcpy(q->raw, e->raw, sizeof q->raw);
    make_key(pp, q);
}

int af_prepare_early(const af_prepare *pp, af_stats *st, const af_queued *first, af_queued *q) {
    af_frag_early e;
    if (!af_early_release(pp->early, st, &first->p, &e)) return 0;
    prepare_held(pp, &e, q);
    return 1;
}

int af_prepare_unmerged(const af_prepare *pp, uint32_t before, int all, af_queued *q) {
    af_frag_early e;
    if (!pp->defrag || !af_defrag_release(pp->defrag, before, all, &e)) return 0;
    prepare_held(pp, &e, q);
    return 1;
}
