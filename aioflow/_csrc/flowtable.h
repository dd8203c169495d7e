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
    AF_ST_CLOSING = 16,           /* on the closing list (both FINs or a RST) */
    AF_ST_ACTIVE_NEAR = 32        /* active timeout may fall before the next list move */
};

/* Canonical key: endpoint 0 is the lower (address, port). 40 bytes, no padding, so memcmp works. */
typedef struct {
    uint8_t ip[2][16];
    uint16_t port[2];
    uint16_t vlan;
    uint8_t ver, proto;
} af_key;

/* Per-endpoint counters are indexed by endpoint (0/1), not by src/dst: src_idx says which is src.
 * A flow is split in two arrays indexed by slot. The hot part is 128 bytes, two cache lines
 * holding everything a typical packet (an ACK) reads or updates: key, links and state, then
 * the per-packet counters. The cold part (56 bytes) changes rarely: first times, the id, PSH
 * and the rare flags. 184 bytes a flow in all. */
typedef struct {
    /* line 0 */
    af_key key;
    uint32_t hnext, prev, next;
    uint8_t src_idx, state;
    uint8_t flags[2], ttl_min[2], ttl_max[2];
    uint32_t moved;               /* packet time (units of 2^20 ns) of the last move in its list */
    /* line 1 */
    uint64_t last_ns[2];
    uint64_t bytes[2], captured_bytes[2];
    uint32_t packets[2];
    uint32_t ack_packets[2];
} af_flow;

/* Flag counters: ACK and PSH ride on many packets and get 32 bits; FIN, SYN, RST, URG, ECE and
 * CWR get 16. A counter about to overflow ends the record as an active timeout does (counting
 * goes on in a new record), so counts stay exact. */
typedef struct {
    uint64_t first_ns[2];
    uint64_t id;
    uint32_t psh_packets[2];
    uint16_t rare_flags[2][6];
} af_flow_cold;

/* Kept packet headers of a slot (headers=N only). */
typedef struct {
    uint32_t kept, dropped;
} af_header_count;

/* TCP flag bits (FIN SYN RST PSH ACK URG ECE CWR) and where the rare ones are counted. */
enum { AF_TCP_FIN = 0x01, AF_TCP_SYN = 0x02, AF_TCP_RST = 0x04, AF_TCP_PSH = 0x08, AF_TCP_ACK = 0x10,
       AF_TCP_URG = 0x20, AF_TCP_ECE = 0x40, AF_TCP_CWR = 0x80 };
#define AF_RARE_FLAGS (AF_TCP_FIN | AF_TCP_SYN | AF_TCP_RST | AF_TCP_URG | AF_TCP_ECE | AF_TCP_CWR)
static const uint8_t af_rare_slot[8] = {0, 1, 2, 0xff, 0xff, 3, 4, 5};

typedef struct {
    af_flow *flows;               /* max_flows slots, reserved (see af_table_init) */
    af_flow_cold *cold;           /* the same slots' cold parts */
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

/* Builds the canonical key; returns 1 when the endpoints were swapped (sender is endpoint 1). */
int af_key_make(af_key *k, int ver, const uint8_t *ip_a, uint16_t port_a, const uint8_t *ip_b,
                uint16_t port_b, uint8_t proto, uint16_t vlan);
uint64_t af_key_hash(const af_table *t, const af_key *k);
/* decode_tunnels: keys carry a tunnel id too (af_table_tunnels). 0 or -1 without memory. */
int af_table_tunnels(af_table *t);
/* The hash of a key within a tunnel (0: none, the key's own hash). */
uint64_t af_flow_hash(const af_table *t, const af_key *k, uint32_t tunnel);
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
static inline af_flow_cold *af_table_cold(const af_table *t, uint32_t slot) { return &t->cold[slot - 1]; }
/* A direction's times are meaningful only once it has packets (a time of 0 is a valid time). */
static inline uint64_t af_flow_last(const af_flow *f) {
    if (!f->packets[0]) return f->last_ns[1];
    if (!f->packets[1]) return f->last_ns[0];
    return f->last_ns[0] > f->last_ns[1] ? f->last_ns[0] : f->last_ns[1];
}
static inline uint64_t af_flow_first(const af_flow *f, const af_flow_cold *c) {
    if (!f->packets[0]) return c->first_ns[1];
    if (!f->packets[1]) return c->first_ns[0];
    return c->first_ns[0] < c->first_ns[1] ? c->first_ns[0] : c->first_ns[1];
}

/* The flow of a key (within `tunnel` when the table keeps tunnel ids), or AF_NIL. Inline: once per packet. */
static inline uint32_t af_table_find(const af_table *t, const af_key *k, uint64_t hash, uint32_t tunnel) {
    for (uint32_t s = t->buckets[hash & t->mask]; s != AF_NIL;) {
        const af_flow *f = af_table_flow(t, s);
        if (memcmp(&f->key, k, sizeof *k) == 0 && (!t->tunnel_ids || t->tunnel_ids[s - 1] == tunnel)) return s;
        s = f->hnext;
    }
    return AF_NIL;
}
/* Needs count < max_flows. Returns the new slot, zeroed but for the key, or AF_NIL without memory. */
uint32_t af_table_insert(af_table *t, const af_key *k, uint64_t hash, uint32_t tunnel);
void af_table_remove(af_table *t, uint32_t slot);
/* Moves a flow to the tail (most recent end) of a list. */
void af_table_touch(af_table *t, uint32_t slot, enum af_list list);

#endif
