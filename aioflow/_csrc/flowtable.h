/* The flow table: flows in one reserved array, a seeded chained hash over a canonical
 * bidirectional key, and two recency lists (open flows, closing flows) that make expiry O(1) per
 * packet. Memory is bounded by max_flows: the array's pages are backed only as slots are used. */
#ifndef AIOFLOW_FLOWTABLE_H
#define AIOFLOW_FLOWTABLE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aioflow.h"

#define AF_NIL 0u                 /* slot references are 1-based; 0 means none */

enum af_list { AF_LIST_OPEN = 0, AF_LIST_CLOSING = 1 };

enum af_flow_state {
    AF_ST_LIVE = 1,               /* slot holds a flow */
    AF_ST_FIN0 = 2,               /* FIN seen from endpoint 0 */
    AF_ST_FIN1 = 4,               /* FIN seen from endpoint 1 */
    AF_ST_RST = 8,
    AF_ST_CLOSING = 16            /* on the closing list (both FINs or a RST) */
};

/* Canonical key: endpoint 0 is the lower (address, port). 40 bytes, no padding, so memcmp works.
 * A prepared packet carries it; a slot keeps it in 16 bytes (af_slot_key). */
typedef struct {
    uint8_t ip[2][16];
    uint16_t port[2];
    uint16_t vlan;
    uint8_t ver, proto;
} af_key;

/* A slot's key, 16 bytes, no padding. IPv4 (most flows): the two addresses themselves, so a
 * lookup is one 16-byte compare. IPv6: the two addresses (32 bytes) live in a side store
 * (af_table.v6); a[0] is a fingerprint of the flow's hash, which spares that store's cache line
 * on a chain neighbour that is another flow, and a[1] the store's entry. ports..proto are laid
 * out as in af_key (the same 8 bytes). */
typedef struct {
    uint32_t a[2];
    uint16_t port[2];
    uint16_t vlan;
    uint8_t ver, proto;
} af_slot_key;

/* Per-endpoint counters are indexed by endpoint (0/1), not by src/dst: src_idx says which is src.
 * A flow is 128 bytes, two cache lines holding everything any packet reads or updates (an ACK:
 * key, links, state, then the per-packet counters; a first packet or the active timeout: the
 * first times). TCP's rare counters (PSH and the rare flags, 32 bytes) are in a side store
 * entry only TCP flows take (`tcp`), IPv6 addresses in another (af_slot_key): a UDP or ICMP flow
 * over IPv4 is its 128 bytes and its share of the hash buckets, nothing else. */
typedef struct {
    /* line 0 */
    af_slot_key key;
    uint32_t hnext, prev, next;
    uint32_t tcp;                 /* its af_flow_tcp entry (1-based), AF_NIL until a flag other than ACK */
    uint8_t src_idx, state;
    uint8_t flags[2], ttl_min[2], ttl_max[2];
    uint64_t id;
    uint64_t first_ns[2];
    /* line 1 */
    uint64_t last_ns[2];
    uint64_t bytes[2], captured_bytes[2];
    uint32_t packets[2];
    uint32_t ack_packets[2];
} af_flow;
_Static_assert(sizeof(af_slot_key) == 16 && sizeof(af_key) == 40, "keys without padding");
_Static_assert(offsetof(af_slot_key, port) == 8 && offsetof(af_key, port) == 32, "ports..proto: 8 bytes alike");
_Static_assert(sizeof(af_flow) == 128 && offsetof(af_flow, last_ns) == 64, "a flow is two cache lines");

/* Flag counters: ACK and PSH ride on many packets and get 32 bits; FIN, SYN, RST, URG, ECE and
 * CWR get 16. A counter about to overflow ends the record as an active timeout does (counting
 * goes on in a new record), so counts stay exact. */
typedef struct {
    uint32_t psh_packets[2];
    uint16_t rare_flags[2][6];
} af_flow_tcp;
_Static_assert(sizeof(af_flow_tcp) == 32, "half a cache line");

/* Kept packet headers of a slot (headers=N only). */
typedef struct {
    uint32_t kept, dropped;
} af_header_count;

/* TCP flag bits (FIN SYN RST PSH ACK URG ECE CWR) and where the rare ones are counted. */
enum { AF_TCP_FIN = 0x01, AF_TCP_SYN = 0x02, AF_TCP_RST = 0x04, AF_TCP_PSH = 0x08, AF_TCP_ACK = 0x10,
       AF_TCP_URG = 0x20, AF_TCP_ECE = 0x40, AF_TCP_CWR = 0x80 };
#define AF_RARE_FLAGS (AF_TCP_FIN | AF_TCP_SYN | AF_TCP_RST | AF_TCP_URG | AF_TCP_ECE | AF_TCP_CWR)
static const uint8_t af_rare_slot[8] = {0, 1, 2, 0xff, 0xff, 3, 4, 5};

