#include "readahead.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct af_readahead {
    pthread_t thread;
    int started;
    af_source *src;
    const af_prepare *pp;
    af_queued *ring;
    atomic_int *stop;
    atomic_uint tail;                /* entries published (the counting threads' queue_head chase it) */
    uint32_t consumers;
    atomic_uint head[AF_MAX_WORKERS];        /* entries each counting thread is done with */
    atomic_ullong consumed[AF_MAX_WORKERS];  /* ring bytes each counting thread is done with */
    uint64_t written;                /* ring bytes reserved (reading thread only) */
    uint8_t *bytes;
    atomic_int done, closing;
    atomic_int idle;                 /* following a file that has not grown: take what is there */
    atomic_int reader_waiting, counter_waiting;   /* counter_waiting: how many */
    pthread_mutex_t mu;
    pthread_cond_t space, data;
    af_stats st, pub;                /* the reading thread's counters; pub: published under mu */
    uint8_t flush_reason;
    char error[PCAP_ERRBUF_SIZE];
};

void af_readahead_release(af_readahead *r, uint32_t c, const af_queued *ring, uint32_t head) {
    if (head) {   /* the ring bytes of every entry before head are done with too */
        const af_queued *last = &ring[(head - 1) & (AF_RING - 1)];
        atomic_store_explicit(&r->consumed[c], last->ring_end, memory_order_release);
    }
    /* after reading that entry: once head moves on, the reading thread may reuse it */
    atomic_store_explicit(&r->head[c], head, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->reader_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->space);
        pthread_mutex_unlock(&r->mu);
    }
}

uint32_t af_readahead_available(af_readahead *r, uint32_t head, int *done) {
    *done = atomic_load(&r->done);   /* before tail: all it published is then seen */
    return atomic_load_explicit(&r->tail, memory_order_acquire) - head;
}

static void wake_counter(af_readahead *r) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->counter_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->data);
        pthread_mutex_unlock(&r->mu);
    }
}

static void publish_stats(af_readahead *r) {
    uint64_t pos = af_source_offset(r->src);
    pthread_mutex_lock(&r->mu);
    r->pub = r->st;
    r->pub.file_offset = pos;
    pthread_mutex_unlock(&r->mu);
}

/* Whether every consumer left room for one more entry and `bytes` of ring from `from`. */
static int has_room(af_readahead *r, uint32_t tail, uint64_t from, uint32_t bytes) {
    for (uint32_t c = 0; c < r->consumers; c++) {
        uint32_t head = atomic_load_explicit(&r->head[c], memory_order_acquire);
        uint64_t consumed = atomic_load_explicit(&r->consumed[c], memory_order_acquire);
        if (!(tail - head < AF_RING && from + bytes - consumed <= AF_RING_BYTES)) return 0;
    }
    return 1;
}

/* Reading thread: waits for an entry and `bytes` of ring. 0 when closing. */
static int wait_room(af_readahead *r, uint32_t tail, uint64_t from, uint32_t bytes) {
    for (;;) {
        if (has_room(r, tail, from, bytes)) return 1;
        if (atomic_load(&r->closing)) return 0;
        atomic_store(&r->reader_waiting, 1);
        atomic_thread_fence(memory_order_seq_cst);
        pthread_mutex_lock(&r->mu);
        if (!has_room(r, tail, from, bytes) && !atomic_load(&r->closing))
            pthread_cond_wait(&r->space, &r->mu);
        pthread_mutex_unlock(&r->mu);
        atomic_store(&r->reader_waiting, 0);
    }
}

