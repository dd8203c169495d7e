/* The statistics meter (statistics=True): nfstream's statistical flow features, with its names
 * and definitions (nfstream/engine lib_engine.c, flow.py):
 *   - packet sizes (ps) as the accounting mode counts them (accounting.h): min, mean, sample
 *     standard deviation (n - 1), max, per direction and both directions together;
 *   - packet inter-arrival times in ms (piat_ms), as gaps between millisecond-truncated
 *     timestamps: min, mean, sample standard deviation over the n - 1 gaps, max; plus the same
 *     of the exact nanosecond gaps (piat_ns);
 *   - first/last seen and duration in ms, packets and bytes of both directions, TCP flag
 *     counters of both directions (per direction they are the flow record's own);
 *   - bytes on the wire (raw_bytes) and of transport payload (payload_bytes) per direction.
 * State is sums and sums of squares (integers, but a double for the squares of ns gaps): a
 * variance is computed once, when the record is written. A gap is measured from the latest time seen before the packet (a packet
 * older than that counts a gap of 0), so the gaps of a set add up to its last time less its
 * first and their sum is not kept. Packet counts and latest times per direction are the flow
 * table's (af_meter_packet's flow and sender_last_ns), not kept again here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "accounting.h"

/* The state in full width: what on_end reads, and what a flow keeps (in a side entry) once a value
 * outgrew the compact state below. */
typedef struct {
    uint32_t min, max;               /* min starts at UINT32_MAX (reset) */
    uint64_t sumsq;                  /* saturates (gaps of ~50 days) */
} ms_gaps;

typedef struct {
    uint64_t min, max;               /* min starts at UINT64_MAX (reset) */
    double sumsq;                    /* of gaps up to 2^64 ns: no integer type this size would do */
} ns_gaps;

/* Sets of gaps: 0 src->dst, 1 dst->src, 2 both directions. The sum of the sizes per direction is
 * another counter in three accounting modes (on_end): the wire bytes (0), the flow table's IP
 * bytes (1), the payload bytes (3); only mode 2 uses transport_sum (compact: payload + header_bytes). */
typedef struct {
    ns_gaps ns[3];
    ms_gaps ms[3];
    uint64_t ps_sumsq[2];
    uint64_t raw_bytes[2], payload_bytes[2], transport_sum[2];
    uint32_t ps_min[2], ps_max[2];   /* ps_min starts at UINT32_MAX (reset) */
} wide_state;

/* The state a flow slot keeps: 128 bytes, two cache lines, in every accounting mode, where the
 * wide form would take 200. It holds the same values exactly, as long as
 *   - a packet's size is below 65535 (mode 0 frames, reassembled datagrams, IPv6 with a full
 *     payload length can reach it): 16-bit minimums and maximums;
 *   - the byte counters stay below 2^32 per direction: their low 32 bits;
 *   - (mode 2) the transport headers' bytes per direction stay below 2^16: mode 2's sum of sizes
 *     is the payload bytes plus those (8,191 UDP packets; a TCP flow moves between 1,092 and
 *     3,276 packets a direction, by its header length);
 *   - gaps stay below 2^46 ns (19.5 hours: beyond any default timeout): a set's extreme gaps
 *     in 47 bits, each with one bit that gives the same extreme of the millisecond gaps. A gap's
 *     ms value m (between ms-truncated times) is floor(g / 10^6) or one more, so the smallest
 *     ms gap is floor(min_ns / 10^6) + (0 or 1), and so is the largest from max_ns (update_min,
 *     update_max keep the bit).
 * The packet that would break one of these first moves the flow to a side entry in wide form
 * (promote): the few flows that need it pay for it, up to one entry a live flow (max_flows
 * reserved, backed as used). Sums of squares are the wide form's, with the same arithmetic. */
typedef struct {
    double ns_sumsq[3];
    uint64_t ms_sumsq[3];
    uint64_t ps_sumsq[2];
    uint8_t gaps[3][2][6];           /* [set][0 min, 1 max]: 48 bits, the ns gap above the ms bit */
    uint16_t ps_min[2], ps_max[2];   /* ps_min starts at 0xffff; ps_max[0] 0xffff: promoted (WIDE) */
    uint32_t raw_bytes[2];           /* promoted: raw_bytes[0] is the side entry */
    uint32_t payload_bytes[2];
    uint16_t header_bytes[2];        /* accounting mode 2 only: transport size less payload */
} statistics_state;
_Static_assert(offsetof(statistics_state, header_bytes) == 124 && sizeof(statistics_state) == 128 &&
                   offsetof(statistics_state, gaps) + 36 + 2 <= 124,
               "two cache lines; the last gap's 8-byte read stays in the state");

