/* Community ID v1 (meters=("community_id",); seed: af_config.community_id_seed): the flow hash
 * security tools share, https://github.com/corelight/community-id-spec. Computed once per record,
 * at emission (hashed LANES records at a time, below): "1:" + base64(SHA-1(seed (2 bytes,
 * big-endian) . lower address . higher address . protocol . 0 . lower port . higher port)),
 * ordered by (address, port) in network byte order. ICMP/ICMPv6 use (type, counterpart type) as
 * the ports when the type has a counterpart (echo, timestamp, ...: ordered as ports), else (type,
 * code) in the first packet's direction ("one-way": not reordered). Protocols other than TCP,
 * UDP, SCTP, ICMP and ICMPv6 hash no ports.
 *
 * The meter remembers an ICMP flow's first type, code and sender when the flow is created
 * (aioflow keys echo flows by their identifier, so the key alone lacks the type); it has no
 * per-packet hook, so it costs nothing per packet. SHA-1 is below (FIPS 180-4, written for this
 * file). */
#include <stdlib.h>
#include <string.h>

#include "icmp_pair.h"
#include "meter.h"

#define CID_TEXT 32                  /* "1:" + 28 base64 characters + NUL, padded */

typedef struct {
    uint8_t sender, type, code;      /* ICMP: first packet's type, code and key endpoint */
} cid_state;

typedef struct {
    char text[CID_TEXT];
} cid_record;

/* SHA-1 runs on LANES records at once, one per lane of a vector (GCC's vector extension: SSE2 or
 * NEON halves without AVX2, the same C everywhere): the records' hashes wait in the context until
 * the lanes are full or the batch is handed over (batch_finish), when they are written. */
#define LANES 8
typedef uint32_t lanes __attribute__((vector_size(4 * LANES)));

typedef struct {
    uint16_t seed;
    uint32_t pending;                /* records waiting for their hash */
    char pairs[4096][2];             /* base64 of every 12-bit value: two characters per lookup */
    const af_batch *batch;           /* the batch they are in */
    char *out[LANES];                /* where each one's text goes */
    uint8_t block[LANES][64];        /* each one's SHA-1 block, padded */
} cid_ctx;

/* --- SHA-1 ------------------------------------------------------------------------------------ */

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

/* With AVX2 (chosen at load time where the compiler can make clones) a vector op is one
 * instruction instead of two. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SHA1_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SHA1_CLONES
#endif

/* SHA-1 (FIPS 180-4) of LANES one-block messages, each already padded; h[i] lane j is digest word
 * i of block j. */
SHA1_CLONES static void sha1_lanes(const uint8_t block[LANES][64], uint32_t h[5][LANES]) {
    lanes w[80];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < LANES; j++) {
            const uint8_t *b = block[j] + 4 * i;
            w[i][j] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        }
    _Pragma("GCC unroll 64") for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    static const uint32_t init[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    lanes a = {0}, bb = {0}, c = {0}, d = {0}, e = {0}, t;
    a += init[0], bb += init[1], c += init[2], d += init[3], e += init[4];
    /* four 20-round stages, each without a branch per round */
#define SHA1_ROUND(f, k, i) t = ROL(a, 5) + (f) + e + (k) + w[i], e = d, d = c, c = ROL(bb, 30), bb = a, a = t
    _Pragma("GCC unroll 20") for (int i = 0; i < 20; i++) SHA1_ROUND((bb & c) | (~bb & d), 0x5A827999u, i);
    _Pragma("GCC unroll 20") for (int i = 20; i < 40; i++) SHA1_ROUND(bb ^ c ^ d, 0x6ED9EBA1u, i);
    _Pragma("GCC unroll 20") for (int i = 40; i < 60; i++) SHA1_ROUND((bb & c) | (bb & d) | (c & d), 0x8F1BBCDCu, i);
    _Pragma("GCC unroll 20") for (int i = 60; i < 80; i++) SHA1_ROUND(bb ^ c ^ d, 0xCA62C1D6u, i);
#undef SHA1_ROUND
    for (int j = 0; j < LANES; j++) {
        h[0][j] = init[0] + a[j], h[1][j] = init[1] + bb[j], h[2][j] = init[2] + c[j];
        h[3][j] = init[3] + d[j], h[4][j] = init[4] + e[j];
    }
}

