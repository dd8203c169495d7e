#include "prepare.h"

#include <string.h>

int af_read_packet(const af_prepare *pp, af_stats *st, const af_frame *f, af_queued *q) {
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
    q->ts = ts;
    q->caplen = f->caplen;
    q->dlt = f->dlt;
    q->decoded = af_decode(f->dlt, f->data, f->caplen, &q->p);
    q->pending = 0;
    return 1;
}

int af_prepare_packet(const af_prepare *pp, af_stats *st, af_queued *q, const u_char *data, uint8_t *payload_to) {
    af_packet *p = &q->p;
    int r = q->decoded;
    uint64_t ts = q->ts;
    uint32_t caplen = q->caplen;
    if (pp->defrag && p->frag != AF_FRAG_NONE) {   /* held (counted there) until its datagram is whole */
        uint32_t len;
        data = af_defrag_add(pp->defrag, p, data + caplen, caplen, ts, &len, &caplen);
        if (!data) return 0;
        uint16_t vlan = p->vlan_id;
        r = af_decode(AF_DEFRAG_DLT_RAW, data, len, p);
        p->vlan_id = vlan;
    }
    if (r == AF_DECODED && p->frag == AF_FRAG_LATER && !af_frag_lookup(pp->frags, p, ts))
        r = AF_ASIDE_FRAGMENT_ORPHAN;
    if (r != AF_DECODED) {
        st->aside[r]++;
        st->packets_read++;
        return 0;
    }
    if (p->frag == AF_FRAG_FIRST) af_frag_remember(pp->frags, p, ts);
    q->caplen = caplen;
    q->sender = af_key_make(&q->key, p->ip_version, p->src, p->sport, p->dst, p->dport,
                            p->protocol, p->vlan_id);
    q->hash = af_key_hash(pp->table, &q->key);
    if (pp->prefetch_bucket) __builtin_prefetch(&pp->table->buckets[q->hash & pp->table->mask]);
    if (pp->table->headers_per_flow) {
        uint32_t n = p->l3_headers_len < sizeof q->raw ? p->l3_headers_len : (uint32_t)sizeof q->raw;
        memcpy(q->raw, p->l3, n);
    }
    q->payload_len = af_payload_bytes(pp, p);
    q->payload = payload_to;
    if (q->payload_len) memcpy(payload_to, p->payload, q->payload_len);
    p->l3 = NULL;   /* points into libpcap's buffer, which the next read reuses */
    p->payload = NULL;
    return 1;
}