/* Fixed-size entries for what only some flows need, 1-based (AF_NIL: none), at most one per live
 * flow, so max_flows entries are reserved and pages are backed as entries are first used; freed
 * entries are reused last-in first-out, so the backed part follows the most entries held at once. */
typedef struct {
    uint8_t *mem;
    uint32_t size, cap, hwm, free_head;
} af_side_store;
/* A store of cap entries of size bytes (size >= 4: a free entry holds the next free one's
 * number): 0, or -1 without memory. Meters keep their own (statistics.c). */
int af_side_init(af_side_store *st, uint32_t cap, uint32_t size);
void af_side_free(af_side_store *st);
/* An entry, zeroed; AF_NIL when all cap are taken. */
uint32_t af_side_take(af_side_store *st);
void af_side_give(af_side_store *st, uint32_t i);

typedef struct {
    af_flow *flows;               /* max_flows slots, reserved (see af_table_init) */
    af_side_store tcp;            /* af_flow_tcp entries */
    af_side_store v6;             /* IPv6 flows' addresses (uint8_t[2][16]) */
    af_header *headers;           /* headers_per_flow per slot, only when headers are on */
    af_header_count *header_counts;   /* one per slot, with headers */
    uint32_t hwm;                 /* slots ever handed out */
    uint32_t free_head;
    uint32_t *buckets;            /* max_buckets reserved, mask + 1 in use */
    uint32_t *tunnel_ids;         /* decode_tunnels: each slot's tunnel id, part of its key; else NULL */
    uint32_t mask, max_buckets;
    struct { uint32_t head, tail; } lists[2];
    uint64_t due_floor;           /* no list head is due before this (expiry.h); 0: unknown */
    uint32_t max_flows, count, headers_per_flow;
    uint64_t seed;
} af_table;

int af_table_init(af_table *t, uint32_t max_flows, uint32_t headers_per_flow, uint64_t seed);
void af_table_free(af_table *t);

