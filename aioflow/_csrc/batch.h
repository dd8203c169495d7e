/* The batch hand-off: ended flows leave the table as fixed records (plus their kept headers and
 * their enabled meters' blocks) in the batch the pipeline is filling. */
#ifndef AIOFLOW_BATCH_H
#define AIOFLOW_BATCH_H
#include <stdint.h>

#include "aioflow.h"
#include "flowtable.h"
#include "meter.h"

/* Room one packet may need in a batch: an expired or active-split record, an eviction, and its
 * own flow's end by a slicing rule (max_packets / max_bytes). */
#define AF_ROOM_PER_PACKET 3u

/* What emitting needs: the table records come from, the meters that add to them, the counters
 * and the batch being filled (set per pump). */
typedef struct {
    af_table *table;
    af_meter_set *meters;
    af_stats *stats;
    af_batch *out;
} af_emitter;

/* Records the batch can still take (meters with batch-side data may allow fewer). */
static inline uint32_t af_emit_room(const af_emitter *em) {
    uint32_t r = em->out->capacity - em->out->count;
    if (em->meters->n_room) {
        uint32_t m = af_meters_room(em->meters, em->out);
        if (m < r) r = m;
    }
    return r;
}

static inline void af_count_active(af_stats *st, uint8_t proto, int delta) {
    uint64_t *c = proto == 6 ? &st->active_tcp : proto == 17 ? &st->active_udp : &st->active_other;
    *c += (uint64_t)(int64_t)delta;
}

/* Writes the flow's record (kept headers, meter blocks) into the batch; the caller made room.
 * The flow stays in the table (active-timeout split) unless af_emit_end is used. */
void af_emit_record(af_emitter *em, uint32_t slot, uint8_t reason);
/* Emits the flow's last record and frees its slot. */
void af_emit_end(af_emitter *em, uint32_t slot, uint8_t reason);
/* Empties a batch before a pump fills it. */
void af_batch_clear(af_batch *b);

#endif
