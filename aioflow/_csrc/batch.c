#include "batch.h"

#include <string.h>

#include "record.h"

void af_emit_record(af_emitter *em, uint32_t slot, uint8_t reason) {
    af_batch *b = em->out;
    af_table *t = em->table;
    /* meters first: their chunks (reassembly) go before the record in the batch's order */
    if (em->meters->count) af_meters_end(em->meters, t, slot, reason != AF_END_ACTIVE, b, b->count);
    af_record *r = &b->records[b->count++];
    af_record_fill(t, slot, r);
    r->end_reason = reason;
    if (t->headers_per_flow) {
        const af_header_count *hc = af_table_header_count(t, slot);
        r->header_offset = b->header_count;
        r->header_count = hc->kept;
        r->headers_dropped = hc->dropped;
        memcpy(&b->headers[b->header_count], af_table_headers(t, slot), (size_t)hc->kept * sizeof(af_header));
        b->header_count += hc->kept;
    }
    em->stats->flows_ended++;
    em->stats->ended_by[reason]++;
}

void af_emit_end(af_emitter *em, uint32_t slot, uint8_t reason) {
    af_emit_record(em, slot, reason);
    af_count_active(em->stats, af_table_flow(em->table, slot)->key.proto, -1);
    af_table_remove(em->table, slot);
}

void af_batch_clear(af_batch *b) {
    b->count = 0;
    b->header_count = 0;
    b->chunk_count = 0;
    b->stream_data_used = 0;
}
