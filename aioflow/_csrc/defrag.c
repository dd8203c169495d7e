#include "defrag.h"

#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "fragments.h"

#define NIL 0u   /* slots and blocks are 1-based, so calloc'd maps start empty */

enum { ST_FREE = 0, ST_LIVE = 1, ST_DEAD = 2 };

/* A held fragment: its range, and what counting it without its datagram needs (its packet is its
 * datagram's first fragment's with these). */
typedef struct {
    uint32_t off, end;
    uint64_t ts_ns;
    uint32_t caplen, wire_len, ip_length;
    uint16_t ip_frag;
    uint8_t ttl, _pad;
} af_range;

typedef struct {
    af_frag_early e;
    uint32_t before;          /* counted before the packet at this queue position */
} af_unmerged;

typedef struct {
    uint8_t src[16], dst[16];
    uint32_t id;
    uint16_t vlan;
    uint8_t ver, proto;       /* IPv4: part of the key; IPv6: the fragment header's next header */
    uint8_t state;
    uint8_t handed;           /* given up and handed over: later fragments pass through */
    uint16_t nfrags;
    uint16_t hdr_len;         /* the first fragment's header kept; 0 until it is seen */
    uint16_t nh_pos;          /* IPv6: the next-header byte that pointed at the fragment header */
    uint32_t total;           /* fragmentable length once the last fragment is seen, else 0 */
    uint32_t have;            /* bytes held (ranges never overlap) */
    uint32_t max_end;         /* blocks past it are unused */
    uint32_t hash;
    uint64_t captured;        /* captured bytes of the fragments held */
    uint64_t wire;            /* their frames' lengths on the wire */
    uint64_t first_ns;        /* the timeout runs from the first fragment seen, as in Linux */
    uint32_t prev, next;      /* age list, oldest first */
    uint32_t hnext;           /* hash chain; free-slot list */
} af_dgram;

struct af_defrag {
    af_stats *stats;
    uint64_t seed, timeout_ns;
    uint32_t max_d, max_frags, max_size, bpd;   /* bpd: block map entries per datagram */
    uint32_t count, mask;
    uint32_t *buckets;
    af_dgram *d;              /* [max_d + 1] */
    uint32_t free_slot, next_slot;
    uint32_t head, tail;
    af_range *ranges;         /* [max_frags] per slot */
    uint32_t *blockmap;       /* [bpd] per slot */
    uint8_t *headers;         /* [AF_DEFRAG_HEADER_MAX] per slot */
    af_packet *firsts;        /* per slot: its first fragment, decoded (pointers cleared) */
    uint8_t *first_ok;        /* per slot: that decode found its flow */
    af_frag_table *frags;     /* first fragments' ports (fragments.h) */
    af_unmerged *ring;        /* handed-over fragments waiting to be counted */
    uint32_t ring_cap, ring_head, ring_count, position;
    uint8_t *pool;            /* nblocks * AF_DEFRAG_BLOCK bytes */
    uint32_t *block_next;     /* free-block list */
    uint32_t nblocks, used_blocks, next_block, free_block;
    uint8_t *out;             /* the reassembled datagram handed back */
};

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

