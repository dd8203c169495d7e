#define _DEFAULT_SOURCE   /* mmap flags and madvise under -std=c11 */
#include "flowtable.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define AF_MIN_BUCKETS 1024u

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t p = AF_MIN_BUCKETS;
    while (p < n && p < (1u << 31)) p <<= 1;
    return p;
}

/* Reserves address space for `bytes` without committing memory: pages are only backed as the
 * table first touches them, so memory follows the flows actually seen, up to the bound. Huge
 * pages (where the kernel offers them) spare the TLB misses of touching flows at random. */
static void *reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= (2u << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void release(void *p, size_t bytes) {
    if (p) munmap(p, bytes);
}

static size_t flows_bytes(const af_table *t) { return (size_t)t->max_flows * sizeof(af_flow); }
static size_t headers_bytes(const af_table *t) {
    return (size_t)t->max_flows * t->headers_per_flow * sizeof(af_header);
}

int af_side_init(af_side_store *st, uint32_t cap, uint32_t size) {
    st->cap = cap;
    st->size = size;
    st->mem = reserve((size_t)cap * size);
    return st->mem ? 0 : -1;
}

/* An entry, zeroed; AF_NIL when all cap are taken (one per live flow at most: never, in use). */
uint32_t af_side_take(af_side_store *st) {
    uint32_t i;
    if (st->free_head != AF_NIL) {
        i = st->free_head;
        memcpy(&st->free_head, af_side_entry(st, i), sizeof st->free_head);
    } else if (st->hwm < st->cap) {
        i = ++st->hwm;
    } else {
        return AF_NIL;
    }
    memset(af_side_entry(st, i), 0, st->size);
    return i;
}

void af_side_give(af_side_store *st, uint32_t i) {
    memcpy(af_side_entry(st, i), &st->free_head, sizeof st->free_head);
    st->free_head = i;
}

void af_side_free(af_side_store *st) {
    release(st->mem, (size_t)st->cap * st->size);
    memset(st, 0, sizeof *st);
}

int af_table_init(af_table *t, uint32_t max_flows, uint32_t headers_per_flow, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->max_flows = max_flows;
    t->headers_per_flow = headers_per_flow;
    t->seed = seed;
    /* Buckets are used from AF_MIN_BUCKETS up, doubling with the live flows (split_buckets):
     * all of max_flows' buckets in use would spread a few flows over megabytes. */
    t->max_buckets = pow2_at_least(max_flows);
    t->mask = AF_MIN_BUCKETS - 1;
    t->buckets = reserve((size_t)t->max_buckets * sizeof *t->buckets);
    t->flows = reserve(flows_bytes(t));
    int stores = af_side_init(&t->tcp, max_flows, sizeof(af_flow_tcp)) | af_side_init(&t->v6, max_flows, 32);
    if (headers_per_flow) {
        t->headers = reserve(headers_bytes(t));
        t->header_counts = reserve((size_t)max_flows * sizeof *t->header_counts);
    }
    if (!t->buckets || !t->flows || stores || (headers_per_flow && (!t->headers || !t->header_counts))) {
        af_table_free(t);
        return -1;
    }
    return 0;
}

void af_table_free(af_table *t) {
    release(t->buckets, (size_t)t->max_buckets * sizeof *t->buckets);
    release(t->flows, flows_bytes(t));
    af_side_free(&t->tcp);
    af_side_free(&t->v6);
    release(t->headers, headers_bytes(t));
    release(t->header_counts, (size_t)t->max_flows * sizeof *t->header_counts);
    release(t->tunnel_ids, (size_t)t->max_flows * sizeof *t->tunnel_ids);
    memset(t, 0, sizeof *t);
}

int af_table_tunnels(af_table *t) {
    if (!t->tunnel_ids) t->tunnel_ids = reserve((size_t)t->max_flows * sizeof *t->tunnel_ids);
    return t->tunnel_ids ? 0 : -1;
}


void af_table_key(const af_table *t, const af_flow *f, af_key *out) {
    memset(out->ip, 0, sizeof out->ip);
    memcpy(&out->port, &f->key.port, 8);
    if (f->key.ver == 4) {
        memcpy(out->ip[0], &f->key.a[0], 4);
        memcpy(out->ip[1], &f->key.a[1], 4);
    } else {
        memcpy(out->ip, af_side_entry(&t->v6, f->key.a[1]), sizeof out->ip);
    }
}

af_flow_tcp *af_table_tcp_take(af_table *t, af_flow *f) {
    if (f->tcp == AF_NIL) f->tcp = af_side_take(&t->tcp);
    return f->tcp ? (af_flow_tcp *)af_side_entry(&t->tcp, f->tcp) : NULL;
}

uint32_t af_table_bytes_per_flow(int ip_version, int tcp) {
    return (uint32_t)(sizeof(af_flow) + (tcp ? sizeof(af_flow_tcp) : 0) + (ip_version == 6 ? 32 : 0) +
                      2 * sizeof(uint32_t));
}

static uint64_t slot_hash(const af_table *t, uint32_t slot) {
    af_key k;
    af_table_key(t, af_table_flow(t, slot), &k);
    return af_flow_hash(t, &k, t->tunnel_ids ? t->tunnel_ids[slot - 1] : 0);
}


static uint32_t take_slot(af_table *t) {
    if (t->free_head != AF_NIL) {
        uint32_t s = t->free_head;
        t->free_head = af_table_flow(t, s)->hnext;
        return s;
    }
    return t->hwm < t->max_flows ? ++t->hwm : AF_NIL;
}

static void list_unlink(af_table *t, uint32_t slot, af_flow *f) {
    int l = (f->state & AF_ST_CLOSING) ? AF_LIST_CLOSING : AF_LIST_OPEN;
    if (!f->prev) t->due_floor = 0;   /* a new head */
    if (f->prev) af_table_flow(t, f->prev)->next = f->next; else t->lists[l].head = f->next;
    if (f->next) af_table_flow(t, f->next)->prev = f->prev; else t->lists[l].tail = f->prev;
    f->prev = f->next = AF_NIL;
    (void)slot;
}

static void list_append(af_table *t, uint32_t slot, af_flow *f, enum af_list l) {
    f->prev = t->lists[l].tail;
    f->next = AF_NIL;
    if (t->lists[l].tail) af_table_flow(t, t->lists[l].tail)->next = slot;
    else t->lists[l].head = slot, t->due_floor = 0;
    t->lists[l].tail = slot;
    if (l == AF_LIST_CLOSING) f->state |= AF_ST_CLOSING; else f->state &= (uint8_t)~AF_ST_CLOSING;
}

/* Doubles the buckets in use once there are as many flows as buckets (chains of one flow on
 * average: a lookup reads the bucket, then usually one flow; a lower load would cost 4-8 more
 * bytes per flow for few saved reads), in place: bucket i's chain splits between
 * i and i + n by the next bit of each flow's hash (the new half of the array is still zero). */
static void split_buckets(af_table *t) {
    uint32_t n = t->mask + 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = t->buckets[i], low = AF_NIL, high = AF_NIL;
        while (s != AF_NIL) {
            af_flow *f = af_table_flow(t, s);
            uint32_t next = f->hnext;
            uint32_t *to = (slot_hash(t, s) & n) ? &high : &low;
            f->hnext = *to;
            *to = s;
            s = next;
        }
        t->buckets[i] = low;
        t->buckets[i + n] = high;
    }
    t->mask = 2 * n - 1;
}

