/* The entry layer: the af_* functions of _csrc/api.h (the cffi cdef), as thin calls down into
 * the pipeline (_csrc/pipeline.h) and the producer thread (_csrc/producer.h). Nothing below calls
 * back up here. cffi compiles this file as the module's own source; the stages are compiled
 * beside it (_build_pcap.py SOURCES). See docs/architecture.md for the stages. */
#include "producer.h"   /* first: libpcap's feature macros (via pipeline.h) */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "aioflow.h"
#include "flowtable.h"
#include "match.h"
#include "meter.h"
#include "pipeline.h"
#include "stream.h"
#include "stream_search.h"
#include "timeline.h"
#include "workers.h"

/* The handle Python holds: the pipeline, and af_start's producer thread once started. With
 * workers (workers.h), one pipeline and one producer per worker: pipe and producer are worker
 * 0's, the one every per-engine question (meter layout, errors) is asked of; the producers share
 * one notification pipe, and af_ready hands over their batches in turn. */
struct af_engine {
    af_pipeline *pipe;
    af_producer *producer;
    uint32_t workers;
    af_pipeline *pipes[AF_MAX_WORKERS];
    af_producer *producers[AF_MAX_WORKERS];
    uint32_t current;                /* the worker whose batch af_ready handed out */
    int notify[2];                   /* workers: the producers' shared pipe */
};

/* Array sizes of api.h are its enum counts; the name tables below must cover them. */
static const char *const end_names[] = {"", "idle", "active", "fin", "rst", "eof", "evicted", "stop", "custom"};
static const char *const aside_names[] = {"non_ip", "truncated", "bad_header", "unsupported_link",
                                          "fragment_orphan", "filtered", "no_memory", "fragment_merged",
                                          "fragment_dropped"};
static const char *const defrag_names[] = {"timeout", "table_full", "memory_full", "too_many_fragments", "too_big",
                                           "overlap", "inconsistent", "truncated", "unfinished"};
static const char *const event_names[] = {"tcp_bad_data_offset", "first_fragment_short", "ipv6_in_ipv4",
                                          "fragment_early", "fragment_early_timeout", "fragment_early_full",
                                          "fragment_early_unfinished",
                                          "tunnel_malformed", "tunnel_too_deep", "fragment_unmerged",
                                          "bad_checksum"};
static const char *const tunnel_names[] = {"", "gre", "erspan", "ipip", "vxlan", "geneve", "gtp", "teredo", "mpls"};
_Static_assert(sizeof tunnel_names / sizeof *tunnel_names == AF_TUNNEL_TYPE_COUNT, "one name per tunnel type");
_Static_assert(sizeof end_names / sizeof *end_names == AF_END_COUNT, "one name per end reason");
_Static_assert(sizeof aside_names / sizeof *aside_names == AF_ASIDE_COUNT, "one name per aside reason");
_Static_assert(sizeof defrag_names / sizeof *defrag_names == AF_DEFRAG_REASON_COUNT, "one name per defrag reason");
_Static_assert(sizeof event_names / sizeof *event_names == AF_DECODE_EVENT_COUNT, "one name per decode event");

#define NAME_OF(table, i) ((i) >= 0 && (size_t)(i) < sizeof table / sizeof *table ? table[i] : "")
const char *af_end_reason_name(int r) { return NAME_OF(end_names, r); }
const char *af_aside_reason_name(int r) { return NAME_OF(aside_names, r); }
const char *af_defrag_reason_name(int r) { return NAME_OF(defrag_names, r); }
const char *af_decode_event_name(int e) { return NAME_OF(event_names, e); }
const char *af_tunnel_type_name(int t) { return NAME_OF(tunnel_names, t); }

static _Thread_local char open_error[1024];

const char *af_open_error(void) { return open_error; }
const char *af_error_message(af_engine *e) { return af_pipeline_error(e->pipes[e->current]); }

static int opened(int code, af_pipeline *pipe, af_engine **out) {
    if (code != AF_OK) return code;
    af_engine *e = calloc(1, sizeof *e);
    if (!e) {
        af_pipeline_close(pipe);
        snprintf(open_error, sizeof open_error, "out of memory");
        return AF_ERR_NOMEM;
    }
    e->pipe = e->pipes[0] = pipe;
    e->workers = 1;
    e->notify[0] = e->notify[1] = -1;
    *out = e;
    return AF_OK;
}