af_defrag *af_defrag_new(const af_config *cfg, uint64_t seed, af_stats *stats, af_frag_table *frags) {
    af_defrag *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->stats = stats;
    d->frags = frags;
    d->seed = seed;
    d->timeout_ns = cfg->fragment_timeout_ns;
    d->max_d = cfg->max_fragment_datagrams;
    d->max_frags = cfg->max_fragments_per_datagram;
    d->max_size = cfg->max_datagram_size;
    d->bpd = (d->max_size + AF_DEFRAG_BLOCK - 1) / AF_DEFRAG_BLOCK;
    uint64_t nb = cfg->max_fragment_memory / AF_DEFRAG_BLOCK;
    d->nblocks = nb > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)nb;
    uint32_t buckets = 1;
    while (buckets < 2 * d->max_d) buckets <<= 1;
    d->mask = buckets - 1;
    size_t slots = (size_t)d->max_d + 1;
    /* calloc: the big arrays stay untouched (not resident) until datagrams use them */
    d->buckets = calloc(buckets, sizeof *d->buckets);
    d->d = calloc(slots, sizeof *d->d);
    d->ranges = calloc(slots * d->max_frags, sizeof *d->ranges);
    d->blockmap = calloc(slots * d->bpd, sizeof *d->blockmap);
    d->headers = calloc(slots, AF_DEFRAG_HEADER_MAX);
    d->firsts = calloc(slots, sizeof *d->firsts);
    d->first_ok = calloc(slots, 1);
    d->ring_cap = 2 * d->max_frags;
    d->ring = calloc(d->ring_cap, sizeof *d->ring);
    d->pool = malloc((size_t)d->nblocks * AF_DEFRAG_BLOCK);
    d->block_next = calloc((size_t)d->nblocks + 1, sizeof *d->block_next);
    d->out = malloc(d->max_size);
    if (!d->buckets || !d->d || !d->ranges || !d->blockmap || !d->headers || !d->pool || !d->block_next ||
        !d->out || !d->firsts || !d->first_ok || !d->ring) {
        af_defrag_free(d);
        return NULL;
    }
    return d;
}

void af_defrag_free(af_defrag *d) {
    if (!d) return;
    free(d->buckets);
    free(d->d);
    free(d->ranges);
    free(d->blockmap);
    free(d->headers);
    free(d->firsts);
    free(d->first_ok);
    free(d->ring);
    free(d->pool);
    free(d->block_next);
    free(d->out);
    free(d);
}

/* The datagram a fragment belongs to: addresses, identification, VLAN, and for IPv4 the protocol
 * (RFC 791); IPv6 identifies a datagram without it (RFC 8200). */
typedef struct {
    const uint8_t *src, *dst;
    uint32_t id;
    uint16_t vlan;
    uint8_t ver, proto;
} af_dkey;

static uint32_t key_hash(const af_defrag *d, const af_dkey *k) {
    uint64_t h = d->seed ^ ((uint64_t)k->id << 16) ^ ((uint64_t)k->vlan << 8) ^ k->proto ^ ((uint64_t)k->ver << 56);
    return (uint32_t)af_mix_addresses(h, k->src, k->dst);
}

static int same_key(const af_dgram *g, const af_dkey *k) {
    return g->id == k->id && g->ver == k->ver && g->vlan == k->vlan && (k->ver == 6 || g->proto == k->proto) &&
           memcmp(g->src, k->src, 16) == 0 && memcmp(g->dst, k->dst, 16) == 0;
}

static uint32_t find(const af_defrag *d, const af_dkey *k, uint32_t hash) {
    for (uint32_t s = d->buckets[hash & d->mask]; s != NIL; s = d->d[s].hnext)
        if (d->d[s].hash == hash && same_key(&d->d[s], k)) return s;
    return NIL;
}

static void set_memory_gauge(af_defrag *d) {
    af_stats *st = d->stats;
    st->defrag_memory = (uint64_t)d->used_blocks * AF_DEFRAG_BLOCK;
    if (st->defrag_memory > st->defrag_peak_memory) st->defrag_peak_memory = st->defrag_memory;
}

/* Frees a datagram's blocks and ranges; the caller accounts for its fragments. */
static void release_data(af_defrag *d, uint32_t s) {
    af_dgram *g = &d->d[s];
    uint32_t *map = &d->blockmap[(size_t)s * d->bpd];
    uint32_t used = (g->max_end + AF_DEFRAG_BLOCK - 1) / AF_DEFRAG_BLOCK;
    for (uint32_t i = 0; i < used; i++) {
        if (map[i] == NIL) continue;
        d->block_next[map[i]] = d->free_block;
        d->free_block = map[i];
        map[i] = NIL;
        d->used_blocks--;
    }
    g->nfrags = 0;
    g->hdr_len = 0;
    g->total = g->have = g->max_end = 0;
    g->captured = g->wire = 0;
    set_memory_gauge(d);
}