/* n (4 or 8) address bytes as a number whose order is memcmp's: the first byte on top. */
static inline uint64_t af_be_word(const uint8_t *b, size_t n) {
    uint64_t v = 0;
    memcpy(&v, b, n);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Builds the canonical key; returns 1 when the endpoints were swapped (sender is endpoint 1).
 * Inline: it runs for every packet. The order is memcmp's (address bytes, then port), computed on
 * words and the key written with fixed-size copies (a memcmp/memcpy of variable length was a libc
 * call and ~100 instructions a packet). */
static inline int af_key_make(af_key *k, int ver, const uint8_t *ip_a, uint16_t port_a, const uint8_t *ip_b,
                              uint16_t port_b, uint8_t proto, uint16_t vlan) {
    int c;
    if (ver == 4) {
        uint64_t a = af_be_word(ip_a, 4), b = af_be_word(ip_b, 4);
        c = (a > b) - (a < b);
    } else {
        uint64_t a = af_be_word(ip_a, 8), b = af_be_word(ip_b, 8);
        if (a == b) a = af_be_word(ip_a + 8, 8), b = af_be_word(ip_b + 8, 8);
        c = (a > b) - (a < b);
    }
    int swap = c > 0 || (c == 0 && port_a > port_b);
    const uint8_t *lo = swap ? ip_b : ip_a, *hi = swap ? ip_a : ip_b;
    memset(k, 0, sizeof *k);
    if (ver == 4) {
        memcpy(k->ip[0], lo, 4);
        memcpy(k->ip[1], hi, 4);
    } else {
        memcpy(k->ip[0], lo, 16);
        memcpy(k->ip[1], hi, 16);
    }
    k->port[0] = swap ? port_b : port_a;
    k->port[1] = swap ? port_a : port_b;
    k->vlan = vlan;
    k->ver = (uint8_t)ver;
    k->proto = proto;
    return swap;
}

/* 64x64->128 multiply folded to 64 bits: the mixing step of wyhash. */
static inline uint64_t af_mum(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* Seeded (the seed is random per engine, so chains cannot be forced from the wire), three
 * multiplies for the 40-byte key. Inline: once per packet. */
static inline uint64_t af_key_hash(const af_table *t, const af_key *k) {
    uint64_t w[5];
    memcpy(w, k, sizeof w);
    const uint64_t s = t->seed;
    uint64_t h = af_mum(w[0] ^ s ^ 0xa0761d6478bd642fULL, w[1] ^ 0xe7037ed1a0b428dbULL);
    h ^= af_mum(w[2] ^ s ^ 0x8ebc6af09c88c6e3ULL, w[3] ^ 0x589965cc75374cc3ULL);
    return af_mum(h ^ w[4], s ^ 0x1d8e4e27c47d124fULL);
}

/* decode_tunnels: keys carry a tunnel id too (af_table_tunnels). 0 or -1 without memory. */
int af_table_tunnels(af_table *t);
/* The hash of a key within a tunnel (0: none, the key's own hash). */
static inline uint64_t af_flow_hash(const af_table *t, const af_key *k, uint32_t tunnel) {
    uint64_t h = af_key_hash(t, k);
    return tunnel ? af_mum(h ^ tunnel, t->seed ^ 0x94d049bb133111ebULL) : h;
}

/* Which of n workers counts the flow of this hash: its high half (the buckets use the low bits),
 * scaled to n. Symmetric as the hash is (the key is canonical). */
static inline uint32_t af_worker_of(uint64_t hash, uint32_t n) { return (uint32_t)(((hash >> 32) * n) >> 32); }

static inline af_flow *af_table_flow(const af_table *t, uint32_t slot) { return &t->flows[slot - 1]; }
static inline af_header *af_table_headers(const af_table *t, uint32_t slot) {
    return &t->headers[(size_t)(slot - 1) * t->headers_per_flow];
}
static inline af_header_count *af_table_header_count(const af_table *t, uint32_t slot) {
    return &t->header_counts[slot - 1];
}
static inline void *af_side_entry(const af_side_store *st, uint32_t i) { return st->mem + (size_t)(i - 1) * st->size; }
/* The flow's TCP counters; all zero (a shared entry) when it has none. */
static inline const af_flow_tcp *af_table_tcp(const af_table *t, const af_flow *f) {
    static const af_flow_tcp none;
    return f->tcp ? (const af_flow_tcp *)af_side_entry(&t->tcp, f->tcp) : &none;
}
/* The flow's TCP counters to update: its entry, taken now if it has none (NULL: no memory). */
af_flow_tcp *af_table_tcp_take(af_table *t, af_flow *f);
/* The flow's canonical key, whole. */
void af_table_key(const af_table *t, const af_flow *f, af_key *out);
/* A direction's times are meaningful only once it has packets (a time of 0 is a valid time). */
static inline uint64_t af_flow_last(const af_flow *f) {
    if (!f->packets[0]) return f->last_ns[1];
    if (!f->packets[1]) return f->last_ns[0];
    return f->last_ns[0] > f->last_ns[1] ? f->last_ns[0] : f->last_ns[1];
}
static inline uint64_t af_flow_first(const af_flow *f) {
    if (!f->packets[0]) return f->first_ns[1];
    if (!f->packets[1]) return f->first_ns[0];
    return f->first_ns[0] < f->first_ns[1] ? f->first_ns[0] : f->first_ns[1];
}

/* The slot key of a key whose flow hash is `hash`; an IPv6 one without its store entry (a[1] 0). */
static inline void af_slot_key_make(af_slot_key *sk, const af_key *k, uint64_t hash) {
    memcpy(&sk->port, &k->port, 8);
    if (k->ver == 4) {
        memcpy(&sk->a[0], k->ip[0], 4);
        memcpy(&sk->a[1], k->ip[1], 4);
    } else {
        sk->a[0] = (uint32_t)(hash >> 24);   /* not the bucket's low bits, not only the worker's high ones */
        sk->a[1] = 0;
    }
}

/* The flow of a key (within `tunnel` when the table keeps tunnel ids), or AF_NIL. Inline: once per packet. */
static inline uint32_t af_table_find(const af_table *t, const af_key *k, uint64_t hash, uint32_t tunnel) {
    af_slot_key sk;
    af_slot_key_make(&sk, k, hash);
    for (uint32_t s = t->buckets[hash & t->mask]; s != AF_NIL;) {
        const af_flow *f = af_table_flow(t, s);
        int same = k->ver == 4 ? memcmp(&f->key, &sk, sizeof sk) == 0
                               : f->key.a[0] == sk.a[0] && memcmp(&f->key.port, &sk.port, 8) == 0 &&
                                     memcmp(af_side_entry(&t->v6, f->key.a[1]), k->ip, sizeof k->ip) == 0;
        if (same && (!t->tunnel_ids || t->tunnel_ids[s - 1] == tunnel)) return s;
        s = f->hnext;
    }
    return AF_NIL;
}
/* The table's memory for one more active flow (headers and tunnel ids off): its slot, the side
 * entries such a flow takes, and its buckets at their worst (2 a flow, just after they doubled). */
uint32_t af_table_bytes_per_flow(int ip_version, int tcp);
/* Needs count < max_flows. Returns the new slot, zeroed but for the key, or AF_NIL without memory. */
uint32_t af_table_insert(af_table *t, const af_key *k, uint64_t hash, uint32_t tunnel);
void af_table_remove(af_table *t, uint32_t slot);
/* Moves a flow to the tail (most recent end) of a list. */
void af_table_touch(af_table *t, uint32_t slot, enum af_list list);

#endif