int af_open_offline(const char *path, const char *bpf, const af_config *cfg, af_engine **out) {
    *out = NULL;
    open_error[0] = '\0';
    uint32_t workers;
    int code = af_workers_check(cfg, &workers, open_error, sizeof open_error);
    if (code != AF_OK) return code;
    af_config own;
    if (cfg->shares > 1) {   /* one share of the flows: one pipeline, the worker of that index */
        if ((code = af_share_config(cfg, &own, open_error, sizeof open_error)) != AF_OK) return code;
    } else {
        af_worker_config(cfg, 0, &own);
    }
    af_pipeline *pipe;
    code = af_pipeline_open_file(&pipe, path, bpf, &own, open_error, sizeof open_error);
    if ((code = opened(code, pipe, out)) != AF_OK) return code;
    af_engine *e = *out;
    if (workers > 1 && af_meters_ctx(af_pipeline_meters(pipe), &af_meter_timeline)) {
        snprintf(open_error, sizeof open_error, "the timeline meter counts one table: use workers=1 with it");
        code = AF_ERR_CONFIG;
    }
    for (uint32_t i = 1; i < workers && code == AF_OK; i++, e->workers++) {
        af_worker_config(cfg, i, &own);
        code = af_pipeline_open_file(&e->pipes[i], path, bpf, &own, open_error, sizeof open_error);
    }
    if (code != AF_OK) {
        af_close(e);
        *out = NULL;
    }
    return code;
}

int af_open_live(const char *device, const char *bpf, const af_config *cfg, int promiscuous,
                 int32_t buffer_bytes, af_engine **out) {
    *out = NULL;
    open_error[0] = '\0';
    uint32_t workers;
    int code = af_workers_check(cfg, &workers, open_error, sizeof open_error);
    if (code != AF_OK) return code;
    af_config own;
    af_worker_config(cfg, 0, &own);
    af_pipeline *pipe;
    code = af_pipeline_open_live(&pipe, device, bpf, &own, promiscuous, buffer_bytes, open_error, sizeof open_error);
    if ((code = opened(code, pipe, out)) != AF_OK || workers == 1) return code;
    /* workers: one capture handle each, joined by PACKET_FANOUT; a kernel that refuses it (or a
     * second handle that fails) leaves one handle and one worker: af_workers() says so */
    af_engine *e = *out;
    static atomic_uint groups;
    uint16_t group = (uint16_t)(getpid() * 131u + atomic_fetch_add(&groups, 1));
    const char *chosen = getenv("AIOFLOW_FANOUT_GROUP");   /* internal: a test's group, to make one refuse */
    if (chosen && chosen[0]) group = (uint16_t)strtoul(chosen, NULL, 10);
    char ignored[256];
    for (uint32_t i = 1; i < workers; i++, e->workers++) {
        af_worker_config(cfg, i, &own);
        if (af_pipeline_open_live(&e->pipes[i], device, bpf, &own, promiscuous, buffer_bytes, ignored,
                                  sizeof ignored) != AF_OK)
            break;
    }
    int joined = e->workers == workers;
    for (uint32_t i = 0; i < e->workers && joined; i++) joined = af_pipeline_fanout(e->pipes[i], group) == 0;
    /* until the group was whole every handle saw every packet: what they hold from then would
     * count twice, so capture starts now (the parser is not even open yet) */
    for (uint32_t i = 0; i < e->workers && joined; i++) af_pipeline_discard(e->pipes[i]);
    if (!joined) {   /* one handle, one worker counting every flow: opened again as such */
        for (uint32_t i = e->workers; i-- > 0;) af_pipeline_close(e->pipes[i]);
        e->workers = 1;
        af_config one = *cfg;
        one.workers = 1;
        af_worker_config(&one, 0, &own);
        code = af_pipeline_open_live(&e->pipes[0], device, bpf, &own, promiscuous, buffer_bytes, open_error,
                                     sizeof open_error);
        e->pipe = e->pipes[0];
        if (code != AF_OK) {
            free(e);
            *out = NULL;
        }
    }
    return code;
}

void af_close(af_engine *e) {
    if (!e) return;
    /* workers reading ahead share worker 0's reading thread: a counting thread still running would
     * wait for packets it holds back for one already gone; stopped, none waits */
    if (e->workers > 1) af_stop(e);
    for (uint32_t i = 0; i < e->workers; i++) {
        af_pipeline_stop_prefault(e->pipes[i]);   /* it may be populating the producer's buffers */
        af_producer_free(e->producers[i]);        /* joins the thread before the pipeline goes away */
    }
    for (uint32_t i = e->workers; i-- > 0;) af_pipeline_close(e->pipes[i]);   /* worker 0's reader last */
    for (int end = 0; end < 2; end++)
        if (e->notify[end] >= 0) close(e->notify[end]);
    free(e);
}

int af_stop(af_engine *e) {
    for (uint32_t i = 0; i < e->workers; i++) af_pipeline_stop(e->pipes[i]);
    return AF_OK;
}