/* Whether a give-up hands the datagram's fragments over: not at a memory bound (what a flood of
 * fragments meets), nor for a datagram that never completed (timeout, unfinished: tshark's
 * reassembly and Zeek count no packet of it either); yes for one whose fragments were there but
 * could not be made one (overlap, inconsistent, truncated, too big), which tshark still shows. */
static int hands_over(int reason) {
    return reason == AF_DEFRAG_OVERLAP || reason == AF_DEFRAG_INCONSISTENT || reason == AF_DEFRAG_TRUNCATED ||
           reason == AF_DEFRAG_TOO_BIG;
}

/* A held fragment of datagram s as it would be counted without defragment, into the ring (still
 * held: conservation holds while it waits); 0 when it has no flow (a later fragment whose first
 * fragment's ports are unknown) or the ring is full. */
static int hand_over(af_defrag *d, uint32_t s, const af_range *r) {
    if (d->ring_count == d->ring_cap) return 0;
    af_unmerged *u = &d->ring[(d->ring_head + d->ring_count) % d->ring_cap];
    memset(u, 0, sizeof *u);
    af_packet *p = &u->e.p;
    *p = d->firsts[s];
    if (r->off == 0 && !d->first_ok[s]) return 0;   /* without defragment: aside by its decode */
    if (r->off) {   /* a later fragment: what its decode sees, with its first's ports (fragments.c) */
        p->frag = AF_FRAG_LATER;
        p->tcp_flags = 0;
        p->tcp_seq = p->tcp_ack = p->tcp_window = 0;
        p->icmp_type = p->icmp_code = 0;
        p->l4_offset = 0;
        if (!af_frag_lookup(d->frags, p, r->ts_ns)) return 0;
    }
    p->ttl = r->ttl;
    p->ip_length = r->ip_length;
    p->ip_frag = r->ip_frag;
    p->l3_headers_len = 0;   /* its header bytes are not kept: no raw bytes with headers=N */
    p->payload_len = 0;
    p->events = 0;           /* counted when it was read */
    u->e.ts_ns = r->ts_ns;
    u->e.caplen = r->caplen;
    u->e.wire_len = r->wire_len;
    u->before = d->position;
    d->ring_count++;
    d->stats->decode_events[AF_EVENT_FRAGMENT_UNMERGED]++;
    return 1;
}

/* Gives a datagram up. Its held fragments are dropped for a memory bound; otherwise each is
 * handed over (its first fragment's ports remembered first, as they would be without
 * defragment, for the later fragments whatever their order) or, without a flow, dropped. It
 * stays as a tombstone that drops, or for a handed-over datagram passes through, later ones. */
static void give_up(af_defrag *d, uint32_t s, int reason) {
    af_dgram *g = &d->d[s];
    if (g->state != ST_LIVE) return;
    d->stats->defrag_gave_up[reason]++;
    uint32_t dropped = g->nfrags;
    if (hands_over(reason)) {
        const af_range *r = &d->ranges[(size_t)s * d->max_frags];
        for (uint32_t i = 0; i < g->nfrags; i++)
            if (r[i].off == 0 && d->first_ok[s]) af_frag_remember(d->frags, &d->firsts[s], r[i].ts_ns);
        for (uint32_t i = 0; i < g->nfrags; i++) dropped -= (uint32_t)hand_over(d, s, &r[i]);
        g->handed = 1;
    }
    d->stats->aside[AF_ASIDE_FRAGMENT_DROPPED] += dropped;
    d->stats->defrag_fragments_held -= dropped;
    release_data(d, s);
    g->state = ST_DEAD;
}

void af_defrag_position(af_defrag *d, uint32_t position) { d->position = position; }

