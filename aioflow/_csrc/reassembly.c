/* Reassembly (stream.h) as a meter (meter.h): on with reassemble=True; its batch hooks give each
 * batch its stream arrays (af_stream_info per record, chunks, stream data) and hand new chunks
 * over when a batch is. Meters that read the reassembled bytes (stream search: stream_search.c)
 * subscribe as its stream consumers (stream.h). */
#include "stream.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "arena.h"

/* --- batch room --- */

static void batch_sizes(const af_config *cfg, uint32_t capacity, uint32_t *chunks, uint64_t *data) {
    *chunks = cfg->reassemble ? 3 * capacity + 64 : 0;   /* per flow: two data chunks and a consumer's (a match) */
    *data = cfg->reassemble ? 6 * af_streams_flow_bytes(cfg->max_stream_bytes, cfg->max_reassembly_memory) + (4u << 20) : 0;
}

static void batch_free(af_batch *b);

static int batch_alloc(const af_config *cfg, af_batch *b, uint32_t capacity) {
    uint32_t chunks;
    uint64_t data;
    batch_sizes(cfg, capacity, &chunks, &data);
    b->streams = malloc((size_t)capacity * sizeof *b->streams);
    b->chunks = malloc((size_t)chunks * sizeof *b->chunks);
    /* address space: pages are backed as stream data first reaches them */
    b->stream_data = af_reserve(data);
    b->chunk_capacity = chunks;
    b->stream_data_capacity = data;
    if (b->streams && b->chunks && b->stream_data) return AF_OK;
    batch_free(b);
    return AF_ERR_NOMEM;
}

static void batch_free(af_batch *b) {
    free(b->streams);
    free(b->chunks);
    if (b->stream_data) munmap(b->stream_data, b->stream_data_capacity);
    b->streams = NULL;
    b->chunks = NULL;
    b->stream_data = NULL;
}

/* --- the meter --- */

static int wanted(const af_config *cfg) { return cfg->reassemble != 0; }
static void *open_meter(const af_config *cfg, af_stats *stats) { return af_streams_new(cfg, stats); }
static void close_meter(void *ctx) { af_streams_free(ctx); }
static void on_new(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender) {
    (void)first, (void)sender;
    (void)state;
    af_streams_reset(ctx, slot);
}
static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)state;
    af_streams_emit(ctx, me->table, me->slot, me->out, me->record, me->ending);
}
static int batch_ready(const af_batch *b) { return b->streams && b->chunks && b->stream_data; }
static void batch_finish(void *ctx, const af_table *t, af_batch *b) { af_streams_finish_batch(ctx, t, b); }
static void prefault_batch(void *ctx, af_batch *b, uint64_t usual) {
    if (b->stream_data)
        af_streams_prefault(ctx, b->stream_data, usual < b->stream_data_capacity ? usual : b->stream_data_capacity);
}
static void stop(void *ctx) { af_streams_stop_prefault(ctx); }

const af_meter af_meter_reassembly = {
    .info = {"reassembly", "TCP streams and datagram payloads", "reassemble", NULL, 0, 0},
    .needs_payload = 1,
    .wanted = wanted,
    .open = open_meter,
    .close = close_meter,
    .on_new = on_new,
    .on_packet = af_streams_packet,
    .on_end = on_end,
    .prefetch = af_streams_prefetch,
    .batch_alloc = batch_alloc,
    .batch_free = batch_free,
    .batch_ready = batch_ready,
    .batch_room = af_streams_room,
    .batch_finish = batch_finish,
    .prefault = prefault_batch,
    .stop = stop,
};
