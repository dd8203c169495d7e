/* Community ID v1 (meters=("community_id",); seed: af_config.community_id_seed): the flow hash
 * security tools share, https://github.com/corelight/community-id-spec. Computed once per record,
 * at emission: "1:" + base64(SHA-1(seed (2 bytes, big-endian) . lower address . higher address .
 * protocol . 0 . lower port . higher port)), ordered by (address, port) in network byte order.
 * ICMP/ICMPv6 use (type, counterpart type) as the ports when the type has a counterpart (echo,
 * timestamp, ...: ordered as ports), else (type, code) in the first packet's direction
 * ("one-way": not reordered). Protocols other than TCP, UDP, SCTP, ICMP and ICMPv6 hash no ports.
 *
 * Per packet the meter only remembers an ICMP flow's first type, code and sender (aioflow keys
 * echo flows by their identifier, so the key alone lacks the type); a TCP or UDP packet costs the
 * hook call and one compare. SHA-1 is below (FIPS 180-4, written for this file). */
#include <stdlib.h>
#include <string.h>

#include "icmp_pair.h"
#include "meter.h"

#define CID_TEXT 32                  /* "1:" + 28 base64 characters + NUL, padded */

typedef struct {
    uint8_t seen, sender, type, code;   /* ICMP: first packet's type, code and key endpoint */
} cid_state;

typedef struct {
    char text[CID_TEXT];
} cid_record;

typedef struct {
    uint16_t seed;
} cid_ctx;

/* --- SHA-1 ------------------------------------------------------------------------------------ */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *b) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], t;
    /* four 20-round stages, each without a branch per round */
#define SHA1_ROUND(f, k, i) t = rol(a, 5) + (f) + e + (k) + w[i], e = d, d = c, c = rol(bb, 30), bb = a, a = t
    _Pragma("GCC unroll 20") for (int i = 0; i < 20; i++) SHA1_ROUND((bb & c) | (~bb & d), 0x5A827999u, i);
    _Pragma("GCC unroll 20") for (int i = 20; i < 40; i++) SHA1_ROUND(bb ^ c ^ d, 0x6ED9EBA1u, i);
    _Pragma("GCC unroll 20") for (int i = 40; i < 60; i++) SHA1_ROUND((bb & c) | (bb & d) | (c & d), 0x8F1BBCDCu, i);
    _Pragma("GCC unroll 20") for (int i = 60; i < 80; i++) SHA1_ROUND(bb ^ c ^ d, 0xCA62C1D6u, i);
#undef SHA1_ROUND
    h[0] += a, h[1] += bb, h[2] += c, h[3] += d, h[4] += e;
}

/* SHA-1 of a message of at most 55 bytes (one block: the longest Community ID input is 40). */
static void sha1_short(const uint8_t *msg, size_t n, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    uint8_t block[64] = {0};
    memcpy(block, msg, n);
    block[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) block[63 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, block);
    for (int i = 0; i < 20; i++) out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = abc[v >> 18], *out++ = abc[(v >> 12) & 63], *out++ = abc[(v >> 6) & 63], *out++ = abc[v & 63];
    }
    if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = abc[v >> 18], *out++ = abc[(v >> 12) & 63], *out++ = abc[(v >> 6) & 63], *out++ = '=';
    } else if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = abc[v >> 18], *out++ = abc[(v >> 12) & 63], *out++ = '=', *out++ = '=';
    }
    *out = 0;
}

/* --- the meter ------------------------------------------------------------------------------- */

static void *cid_open(const af_config *cfg, af_stats *stats) {
    (void)stats;
    cid_ctx *c = calloc(1, sizeof *c);
    if (c) c->seed = cfg->community_id_seed;
    return c;
}

static void cid_close(void *ctx) { free(ctx); }

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)ctx;
    const af_packet *p = mp->p;
    if (p->protocol != 1 && p->protocol != 58) return;
    cid_state *s = state;
    if (s->seen) return;
    s->seen = 1;
    s->sender = (uint8_t)mp->sender;
    s->type = p->icmp_type;
    s->code = p->icmp_code;
}

/* Writes "1:<base64>" for the endpoints a (port pa) and b (port pb), already in hashing order. */
static void community_id(uint16_t seed, const af_key *k, int a, int b, int has_ports, uint16_t pa, uint16_t pb,
                         char out[CID_TEXT]) {
    uint8_t msg[40];
    size_t n = 0, alen = k->ver == 4 ? 4 : 16;
    msg[n++] = (uint8_t)(seed >> 8), msg[n++] = (uint8_t)seed;
    memcpy(msg + n, k->ip[a], alen), n += alen;
    memcpy(msg + n, k->ip[b], alen), n += alen;
    msg[n++] = k->proto, msg[n++] = 0;
    if (has_ports) msg[n++] = (uint8_t)(pa >> 8), msg[n++] = (uint8_t)pa, msg[n++] = (uint8_t)(pb >> 8), msg[n++] = (uint8_t)pb;
    uint8_t digest[20];
    sha1_short(msg, n, digest);
    out[0] = '1', out[1] = ':';
    base64(digest, sizeof digest, out + 2);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    const cid_ctx *c = ctx;
    cid_state *s = state;
    const af_key *k = &af_table_flow(me->table, me->slot)->key;
    cid_record *r = (cid_record *)(void *)me->block;
    if (k->proto == 1 || k->proto == 58) {
        /* from the first packet's sender; a two-way type is then ordered as ports are */
        int v6 = k->proto == 58, from = s->sender, to = 1 - from;
        int peer = af_icmp_counterpart(v6, s->type);
        uint16_t pa = s->type, pb = peer < 0 ? s->code : (uint16_t)peer;
        if (peer >= 0) {
            int cmp = memcmp(k->ip[from], k->ip[to], k->ver == 4 ? 4 : 16);
            if (cmp > 0 || (cmp == 0 && pa > pb)) {
                int t = from;
                from = to, to = t;
                uint16_t tp = pa;
                pa = pb, pb = tp;
            }
        }
        community_id(c->seed, k, from, to, 1, pa, pb, r->text);
    } else {
        /* the key is ordered already: endpoint 0 is the lower (address, port) */
        int ports = k->proto == 6 || k->proto == 17 || k->proto == 132;
        community_id(c->seed, k, 0, 1, ports, k->port[0], k->port[1], r->text);
    }
    /* an active-timeout split keeps the state: its next record has the same id */
}

static const af_meter_field fields[] = {
    {"value", "char[32]", "text", offsetof(cid_record, text), 0},
};

const af_meter af_meter_community_id = {
    .info = {"community_id", "Community ID v1 of the flow (seed: community_id_seed)", NULL, fields,
             sizeof fields / sizeof fields[0], sizeof(cid_record)},
    .state_size = sizeof(cid_state),
    .open = cid_open,
    .close = cid_close,
    .on_packet = on_packet,
    .on_end = on_end,
};