int af_defrag_release(af_defrag *d, uint32_t before, int all, af_frag_early *out) {
    if (!d->ring_count) return 0;
    af_unmerged *u = &d->ring[d->ring_head];
    if (!all && (int32_t)(u->before - before) > 0) return 0;
    *out = u->e;
    d->ring_head = (d->ring_head + 1) % d->ring_cap;
    d->ring_count--;
    /* no longer held; counting it in its flow counts it read again */
    d->stats->defrag_fragments_held--;
    d->stats->packets_read--;
    return 1;
}

static void unlink_age(af_defrag *d, uint32_t s) {
    af_dgram *g = &d->d[s];
    if (g->prev) d->d[g->prev].next = g->next; else d->head = g->next;
    if (g->next) d->d[g->next].prev = g->prev; else d->tail = g->prev;
    g->prev = g->next = NIL;
}

/* Removes a datagram (given up first, under `reason`, if still live) and frees its slot. */
static void evict(af_defrag *d, uint32_t s, int reason) {
    give_up(d, s, reason);
    af_dgram *g = &d->d[s];
    uint32_t *at = &d->buckets[g->hash & d->mask];
    while (*at != s) at = &d->d[*at].hnext;
    *at = g->hnext;
    unlink_age(d, s);
    g->state = ST_FREE;
    g->hnext = d->free_slot;
    d->free_slot = s;
    d->count--;
    d->stats->defrag_in_progress = d->count;
}

static uint32_t create(af_defrag *d, const af_dkey *k, uint32_t hash, uint64_t ts) {
    if (d->count >= d->max_d) evict(d, d->head, AF_DEFRAG_TABLE_FULL);
    uint32_t s = d->free_slot;
    if (s != NIL) d->free_slot = d->d[s].hnext;
    else s = ++d->next_slot;
    af_dgram *g = &d->d[s];
    memset(g, 0, sizeof *g);
    memcpy(g->src, k->src, 16);
    memcpy(g->dst, k->dst, 16);
    g->id = k->id;
    g->vlan = k->vlan;
    g->ver = k->ver;
    g->proto = k->proto;
    g->state = ST_LIVE;
    g->hash = hash;
    g->first_ns = ts;
    g->hnext = d->buckets[hash & d->mask];
    d->buckets[hash & d->mask] = s;
    g->prev = d->tail;
    if (d->tail) d->d[d->tail].next = s; else d->head = s;
    d->tail = s;
    d->count++;
    af_stats *st = d->stats;
    st->defrag_in_progress = d->count;
    if (d->count > st->defrag_peak_in_progress) st->defrag_peak_in_progress = d->count;
    return s;
}

static inline int timed_out(uint64_t now, uint64_t first, uint64_t timeout) {
    return now > first && now - first >= timeout;
}

void af_defrag_expire(af_defrag *d, uint64_t now_ns) {
    while (d->head != NIL && timed_out(now_ns, d->d[d->head].first_ns, d->timeout_ns))
        evict(d, d->head, AF_DEFRAG_TIMEOUT);
}

void af_defrag_flush(af_defrag *d) {
    while (d->head != NIL) evict(d, d->head, AF_DEFRAG_UNFINISHED);
}

/* Where one fragment's parts are in the captured bytes. */
typedef struct {
    const uint8_t *data;      /* the fragment's share of the fragmentable part */
    uint32_t len, off;
    uint32_t hdr_len;         /* bytes before the fragmentable part (kept from the first fragment) */
    uint32_t nh_pos;
    uint8_t proto;
    int more, truncated;
} af_piece;