#define WIDE 0xffffu
#define GAP_NONE ((UINT64_C(1) << 47) - 1)   /* a minimum before any gap; no kept gap is this long */
#define GAP_BITS 46                            /* gaps below 2^46 ns fit */
#define SIZE_LIMIT 0xffffu                     /* sizes below it fit */

typedef struct {
    const af_config *cfg;
    int mode;                        /* cfg->accounting_mode, one load nearer */
    af_side_store wide;              /* wide_state entries of promoted flows */
} statistics_ctx;

static uint32_t state_size_for(const af_config *cfg) {
    (void)cfg;
    return sizeof(statistics_state);
}

static void *open_ctx(const af_config *cfg, af_stats *stats) {
    (void)stats;
    statistics_ctx *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->cfg = cfg;
    x->mode = cfg->accounting_mode;
    if (af_side_init(&x->wide, cfg->max_flows, sizeof(wide_state))) {
        free(x);
        return NULL;
    }
    return x;
}

static void close_ctx(void *ctx) {
    statistics_ctx *x = ctx;
    af_side_free(&x->wide);
    free(x);
}

#define SET_FIELDS(X, s)                                                                          \
    X(uint64_t, s##_min_ps, "bytes") X(double, s##_mean_ps, "bytes") X(double, s##_stddev_ps, "bytes") \
    X(uint64_t, s##_max_ps, "bytes")
#define GAP_FIELDS(X, s)                                                                          \
    X(uint64_t, s##_min_piat_ms, "ms") X(double, s##_mean_piat_ms, "ms")                          \
    X(double, s##_stddev_piat_ms, "ms") X(uint64_t, s##_max_piat_ms, "ms")                        \
    X(uint64_t, s##_min_piat_ns, "ns") X(double, s##_mean_piat_ns, "ns")                          \
    X(double, s##_stddev_piat_ns, "ns") X(uint64_t, s##_max_piat_ns, "ns")
#define TIME_FIELDS(X, s)                                                                         \
    X(uint64_t, s##_first_seen_ms, "ms") X(uint64_t, s##_last_seen_ms, "ms") X(uint64_t, s##_duration_ms, "ms")
#define FLAG_FIELDS(X)                                                                            \
    X(uint64_t, bidirectional_syn_packets, "packets") X(uint64_t, bidirectional_cwr_packets, "packets") \
    X(uint64_t, bidirectional_ece_packets, "packets") X(uint64_t, bidirectional_urg_packets, "packets") \
    X(uint64_t, bidirectional_ack_packets, "packets") X(uint64_t, bidirectional_psh_packets, "packets") \
    X(uint64_t, bidirectional_rst_packets, "packets") X(uint64_t, bidirectional_fin_packets, "packets")
#define BYTE_FIELDS(X, s) X(uint64_t, s##_raw_bytes, "bytes") X(uint64_t, s##_payload_bytes, "bytes")
#define STATISTICS_FIELDS(X)                                                                      \
    TIME_FIELDS(X, bidirectional) X(uint64_t, bidirectional_packets, "packets")                   \
    X(uint64_t, bidirectional_bytes, "bytes") TIME_FIELDS(X, src2dst) TIME_FIELDS(X, dst2src)     \
    SET_FIELDS(X, bidirectional) SET_FIELDS(X, src2dst) SET_FIELDS(X, dst2src)                    \
    GAP_FIELDS(X, bidirectional) GAP_FIELDS(X, src2dst) GAP_FIELDS(X, dst2src) FLAG_FIELDS(X)     \
    BYTE_FIELDS(X, bidirectional) BYTE_FIELDS(X, src2dst) BYTE_FIELDS(X, dst2src)

#define AS_MEMBER(type, name, unit) type name;
typedef struct {
    STATISTICS_FIELDS(AS_MEMBER)
} statistics_record;

typedef struct {
    uint64_t min, max;
    double mean, stddev;
} summary;

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

static inline uint64_t add_saturated(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }
static inline double ns_square(uint64_t ns) {
    double g = (double)(int64_t)MIN(ns, (uint64_t)INT64_MAX);   /* a signed conversion is one instruction */
    return g * g;
}

/* A set's extreme gap k (0 min, 1 max) in the compact state: ns << 1 | the ms bit, in 6 bytes
 * read as 8 (the state goes on past the last of them: one load and a mask). */
static inline uint64_t get_gap(const statistics_state *s, int set, int k) {
    uint64_t x;
    memcpy(&x, s->gaps[set][k], sizeof x);
    return x & ((UINT64_C(1) << 48) - 1);
}
static inline void put_gap(statistics_state *s, int set, int k, uint64_t ns, unsigned bit) {
    uint64_t x = ns << 1 | bit;
    memcpy(s->gaps[set][k], &x, 6);   /* little-endian: the low 6 bytes */
}

/* Minimums start high, so that a packet updates every summary without a first-packet case; the
 * rest of a zeroed state is its start. */
static void start(statistics_state *s) {
    s->ps_min[0] = s->ps_min[1] = 0xffff;
    for (int k = 0; k < 3; k++) put_gap(s, k, 0, GAP_NONE, 0);
}

/* the meter set zeroed the state (meter.h) */
static void on_new(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender) {
    (void)ctx, (void)first, (void)sender, (void)slot;
    start(state);
}

/* The wide form of a compact state (its values, exactly). */
static void widen(const statistics_state *s, int mode, wide_state *w) {
    for (int k = 0; k < 3; k++) {
        uint64_t min = get_gap(s, k, 0), max = get_gap(s, k, 1);
        int none = min >> 1 == GAP_NONE;
        w->ns[k] = (ns_gaps){none ? UINT64_MAX : min >> 1, max >> 1, s->ns_sumsq[k]};
        w->ms[k] = (ms_gaps){none ? UINT32_MAX : (uint32_t)((min >> 1) / 1000000u + (min & 1)),
                             (uint32_t)((max >> 1) / 1000000u + (max & 1)), s->ms_sumsq[k]};
    }
    for (int d = 0; d < 2; d++) {
        w->ps_sumsq[d] = s->ps_sumsq[d];
        w->raw_bytes[d] = s->raw_bytes[d];
        w->payload_bytes[d] = s->payload_bytes[d];
        w->transport_sum[d] = mode == AF_ACCOUNT_TRANSPORT ? (uint64_t)s->payload_bytes[d] + s->header_bytes[d] : 0;
        w->ps_min[d] = s->ps_min[d] == 0xffff ? UINT32_MAX : s->ps_min[d];   /* 0xffff: no packet */
        w->ps_max[d] = s->ps_max[d];
    }
}

/* One gap: ns, and ms between millisecond-truncated times (saturated to 32 bits). */
typedef struct {
    uint64_t ns;
    uint32_t ms;
} gap;

/* What a packet adds: its sizes, and its gaps: g[0] of both directions (set 2), g[1] of its own
 * direction (set d); the first `gaps` of them are there, the others are 0. */
typedef struct {
    uint32_t size, payload, wire;
    int d, gaps;
    gap g[2];
} sample;

/* The gap from `prev` (the latest time before) to ts: 0 if ts is older. */
static inline gap gap_to(uint64_t ts, uint64_t ts_ms, uint64_t prev) {
    uint64_t from = MIN(prev, ts);
    uint64_t ms = ts_ms - from / 1000000u;
    return (gap){ts - from, (uint32_t)MIN(ms, (uint64_t)UINT32_MAX)};
}

static inline void take_sample(int mode, const af_meter_packet *mp, sample *p) {
    p->d = mp->direction;
    p->wire = mp->wire_len;
    p->payload = af_payload_size(mp->p);
    p->size = mode == AF_ACCOUNT_PAYLOAD ? p->payload : af_accounted_size(mp, mode);
    /* the flow table has counted this packet: its sender's time before it is sender_last_ns */
    const af_flow *f = mp->flow;
    uint64_t ts = mp->ts, ts_ms = ts / 1000000u;
    int other = 1 - mp->sender;
    int seen = f->packets[mp->sender] > 1;   /* the sender sent before */
    uint64_t other_last = f->packets[other] ? f->last_ns[other] : 0;
    p->gaps = seen ? 2 : f->packets[other] ? 1 : 0;
    p->g[0] = p->gaps ? gap_to(ts, ts_ms, MAX(mp->sender_last_ns, other_last)) : (gap){0, 0};
    p->g[1] = seen ? gap_to(ts, ts_ms, mp->sender_last_ns) : (gap){0, 0};
}

static void wide_gap(wide_state *w, int set, gap g) {
    ns_gaps *n = &w->ns[set];
    ms_gaps *m = &w->ms[set];
    n->min = MIN(n->min, g.ns);
    n->max = MAX(n->max, g.ns);
    m->min = MIN(m->min, g.ms);
    m->max = MAX(m->max, g.ms);
    n->sumsq += ns_square(g.ns);
    m->sumsq = add_saturated(m->sumsq, (uint64_t)g.ms * g.ms);
}

static void wide_packet(wide_state *w, const sample *p) {
    int d = p->d;
    w->raw_bytes[d] += p->wire;
    w->payload_bytes[d] += p->payload;
    w->transport_sum[d] += p->size;   /* read in mode 2 only */
    w->ps_min[d] = MIN(w->ps_min[d], p->size);
    w->ps_max[d] = MAX(w->ps_max[d], p->size);
    w->ps_sumsq[d] = add_saturated(w->ps_sumsq[d], (uint64_t)p->size * p->size);
    if (p->gaps) wide_gap(w, 2, p->g[0]);
    if (p->gaps > 1) wide_gap(w, d, p->g[1]);
}

/* A gap (ns, and ms between ms-truncated times) into the compact state. With M = ms * 10^6, the
 * gap's ms value is floor(ns / 10^6) + c, c = ns < M; a kept extreme v with bit b stands for ms
 * floor(v / 10^6) + b. The new bit follows from comparing v with M (the four cases of min/max, gap
 * beyond v or not). A gap 1 ms or more above the minimum (below the maximum) changes neither it
 * nor its ms value (floor(g / 10^6) is then past floor(v / 10^6)): most gaps are one or the
 * other, so they only load the two extremes. Gaps here are below 2^GAP_BITS ns (the caller
 * checked): the square's conversion needs no clamp, and the ms gap fits 32 bits. */
static inline void compact_gap(statistics_state *s, int set, uint64_t ns, uint64_t ms) {
    uint64_t x = get_gap(s, set, 0), v = x >> 1;
    if (__builtin_expect(ns < v + 1000000u, 0)) {
        uint64_t M = ms * 1000000u;
        unsigned b = x & 1, c = ns < M;
        if (ns < v) b = c & (b | (v >= M)), v = ns;
        else b &= v < M;
        put_gap(s, set, 0, v, b);
    }
    x = get_gap(s, set, 1), v = x >> 1;
    if (__builtin_expect(ns + 1000000u > v, 0)) {
        uint64_t M = ms * 1000000u;
        unsigned b = x & 1, c = ns < M;
        if (ns > v) b = c | (b & (v >= M)), v = ns;
        else b |= v < M;
        put_gap(s, set, 1, v, b);
    }
    double g = (double)(int64_t)ns;
    s->ns_sumsq[set] += g * g;
    s->ms_sumsq[set] = add_saturated(s->ms_sumsq[set], ms * ms);
}

/* The flow's wide entry, its compact state moved there; NULL never (an entry a live flow at most,
 * max_flows of them), but then the flow's later packets are not counted rather than a crash. */
static wide_state *promote(statistics_ctx *x, statistics_state *s) {
    uint32_t e = af_side_take(&x->wide);
    if (e == AF_NIL) return NULL;
    wide_state *w = af_side_entry(&x->wide, e);
    widen(s, x->mode, w);
    s->ps_max[0] = WIDE;
    s->raw_bytes[0] = e;
    return w;
}

/* A packet of a flow in its wide entry, or of one that outgrows the compact state with it (moved
 * there first): the rare case, out of the common packet's way. */
static __attribute__((noinline)) void wide_path(statistics_ctx *x, statistics_state *s, const af_packet *pk,
                                                const af_flow *f, int sender, uint64_t ts, uint64_t sender_last,
                                                uint32_t wire) {
    wide_state *w = s->ps_max[0] == WIDE ? af_side_entry(&x->wide, s->raw_bytes[0]) : promote(x, s);
    if (!w) return;
    af_meter_packet mp = {.sender = sender, .direction = sender != f->src_idx, .ts = ts, .p = pk, .wire_len = wire,
                          .flow = f, .sender_last_ns = sender_last};
    sample p;
    take_sample(x->mode, &mp, &p);
    wide_packet(w, &p);
}

/* A packet into the compact state, in accounting mode `mode` (a constant: af_statistics_packet has
 * one copy a mode, so the size is one load and mode 2's header sum is only there). What
 * take_sample and wide_packet do, with the compact state's limits checked before anything is
 * stored. The flow table has counted the packet: its sender's time before it is sender_last (0
 * on its first), the other side's its latest time (if it sent). */
static inline __attribute__((always_inline)) void compact_packet(statistics_ctx *x, statistics_state *s,
                                                                 const af_packet *pk, const af_flow *f, int sender,
                                                                 uint64_t ts, uint64_t sender_last, uint32_t wire,
                                                                 int mode) {
    if (s->ps_max[0] == WIDE) {
        wide_path(x, s, pk, f, sender, ts, sender_last, wire);
        return;
    }
    int d = sender != f->src_idx;
    uint32_t payload = af_payload_size(pk);
    uint32_t size = mode == AF_ACCOUNT_RAW         ? wire
                    : mode == AF_ACCOUNT_IP        ? pk->ip_length
                    : mode == AF_ACCOUNT_TRANSPORT ? af_transport_size(pk)
                                                   : payload;
    int other = 1 - sender;
    int seen = f->packets[sender] > 1;
    int other_seen = f->packets[other] != 0;
    uint64_t own_from = MIN(sender_last, ts);
    uint64_t all_from = MIN(MAX(sender_last, other_seen ? f->last_ns[other] : 0), ts);
    uint64_t widest = seen ? ts - own_from : other_seen ? ts - all_from : 0;   /* own gap >= both's */
    uint32_t raw = s->raw_bytes[d] + wire, pay = s->payload_bytes[d] + payload;
    int outgrown = (size >= SIZE_LIMIT) | (raw < wire) | (pay < payload) | (widest >> GAP_BITS != 0);
    uint32_t headers = 0;   /* payload <= size in mode 2 (accounting.h) */
    if (mode == AF_ACCOUNT_TRANSPORT) outgrown |= (headers = s->header_bytes[d] + size - payload) > 0xffffu;
    if (__builtin_expect(outgrown, 0)) {
        wide_path(x, s, pk, f, sender, ts, sender_last, wire);
        return;
    }
    s->raw_bytes[d] = raw;
    s->payload_bytes[d] = pay;
    if (mode == AF_ACCOUNT_TRANSPORT) s->header_bytes[d] = (uint16_t)headers;
    s->ps_min[d] = (uint16_t)MIN(s->ps_min[d], size);
    s->ps_max[d] = (uint16_t)MAX(s->ps_max[d], size);
    s->ps_sumsq[d] += (uint64_t)size * size;   /* below 2^32 packets of 2^16 bytes: no overflow */
    if (!other_seen && !seen) return;
    uint64_t ts_ms = ts / 1000000u;
    compact_gap(s, 2, ts - all_from, ts_ms - all_from / 1000000u);
    if (seen) compact_gap(s, d, ts - own_from, ts_ms - own_from / 1000000u);
}

/* The meter's per-packet work (meter.h: called by name, with what it reads). */
void af_statistics_packet(void *ctx, void *state, const af_packet *p, const af_flow *f, int sender, uint64_t ts,
                          uint64_t sender_last_ns, uint32_t wire_len) {
    statistics_ctx *x = ctx;
    switch (x->mode) {
    case AF_ACCOUNT_RAW: compact_packet(x, state, p, f, sender, ts, sender_last_ns, wire_len, AF_ACCOUNT_RAW); break;
    case AF_ACCOUNT_IP: compact_packet(x, state, p, f, sender, ts, sender_last_ns, wire_len, AF_ACCOUNT_IP); break;
    case AF_ACCOUNT_TRANSPORT:
        compact_packet(x, state, p, f, sender, ts, sender_last_ns, wire_len, AF_ACCOUNT_TRANSPORT);
        break;
    default: compact_packet(x, state, p, f, sender, ts, sender_last_ns, wire_len, AF_ACCOUNT_PAYLOAD); break;
    }
}

/* mean and sample standard deviation of n values with sum `sum` and sum of squares `sumsq` */
static void moments(uint64_t n, long double sum, long double sumsq, double *mean, double *stddev) {
    *mean = n ? (double)(sum / n) : 0.0;
    long double var = n > 1 ? (sumsq - sum * sum / n) / (n - 1) : 0.0L;
    *stddev = var > 0 ? (double)sqrtl(var) : 0.0;
}

/* Set `set`'s gap summaries: `gaps` of them, from `first` to the latest time `last` (ns). */
static void gap_summaries(const wide_state *s, int set, uint64_t gaps, uint64_t first, uint64_t last,
                          summary *ms, summary *ns) {
    memset(ms, 0, sizeof *ms);
    memset(ns, 0, sizeof *ns);
    if (!gaps) return;
    ms->min = s->ms[set].min;
    ms->max = s->ms[set].max;
    moments(gaps, (long double)(last / 1000000u - first / 1000000u), (long double)s->ms[set].sumsq, &ms->mean,
            &ms->stddev);
    ns->min = s->ns[set].min;
    ns->max = s->ns[set].max;
    moments(gaps, (long double)(last - first), (long double)s->ns[set].sumsq, &ns->mean, &ns->stddev);
}

#define WRITE_GAPS(r, s, ms, ns)                                                                  \
    do {                                                                                          \
        (r)->s##_min_piat_ms = (ms).min, (r)->s##_max_piat_ms = (ms).max;                          \
        (r)->s##_mean_piat_ms = (ms).mean, (r)->s##_stddev_piat_ms = (ms).stddev;                  \
        (r)->s##_min_piat_ns = (ns).min, (r)->s##_max_piat_ns = (ns).max;                          \
        (r)->s##_mean_piat_ns = (ns).mean, (r)->s##_stddev_piat_ns = (ns).stddev;                  \
    } while (0)
#define WRITE_SIZES(r, s, sum)                                                                    \
    do {                                                                                          \
        (r)->s##_min_ps = (sum).min, (r)->s##_max_ps = (sum).max;                                  \
        (r)->s##_mean_ps = (sum).mean, (r)->s##_stddev_ps = (sum).stddev;                          \
    } while (0)

/* packets, sums: per direction (src->dst, dst->src) */
static void write_sizes(const wide_state *s, const uint64_t packets[2], const uint64_t sums[2],
                        statistics_record *r) {
    summary dir[2], both = {0, 0, 0, 0};
    for (int d = 0; d < 2; d++) {
        dir[d] = (summary){packets[d] ? s->ps_min[d] : 0, s->ps_max[d], 0, 0};
        moments(packets[d], (long double)sums[d], (long double)s->ps_sumsq[d], &dir[d].mean, &dir[d].stddev);
    }
    both.min = MIN(s->ps_min[0], s->ps_min[1]);   /* a direction without packets has UINT32_MAX */
    both.max = MAX(s->ps_max[0], s->ps_max[1]);
    moments(packets[0] + packets[1], (long double)sums[0] + sums[1],
            (long double)s->ps_sumsq[0] + s->ps_sumsq[1], &both.mean, &both.stddev);
    WRITE_SIZES(r, bidirectional, both);
    WRITE_SIZES(r, src2dst, dir[0]);
    WRITE_SIZES(r, dst2src, dir[1]);
}

static uint64_t ms_of(uint64_t ns) { return ns / 1000000u; }

/* Times and flag counts from the flow's slot (the record is written just after this). */
static void on_end(void *ctx, void *state, const af_meter_end *me) {
    statistics_ctx *x = ctx;
    const af_config *cfg = x->cfg;
    statistics_state *compact = state;
    uint32_t entry = compact->ps_max[0] == WIDE ? compact->raw_bytes[0] : AF_NIL;
    wide_state local;
    const wide_state *s = entry ? af_side_entry(&x->wide, entry) : &local;
    if (!entry) widen(compact, cfg->accounting_mode, &local);
    statistics_record *r = (statistics_record *)(void *)me->block;
    const af_flow *f = af_table_flow(me->table, me->slot);
    const af_flow_tcp *c = af_table_tcp(me->table, f);
    int src = f->src_idx, dst = 1 - src;
    uint64_t first = af_flow_first(f), last = af_flow_last(f);
    uint64_t first_dir[2] = {f->first_ns[src], f->first_ns[dst]}, last_dir[2] = {f->last_ns[src], f->last_ns[dst]};
    r->bidirectional_first_seen_ms = ms_of(first);
    r->bidirectional_last_seen_ms = ms_of(last);
    r->bidirectional_duration_ms = r->bidirectional_last_seen_ms - r->bidirectional_first_seen_ms;
    r->src2dst_first_seen_ms = ms_of(first_dir[0]);
    r->src2dst_last_seen_ms = ms_of(last_dir[0]);
    r->src2dst_duration_ms = r->src2dst_last_seen_ms - r->src2dst_first_seen_ms;
    r->dst2src_first_seen_ms = ms_of(first_dir[1]);
    r->dst2src_last_seen_ms = ms_of(last_dir[1]);
    r->dst2src_duration_ms = r->dst2src_last_seen_ms - r->dst2src_first_seen_ms;
    uint64_t packets_dir[2] = {f->packets[src], f->packets[dst]};
    uint64_t packets = packets_dir[0] + packets_dir[1];
    r->bidirectional_packets = packets;
    /* the sizes' sums, per direction: the counter that is the same sum (see wide_state) */
    const uint64_t ip_bytes[2] = {f->bytes[src], f->bytes[dst]};
    const uint64_t *sums = cfg->accounting_mode == AF_ACCOUNT_RAW       ? s->raw_bytes
                           : cfg->accounting_mode == AF_ACCOUNT_IP      ? ip_bytes
                           : cfg->accounting_mode == AF_ACCOUNT_PAYLOAD ? s->payload_bytes
                                                                        : s->transport_sum;
    r->bidirectional_bytes = sums[0] + sums[1];
    write_sizes(s, packets_dir, sums, r);
    summary ms, ns;
    gap_summaries(s, 2, packets ? packets - 1 : 0, first, last, &ms, &ns);
    WRITE_GAPS(r, bidirectional, ms, ns);
    gap_summaries(s, 0, packets_dir[0] ? packets_dir[0] - 1u : 0, first_dir[0], last_dir[0], &ms, &ns);
    WRITE_GAPS(r, src2dst, ms, ns);
    gap_summaries(s, 1, packets_dir[1] ? packets_dir[1] - 1u : 0, first_dir[1], last_dir[1], &ms, &ns);
    WRITE_GAPS(r, dst2src, ms, ns);
    /* flags of both directions: the rare ones (fin syn rst urg ece cwr) in the TCP entry */
    uint64_t rare[6];
    for (int k = 0; k < 6; k++) rare[k] = (uint64_t)c->rare_flags[0][k] + c->rare_flags[1][k];
    r->bidirectional_fin_packets = rare[af_rare_slot[0]];
    r->bidirectional_syn_packets = rare[af_rare_slot[1]];
    r->bidirectional_rst_packets = rare[af_rare_slot[2]];
    r->bidirectional_psh_packets = (uint64_t)c->psh_packets[0] + c->psh_packets[1];
    r->bidirectional_ack_packets = (uint64_t)f->ack_packets[0] + f->ack_packets[1];
    r->bidirectional_urg_packets = rare[af_rare_slot[5]];
    r->bidirectional_ece_packets = rare[af_rare_slot[6]];
    r->bidirectional_cwr_packets = rare[af_rare_slot[7]];
    r->src2dst_raw_bytes = s->raw_bytes[0];
    r->dst2src_raw_bytes = s->raw_bytes[1];
    r->bidirectional_raw_bytes = s->raw_bytes[0] + s->raw_bytes[1];
    r->src2dst_payload_bytes = s->payload_bytes[0];
    r->dst2src_payload_bytes = s->payload_bytes[1];
    r->bidirectional_payload_bytes = s->payload_bytes[0] + s->payload_bytes[1];
    if (entry) af_side_give(&x->wide, entry);
    if (!me->ending) {   /* an active-timeout split starts a new record; a flow that ends frees the slot */
        memset(compact, 0, sizeof *compact);
        start(compact);
    }
}

static int wanted(const af_config *cfg) { return cfg->statistics != 0; }


#define AS_FIELD(type, name, unit) {#name, #type, unit, offsetof(statistics_record, name), 0},
static const af_meter_field fields[] = {STATISTICS_FIELDS(AS_FIELD)};

const af_meter af_meter_statistics = {
    .info = {"statistics", "nfstream's statistical features (sizes per accounting_mode, inter-arrival times, flags)",
             "statistics", fields, sizeof fields / sizeof fields[0], sizeof(statistics_record), 1},
    .state_size_for = state_size_for,
    .wanted = wanted,
    .open = open_ctx,
    .close = close_ctx,
    .on_new = on_new,
    .packet_by_name = 1,
    .on_end = on_end,
};
