#include "flowtable.h"

#include <stdlib.h>
#include <string.h>

#define AF_MIN_BUCKETS 1024u

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t p = AF_MIN_BUCKETS;
    while (p < n && p < (1u << 31)) p <<= 1;
    return p;
}

int af_table_init(af_table *t, uint32_t max_flows, uint32_t headers_per_flow, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->max_flows = max_flows;
    t->headers_per_flow = headers_per_flow;
    t->seed = seed;
    /* Buckets grow with the live flows (see grow_buckets): an array sized for max_flows would
     * spread a few live flows over megabytes and miss the cache on every lookup. */
    t->max_buckets = pow2_at_least(max_flows);
    t->mask = AF_MIN_BUCKETS - 1;
    t->buckets = calloc(AF_MIN_BUCKETS, sizeof *t->buckets);
    uint32_t maxslabs = (max_flows + AF_SLAB_SIZE - 1) >> AF_SLAB_SHIFT;
    t->slabs = calloc(maxslabs, sizeof *t->slabs);
    if (headers_per_flow) {
        t->header_slabs = calloc(maxslabs, sizeof *t->header_slabs);
        t->headers_dropped = calloc((size_t)maxslabs * AF_SLAB_SIZE, sizeof *t->headers_dropped);
    }
    if (!t->buckets || !t->slabs || (headers_per_flow && (!t->header_slabs || !t->headers_dropped))) {
        af_table_free(t);
        return -1;
    }
    return 0;
}