/* IPv6: finds the fragment header again (decode stopped at it or went past it). */
static int locate_v6(const uint8_t *l3, uint32_t avail, uint32_t ip_len, af_piece *pc) {
    uint32_t limit = avail < ip_len ? avail : ip_len;
    uint32_t pos = 40, nh_pos = 6;
    uint8_t next = l3[6];
    while (next != 44) {
        if (pos + 8 > limit) return 0;
        uint32_t len;
        if (next == 0 || next == 43 || next == 60) len = ((uint32_t)l3[pos + 1] + 1) * 8;
        else if (next == 51) len = ((uint32_t)l3[pos + 1] + 2) * 4;
        else return 0;
        nh_pos = pos;
        next = l3[pos];
        pos += len;
    }
    if (pos + 8 > limit) return 0;
    uint16_t fo = rd16(l3 + pos + 2);
    pc->proto = l3[pos];
    pc->off = fo & 0xfff8u;
    pc->more = fo & 1;
    pc->hdr_len = pos;
    pc->nh_pos = nh_pos;
    pc->data = l3 + pos + 8;
    pc->len = ip_len - (pos + 8);
    pc->truncated = avail < ip_len;
    return 1;
}

static int locate(const af_packet *p, const uint8_t *end, af_piece *pc) {
    uint32_t avail = (uint32_t)(end - p->l3);
    if (p->ip_version == 6) return locate_v6(p->l3, avail, p->ip_length, pc);
    uint32_t hl = (uint32_t)(p->l3[0] & 0x0f) * 4;
    pc->proto = p->protocol;
    pc->off = (uint32_t)(p->ip_frag & 0x1fff) * 8;
    pc->more = (p->ip_frag & 0x2000) != 0;
    pc->hdr_len = hl;
    pc->nh_pos = 0;
    pc->data = p->l3 + hl;
    pc->len = p->ip_length - hl;   /* decode checked ip_length >= hl */
    pc->truncated = avail < p->ip_length;
    return 1;
}

/* The reason a fragment cannot join its datagram, or -1. Duplicates are -2. */
static int check(const af_defrag *d, uint32_t s, const af_piece *pc, int ver) {
    const af_dgram *g = &d->d[s];
    uint32_t end = pc->off + pc->len;
    if (pc->truncated) return AF_DEFRAG_TRUNCATED;
    if (pc->len == 0 || (pc->more && (pc->len & 7))) return AF_DEFRAG_INCONSISTENT;
    /* the reassembled IP length field must hold it; and the configured bound */
    uint32_t ip_len_field = ver == 4 ? pc->hdr_len + end : pc->hdr_len - 40 + end;
    if (ip_len_field > 65535 || pc->hdr_len + end > d->max_size) return AF_DEFRAG_TOO_BIG;
    if (pc->off == 0 && pc->hdr_len > AF_DEFRAG_HEADER_MAX) return AF_DEFRAG_TOO_BIG;
    if (!pc->more && ((g->total && g->total != end) || g->max_end > end)) return AF_DEFRAG_INCONSISTENT;
    if (pc->more && g->total && end > g->total) return AF_DEFRAG_INCONSISTENT;
    const af_range *r = &d->ranges[(size_t)s * d->max_frags];
    for (uint32_t i = 0; i < g->nfrags; i++) {
        if (r[i].off == pc->off && r[i].end == end) return -2;
        if (pc->off < r[i].end && r[i].off < end) return AF_DEFRAG_OVERLAP;
    }
    if (g->nfrags >= d->max_frags) return AF_DEFRAG_TOO_MANY_FRAGMENTS;
    return -1;
}

static uint32_t blocks_missing(const af_defrag *d, uint32_t s, uint32_t off, uint32_t end) {
    const uint32_t *map = &d->blockmap[(size_t)s * d->bpd];
    uint32_t n = 0;
    for (uint32_t b = off / AF_DEFRAG_BLOCK; b <= (end - 1) / AF_DEFRAG_BLOCK; b++) n += map[b] == NIL;
    return n;
}

