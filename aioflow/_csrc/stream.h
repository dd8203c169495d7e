/* TCP stream reassembly and datagram payload keeping (UDP and every other IP protocol: ICMP's
 * data after its 8-byte header, SCTP's chunks...), per flow and direction (reassemble=True only).
 *
 * Memory: one arena of fixed blocks, reserved at open for max_reassembly_memory and backed as
 * blocks are first used; freed blocks are reused (no malloc per packet). Every stored byte (kept
 * stream, out-of-order segments, holes, chunk data past max_stream_bytes) lives in arena blocks;
 * what does not fit is dropped and counted.
 *
 * TCP policy: the stream starts at ISN+1 when the SYN is seen, else at the first segment with
 * data; data before the stream's start is ignored. Overlaps are resolved first-wins (bytes already
 * received, in order or buffered, are never replaced). The stream moves past missing data (a hole:
 * offset and length) when the flow ends, or when a direction's out-of-order bytes would pass
 * max_stream_bytes or the arena is full. A direction keeps at most max_stream_bytes (then
 * `truncated`); the data past it still reaches chunks. Datagrams: each one's payload is kept whole
 * (framed by a 4-byte length, which counts toward the bound) while it fits. */
#ifndef AIOFLOW_STREAM_H
#define AIOFLOW_STREAM_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "arena.h"
#include "decode.h"
#include "flowtable.h"
#include "meter.h"
#include "packet.h"

#define AF_STREAM_MAX_HOLES 4096u   /* per direction; past it the direction stops keeping data */
#define AF_STREAM_MAX_PAYLOAD AF_MAX_PAYLOAD
/* Per flow and record, the batch holds room for one chunk of a stream consumer, this long at most. */
#define AF_STREAM_CONSUMER_CHUNK 512u
#define AF_STREAM_CONSUMERS_MAX 4u

typedef struct af_streams af_streams;

/* NULL without memory. `chunks`: also produce chunks of new in-order data (stream_events). */
af_streams *af_streams_new(const af_config *cfg, af_stats *stats);
void af_streams_free(af_streams *s);
/* Memory the counting thread will write soon (the producer's batch buffers): populated ahead by
 * the arena's prefault thread (prefault.h). Stop it before unmapping such memory. */
void af_streams_prefault(af_streams *s, void *base, size_t bytes);
void af_streams_stop_prefault(af_streams *s);

/* Batch bytes one more flow end (both kept streams, which the arena bounds too, and their holes)
 * or one more packet (its pending chunk data) may take. */
uint64_t af_streams_flow_bytes(uint64_t max_stream, uint64_t arena_bytes);
/* Batch room (records) the reassembler leaves for more flow ends and packets (batch.h's room). */
uint32_t af_streams_room(void *s, const af_batch *b);   /* the meter hooks' signatures */

/* Stream consumers: meters that read what reassembly puts in order (stream search; later e.g.
 * application detection on payload). Reassembly calls them in the counting thread, through this
 * hook only, so it knows none of them and costs nothing more per packet while none subscribed. */
typedef struct {
    void *ctx;
    /* In-order bytes sent by key endpoint `endpoint` at stream offset `off` (TCP: as they come in
     * order, out-of-order data once drained; datagram: one whole payload, offsets counting the
     * direction's payload bytes). Called before reassembly keeps them. */
    void (*data)(void *ctx, uint32_t slot, int endpoint, int datagram, uint64_t off, const uint8_t *data,
                 uint32_t n);
    /* The flow's record is being emitted (ending: the flow leaves the table; else an active-timeout
     * split): its out-of-order data was drained through `data` already, its chunks have not left. */
    void (*end)(void *ctx, uint32_t slot, int ending);
    /* The flow's chunks leave now (its record, or the batch, is handed over): after its data
     * chunks, the consumer emits the one it pended (af_streams_pend / af_streams_chunk). */
    void (*chunks)(void *ctx, const af_table *t, uint32_t slot, af_batch *out);
} af_stream_consumer;

/* Subscribes c (copied) before reading starts. AF_OK, or AF_ERR_CONFIG when AF_STREAM_CONSUMERS_MAX
 * subscribed already. */
int af_streams_subscribe(af_streams *s, const af_stream_consumer *c);
/* For consumers: the arena their per-flow bytes live in (they count in the stream memory bound); */
af_arena *af_streams_arena(af_streams *s);
/* a chunk of `bytes` (<= AF_STREAM_CONSUMER_CHUNK) for the flow in `slot` waits for its next
 * chunks (at most one per flow and record: the batch room holds one); */
void af_streams_pend(af_streams *s, uint32_t slot, uint32_t bytes);
/* from the `chunks` hook: that chunk, in key endpoint `endpoint`'s direction, with the flow and
 * direction filled and `bytes` of data room at out->stream_data + data_at (kind, offset: the caller's). */
af_chunk *af_streams_chunk(af_streams *s, const af_table *t, uint32_t slot, int endpoint, uint32_t bytes,
                           af_batch *out);
/* A packet of endpoint `sender` of the flow in `slot` comes soon: prefetches its state. */
void af_streams_prefetch(const void *s, uint32_t slot, int sender);
/* A new flow took `slot` (its state is cleared), a packet of endpoint `sender` of it was counted. */
void af_streams_reset(af_streams *s, uint32_t slot);
void af_streams_packet(void *s, void *state, const af_meter_packet *mp);
/* The flow's record at out->records[record] is being emitted: its pending chunks go first (the
 * caller emits them before the record: call with the record index it will take), then its kept
 * streams are copied into the batch. `ending`: the flow leaves the table (out-of-order data is
 * drained, holes recorded, the state freed); otherwise (active timeout) what was kept is handed
 * over and keeping starts again. */
void af_streams_chunks_of(af_streams *s, const af_table *t, uint32_t slot, af_batch *out);
void af_streams_emit(af_streams *s, const af_table *t, uint32_t slot, af_batch *out, uint32_t record,
                     int ending);
/* Chunks from now on, for flows in slots 1..slots (the new data only). */
void af_streams_enable_chunks(af_streams *s, uint32_t slots);
/* End of a batch: a chunk for every direction with new data. */
void af_streams_finish_batch(af_streams *s, const af_table *t, af_batch *out);
/* Reassembly as a meter (meters.h): on when cfg->reassemble; its batch hooks give batches their
 * stream arrays. The pipeline sees only this; af_meters_ctx(set, &af_meter_reassembly) is the
 * af_streams the entry layer hands chunk requests and stream consumers to. */
extern const af_meter af_meter_reassembly;

#endif
