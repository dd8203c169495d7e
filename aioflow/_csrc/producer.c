#define _GNU_SOURCE   /* pipe2 */
#include "producer.h"

#include "batch.h"
#include "meter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A slot is published after this many packets even if few flows ended, so flows reach Python
 * steadily; the engine lock is taken per chunk so lookups never wait long. */
#define SLOT_PACKETS 65536u
#define CHUNK_PACKETS 1024u
#define SLOT_ROOM 3u                 /* a pump needs this much room to make progress */
/* ... or once it holds this much stream data (reassembly). A slot has room for several of the
 * largest flows, but filling it would spread the copies into it and out of it over ~70 MB; slots
 * of a few MB stay in the last-level cache and need ~50 MB less memory backed (4-5% less CPU on
 * the benchmark capture, measured). */
#define SLOT_STREAM_BYTES (4u << 20)

struct af_producer {
    af_pipeline *pl;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;             /* a slot was released, or closing */
    af_batch *slots;
    int *slot_status;
    af_record *records;
    af_header *headers;
    uint32_t nslots, head, ready;    /* ready slots are head .. head + ready - 1 (mod nslots) */
    int done, closing, started;
    int pipe[2];                     /* its own, unless notify_fd (not its own) is given */
    int notify_fd;
};

static void notify(af_producer *p) {
    char byte = 1;
    /* a full pipe already says "readable": nothing to add */
    while (write(p->notify_fd >= 0 ? p->notify_fd : p->pipe[1], &byte, 1) < 0 && errno == EINTR) {}
}

static void *run(void *arg) {
    af_producer *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->ready == p->nslots && !p->closing) pthread_cond_wait(&p->cond, &p->mu);
        int closing = p->closing;
        uint32_t w = (p->head + p->ready) % p->nslots;
        pthread_mutex_unlock(&p->mu);
        if (closing) break;

        af_batch *b = &p->slots[w];
        af_batch_clear(b);
        uint64_t before = af_pipeline_packets_read(p->pl), now;
        int status;
        do {
            status = af_pipeline_pump(p->pl, CHUNK_PACKETS, b);
            if (status == AF_OK) {   /* the file's reading thread is behind: let it read */
                int idle = af_pipeline_wait(p->pl);
                status = AF_MORE;
                if (idle && (b->count || b->chunk_count)) break;   /* following a file: hand over what ended */
            }
            now = af_pipeline_packets_read(p->pl);
        } while (status == AF_MORE && af_pipeline_room(p->pl, b) > SLOT_ROOM && now - before < SLOT_PACKETS &&
                 b->stream_data_used < SLOT_STREAM_BYTES);
        af_pipeline_finish(p->pl, b);
        p->slot_status[w] = status;

        pthread_mutex_lock(&p->mu);
        p->ready++;
        if (status != AF_MORE) p->done = 1;
        pthread_mutex_unlock(&p->mu);
        notify(p);
        if (status != AF_MORE) break;
    }
    return NULL;
}

int af_notify_pipe(int fds[2]) { return pipe2(fds, O_NONBLOCK | O_CLOEXEC); }

int af_producer_start(af_producer **out, af_pipeline *pipe, uint32_t capacity, uint32_t headers_per_flow,
                      uint32_t nslots, int notify_fd) {
    *out = NULL;
    if (nslots < 1 || capacity <= SLOT_ROOM) return AF_ERR_CONFIG;
    af_producer *p = calloc(1, sizeof *p);
    if (!p) return AF_ERR_NOMEM;
    p->pl = pipe;
    p->nslots = nslots;
    p->pipe[0] = p->pipe[1] = -1;
    p->notify_fd = notify_fd;
    p->slots = calloc(nslots, sizeof *p->slots);
    p->slot_status = calloc(nslots, sizeof *p->slot_status);
    p->records = calloc((size_t)nslots * capacity, sizeof *p->records);
    if (headers_per_flow)
        p->headers = calloc((size_t)nslots * capacity * headers_per_flow, sizeof *p->headers);
    int meters_ok = 1;   /* the meters' batch room: record blocks, stream data */
    for (uint32_t i = 0; p->slots && i < nslots; i++)
        if (af_pipeline_batch_alloc(pipe, &p->slots[i], capacity) != AF_OK) meters_ok = 0;
    if (!p->slots || !p->slot_status || !p->records || !meters_ok ||
        (headers_per_flow && !p->headers) || (notify_fd < 0 && af_notify_pipe(p->pipe) != 0)) {
        af_producer_free(p);
        return AF_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < nslots; i++) {
        p->slots[i].records = p->records + (size_t)i * capacity;
        p->slots[i].capacity = capacity;
        if (headers_per_flow) {
            p->slots[i].headers = p->headers + (size_t)i * capacity * headers_per_flow;
            p->slots[i].header_capacity = capacity * headers_per_flow;
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        af_producer_free(p);
        return AF_ERR_NOMEM;
    }
    p->started = 1;
    /* The prefault thread backs what a slot usually reaches (SLOT_STREAM_BYTES and one more
     * pump). Only now: a failed start unmaps the buffers at once, before af_close could stop it. */
    for (uint32_t i = 0; i < nslots; i++) af_pipeline_prefault(pipe, &p->slots[i], 2ull * SLOT_STREAM_BYTES);
    *out = p;
    return AF_OK;
}

int af_producer_fd(const af_producer *p) { return p->pipe[0]; }

int af_producer_ready(af_producer *p, af_batch **batch) {
    char sink[64];
    while (p->pipe[0] >= 0 && read(p->pipe[0], sink, sizeof sink) > 0) {}   /* woken: the check below decides */
    pthread_mutex_lock(&p->mu);
    int status = AF_OK;
    if (p->ready > 0) {
        uint32_t h = p->head;
        *batch = &p->slots[h];
        status = p->slot_status[h] < 0 ? p->slot_status[h] : AF_MORE;
    } else if (p->done) {
        status = AF_DONE;
    }
    pthread_mutex_unlock(&p->mu);
    return status;
}

void af_producer_release(af_producer *p) {
    pthread_mutex_lock(&p->mu);
    if (p->ready > 0) {
        p->head = (p->head + 1) % p->nslots;
        p->ready--;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
}

void af_producer_free(af_producer *p) {
    if (!p) return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->closing = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
    }
    if (p->pipe[0] >= 0) close(p->pipe[0]);
    if (p->pipe[1] >= 0) close(p->pipe[1]);
    for (uint32_t i = 0; p->slots && i < p->nslots; i++) af_meters_batch_free(&p->slots[i]);
    free(p->slots);
    free(p->slot_status);
    free(p->records);
    free(p->headers);
    free(p);
}