/* Makes room for `need` blocks by giving up the oldest other datagrams; 0 if it cannot. */
static int make_room(af_defrag *d, uint32_t keep, uint32_t need) {
    uint32_t s = d->head;
    while (d->nblocks - d->used_blocks < need && s != NIL) {
        uint32_t next = d->d[s].next;
        if (s != keep && d->d[s].state == ST_LIVE && d->d[s].max_end) evict(d, s, AF_DEFRAG_MEMORY_FULL);
        s = next;
    }
    return d->nblocks - d->used_blocks >= need;
}

static uint32_t alloc_block(af_defrag *d) {
    uint32_t b = d->free_block;
    if (b != NIL) d->free_block = d->block_next[b];
    else b = ++d->next_block;
    d->used_blocks++;
    return b;
}

static void store(af_defrag *d, uint32_t s, const af_piece *pc) {
    uint32_t *map = &d->blockmap[(size_t)s * d->bpd];
    uint32_t pos = pc->off, end = pc->off + pc->len;
    while (pos < end) {
        uint32_t b = pos / AF_DEFRAG_BLOCK, in = pos % AF_DEFRAG_BLOCK;
        uint32_t n = AF_DEFRAG_BLOCK - in < end - pos ? AF_DEFRAG_BLOCK - in : end - pos;
        if (map[b] == NIL) map[b] = alloc_block(d);
        memcpy(d->pool + (size_t)(map[b] - 1) * AF_DEFRAG_BLOCK + in, pc->data + (pos - pc->off), n);
        pos += n;
    }
    set_memory_gauge(d);
}

/* Writes the whole datagram into d->out: the first fragment's header, fixed up, then the data. */
static uint32_t assemble(af_defrag *d, uint32_t s) {
    const af_dgram *g = &d->d[s];
    uint8_t *o = d->out;
    memcpy(o, &d->headers[(size_t)s * AF_DEFRAG_HEADER_MAX], g->hdr_len);
    uint32_t len = g->hdr_len + g->total;
    if (g->ver == 4) {
        o[2] = (uint8_t)(len >> 8);
        o[3] = (uint8_t)len;
        o[6] &= 0x40;   /* DF stays; MF and the offset go */
        o[7] = 0;
        o[10] = o[11] = 0;
        uint16_t c = (uint16_t)~af_csum_fold(af_csum_add(0, o, g->hdr_len));   /* in memory order */
        memcpy(o + 10, &c, 2);
    } else {   /* the fragment header goes: what pointed at it now names the payload */
        uint32_t plen = len - 40;
        o[4] = (uint8_t)(plen >> 8);
        o[5] = (uint8_t)plen;
        o[g->nh_pos] = g->proto;
    }
    const uint32_t *map = &d->blockmap[(size_t)s * d->bpd];
    for (uint32_t pos = 0; pos < g->total; pos += AF_DEFRAG_BLOCK) {
        uint32_t n = g->total - pos < AF_DEFRAG_BLOCK ? g->total - pos : AF_DEFRAG_BLOCK;
        memcpy(o + g->hdr_len + pos, d->pool + (size_t)(map[pos / AF_DEFRAG_BLOCK] - 1) * AF_DEFRAG_BLOCK, n);
    }
    return len;
}

static void drop_fragment(af_defrag *d) {
    d->stats->aside[AF_ASIDE_FRAGMENT_DROPPED]++;
    d->stats->packets_read++;
}

/* The fragment is counted as it is, by the caller: its datagram was handed over. */
static const uint8_t *pass_through(af_defrag *d, int *unmerged) {
    d->stats->decode_events[AF_EVENT_FRAGMENT_UNMERGED]++;
    *unmerged = 1;
    return NULL;
}