uint32_t af_table_insert(af_table *t, const af_key *k, uint64_t hash, uint32_t tunnel) {
    if (t->count >= t->mask + 1 && t->mask + 1 < t->max_buckets) split_buckets(t);
    uint32_t s = take_slot(t);
    if (s == AF_NIL) return AF_NIL;
    uint32_t v6 = AF_NIL;
    if (k->ver != 4) {
        if ((v6 = af_side_take(&t->v6)) == AF_NIL) {   /* not while count < max_flows; kept for safety */
            af_table_flow(t, s)->hnext = t->free_head;
            t->free_head = s;
            return AF_NIL;
        }
        memcpy(af_side_entry(&t->v6, v6), k->ip, sizeof k->ip);
    }
    af_flow *f = af_table_flow(t, s);
    memset(f, 0, sizeof *f);
    af_slot_key_make(&f->key, k, hash);
    if (v6) f->key.a[1] = v6;
    if (t->tunnel_ids) t->tunnel_ids[s - 1] = tunnel;
    f->state = AF_ST_LIVE;
    f->hnext = t->buckets[hash & t->mask];
    t->buckets[hash & t->mask] = s;
    list_append(t, s, f, AF_LIST_OPEN);
    if (t->headers_per_flow) memset(af_table_header_count(t, s), 0, sizeof(af_header_count));
    t->count++;
    return s;
}

void af_table_remove(af_table *t, uint32_t slot) {
    af_flow *f = af_table_flow(t, slot);
    uint32_t *pp = &t->buckets[slot_hash(t, slot) & t->mask];
    while (*pp != slot) pp = &af_table_flow(t, *pp)->hnext;
    *pp = f->hnext;
    list_unlink(t, slot, f);
    if (f->key.ver != 4) af_side_give(&t->v6, f->key.a[1]);
    if (f->tcp) af_side_give(&t->tcp, f->tcp);
    f->tcp = AF_NIL;
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