int af_start(af_engine *e, uint32_t batch_capacity, uint32_t slots, int read_ahead) {
    if (e->producer) return AF_ERR_CONFIG;
    if (e->workers > 1 && af_notify_pipe(e->notify) != 0) return AF_ERR_NOMEM;
    for (uint32_t i = 0; i < e->workers; i++) {
        if (read_ahead) {   /* files: a second thread reads and decodes ahead; workers: one for all */
            int code = af_pipeline_read_ahead(e->pipes[i], e->pipes[0], e->workers);
            if (code != AF_OK) return code;
        }
        const af_config *cfg = af_pipeline_config(e->pipes[i]);
        int code = af_producer_start(&e->producers[i], e->pipes[i], batch_capacity, cfg->headers_per_flow, slots,
                                     e->notify[1]);
        if (code != AF_OK) return code;
    }
    e->producer = e->producers[0];
    return AF_OK;
}

int af_notify_fd(af_engine *e) {
    if (e->workers > 1) return e->producer ? e->notify[0] : -1;
    return e->producer ? af_producer_fd(e->producer) : -1;
}

int af_ready(af_engine *e, af_batch **batch) {
    if (!e->producer) return AF_ERR_CONFIG;
    if (e->workers == 1) return af_producer_ready(e->producer, batch);
    char sink[64];
    while (read(e->notify[0], sink, sizeof sink) > 0) {}   /* woken: the checks below decide */
    uint32_t done = 0;
    for (uint32_t k = 1; k <= e->workers; k++) {   /* from the one after the last handed out: in turn */
        uint32_t i = (e->current + k) % e->workers;
        int status = af_producer_ready(e->producers[i], batch);
        if (status == AF_DONE) {
            done++;
        } else if (status != AF_OK) {
            e->current = i;
            return status;
        }
    }
    return done == e->workers ? AF_DONE : AF_OK;
}

void af_release(af_engine *e) {
    if (e->producer) af_producer_release(e->producers[e->current]);
}

int af_selectable_fd(af_engine *e) { return af_pipeline_fd(e->pipe); }
int af_pump_some(af_engine *e, uint32_t max_packets, af_batch *out) {
    return af_pipeline_pump_some(e->pipe, max_packets, out);
}
int af_expire(af_engine *e, uint64_t now_ns, af_batch *out) { return af_pipeline_expire(e->pipe, now_ns, out); }
uint64_t af_next_deadline(af_engine *e) { return af_pipeline_next_deadline(e->pipe); }
void af_get_stats(af_engine *e, af_stats *out) {
    af_pipeline_stats(e->pipe, out);
    for (uint32_t i = 1; i < e->workers; i++) {
        af_stats w;
        af_pipeline_stats(e->pipes[i], &w);
        af_workers_add_stats(out, &w);
    }
}

uint32_t af_workers(af_engine *e) { return e->workers; }

uint32_t af_flow_table_bytes(int ip_version, int tcp) { return af_table_bytes_per_flow(ip_version, tcp); }

uint32_t af_meter_state_bytes(uint32_t index, const af_config *cfg) {
    const af_meter *m = af_meter_registry(index);
    return !m ? 0 : m->state_size_for ? m->state_size_for(cfg) : m->state_size;
}

int af_get_worker_stats(af_engine *e, uint32_t index, af_stats *out) {
    if (index >= e->workers) return 0;
    af_pipeline_stats(e->pipes[index], out);
    return 1;
}

int af_lookup(af_engine *e, int ver, const uint8_t *ip_a, uint16_t port_a, const uint8_t *ip_b,
              uint16_t port_b, uint8_t proto, uint16_t vlan, af_record *out) {
    af_key key;
    af_key_make(&key, ver, ip_a, port_a, ip_b, port_b, proto, vlan);
    int found = 0;   /* workers: the flow is in one of them (its hash says which, but with a tunnel id) */
    for (uint32_t i = 0; i < e->workers && !found; i++) found = af_pipeline_lookup(e->pipes[i], &key, out);
    return found;
}

uint32_t af_snapshot(af_engine *e, uint32_t *cursor, af_record *out, uint32_t capacity) {
    if (e->workers == 1) return af_pipeline_snapshot(e->pipe, cursor, out, capacity);
    uint32_t n = 0;   /* workers: worker by worker, the cursor saying which and where (workers.h) */
    for (uint32_t w = af_worker_cursor_worker(*cursor); w < e->workers && n < capacity; w++) {
        uint32_t slot = af_worker_cursor_worker(*cursor) == w ? af_worker_cursor_slot(*cursor) : 0;
        n += af_pipeline_snapshot(e->pipes[w], &slot, out + n, capacity - n);
        *cursor = af_worker_cursor(w, slot);
        if (n < capacity && w + 1 < e->workers) *cursor = af_worker_cursor(w + 1, 0);
    }
    return n;
}