static void *run(void *arg) {
    af_readahead *r = arg;
    uint32_t tail = 0;
    uint64_t n = 0;
    r->flush_reason = AF_END_EOF;
    while (!atomic_load(&r->closing)) {
        if (atomic_load(r->stop)) {
            r->flush_reason = AF_END_STOP;
            break;
        }
        if (!wait_room(r, tail, r->written, 0)) break;
        af_frame f;
        int status = af_source_next(r->src, &f, r->error, sizeof r->error);
        if (status == 0) {   /* a followed file that has not grown: what was read is counted meanwhile */
            publish_stats(r);
            atomic_store(&r->idle, 1);
            wake_counter(r);
            af_source_wait(r->src);
            continue;
        }
        atomic_store(&r->idle, 0);
        if (status != 1) {
            if (status == -2) r->st.read_errors++;
            break;
        }
        const u_char *data = f.data;
        af_queued *q = &r->ring[tail & (AF_RING - 1)];
        if (++n % AF_RING_WAKE == 0) {
            publish_stats(r);
            wake_counter(r);
        }
        if (!af_read_packet(r->pp, &r->st, &f, q)) continue;
        /* a fragment goes whole to the counting thread; any other packet is prepared here */
        q->pending = q->p.frag != AF_FRAG_NONE;
        uint32_t bytes = q->pending ? q->caplen : af_copy_bytes(r->pp, &q->p);
        uint64_t at = r->written;
        if (at % AF_RING_BYTES + bytes > AF_RING_BYTES) at += AF_RING_BYTES - at % AF_RING_BYTES;   /* wrap */
        if (!wait_room(r, tail, at, bytes)) break;
        uint8_t *to = r->bytes + at % AF_RING_BYTES;
        r->written = q->ring_end = at + bytes;
        if (q->pending) {
            memcpy(to, data, bytes);
            q->payload = to;
        } else if (!af_prepare_packet(r->pp, &r->st, q, data, to)) {
            r->written = at;   /* counted aside: its ring bytes are not needed */
            continue;
        }
        atomic_store_explicit(&r->tail, ++tail, memory_order_release);
    }
    publish_stats(r);
    atomic_store(&r->done, 1);
    wake_counter(r);
    return NULL;
}

void af_readahead_free(af_readahead *r) {
    if (!r) return;
    if (r->started) {
        atomic_store(&r->closing, 1);
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->space);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->space);
    pthread_cond_destroy(&r->data);
    pthread_mutex_destroy(&r->mu);
    free(r->bytes);
    free(r);
}

int af_readahead_start(af_readahead **out, af_source *src, const af_prepare *pp, af_queued *ring, atomic_int *stop,
                       uint32_t consumers) {
    *out = NULL;
    if (consumers < 1 || consumers > AF_MAX_WORKERS) return AF_ERR_CONFIG;
    af_readahead *r = calloc(1, sizeof *r);
    if (!r) return AF_ERR_NOMEM;
    r->consumers = consumers;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->data, NULL);
    r->src = src;
    r->pp = pp;
    r->ring = ring;
    r->stop = stop;
    r->bytes = malloc(AF_RING_BYTES);
    if (!r->bytes || pthread_create(&r->thread, NULL, run, r) != 0) {
        af_readahead_free(r);
        return AF_ERR_NOMEM;
    }
    r->started = 1;
    *out = r;
    return AF_OK;
}

int af_readahead_wait(af_readahead *r, uint32_t head, const atomic_int *stop) {
    atomic_fetch_add(&r->counter_waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->done) && atomic_load(&r->tail) - head < AF_RING_WAKE && !atomic_load(stop) &&
           !(atomic_load(&r->idle) && atomic_load(&r->tail) != head))
        pthread_cond_wait(&r->data, &r->mu);
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_sub(&r->counter_waiting, 1);
    return atomic_load(&r->idle);
}

uint8_t af_readahead_flush_reason(const af_readahead *r) { return r->flush_reason; }
const char *af_readahead_error(const af_readahead *r) { return r->error; }

void af_readahead_add_stats(af_readahead *r, af_stats *out, int reading) {
    pthread_mutex_lock(&r->mu);
    out->packets_read += r->pub.packets_read;
    out->bytes_read += r->pub.bytes_read;
    out->read_errors += r->pub.read_errors;
    for (int i = 0; i < AF_ASIDE_COUNT; i++) out->aside[i] += r->pub.aside[i];
    for (int i = 0; i < AF_DECODE_EVENT_COUNT; i++) out->decode_events[i] += r->pub.decode_events[i];
    if (r->pub.first_ns && (!out->first_ns || r->pub.first_ns < out->first_ns)) out->first_ns = r->pub.first_ns;
    if (reading) out->file_offset = r->pub.file_offset;
    pthread_mutex_unlock(&r->mu);
}