void af_table_free(af_table *t) {
    for (uint32_t i = 0; i < t->nslabs; i++) {
        free(t->slabs[i]);
        if (t->header_slabs) free(t->header_slabs[i]);
    }
    free(t->slabs);
    free(t->header_slabs);
    free(t->headers_dropped);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

int af_key_make(af_key *k, int ver, const uint8_t *ip_a, uint16_t port_a, const uint8_t *ip_b,
                uint16_t port_b, uint8_t proto, uint16_t vlan) {
    size_t n = ver == 4 ? 4 : 16;
    int c = memcmp(ip_a, ip_b, n);
    int swap = c > 0 || (c == 0 && port_a > port_b);
    memset(k, 0, sizeof *k);
    memcpy(k->ip[0], swap ? ip_b : ip_a, n);
    memcpy(k->ip[1], swap ? ip_a : ip_b, n);
    k->port[0] = swap ? port_b : port_a;
    k->port[1] = swap ? port_a : port_b;
    k->vlan = vlan;
    k->ver = (uint8_t)ver;
    k->proto = proto;
    return swap;
}

static inline uint64_t mix64(uint64_t h) {   /* murmur3's finaliser */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t af_key_hash(const af_table *t, const af_key *k) {
    uint64_t w[5];
    memcpy(w, k, sizeof w);
    uint64_t h = t->seed;
    for (int i = 0; i < 5; i++) h = mix64(h ^ w[i]) + 0x9e3779b97f4a7c15ULL;
    return h;
}

uint32_t af_table_find(const af_table *t, const af_key *k, uint64_t hash) {
    for (uint32_t s = t->buckets[hash & t->mask]; s != AF_NIL;) {
        const af_flow *f = af_table_flow(t, s);
        if (memcmp(&f->key, k, sizeof *k) == 0) return s;
        s = f->hnext;
    }
    return AF_NIL;
}

static uint32_t take_slot(af_table *t) {
    if (t->free_head != AF_NIL) {
        uint32_t s = t->free_head;
        t->free_head = af_table_flow(t, s)->hnext;
        return s;
    }
    if (t->hwm >= t->max_flows) return AF_NIL;
    uint32_t slab = t->hwm >> AF_SLAB_SHIFT;
    if (slab >= t->nslabs) {
        /* cache-line aligned, so each flow's key and chain link share its first line */
        af_flow *mem = aligned_alloc(64, (size_t)AF_SLAB_SIZE * sizeof *mem);
        if (!mem) return AF_NIL;
        if (t->headers_per_flow) {
            t->header_slabs[slab] =
                malloc((size_t)AF_SLAB_SIZE * t->headers_per_flow * sizeof(af_header));
            if (!t->header_slabs[slab]) {
                free(mem);
                return AF_NIL;
            }
        }
        t->slabs[slab] = mem;
        t->nslabs = slab + 1;
    }
    return ++t->hwm;
}

static void list_unlink(af_table *t, uint32_t slot, af_flow *f) {
    int l = (f->state & AF_ST_CLOSING) ? AF_LIST_CLOSING : AF_LIST_OPEN;
    if (f->prev) af_table_flow(t, f->prev)->next = f->next; else t->lists[l].head = f->next;
    if (f->next) af_table_flow(t, f->next)->prev = f->prev; else t->lists[l].tail = f->prev;
    f->prev = f->next = AF_NIL;
    (void)slot;
}

static void list_append(af_table *t, uint32_t slot, af_flow *f, enum af_list l) {
    f->prev = t->lists[l].tail;
    f->next = AF_NIL;
    if (t->lists[l].tail) af_table_flow(t, t->lists[l].tail)->next = slot;
    else t->lists[l].head = slot;
    t->lists[l].tail = slot;
    if (l == AF_LIST_CLOSING) f->state |= AF_ST_CLOSING; else f->state &= (uint8_t)~AF_ST_CLOSING;
}

/* Doubles the bucket array once the load passes 3/4 (up to one bucket per possible flow). A failed
 * allocation keeps the old array: chains get longer, nothing breaks. */
static void grow_buckets(af_table *t) {
    uint32_t n = (t->mask + 1) * 2;
    uint32_t *b = calloc(n, sizeof *b);
    if (!b) return;
    for (uint32_t s = 1; s <= t->hwm; s++) {
        af_flow *f = af_table_flow(t, s);
        if (!(f->state & AF_ST_LIVE)) continue;
        uint32_t i = (uint32_t)af_key_hash(t, &f->key) & (n - 1);
        f->hnext = b[i];
        b[i] = s;
    }
    free(t->buckets);
    t->buckets = b;
    t->mask = n - 1;
}

uint32_t af_table_insert(af_table *t, const af_key *k, uint64_t hash) {
    if (t->count >= (t->mask + 1) / 4 * 3 && t->mask + 1 < t->max_buckets) grow_buckets(t);
    uint32_t s = take_slot(t);
    if (s == AF_NIL) return AF_NIL;
    af_flow *f = af_table_flow(t, s);
    memset(f, 0, sizeof *f);
    f->key = *k;
    f->state = AF_ST_LIVE;
    f->hnext = t->buckets[hash & t->mask];
    t->buckets[hash & t->mask] = s;
    list_append(t, s, f, AF_LIST_OPEN);
    if (t->headers_per_flow) *af_table_headers_dropped(t, s) = 0;
    t->count++;
    return s;
}

void af_table_remove(af_table *t, uint32_t slot) {
    af_flow *f = af_table_flow(t, slot);
    uint32_t *pp = &t->buckets[af_key_hash(t, &f->key) & t->mask];
    while (*pp != slot) pp = &af_table_flow(t, *pp)->hnext;
    *pp = f->hnext;
    list_unlink(t, slot, f);
    f->state = 0;
    f->hnext = t->free_head;
    t->free_head = slot;
    t->count--;
}

void af_table_touch(af_table *t, uint32_t slot, enum af_list l) {
    af_flow *f = af_table_flow(t, slot);
    int current = (f->state & AF_ST_CLOSING) ? AF_LIST_CLOSING : AF_LIST_OPEN;
    if (t->lists[l].tail == slot && current == (int)l) return;
    list_unlink(t, slot, f);
    list_append(t, slot, f, l);
}
