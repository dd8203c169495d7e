#include "fragments.h"

#include <stdlib.h>
#include <string.h>

static uint32_t frag_slot(const af_frag_table *t, const af_packet *p) {
    uint64_t h = af_mix_addresses(t->seed ^ ((uint64_t)p->frag_id << 8) ^ p->protocol, p->src, p->dst);
    return (uint32_t)(h % AF_FRAG_SLOTS);
}

static int same_datagram(const af_frag_entry *e, const af_packet *p) {
    return e->used && e->id == p->frag_id && e->ver == p->ip_version && e->proto == p->protocol &&
           memcmp(e->src, p->src, 16) == 0 && memcmp(e->dst, p->dst, 16) == 0;
}

void af_frag_remember(af_frag_table *t, const af_packet *pkt, uint64_t ts_ns) {
    af_frag_entry *e = &t->slots[frag_slot(t, pkt)];
    if (e->used && !same_datagram(e, pkt) && ts_ns - e->ts_ns < AF_FRAG_TIMEOUT_NS) t->evictions++;
    memcpy(e->src, pkt->src, 16);
    memcpy(e->dst, pkt->dst, 16);
    e->id = pkt->frag_id;
    e->ver = pkt->ip_version;
    e->proto = pkt->protocol;
    e->sport = pkt->sport;
    e->dport = pkt->dport;
    e->ts_ns = ts_ns;
    e->used = 1;
    t->tracked++;
}

int af_frag_lookup(const af_frag_table *t, af_packet *pkt, uint64_t ts_ns) {
    const af_frag_entry *e = &t->slots[frag_slot(t, pkt)];
    if (!same_datagram(e, pkt)) return 0;
    if (ts_ns > e->ts_ns && ts_ns - e->ts_ns >= AF_FRAG_TIMEOUT_NS) return 0;
    pkt->sport = e->sport;
    pkt->dport = e->dport;
    return 1;
}

void af_frag_init(af_frag_table *t, uint64_t seed) {
    t->seed = seed;   /* the slots are zeroed by the caller (calloc: untouched until used) */
}
