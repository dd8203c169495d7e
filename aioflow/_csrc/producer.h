/* The producer: a native thread that runs the engine's pump over a file without the GIL and
 * hands full batches to Python through a small ring, signalling a pipe that the event loop waits
 * on. Python's work per batch (copying it out) then overlaps the C work instead of following it,
 * and a busy interpreter never stalls the reading (a Python worker thread would have to win the
 * GIL back after every pump). */
#ifndef AIOFLOW_PRODUCER_H
#define AIOFLOW_PRODUCER_H
#include <stddef.h>

#include "aioflow.h"

typedef struct af_producer af_producer;

/* The engine's side, which the producer drives (engine.c). */
int af_pump_append(af_engine *e, uint32_t max_packets, af_batch *out);
uint32_t af_pump_room(af_engine *e, af_batch *out);   /* flows the batch can still take */
void af_pump_finish(af_engine *e, af_batch *out);     /* before handing a batch over (stream chunks) */
void af_pump_prefault(af_engine *e, void *base, size_t bytes);   /* populate ahead (prefault.h) */
/* A file read ahead by its own thread: af_pump_append says AF_OK when it caught up with it; this
 * sleeps (without the engine lock) until more is read, or all. */
void af_wait_read_ahead(af_engine *e);

int af_producer_start(af_producer **out, af_engine *e, uint32_t batch_capacity, uint32_t headers_per_flow,
                      uint32_t slots);
int af_producer_fd(const af_producer *p);
int af_producer_ready(af_producer *p, af_batch **batch);
void af_producer_release(af_producer *p);
void af_producer_free(af_producer *p);

#endif
