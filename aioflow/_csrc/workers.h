/* Workers (af_config.workers > 1): the engine opens one pipeline per worker (live: one capture
 * handle each, joined by PACKET_FANOUT, source.c). For a file, each pipeline is over the same
 * file: either worker 0's reading thread decodes every packet once into the lane of the worker
 * whose hash picks its flow (readahead.h: fragments to every lane; the clock in each entry and
 * as a watermark), or (read_ahead off) each reads and decodes every packet itself and counts only
 * the flows whose hash picks it (af_worker_of; the others are "foreign": they move its clock,
 * nothing more). Either way every worker sees every IP fragment (fragment and defragment tables
 * agree without any exchange) and expiry runs on the same clock in every worker, so the records
 * are those of one worker. This file holds what the engine needs beyond the pipelines
 * themselves: each worker's config (bounds split), the merged counters, and the snapshot cursor
 * over all of them. */
#ifndef AIOFLOW_WORKERS_H
#define AIOFLOW_WORKERS_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"

/* AF_OK with *out (1 when workers is 0), or AF_ERR_CONFIG with the reason. */
int af_workers_check(const af_config *cfg, uint32_t *out, char *error, size_t error_length);
/* Worker i's config: max_flows, max_reassembly_memory and max_dissecting_flows divided among them
 * (rounded up); fragment bounds whole (every worker holds every fragment). */
void af_worker_config(const af_config *cfg, uint32_t i, af_config *out);
/* cfg->shares > 1: the configuration of the one pipeline that counts share cfg->share (worker
 * `share` of `shares`: max_flows and the other bounds split as theirs); AF_ERR_CONFIG and why. */
int af_share_config(const af_config *cfg, af_config *out, char *error, size_t n);
/* Adds worker w's counters (w > 0) to into, which starts as worker 0's: what every worker counts
 * alike (reading, decoding, fragments, the file) is taken once, what each counts for its own flows
 * is summed. */
void af_workers_add_stats(af_stats *into, const af_stats *w);

/* Snapshot cursors over several workers: the worker in the top bits, its slot cursor below. */
#define AF_WORKER_CURSOR_SHIFT 28
static inline uint32_t af_worker_cursor_worker(uint32_t cursor) { return cursor >> AF_WORKER_CURSOR_SHIFT; }
static inline uint32_t af_worker_cursor_slot(uint32_t cursor) { return cursor & ((1u << AF_WORKER_CURSOR_SHIFT) - 1); }
static inline uint32_t af_worker_cursor(uint32_t worker, uint32_t slot) {
    return worker << AF_WORKER_CURSOR_SHIFT | slot;
}

#endif
