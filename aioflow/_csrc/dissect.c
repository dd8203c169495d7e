/* The dissect meter: application detection with nDPI (through ndpi_shim.h), nfstream's fields.
 *
 * A flow's first packets (whole IP packets: needs_l3) go to nDPI until it knows the protocol and
 * has nothing more to look for, or max_dissections packets were given (then it gives up, guessing;
 * so does a flow that ends first). nDPI's per-flow state is big (af_ndpi_state_size()), so it is
 * not in the per-slot state: it comes from a pool of max_dissecting_flows states taken when a
 * flow's first packet comes and given back as soon as its dissection ends. A flow that finds the
 * pool empty is not dissected (dissect_pool_full). What the dissection found (af_dissect_result,
 * 1.2 kB, mostly text fields left empty) is kept packed (its numbers, then each text up to its NUL:
 * ~100-400 bytes) in the smallest of three stores it fits, taken when the dissection ends and given
 * back when the flow does (an active-timeout split's records all carry it): a flow slot holds 8
 * bytes, so a flow never dissected costs no result, and memory is backed for the packed results
 * held at once only.
 *
 * The same packets go to JA4 (ja4.h, aioflow's own, not nDPI's), whose per-flow state follows the
 * nDPI state in the pool entry. A dissection that nDPI has finished goes on (nDPI no longer called)
 * while JA4 still waits for the rest of a ClientHello, or, on a flow nDPI found to be a proxy's
 * (SOCKS, HTTP CONNECT) or one with STARTTLS (SMTP, IMAP...), for the ClientHello that may follow;
 * all within the same max_dissections budget. */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ja4.h"
#include "meter.h"
#include "ndpi_shim.h"

enum { PHASE_NEW, PHASE_DISSECTING, PHASE_DONE, PHASE_SKIPPED };

typedef struct {
    uint32_t entry;                  /* PHASE_DISSECTING: nDPI state entry; PHASE_DONE: result entry */
    union {
        uint16_t packets;            /* PHASE_DISSECTING: given to nDPI */
        uint16_t size_class;         /* PHASE_DONE: the results store of the entry */
    };
    uint8_t phase;
    uint8_t ndpi_over;               /* PHASE_DISSECTING: nDPI is done, JA4 still gathers a ClientHello */
} dissect_state;

/* capacity fixed-size entries, reserved and backed as first used; given back ones are taken again
 * last in first out (the warm ones first). */
typedef struct {
    uint8_t *base;                   /* capacity entries, then the free list */
    uint32_t *free;
    uint32_t size;                   /* bytes of one entry */
    uint32_t capacity;
    uint32_t used;                   /* entries ever handed out (the ones past it were never touched) */
    uint32_t free_count;
    size_t reserved;
} store;

typedef struct {
    af_ndpi *ndpi;
    af_quic_crypto *quic;            /* opens QUIC Initials for JA4 */
    af_stats *stats;
    uint32_t ja4_at;                 /* a pool entry's JA4 state: this many bytes in (after nDPI's) */
    uint32_t max_dissections;
    store pool;                      /* nDPI states, one per flow being dissected */
    uint8_t *in_use;                 /* by pool entry: taken now (close frees what nDPI holds in them) */
    store results[3];                /* packed results (RESULT_SIZES), one per flow whose dissection ended */
    af_dissect_result found;         /* where finish writes before packing */
    af_ja4_cache ja4_cache;          /* the lists' hashes of recent ClientHellos */
} dissect_ctx;

/* Bytes of the three results stores' entries: the last holds any packed af_dissect_result. */
#define TEXT_SIZES(X) X(application_name) X(application_category_name) X(requested_server_name) \
    X(client_fingerprint) X(server_fingerprint) X(user_agent) X(content_type) X(tls_version) X(alpn) X(risks) \
    X(ja4) X(ja4_r)
#define SIZE_OF(name) + sizeof(((af_dissect_result *)0)->name)
#define HEAD offsetof(af_dissect_result, application_name)   /* the numbers, before the first text */
static const uint32_t RESULT_SIZES[3] = {128, 384, HEAD TEXT_SIZES(SIZE_OF)};
_Static_assert(HEAD TEXT_SIZES(SIZE_OF) == sizeof(af_dissect_result), "a text field of af_dissect_result is not packed");

/* r packed into out (RESULT_SIZES[2] bytes): its numbers, then each text and its NUL; the length. */
static uint32_t pack(const af_dissect_result *r, uint8_t *out) {
    uint32_t at = HEAD;
    memcpy(out, r, HEAD);
#define PACK(name) { size_t n = strnlen(r->name, sizeof r->name - 1); memcpy(out + at, r->name, n); out[at + n] = 0; at += (uint32_t)n + 1; }
    TEXT_SIZES(PACK)
#undef PACK
    return at;
}

