/* The splt meter (splt=N): nfstream's early packet sequence, its first N packets (N at most
 * AF_MAX_SPLT): splt_direction (0 src->dst, 1 dst->src), splt_ps (size as the accounting mode
 * counts it, accounting.h), splt_piat_ms (gap to the packet before, between
 * millisecond-truncated times; the first is 0), and splt_piat_ns (the exact gaps). Places past
 * the flow's packets are -1. The state keeps N places (state_size_for); the record holds AF_MAX_SPLT,
 * of which Python reads the first N. */
#include <string.h>

#include "accounting.h"

/* Sized by N (state_size_for): the header, then ts[N] and size[N] (8 + 12N bytes a flow, to a multiple of 8). */
typedef struct {
    uint32_t directions;             /* bit i: packet i went dst->src */
    uint32_t count;
    uint64_t ts[];                   /* N times, then N uint32_t sizes (sizes_of) */
} splt_state;

_Static_assert(AF_MAX_SPLT <= 32, "splt_state.directions has one bit per packet");

static uint32_t *sizes_of(splt_state *s, uint32_t n) { return (uint32_t *)(void *)(s->ts + n); }

/* rounded up to 8: the states lie one after another, and each one's ts[] must stay aligned */
static uint32_t state_size_for(const af_config *cfg) {
    return (uint32_t)((sizeof(splt_state) + cfg->splt * (sizeof(uint64_t) + sizeof(uint32_t)) + 7u) & ~7u);
}

typedef struct {
    int64_t splt_piat_ns[AF_MAX_SPLT];
    int64_t splt_piat_ms[AF_MAX_SPLT];
    int32_t splt_ps[AF_MAX_SPLT];
    int8_t splt_direction[AF_MAX_SPLT];
} splt_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    const af_config *cfg = ctx;
    splt_state *s = state;
    uint32_t i = s->count;
    if (i >= cfg->splt) return;
    s->ts[i] = mp->ts;
    sizes_of(s, cfg->splt)[i] = af_accounted_size(mp, cfg->accounting_mode);
    s->directions |= (uint32_t)mp->direction << i;
    s->count = i + 1;
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    const af_config *cfg = ctx;
    splt_state *s = state;
    const uint32_t *sizes = sizes_of(s, cfg->splt);
    splt_record *r = (splt_record *)(void *)me->block;
    memset(r, 0xff, sizeof *r);   /* -1 everywhere */
    uint64_t last = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        uint64_t ts = s->ts[i];
        uint64_t gap = i && ts > last ? ts - last : 0;
        uint64_t gap_ms = i && ts > last ? ts / 1000000u - last / 1000000u : 0;
        r->splt_piat_ns[i] = (int64_t)gap;
        r->splt_piat_ms[i] = (int64_t)gap_ms;
        r->splt_ps[i] = sizes[i] > INT32_MAX ? INT32_MAX : (int32_t)sizes[i];
        r->splt_direction[i] = (int8_t)((s->directions >> i) & 1);
        if (!i || ts > last) last = ts;
    }
    memset(s, 0, state_size_for(cfg));   /* an active-timeout split starts a new record */
}

static int wanted(const af_config *cfg) { return cfg->splt != 0; }

static const af_meter_field fields[] = {
    {"splt_direction", "int8_t", "direction", offsetof(splt_record, splt_direction), AF_MAX_SPLT},
    {"splt_ps", "int32_t", "bytes", offsetof(splt_record, splt_ps), AF_MAX_SPLT},
    {"splt_piat_ms", "int64_t", "ms", offsetof(splt_record, splt_piat_ms), AF_MAX_SPLT},
    {"splt_piat_ns", "int64_t", "ns", offsetof(splt_record, splt_piat_ns), AF_MAX_SPLT},
};

const af_meter af_meter_splt = {
    .info = {"splt", "nfstream's early packet sequence: direction, size and gap of the first splt=N packets",
             "splt", fields, sizeof fields / sizeof fields[0], sizeof(splt_record), 1},
    .state_size_for = state_size_for,
    .wanted = wanted,
    .open = af_config_context,
    .on_packet = on_packet,
    .on_end = on_end,
};