static const char BASE64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* "1:" and the base64 of a digest (five big-endian words): 26 characters of 6 bits, two per
 * 12-bit lookup, one of the last 4 bits, then one '=' (20 bytes do not fill the last group of 3). */
static void write_text(const char (*pairs)[2], const uint32_t h[5][LANES], uint32_t j, char *out) {
    *out++ = '1', *out++ = ':';
    uint64_t acc = 0;
    int bits = 0;
    for (int i = 0; i < 5; i++) {
        acc = acc << 32 | h[i][j], bits += 32;
        for (; bits >= 12; bits -= 12, out += 2) memcpy(out, pairs[(acc >> (bits - 12)) & 4095], 2);
    }
    *out++ = BASE64[(acc << (6 - bits)) & 63];
    *out++ = '=', *out = 0;
}

/* Hashes the waiting records and writes their "1:<base64>" texts. */
static void flush(cid_ctx *c) {
    if (!c->pending) return;
    uint32_t h[5][LANES];
    sha1_lanes((const uint8_t (*)[64])c->block, h);
    for (uint32_t j = 0; j < c->pending; j++)
        write_text((const char (*)[2])c->pairs, (const uint32_t (*)[LANES])h, j, c->out[j]);
    c->pending = 0;
}

/* --- the meter ------------------------------------------------------------------------------- */

static void *cid_open(const af_config *cfg, af_stats *stats) {
    (void)stats;
    cid_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->seed = cfg->community_id_seed;
    for (int v = 0; v < 4096; v++) c->pairs[v][0] = BASE64[v >> 6], c->pairs[v][1] = BASE64[v & 63];
    return c;
}

static void cid_close(void *ctx) { free(ctx); }

static void on_new(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender) {
    (void)ctx, (void)slot;
    cid_state *s = state;
    s->sender = (uint8_t)sender;
    s->type = first->icmp_type;
    s->code = first->icmp_code;
}

/* Queues the record whose text is `out` for the endpoints a (port pa) and b (port pb), already in
 * hashing order: its SHA-1 block goes to the next lane. */
static void community_id(cid_ctx *c, const af_batch *batch, const af_key *k, int a, int b, int has_ports,
                         uint16_t pa, uint16_t pb, char *out) {
    if (c->pending && c->batch != batch) flush(c);   /* a lane's text stays in its own batch */
    uint8_t *msg = c->block[c->pending];
    size_t n = 0, alen = k->ver == 4 ? 4 : 16;
    memset(msg, 0, 64);
    msg[n++] = (uint8_t)(c->seed >> 8), msg[n++] = (uint8_t)c->seed;
    memcpy(msg + n, k->ip[a], alen), n += alen;
    memcpy(msg + n, k->ip[b], alen), n += alen;
    msg[n++] = k->proto, msg[n++] = 0;
    if (has_ports) msg[n++] = (uint8_t)(pa >> 8), msg[n++] = (uint8_t)pa, msg[n++] = (uint8_t)(pb >> 8), msg[n++] = (uint8_t)pb;
    msg[n] = 0x80;                   /* SHA-1 padding; the length in bits (< 512) in the last two bytes */
    msg[62] = (uint8_t)(n * 8 >> 8), msg[63] = (uint8_t)(n * 8);
    c->out[c->pending] = out;
    c->batch = batch;
    if (++c->pending == LANES) flush(c);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    cid_ctx *c = ctx;
    cid_state *s = state;
    af_key key;
    af_table_key(me->table, af_table_flow(me->table, me->slot), &key);
    const af_key *k = &key;
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
        community_id(c, me->out, k, from, to, 1, pa, pb, r->text);
    } else {
        /* the key is ordered already: endpoint 0 is the lower (address, port) */
        int ports = k->proto == 6 || k->proto == 17 || k->proto == 132;
        community_id(c, me->out, k, 0, 1, ports, k->port[0], k->port[1], r->text);
    }
    /* an active-timeout split keeps the state: its next record has the same id */
}

static void batch_finish(void *ctx, const af_table *t, af_batch *b) {
    (void)t;
    cid_ctx *c = ctx;
    if (c->batch == b) flush(c);
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
    .on_new = on_new,
    .on_end = on_end,
    .batch_finish = batch_finish,
};
