/* The producer: a native thread that runs the engine's pump over a file without the GIL and
 * hands full batches to Python through a small ring, signalling a pipe that the event loop waits
 * on. Python's work per batch (copying it out) then overlaps the C work instead of following it,
 * and a busy interpreter never stalls the reading (a Python worker thread would have to win the
 * GIL back after every pump). */
#ifndef AIOFLOW_PRODUCER_H
#define AIOFLOW_PRODUCER_H
#include "pipeline.h"

typedef struct af_producer af_producer;

/* notify_fd: where to signal ready batches (workers: a pipe several producers share), or -1 for a
 * pipe of its own (af_producer_fd). */
int af_producer_start(af_producer **out, af_pipeline *pipe, uint32_t batch_capacity, uint32_t headers_per_flow,
                      uint32_t slots, int notify_fd);
/* A non-blocking, close-on-exec pipe: 0, or -1. */
int af_notify_pipe(int fds[2]);
int af_producer_fd(const af_producer *p);
int af_producer_ready(af_producer *p, af_batch **batch);
void af_producer_release(af_producer *p);
void af_producer_free(af_producer *p);

#endif