const uint8_t *af_defrag_add(af_defrag *d, const af_packet *pkt, int decoded, const uint8_t *end, uint32_t caplen,
                             uint32_t wire_len, uint64_t ts_ns, uint32_t *len, uint32_t *captured, uint32_t *wire,
                             int *unmerged) {
    af_piece pc;
    *unmerged = 0;
    /* IPv6: the protocol decode saw differs between first and later fragments, and is no key */
    af_dkey k = {pkt->src, pkt->dst, pkt->frag_id, pkt->vlan_id, pkt->ip_version,
                 pkt->ip_version == 4 ? pkt->protocol : 0};
    uint32_t hash = key_hash(d, &k);
    uint32_t s = find(d, &k, hash);
    if (s != NIL && d->d[s].state == ST_DEAD) {   /* its datagram was given up */
        if (d->d[s].handed) return pass_through(d, unmerged);
        drop_fragment(d);
        return NULL;
    }
    if (s == NIL) s = create(d, &k, hash, ts_ns);
    if (!locate(pkt, end, &pc)) {   /* decode found the fragment header, so this is not expected */
        give_up(d, s, AF_DEFRAG_INCONSISTENT);
        if (d->d[s].handed) return pass_through(d, unmerged);
        drop_fragment(d);
        return NULL;
    }
    int reason = check(d, s, &pc, pkt->ip_version);
    if (reason == -2) {
        d->stats->defrag_duplicates++;
        drop_fragment(d);
        return NULL;
    }
    uint32_t need = reason == -1 ? blocks_missing(d, s, pc.off, pc.off + pc.len) : 0;
    if (reason == -1 && !make_room(d, s, need)) reason = AF_DEFRAG_MEMORY_FULL;
    if (reason >= 0) {
        give_up(d, s, reason);
        if (d->d[s].handed) return pass_through(d, unmerged);
        drop_fragment(d);
        return NULL;
    }
    store(d, s, &pc);
    af_dgram *g = &d->d[s];
    uint32_t frag_end = pc.off + pc.len;
    d->ranges[(size_t)s * d->max_frags + g->nfrags++] =
        (af_range){pc.off, frag_end, ts_ns, caplen, wire_len, pkt->ip_length, pkt->ip_frag, pkt->ttl, 0};
    g->have += pc.len;
    if (frag_end > g->max_end) g->max_end = frag_end;
    g->captured += caplen;
    g->wire += wire_len;
    if (!pc.more) g->total = frag_end;
    if (pc.off == 0 || g->nfrags == 1) {   /* the packet a give-up makes its fragments' from */
        d->firsts[s] = *pkt;
        d->firsts[s].l3 = d->firsts[s].payload = NULL;   /* they point into the capture buffer */
        d->first_ok[s] = pc.off == 0 && decoded == AF_DECODED;
    }
    if (pc.off == 0) {
        memcpy(&d->headers[(size_t)s * AF_DEFRAG_HEADER_MAX], pkt->l3, pc.hdr_len);
        g->hdr_len = (uint16_t)pc.hdr_len;
        g->nh_pos = (uint16_t)pc.nh_pos;
        g->proto = pc.proto;
    }
    af_stats *st = d->stats;
    int complete = g->total && g->have == g->total && g->hdr_len;
    /* the first fragment may carry a longer header (IPv4 options) than the one that set the end */
    uint32_t whole = g->hdr_len + g->total;
    if (!complete || whole > d->max_size || (g->ver == 4 ? whole : whole - 40) > 65535) {
        st->defrag_fragments_held++;
        st->packets_read++;
        if (complete) give_up(d, s, AF_DEFRAG_TOO_BIG);
        return NULL;
    }
    /* complete: this fragment stands for the datagram; the others were merged into it */
    *len = assemble(d, s);
    *captured = g->captured > UINT32_MAX ? UINT32_MAX : (uint32_t)g->captured;
    *wire = g->wire > UINT32_MAX ? UINT32_MAX : (uint32_t)g->wire;
    st->aside[AF_ASIDE_FRAGMENT_MERGED] += g->nfrags - 1u;
    st->defrag_fragments_held -= g->nfrags - 1u;
    st->defrag_datagrams++;
    release_data(d, s);
    g->state = ST_FREE;   /* not given up: evict() only unlinks it */
    evict(d, s, AF_DEFRAG_TIMEOUT);
    return d->out;
}