/* --- meters --- */

int af_batch_meters_alloc(af_engine *e, af_batch *b, uint32_t capacity) {
    return af_pipeline_batch_alloc(e->pipe, b, capacity);
}

void af_batch_meters_free(af_batch *b) { af_meters_batch_free(b); }

uint32_t af_meter_stride(af_engine *e) { return af_pipeline_meters(e->pipe)->stride; }

int32_t af_meter_offset(af_engine *e, uint32_t index) {
    const af_meter_set *s = af_pipeline_meters(e->pipe);
    return index < af_meter_registry_count() + s->loaded_count ? s->offset[index] : -1;
}

uint32_t af_meter_registry_size(void) { return af_meter_registry_count(); }

const af_meter_info *af_loaded_meter_info(af_engine *e, uint32_t j) {
    return af_meters_loaded_info(af_pipeline_meters(e->pipe), j);
}

int af_get_timeline(af_engine *e, af_timeline *out) {
    const void *ctx = af_meters_ctx(af_pipeline_meters(e->pipe), &af_meter_timeline);
    if (!ctx) return 0;
    af_pipeline_lock(e->pipe);
    af_timeline_copy(ctx, out);
    af_pipeline_unlock(e->pipe);
    return 1;
}

/* --- reassembly's own requests (its meter context, under the pipeline lock) --- */

void af_enable_chunks(af_engine *e) {
    for (uint32_t i = 0; i < e->workers; i++) {
        af_pipeline *pipe = e->pipes[i];
        af_streams *s = af_meters_ctx(af_pipeline_meters(pipe), &af_meter_reassembly);
        if (!s) return;
        af_pipeline_lock(pipe);
        af_streams_enable_chunks(s, af_pipeline_slots_used(pipe));
        af_pipeline_unlock(pipe);
    }
}

int af_check_stream_patterns(const char *const *client, uint32_t client_count, const char *const *server,
                             uint32_t server_count, uint32_t flags, char *error, uint32_t error_length) {
    const char *const *patterns[2] = {client, server};
    const uint32_t counts[2] = {client_count, server_count};
    int unsupported = 0;
    af_matcher *m = af_matcher_new(1, patterns, counts, flags, error, error_length, &unsupported);
    int status = m ? AF_OK : unsupported ? AF_ERR_UNSUPPORTED : AF_ERR_NOMEM;
    af_matcher_free(m);
    return status;
}

/* One pipeline's stream_search meter, on with its own matcher (one per worker: each searches its flows). */
static int set_patterns(af_pipeline *pipe, const char *const *patterns[2], const uint32_t counts[2],
                        uint32_t flags, char *error, uint32_t error_length) {
    af_streams *s = af_meters_ctx(af_pipeline_meters(pipe), &af_meter_reassembly);
    int unsupported = 0;
    const af_config *cfg = af_pipeline_config(pipe);
    af_matcher *m = af_matcher_new(cfg->max_flows, patterns, counts, flags, error, error_length, &unsupported);
    if (!m) return unsupported ? AF_ERR_UNSUPPORTED : AF_ERR_NOMEM;
    /* the stream_search meter comes on now (it reads reassembly's streams as their consumer) */
    af_meter_set *set = af_pipeline_meters(pipe);
    af_pipeline_lock(pipe);
    int code = af_meters_enable(set, &af_meter_stream_search, error, error_length);
    if (code == AF_OK) {
        code = af_stream_search_start(af_meters_ctx(set, &af_meter_stream_search), s, af_pipeline_table(pipe), m);
        if (code != AF_OK) snprintf(error, error_length, "no room for another stream consumer");
    } else {
        af_matcher_free(m);
    }
    af_pipeline_unlock(pipe);
    return code;
}

int af_set_stream_patterns(af_engine *e, const char *const *client, uint32_t client_count,
                           const char *const *server, uint32_t server_count, uint32_t flags, char *error,
                           uint32_t error_length) {
    af_streams *s = af_meters_ctx(af_pipeline_meters(e->pipe), &af_meter_reassembly);
    if (!s || e->producer || af_pipeline_started_reading(e->pipe)) {
        snprintf(error, error_length, "stream patterns need reassemble=True and are set before reading starts");
        return AF_ERR_CONFIG;
    }
    const char *const *patterns[2] = {client, server};
    const uint32_t counts[2] = {client_count, server_count};
    int code = AF_OK;
    for (uint32_t i = 0; i < e->workers && code == AF_OK; i++)
        code = set_patterns(e->pipes[i], patterns, counts, flags, error, error_length);
    return code;
}
