#include "early_fragments.h"

#include <stdlib.h>
#include <string.h>

#include "fragments.h"   /* af_mix_addresses */

static uint32_t slot_of(const af_early_frags *t, const af_packet *p) {
    uint64_t h = af_mix_addresses(t->seed ^ ((uint64_t)p->frag_id << 8) ^ p->protocol, p->src, p->dst);
    return (uint32_t)(h % AF_EARLY_SLOTS);
}

int af_early_init(af_early_frags *t, uint64_t seed, uint32_t cap, uint64_t timeout_ns) {
    t->seed = seed;
    t->timeout_ns = timeout_ns;
    t->cap = cap;
    /* calloc: untouched (not resident) until fragments are held */
    if (cap && !(t->ring = calloc(cap, sizeof *t->ring))) return -1;
    return 0;
}

void af_early_free(af_early_frags *t) {
    free(t->ring);
    t->ring = NULL;
}

static int same_packet_datagram(const af_packet *a, const af_packet *b) {
    return a->frag_id == b->frag_id && a->ip_version == b->ip_version && a->protocol == b->protocol &&
           memcmp(a->src, b->src, 16) == 0 && memcmp(a->dst, b->dst, 16) == 0;
}

static void unlink_early(af_early_frags *t, af_frag_early *e) {
    if (e->prev) t->ring[e->prev - 1].next = e->next;
    else t->chain[slot_of(t, &e->p)] = e->next;
    if (e->next) t->ring[e->next - 1].prev = e->prev;
    e->held = 0;
    t->held--;
}

/* The oldest place leaves the ring; a fragment still held there is set aside for `event`. */
static void drop_oldest(af_early_frags *t, af_stats *st, int event) {
    af_frag_early *e = &t->ring[t->head];
    if (e->held) {
        unlink_early(t, e);
        st->defrag_fragments_held--;
        st->aside[AF_ASIDE_FRAGMENT_ORPHAN]++;
        st->decode_events[event]++;
    }
    t->head = (t->head + 1) % t->cap;
    t->used--;
}

int af_early_hold(af_early_frags *t, af_stats *st, const af_packet *pkt, uint64_t ts_ns, uint32_t caplen,
                  uint32_t wire_len, const uint8_t *raw, uint32_t raw_len) {
    if (!t->ring) return 0;
    if (t->used == t->cap) drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_FULL);
    uint32_t i = (t->head + t->used++) % t->cap;
    af_frag_early *e = &t->ring[i];
    e->p = *pkt;
    e->p.l3 = e->p.payload = NULL;   /* they point into the capture buffer */
    e->p.payload_len = 0;
    e->ts_ns = ts_ns;
    e->caplen = caplen;
    e->wire_len = wire_len;
    if (raw_len > sizeof e->raw) raw_len = sizeof e->raw;
    memcpy(e->raw, raw, raw_len);
    uint32_t s = slot_of(t, pkt);
    e->prev = 0;
    e->next = t->chain[s];
    if (e->next) t->ring[e->next - 1].prev = i + 1;
    t->chain[s] = i + 1;
    e->held = 1;
    t->held++;
    st->packets_read++;
    st->defrag_fragments_held++;
    st->decode_events[AF_EVENT_FRAGMENT_EARLY]++;
    return 1;
}

int af_early_release(af_early_frags *t, af_stats *st, const af_packet *first, af_frag_early *out) {
    if (!t->held) return 0;
    af_frag_early *oldest = NULL;
    /* the chain runs newest to oldest: the last match is the oldest */
    for (uint32_t at = t->chain[slot_of(t, first)]; at; at = t->ring[at - 1].next)
        if (same_packet_datagram(&t->ring[at - 1].p, first)) oldest = &t->ring[at - 1];
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

void af_early_expire(af_early_frags *t, af_stats *st, uint64_t now_ns) {
    while (t->used) {
        const af_frag_early *e = &t->ring[t->head];
        if (e->held && (now_ns < e->ts_ns || now_ns - e->ts_ns < t->timeout_ns)) break;
        drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_TIMEOUT);
    }
}

void af_early_flush(af_early_frags *t, af_stats *st) {
    while (t->used) drop_oldest(t, st, AF_EVENT_FRAGMENT_EARLY_UNFINISHED);
}
