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

int af_frag_init(af_frag_table *t, uint64_t seed, uint32_t cap, uint64_t timeout_ns) {
    t->seed = seed;
    t->early_timeout_ns = timeout_ns;
    t->early_cap = cap;
    /* calloc: untouched (not resident) until fragments are held */
    if (cap && !(t->early = calloc(cap, sizeof *t->early))) return -1;
    return 0;
}

void af_frag_free(af_frag_table *t) {
    free(t->early);
    t->early = NULL;
}

static int same_packet_datagram(const af_packet *a, const af_packet *b) {
    return a->frag_id == b->frag_id && a->ip_version == b->ip_version && a->protocol == b->protocol &&
           memcmp(a->src, b->src, 16) == 0 && memcmp(a->dst, b->dst, 16) == 0;
}

static void unlink_early(af_frag_table *t, af_frag_early *e) {
    if (e->prev) t->early[e->prev - 1].next = e->next;
    else t->early_chain[frag_slot(t, &e->p)] = e->next;
    if (e->next) t->early[e->next - 1].prev = e->prev;
    e->held = 0;
    t->early_held--;
}

/* The oldest place leaves the ring; a fragment still held there is set aside for `event`. */
static void drop_oldest(af_frag_table *t, af_stats *st, int event) {
    af_frag_early *e = &t->early[t->early_head];
    if (e->held) {
        unlink_early(t, e);
        st->defrag_fragments_held--;
        st->aside[AF_ASIDE_FRAGMENT_ORPHAN]++;
        st->decode_events[event]++;
    }
    t->early_head = (t->early_head + 1) % t->early_cap;
    t->early_used--;
}

int af_frag_hold(af_frag_table *t, af_stats *st, const af_packet *pkt, uint64_t ts_ns, uint32_t caplen,
                 const uint8_t *raw, uint32_t raw_len) {
    if (!t->early) return 0;
    if (t->early_used == t->early_cap) drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_FULL);
    uint32_t i = (t->early_head + t->early_used++) % t->early_cap;
    af_frag_early *e = &t->early[i];
    e->p = *pkt;
    e->p.l3 = e->p.payload = NULL;   /* they point into the capture buffer */
    e->p.payload_len = 0;
    e->ts_ns = ts_ns;
    e->caplen = caplen;
    if (raw_len > sizeof e->raw) raw_len = sizeof e->raw;
    memcpy(e->raw, raw, raw_len);
    uint32_t s = frag_slot(t, pkt);
    e->prev = 0;
    e->next = t->early_chain[s];
    if (e->next) t->early[e->next - 1].prev = i + 1;
    t->early_chain[s] = i + 1;
    e->held = 1;
    t->early_held++;
    st->packets_read++;
    st->defrag_fragments_held++;
    st->decode_events[AF_EVENT_FRAGMENT_EARLY]++;
    return 1;
}

int af_frag_release(af_frag_table *t, af_stats *st, const af_packet *first, af_frag_early *out) {
    if (!t->early_held) return 0;
    af_frag_early *oldest = NULL;
    /* the chain runs newest to oldest: the last match is the oldest */
    for (uint32_t at = t->early_chain[frag_slot(t, first)]; at; at = t->early[at - 1].next)
        if (same_packet_datagram(&t->early[at - 1].p, first)) oldest = &t->early[at - 1];
    if (!oldest) return 0;
    unlink_early(t, oldest);
    *out = *oldest;
    out->p.sport = first->sport;
    out->p.dport = first->dport;
    /* no longer held; counting it in its flow counts it read again */
    st->defrag_fragments_held--;
    st->packets_read--;
    return 1;
}

void af_frag_expire(af_frag_table *t, af_stats *st, uint64_t now_ns) {
    while (t->early_used) {
        const af_frag_early *e = &t->early[t->early_head];
        if (e->held && (now_ns < e->ts_ns || now_ns - e->ts_ns < t->early_timeout_ns)) break;
        drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_TIMEOUT);
    }
}

void af_frag_flush(af_frag_table *t, af_stats *st) {
    while (t->early_used) drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_UNFINISHED);
}
