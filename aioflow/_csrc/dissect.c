/* The dissect meter: application detection with nDPI (through ndpi_shim.h), nfstream's fields.
 *
 * A flow's first packets (whole IP packets: needs_l3) go to nDPI until it knows the protocol and
 * has nothing more to look for, or max_dissections packets were given (then it gives up, guessing;
 * so does a flow that ends first). nDPI's per-flow state is big (af_ndpi_state_size()), so it is
 * not in the per-slot state: it comes from a pool of max_dissecting_flows states taken when a
 * flow's first packet comes and given back as soon as its dissection ends. A flow that finds the
 * pool empty is not dissected (dissect_pool_full). What the dissection found stays in the slot's
 * state until the flow ends (an active-timeout split's records all carry it). */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "meter.h"
#include "ndpi_shim.h"

enum { PHASE_NEW, PHASE_DISSECTING, PHASE_DONE, PHASE_SKIPPED };

typedef struct {
    uint32_t entry;                  /* pool entry while dissecting */
    uint16_t packets;                /* given to nDPI */
    uint8_t phase;
    uint8_t _pad;
    af_dissect_result result;        /* PHASE_DONE */
} dissect_state;

typedef struct {
    af_ndpi *ndpi;
    af_stats *stats;
    uint32_t max_dissections;
    uint32_t state_size;             /* one nDPI state, rounded up to 64 bytes */
    uint32_t capacity;               /* pool states */
    uint32_t used;                   /* states ever handed out (the ones past it were never touched) */
    uint32_t free_count;
    uint8_t *pool;                   /* capacity states, reserved; backed as first used */
    uint32_t *free;                  /* states given back, last in first out (the warm ones first) */
    uint8_t *in_use;                 /* by state: taken now (close frees what nDPI holds in them) */
    size_t reserved;
} dissect_ctx;

const char *af_dissect_unavailable(void) { return af_ndpi_unavailable(); }

static int wanted(const af_config *cfg) { return cfg->dissect != 0; }

static void *pool_at(const dissect_ctx *c, uint32_t entry) { return c->pool + (size_t)entry * c->state_size; }

static void *open_ctx(const af_config *cfg, af_stats *stats) {
    if (*af_ndpi_unavailable()) return NULL;   /* Python checked first: this is a second line */
    dissect_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->stats = stats;
    c->max_dissections = cfg->max_dissections ? cfg->max_dissections : 1;
    c->state_size = (af_ndpi_state_size() + 63u) & ~63u;
    c->capacity = cfg->max_dissecting_flows ? cfg->max_dissecting_flows : 1;
    c->reserved = (size_t)c->capacity * (c->state_size + sizeof(uint32_t) + 1);
    void *p = mmap(NULL, c->reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || !(c->ndpi = af_ndpi_open())) {
        if (p != MAP_FAILED) munmap(p, c->reserved);
        free(c);
        return NULL;
    }
    c->pool = p;
    c->free = (uint32_t *)(void *)(c->pool + (size_t)c->capacity * c->state_size);
    c->in_use = (uint8_t *)(c->free + c->capacity);
    stats->dissect_state_bytes = c->state_size;
    return c;
}

static void close_ctx(void *ctx) {
    dissect_ctx *c = ctx;
    for (uint32_t e = 0; e < c->used; e++)
        if (c->in_use[e]) af_ndpi_drop(pool_at(c, e));
    af_ndpi_close(c->ndpi);
    munmap(c->pool, c->reserved);
    free(c);
}

/* A zeroed pool state for a flow's dissection, or 0 when none is left. */
static int take(dissect_ctx *c, uint32_t *entry) {
    if (c->free_count) *entry = c->free[--c->free_count];
    else if (c->used < c->capacity) *entry = c->used++;
    else return 0;
    memset(pool_at(c, *entry), 0, c->state_size);
    c->in_use[*entry] = 1;
    if (++c->stats->dissect_in_flight > c->stats->dissect_peak_in_flight)
        c->stats->dissect_peak_in_flight = c->stats->dissect_in_flight;
    c->stats->dissect_flows++;
    return 1;
}

/* The dissection ends (over: nDPI is done; else it gives up): results kept, the state given back. */
static void finish(dissect_ctx *c, dissect_state *s, int over) {
    c->stats->dissect_truncated += af_ndpi_finish(c->ndpi, pool_at(c, s->entry), over, &s->result);
    if (over) c->stats->dissect_detected++;
    else c->stats->dissect_gave_up++;
    c->in_use[s->entry] = 0;
    c->free[c->free_count++] = s->entry;
    c->stats->dissect_in_flight--;
    s->phase = PHASE_DONE;
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
    int over = af_ndpi_packet(c->ndpi, pool_at(c, s->entry), mp->l3, mp->l3_len, mp->ts / 1000000u);
    if (over || ++s->packets >= c->max_dissections) finish(c, s, over);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    dissect_state *s = state;
    if (s->phase == PHASE_DISSECTING) finish(ctx, s, 0);
    if (s->phase == PHASE_DONE) memcpy(me->block, &s->result, sizeof s->result);
    else {
        memset(me->block, 0, sizeof s->result);
        ((af_dissect_result *)(void *)me->block)->dns_response_code = -1;
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
};

const af_meter af_meter_dissect = {
    .info = {"dissect", "application detection with nDPI: application, category, server name, fingerprints",
             "dissect", fields, sizeof fields / sizeof fields[0], sizeof(af_dissect_result), 1},
    .state_size = sizeof(dissect_state),
    .needs_l3 = 1,
    .wanted = wanted,
    .open = open_ctx,
    .close = close_ctx,
    .on_packet = on_packet,
    .on_end = on_end,
};
