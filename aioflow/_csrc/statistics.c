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
#include <string.h>

#include "accounting.h"

typedef struct {
    uint32_t min, max;               /* min starts at UINT32_MAX (reset) */
    uint64_t sumsq;                  /* saturates (gaps of ~50 days) */
} ms_gaps;

typedef struct {
    uint64_t min, max;               /* min starts at UINT64_MAX (reset) */
    double sumsq;                    /* of gaps up to 2^64 ns: no integer type this size would do */
} ns_gaps;

/* Sets of gaps: 0 src->dst, 1 dst->src, 2 both directions. The sum of the sizes per direction is
 * another counter in three accounting modes (ps_sums): the wire bytes (0), the flow table's IP
 * bytes (1), the payload bytes (3); only mode 2 keeps its own, after the state (state_size_for). */
typedef struct {
    ns_gaps ns[3];
    ms_gaps ms[3];
    uint64_t ps_sumsq[2];
    uint64_t raw_bytes[2], payload_bytes[2];
    uint32_t ps_min[2], ps_max[2];   /* ps_min starts at UINT32_MAX (reset) */
    uint64_t transport_sum[];        /* accounting mode 2 only: the sizes' sums per direction */
} statistics_state;

static uint32_t state_size_for(const af_config *cfg) {
    size_t own_sums = cfg->accounting_mode == AF_ACCOUNT_TRANSPORT ? 2 * sizeof(uint64_t) : 0;
    return (uint32_t)(sizeof(statistics_state) + own_sums);
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

/* Minimums start high, so that a packet updates every summary without a first-packet case. */
static void reset(const af_config *cfg, statistics_state *s) {
    memset(s, 0, state_size_for(cfg));
    s->ps_min[0] = s->ps_min[1] = UINT32_MAX;
    for (int k = 0; k < 3; k++) {
        s->ns[k].min = UINT64_MAX;
        s->ms[k].min = UINT32_MAX;
    }
}

static void on_new(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender) {
    (void)first, (void)sender;
    (void)slot;
    reset(ctx, state);
}

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* One gap of set `set`, from `prev` (the latest time before) to ts: 0 if ts is older. */
static inline void add_gap(statistics_state *s, int set, uint64_t ts, uint64_t ts_ms, uint64_t prev) {
    uint64_t from = MIN(prev, ts);
    uint64_t ns = ts - from;
    uint64_t msl = ts_ms - from / 1000000u;
    uint32_t ms = (uint32_t)MIN(msl, (uint64_t)UINT32_MAX);
    ns_gaps *n = &s->ns[set];
    ms_gaps *m = &s->ms[set];
    n->min = MIN(n->min, ns);
    n->max = MAX(n->max, ns);
    m->min = MIN(m->min, ms);
    m->max = MAX(m->max, ms);
    double g = (double)(int64_t)MIN(ns, (uint64_t)INT64_MAX);   /* a signed conversion is one instruction */
    n->sumsq += g * g;
    uint64_t sq = m->sumsq + (uint64_t)ms * ms;
    m->sumsq = sq < m->sumsq ? UINT64_MAX : sq;
}

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    const af_config *cfg = ctx;
    statistics_state *s = state;
    int d = mp->direction;
    uint64_t ts = mp->ts;
    uint64_t ts_ms = ts / 1000000u;
    uint32_t payload = af_payload_size(mp->p);
    uint32_t size = cfg->accounting_mode == AF_ACCOUNT_PAYLOAD ? payload : af_accounted_size(mp, cfg->accounting_mode);
    s->raw_bytes[d] += mp->wire_len;
    s->payload_bytes[d] += payload;
    s->ps_min[d] = MIN(s->ps_min[d], size);
    s->ps_max[d] = MAX(s->ps_max[d], size);
    if (cfg->accounting_mode == AF_ACCOUNT_TRANSPORT) s->transport_sum[d] += size;
    uint64_t sq = s->ps_sumsq[d] + (uint64_t)size * size;
    s->ps_sumsq[d] = sq < s->ps_sumsq[d] ? UINT64_MAX : sq;
    /* the flow table has counted this packet: its sender's time before it is sender_last_ns */
    const af_flow *f = mp->flow;
    int other = 1 - mp->sender;
    int seen = f->packets[mp->sender] > 1;   /* the sender sent before */
    uint64_t other_last = f->packets[other] ? f->last_ns[other] : 0;
    if (seen || f->packets[other]) add_gap(s, 2, ts, ts_ms, MAX(mp->sender_last_ns, other_last));
    if (seen) add_gap(s, d, ts, ts_ms, mp->sender_last_ns);
}

/* mean and sample standard deviation of n values with sum `sum` and sum of squares `sumsq` */
static void moments(uint64_t n, long double sum, long double sumsq, double *mean, double *stddev) {
    *mean = n ? (double)(sum / n) : 0.0;
    long double var = n > 1 ? (sumsq - sum * sum / n) / (n - 1) : 0.0L;
    *stddev = var > 0 ? (double)sqrtl(var) : 0.0;
}

/* Set `set`'s gap summaries: `gaps` of them, from `first` to the latest time `last` (ns). */
static void gap_summaries(const statistics_state *s, int set, uint64_t gaps, uint64_t first, uint64_t last,
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
static void write_sizes(const statistics_state *s, const uint64_t packets[2], const uint64_t sums[2],
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
    const af_config *cfg = ctx;
    statistics_state *s = state;
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
    /* the sizes' sums, per direction: the counter that is the same sum (see statistics_state) */
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
    reset(cfg, s);   /* an active-timeout split starts a new record */
}

static int wanted(const af_config *cfg) { return cfg->statistics != 0; }


#define AS_FIELD(type, name, unit) {#name, #type, unit, offsetof(statistics_record, name), 0},
static const af_meter_field fields[] = {STATISTICS_FIELDS(AS_FIELD)};

const af_meter af_meter_statistics = {
    .info = {"statistics", "nfstream's statistical features (sizes per accounting_mode, inter-arrival times, flags)",
             "statistics", fields, sizeof fields / sizeof fields[0], sizeof(statistics_record), 1},
    .state_size_for = state_size_for,
    .wanted = wanted,
    .open = af_config_context,
    .on_new = on_new,
    .on_packet = on_packet,
    .on_end = on_end,
};