/* The packed result into r (zeroed: the meter set zeroes record blocks). */
static void unpack(const uint8_t *in, af_dissect_result *r) {
    size_t at = HEAD;
    memcpy(r, in, HEAD);
#define UNPACK(name) { size_t n = strlen((const char *)in + at); memcpy(r->name, in + at, n); at += n + 1; }
    TEXT_SIZES(UNPACK)
#undef UNPACK
}

const char *af_dissect_unavailable(void) { return af_ndpi_unavailable(); }

static int wanted(const af_config *cfg) { return cfg->dissect != 0; }

/* extra: bytes per entry reserved after the free list (the pool's in_use flags). */
static int store_open(store *st, uint32_t size, uint32_t capacity, size_t extra) {
    st->size = size;
    st->capacity = capacity;
    st->reserved = (size_t)capacity * (size + sizeof(uint32_t) + extra);
    void *p = mmap(NULL, st->reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    st->base = p;
    st->free = (uint32_t *)(void *)(st->base + (size_t)capacity * size);
    return 1;
}

static void store_close(store *st) {
    if (st->base) munmap(st->base, st->reserved);
}

static void *store_at(const store *st, uint32_t entry) { return st->base + (size_t)entry * st->size; }

/* An entry (its bytes as last left), or 0 when all are taken. */
static int store_take(store *st, uint32_t *entry) {
    if (st->free_count) *entry = st->free[--st->free_count];
    else if (st->used < st->capacity) *entry = st->used++;
    else return 0;
    return 1;
}

static void store_give(store *st, uint32_t entry) { st->free[st->free_count++] = entry; }

static void close_ctx(void *ctx) {
    dissect_ctx *c = ctx;
    for (uint32_t e = 0; e < c->pool.used; e++)
        if (c->in_use[e]) af_ndpi_drop(store_at(&c->pool, e));
    if (c->ndpi) af_ndpi_close(c->ndpi);
    af_quic_crypto_close(c->quic);
    store_close(&c->pool);
    for (int k = 0; k < 3; k++) store_close(&c->results[k]);
    free(c);
}

static void *open_ctx(const af_config *cfg, af_stats *stats) {
    if (*af_ndpi_unavailable()) return NULL;   /* Python checked first: this is a second line */
    dissect_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->stats = stats;
    c->max_dissections = cfg->max_dissections ? cfg->max_dissections : 1;
    uint32_t pool_size = cfg->max_dissecting_flows ? cfg->max_dissecting_flows : 1;
    /* a result is held by a flow in the table: max_flows of them at most */
    c->ja4_at = (af_ndpi_state_size() + 63u) & ~63u;
    uint32_t max_results = cfg->max_flows ? cfg->max_flows : 1;
    if (!store_open(&c->pool, c->ja4_at + (((uint32_t)sizeof(af_ja4_flow) + 63u) & ~63u), pool_size, 1) ||
        !store_open(&c->results[0], RESULT_SIZES[0], max_results, 0) ||
        !store_open(&c->results[1], RESULT_SIZES[1], max_results, 0) ||
        !store_open(&c->results[2], RESULT_SIZES[2], max_results, 0) ||
        !(c->ndpi = af_ndpi_open()) || !(c->quic = af_quic_crypto_open())) {
        close_ctx(c);
        return NULL;
    }
    c->in_use = (uint8_t *)(c->pool.free + c->pool.capacity);
    stats->dissect_state_bytes = c->pool.size;
    return c;
}

static af_ja4_flow *ja4_of(const dissect_ctx *c, uint32_t entry) {
    return (af_ja4_flow *)(void *)((uint8_t *)store_at(&c->pool, entry) + c->ja4_at);
}

/* A pool state for a flow's dissection (nDPI's zeroed, JA4's started), or 0 when none is left.
 * JA4's buffers are not zeroed: only a ClientHello writes (and so backs) them. */
static int take(dissect_ctx *c, uint32_t *entry) {
    if (!store_take(&c->pool, entry)) return 0;
    memset(store_at(&c->pool, *entry), 0, c->ja4_at);
    af_ja4_start(ja4_of(c, *entry));
    c->in_use[*entry] = 1;
    if (++c->stats->dissect_in_flight > c->stats->dissect_peak_in_flight)
        c->stats->dissect_peak_in_flight = c->stats->dissect_in_flight;
    c->stats->dissect_flows++;
    return 1;
}

/* The dissection ends (over: nDPI is done; else it gives up): results kept, the state given back. */
static void finish(dissect_ctx *c, dissect_state *s, int over) {
    af_dissect_result *out = &c->found;
    c->stats->dissect_truncated += af_ndpi_finish(c->ndpi, store_at(&c->pool, s->entry), over, out);
    c->stats->dissect_truncated += af_ja4_finish(ja4_of(c, s->entry), &c->ja4_cache, out->ja4, out->ja4_r, sizeof out->ja4_r, c->stats);
    if (over) c->stats->dissect_detected++;
    else c->stats->dissect_gave_up++;
    c->in_use[s->entry] = 0;
    store_give(&c->pool, s->entry);
    c->stats->dissect_in_flight--;
    uint8_t packed[sizeof(af_dissect_result)];
    uint32_t len = pack(out, packed), k = 0, result = 0;
    while (len > RESULT_SIZES[k]) k++;
    /* one per flow in the table (max_flows) in each store: never short, but never a crash */
    int kept = store_take(&c->results[k], &result);
    if (kept) memcpy(store_at(&c->results[k], result), packed, len);
    s->entry = result;
    s->size_class = (uint16_t)k;
    s->phase = kept ? PHASE_DONE : PHASE_SKIPPED;
    s->ndpi_over = 0;
}

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    dissect_state *s = state;
    if (s->phase >= PHASE_DONE || !mp->l3) return;   /* long flows pay this test alone */
    dissect_ctx *c = ctx;
    if (s->phase == PHASE_NEW) {
        if (!take(c, &s->entry)) {
            c->stats->dissect_pool_full++;
            s->phase = PHASE_SKIPPED;
            return;
        }
        s->phase = PHASE_DISSECTING;
    }
    af_ja4_flow *ja4 = ja4_of(c, s->entry);
    if (!s->ndpi_over)
        s->ndpi_over = (uint8_t)af_ndpi_packet(c->ndpi, store_at(&c->pool, s->entry), mp->l3, mp->l3_len, mp->ts / 1000000u);
    af_ja4_packet(ja4, c->quic, mp->p, mp->direction, mp->payload, mp->payload_len, c->stats);
    void *ndpi = store_at(&c->pool, s->entry);
    int over = s->ndpi_over && !af_ja4_pending(ja4) && !(af_ja4_waiting(ja4) && af_ndpi_tls_may_follow(ndpi));
    if (over || ++s->packets >= c->max_dissections) finish(c, s, s->ndpi_over);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    dissect_ctx *c = ctx;
    dissect_state *s = state;
    af_dissect_result *block = (af_dissect_result *)(void *)me->block;   /* zeroed by the meter set */
    if (s->phase == PHASE_DISSECTING) finish(c, s, s->ndpi_over);
    if (s->phase != PHASE_DONE) {
        block->dns_response_code = -1;
        return;
    }
    unpack(store_at(&c->results[s->size_class], s->entry), block);
    if (me->ending) {   /* the slot's next flow starts from PHASE_NEW */
        store_give(&c->results[s->size_class], s->entry);
        s->phase = PHASE_NEW;
    }
}

