#include "workers.h"

#include <stdio.h>
#include <string.h>

_Static_assert(AF_MAX_WORKER_FLOWS < (1u << AF_WORKER_CURSOR_SHIFT), "a worker's slots fit its cursor bits");
_Static_assert(AF_MAX_WORKERS <= (1u << (32 - AF_WORKER_CURSOR_SHIFT)), "the worker index fits its cursor bits");

static uint64_t share(uint64_t total, uint32_t n) { return (total + n - 1) / n; }

int af_workers_check(const af_config *cfg, uint32_t *out, char *error, size_t n) {
    uint32_t w = cfg->workers ? cfg->workers : 1;
    *out = w;
    if (w > AF_MAX_WORKERS) {
        snprintf(error, n, "workers=%u: at most %d", w, AF_MAX_WORKERS);
        return AF_ERR_CONFIG;
    }
    if (w == 1) return AF_OK;
    if (share(cfg->max_flows, w) > AF_MAX_WORKER_FLOWS) {
        snprintf(error, n, "max_flows=%u over %u workers: at most %d per worker (lower max_flows)", cfg->max_flows,
                 w, AF_MAX_WORKER_FLOWS);
        return AF_ERR_CONFIG;
    }
    return AF_OK;
}

void af_worker_config(const af_config *cfg, uint32_t i, af_config *out) {
    *out = *cfg;
    out->worker = i;
    uint32_t w = cfg->workers ? cfg->workers : 1;
    out->workers = w;
    if (w == 1) return;
    out->max_flows = (uint32_t)share(cfg->max_flows, w);
    if (cfg->reassemble) {
        uint64_t memory = share(cfg->max_reassembly_memory, w);
        out->max_reassembly_memory = memory < AF_MIN_REASSEMBLY_MEMORY ? AF_MIN_REASSEMBLY_MEMORY : memory;
    }
    if (cfg->dissect) out->max_dissecting_flows = (uint32_t)share(cfg->max_dissecting_flows, w);
}

int af_share_config(const af_config *cfg, af_config *out, char *error, size_t n) {
    if (cfg->workers > 1) {
        snprintf(error, n, "shares=%u with workers=%u: a share is counted by one worker (use one or the other)",
                 cfg->shares, cfg->workers);
        return AF_ERR_CONFIG;
    }
    if (cfg->share >= cfg->shares || cfg->shares > AF_MAX_WORKERS) {
        snprintf(error, n, "share %u of %u: expected 0 <= share < shares <= %d", cfg->share, cfg->shares,
                 AF_MAX_WORKERS);
        return AF_ERR_CONFIG;
    }
    af_config as_workers = *cfg;
    as_workers.workers = cfg->shares;
    uint32_t ignored;
    int code = af_workers_check(&as_workers, &ignored, error, n);
    if (code != AF_OK) return code;
    af_worker_config(&as_workers, cfg->share, out);
    return AF_OK;
}

#define SUM(field) into->field += w->field
#define MAX(field) into->field = w->field > into->field ? w->field : into->field

void af_workers_add_stats(af_stats *into, const af_stats *w) {
    /* every worker reads the whole file: packets_read is worker 0's (what it counted aside, held,
     * or in its flows) plus what the others counted in theirs (or could not, no_memory) */
    into->packets_read += w->packets_in_flows + w->aside[AF_ASIDE_NO_MEMORY];
    SUM(aside[AF_ASIDE_NO_MEMORY]);
    SUM(packets_in_flows);
    SUM(flows_created);
    SUM(flows_ended);
    for (int i = 0; i < AF_END_COUNT; i++) SUM(ended_by[i]);
    SUM(active_flows);
    SUM(peak_active_flows);   /* the workers' peaks need not coincide: an upper bound */
    SUM(active_tcp);
    SUM(active_udp);
    SUM(active_other);
    SUM(reap_ns);
    SUM(headers_dropped);
    SUM(kernel_received);   /* live: each worker's capture handle has its own share */
    SUM(kernel_dropped);
    SUM(interface_dropped);
    MAX(last_ns);
    /* reassembly, stream search and dissection run per worker on its own flows */
    SUM(stream_memory);
    SUM(stream_peak_memory);
    SUM(stream_bytes);
    SUM(stream_datagrams);
    SUM(stream_bytes_truncated);
    SUM(stream_bytes_dropped);
    SUM(stream_segments_dropped);
    SUM(stream_retransmitted_bytes);
    SUM(stream_holes);
    SUM(stream_hole_bytes);
    SUM(stream_forced);
    SUM(stream_chunks);
    SUM(stream_holes_dropped);
    SUM(stream_matches);
    SUM(stream_match_memory);
    SUM(dissect_flows);
    SUM(dissect_detected);
    SUM(dissect_gave_up);
    SUM(dissect_pool_full);
    SUM(dissect_in_flight);
    SUM(dissect_peak_in_flight);
    SUM(dissect_truncated);
}
