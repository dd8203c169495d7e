/* The splt meter (splt=N): nfstream's early packet sequence, its first N packets (N at most
 * AF_MAX_SPLT): splt_direction (0 src->dst, 1 dst->src), splt_ps (size as the accounting mode
 * counts it, accounting.h), splt_piat_ms (gap to the packet before, between
 * millisecond-truncated times; the first is 0), and splt_piat_ns (the exact gaps). Places past
 * the flow's packets are -1. The state keeps N places (state_size_for); the record holds AF_MAX_SPLT,
 * of which Python reads the first N. */
#include <string.h>

#include "accounting.h"

/* Sized by N (state_size_for): ts[N], then N words of size and direction (12N bytes a flow, to a
 * multiple of 8). Packet i of the record is the flow table's count less one (af_meter_packet's
 * flow has counted it): no count is kept, so a flow past its first N packets reads nothing here,
 * and the first N only store (no load that would wait for the line), which is why the counting
 * loop does not prefetch this state (no_prefetch). */
#define DIRECTION_BIT 0x80000000u    /* in a word: the packet went dst->src; below it, its size */

static uint64_t *times_of(void *state) { return state; }
static uint32_t *words_of(void *state, uint32_t n) { return (uint32_t *)(void *)(times_of(state) + n); }

/* rounded up to 8: the states lie one after another, and each one's times must stay aligned */
static uint32_t state_size_for(const af_config *cfg) {
    return (uint32_t)((cfg->splt * (sizeof(uint64_t) + sizeof(uint32_t)) + 7u) & ~7u);
}

/* packets of the record so far (this one included, on_packet), from the flow's slot */
static uint64_t packets_of(const af_flow *f) { return (uint64_t)f->packets[0] + f->packets[1]; }

typedef struct {
    int64_t splt_piat_ns[AF_MAX_SPLT];
    int64_t splt_piat_ms[AF_MAX_SPLT];
    int32_t splt_ps[AF_MAX_SPLT];
    int8_t splt_direction[AF_MAX_SPLT];
} splt_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    const af_config *cfg = ctx;
    uint64_t i = packets_of(mp->flow) - 1;
    if (i >= cfg->splt) return;
    uint32_t size = af_accounted_size(mp, cfg->accounting_mode);
    times_of(state)[i] = mp->ts;
    words_of(state, cfg->splt)[i] = (size > INT32_MAX ? INT32_MAX : size) | (mp->direction ? DIRECTION_BIT : 0);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    const af_config *cfg = ctx;
    const uint64_t *times = times_of(state);
    const uint32_t *words = words_of(state, cfg->splt);
    uint64_t packets = packets_of(af_table_flow(me->table, me->slot));
    uint32_t count = packets < cfg->splt ? (uint32_t)packets : cfg->splt;
    splt_record *r = (splt_record *)(void *)me->block;
    memset(r, 0xff, sizeof *r);   /* -1 everywhere */
    uint64_t last = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t ts = times[i];
        uint64_t gap = i && ts > last ? ts - last : 0;
        uint64_t gap_ms = i && ts > last ? ts / 1000000u - last / 1000000u : 0;
        r->splt_piat_ns[i] = (int64_t)gap;
        r->splt_piat_ms[i] = (int64_t)gap_ms;
        r->splt_ps[i] = (int32_t)(words[i] & ~DIRECTION_BIT);
        r->splt_direction[i] = (int8_t)(words[i] >> 31);
        if (!i || ts > last) last = ts;
    }
    /* nothing to reset: an active-timeout split's record writes its places before reading them */
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
    .no_prefetch = 1,
    .on_packet = on_packet,
    .on_end = on_end,
};