/* A text field: "char[N]", N its array's size (checked), read by Python as str. */
#define TEXT(name, n) {#name, "char[" #n "]", "text", offsetof(af_dissect_result, name), 0}
#define SIZE_IS(name, n) _Static_assert(sizeof(((af_dissect_result *)0)->name) == n, #name "'s size differs from its field's")
SIZE_IS(application_name, 48);
SIZE_IS(application_category_name, 32);
SIZE_IS(requested_server_name, 80);
SIZE_IS(client_fingerprint, 48);
SIZE_IS(server_fingerprint, 48);
SIZE_IS(user_agent, 128);
SIZE_IS(content_type, 64);
SIZE_IS(tls_version, 16);
SIZE_IS(alpn, 64);
SIZE_IS(risks, 160);
SIZE_IS(ja4, 40);
SIZE_IS(ja4_r, 512);
_Static_assert(sizeof(((af_dissect_result *)0)->ja4) >= AF_JA4_LEN, "ja4 does not fit its field");

static const af_meter_field fields[] = {
    TEXT(application_name, 48),
    TEXT(application_category_name, 32),
    {"master_protocol", "uint16_t", "nDPI id", offsetof(af_dissect_result, master_protocol), 0},
    {"app_protocol", "uint16_t", "nDPI id", offsetof(af_dissect_result, app_protocol), 0},
    {"application_is_guessed", "uint8_t", "bool", offsetof(af_dissect_result, application_is_guessed), 0},
    {"application_confidence", "uint8_t", "nDPI confidence", offsetof(af_dissect_result, application_confidence), 0},
    TEXT(requested_server_name, 80),
    TEXT(client_fingerprint, 48),
    TEXT(server_fingerprint, 48),
    TEXT(user_agent, 128),
    TEXT(content_type, 64),
    TEXT(tls_version, 16),
    TEXT(alpn, 64),
    TEXT(risks, 160),
    {"dns_response_code", "int16_t", "DNS rcode (-1: none)", offsetof(af_dissect_result, dns_response_code), 0},
    TEXT(ja4, 40),
    TEXT(ja4_r, 512),
};

const af_meter af_meter_dissect = {
    .info = {"dissect", "application detection with nDPI: application, category, server name, fingerprints (and JA4)",
             "dissect", fields, sizeof fields / sizeof fields[0], sizeof(af_dissect_result), 1},
    .state_size = sizeof(dissect_state),
    .needs_l3 = 1,
    .wanted = wanted,
    .open = open_ctx,
    .close = close_ctx,
    .on_packet = on_packet,
    .on_end = on_end,
};
