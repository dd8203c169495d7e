#include "readahead.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 64   /* what one side writes sits on cache lines the other side does not write */

/* One consumer's ring: its indexes, the reader's published tail, and what only the reader uses. */
typedef struct {
    _Alignas(LINE) atomic_uint head;   /* consumer: entries done with */
    atomic_ullong consumed;            /* consumer: ring bytes done with */
    _Alignas(LINE) atomic_uint tail;   /* reader: entries published */
    _Alignas(LINE) uint32_t written;   /* reader only: entries written (published up to tail) */
    uint32_t seen_head;                /* the consumer's head and consumed as last loaded: room is */
    uint64_t seen_consumed;            /* known up to there without loading them again */
    uint64_t reserved;                 /* ring bytes reserved */
    af_queued *entries;                /* AF_RING */
    uint8_t *bytes;                    /* lane_bytes */
} af_lane;

struct af_readahead {
    _Alignas(LINE) atomic_ullong clock;   /* published: the newest time of the entries published */
    _Alignas(LINE) pthread_t thread;
    int started;
    af_source *src;
    const af_prepare *pp;
    atomic_int *stop;
    uint32_t consumers;
    int every_lane;                  /* every packet to every lane (defragmenting workers) */
    size_t entry_size;               /* what an entry holds (raw headers only with headers=N) */
    uint64_t lane_bytes;             /* a power of two */
    af_lane *lanes;
    uint64_t now;                    /* reader only: the newest time read (not counting fragments) */
    atomic_int done, closing;
    atomic_int idle;                 /* following a file that has not grown: take what is there */
    atomic_int reader_waiting, counter_waiting;   /* counter_waiting: how many */
    pthread_mutex_t mu;
    pthread_cond_t space, data;
    af_stats st, pub;                /* the reading thread's counters; pub: published under mu */
    uint8_t flush_reason;
    char error[PCAP_ERRBUF_SIZE];
    af_queued scratch;               /* several lanes: a packet decoded before its lane is known */
};

af_queued *af_readahead_queue(af_readahead *r, uint32_t c) { return r->lanes[c].entries; }

void af_readahead_release(af_readahead *r, uint32_t c, uint32_t head) {
    af_lane *l = &r->lanes[c];
    if (head) {   /* the ring bytes of every entry before head are done with too */
        const af_queued *last = &l->entries[(head - 1) & (AF_RING - 1)];
        atomic_store_explicit(&l->consumed, last->ring_end, memory_order_release);
    }
    /* after reading that entry: once head moves on, the reading thread may reuse it */
    atomic_store_explicit(&l->head, head, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->reader_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->space);
        pthread_mutex_unlock(&r->mu);
    }
}

uint32_t af_readahead_available(af_readahead *r, uint32_t c, uint32_t head, int *done, uint64_t *clock) {
    *done = atomic_load(&r->done);   /* before tail: all it published is then seen */
    *clock = atomic_load_explicit(&r->clock, memory_order_acquire);   /* published after the tails */
    return atomic_load_explicit(&r->lanes[c].tail, memory_order_acquire) - head;
}

static void wake_counter(af_readahead *r) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->counter_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->data);
        pthread_mutex_unlock(&r->mu);
    }
}

/* The entries written so far become visible, each lane's with one store, then the clock. */
static void publish(af_readahead *r) {
    for (uint32_t c = 0; c < r->consumers; c++) {
        af_lane *l = &r->lanes[c];
        if (atomic_load_explicit(&l->tail, memory_order_relaxed) != l->written)
            atomic_store_explicit(&l->tail, l->written, memory_order_release);
    }
    if (atomic_load_explicit(&r->clock, memory_order_relaxed) != r->now)
        atomic_store_explicit(&r->clock, r->now, memory_order_release);
}

static void publish_stats(af_readahead *r) {
    uint64_t pos = af_source_offset(r->src);
    pthread_mutex_lock(&r->mu);
    r->pub = r->st;
    r->pub.file_offset = pos;
    pthread_mutex_unlock(&r->mu);
}

/* Whether the lane's consumer had left room for one more entry and `bytes` of ring from `from`
 * when last loaded (inline: the common case, no atomic load). */
static inline int room_known(const af_readahead *r, const af_lane *l, uint64_t from, uint32_t bytes) {
    return l->written - l->seen_head < AF_RING && from + bytes - l->seen_consumed <= r->lane_bytes;
}

/* Whether it has left room now. */
static int has_room(const af_readahead *r, af_lane *l, uint64_t from, uint32_t bytes) {
    if (room_known(r, l, from, bytes)) return 1;
    l->seen_head = atomic_load_explicit(&l->head, memory_order_acquire);
    l->seen_consumed = atomic_load_explicit(&l->consumed, memory_order_acquire);
    return l->written - l->seen_head < AF_RING && from + bytes - l->seen_consumed <= r->lane_bytes;
}

/* Reading thread: waits for an entry and `bytes` of ring in lane l. 0 when closing. */
static int wait_room(af_readahead *r, af_lane *l, uint64_t from, uint32_t bytes) {
    if (has_room(r, l, from, bytes)) return 1;
    publish(r);   /* what the lane's consumer (and the others) may still take while this waits */
    for (;;) {
        if (has_room(r, l, from, bytes)) return 1;
        if (atomic_load(&r->closing)) return 0;
        atomic_store(&r->reader_waiting, 1);
        wake_counter(r);   /* a consumer waiting for AF_RING_WAKE entries takes fewer now */
        pthread_mutex_lock(&r->mu);
        if (!has_room(r, l, from, bytes) && !atomic_load(&r->closing)) pthread_cond_wait(&r->space, &r->mu);
        pthread_mutex_unlock(&r->mu);
        atomic_store(&r->reader_waiting, 0);
    }
}

/* One packet read: filtered, decoded, keyed and copied into its worker's lane (a fragment, or
 * any packet with every_lane: into every lane, each with its own copy). 0 when closing. */
static int put(af_readahead *r, const af_frame *f) {
    af_lane *one = &r->lanes[0];
    int direct = r->consumers == 1;   /* one lane: decoded in place */
    if (direct && !room_known(r, one, one->reserved, 0) && !wait_room(r, one, one->reserved, 0)) return 0;
    af_queued *q = direct ? &one->entries[one->written & (AF_RING - 1)] : &r->scratch;
    if (!af_read_packet(r->pp, &r->st, f, q)) return 1;
    /* a fragment goes whole to the counting threads; any other packet is prepared here */
    q->pending = q->p.frag != AF_FRAG_NONE;
    if (!q->pending && !af_prepare_key(r->pp, &r->st, q, f->data)) return 1;   /* counted aside */
    uint32_t bytes = q->pending ? q->caplen : q->foreign ? 0 : af_copy_bytes(r->pp, &q->p);   /* foreign: a share's */
    /* a fragment's time counts where it is prepared (a held one moves no clock) */
    if (!q->pending && q->ts > r->now) r->now = q->ts;
    q->clock = r->now;
    uint32_t owner = q->pending ? r->consumers : af_worker_of(q->hash, r->consumers);
    uint32_t first = 0, last = r->consumers - 1;
    if (!q->pending && !r->every_lane) first = last = owner;
    const uint8_t *copy = NULL;
    for (uint32_t c = first; c <= last; c++) {
        af_lane *l = &r->lanes[c];
        /* every_lane: the other workers' copies only move their clocks (and defragmenters): the
         * entry marked foreign, without the packet's bytes */
        int foreign = !q->pending && c != owner;
        uint32_t n = foreign ? 0 : bytes;
        uint64_t at = l->reserved, mask = r->lane_bytes - 1;
        if ((at & mask) + n > r->lane_bytes) at += r->lane_bytes - (at & mask);   /* wrap */
        if (!room_known(r, l, at, n) && !wait_room(r, l, at, n)) return 0;
        uint8_t *to = l->bytes + (at & mask);
        l->reserved = at + n;
        af_queued *e = &l->entries[l->written++ & (AF_RING - 1)];
        if (foreign) {
            memcpy(e, q, r->entry_size);
            e->foreign = 1;
            e->payload = e->p.l3 = e->p.payload = NULL;
            e->payload_len = e->l3_len = e->l3_headers = 0;
            e->ring_end = l->reserved;
            continue;
        }
        if (!copy) {   /* the first lane's copy: from the frame */
            if (q->pending) {
                memcpy(to, f->data, bytes);
                q->payload = to;
            } else {
                af_prepare_copy(r->pp, q, to);
            }
            copy = to;
        } else {       /* the others' (a fragment's): from the first's */
            memcpy(to, copy, bytes);
        }
        if (e != q) memcpy(e, q, r->entry_size);
        if (q->payload) e->payload = to + (q->payload - copy);
        e->foreign = q->foreign;   /* 1 only for another share's packet (flow_share) */
        e->ring_end = l->reserved;
    }
    return 1;
}

static void *run(void *arg) {
    af_readahead *r = arg;
    uint64_t n = 0;
    r->flush_reason = AF_END_EOF;
    while (!atomic_load(&r->closing)) {
        if (atomic_load(r->stop)) {
            r->flush_reason = AF_END_STOP;
            break;
        }
        af_frame f;
        int status = af_source_next(r->src, &f, r->error, sizeof r->error);
        if (status == 0) {   /* a followed file that has not grown: what was read is counted meanwhile */
            publish(r);
            publish_stats(r);
            atomic_store(&r->idle, 1);
            wake_counter(r);
            af_source_wait(r->src);
            continue;
        }
        if (atomic_load_explicit(&r->idle, memory_order_relaxed)) atomic_store(&r->idle, 0);
        if (status != 1) {
            if (status == -2) r->st.read_errors++;
            break;
        }
        if (++n % AF_PUBLISH == 0) {
            publish(r);
            if (n % AF_RING_WAKE == 0) {
                publish_stats(r);
                wake_counter(r);
            }
        }
        if (!put(r, &f)) break;
    }
    publish(r);
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
    for (uint32_t c = 0; r->lanes && c < r->consumers; c++) {
        free(r->lanes[c].entries);
        free(r->lanes[c].bytes);
    }
    free(r->lanes);
    free(r);
}

/* Zeroed memory aligned to a cache line (the indexes' lines are their own). */
static void *zalloc_lines(size_t bytes) {
    bytes = (bytes + LINE - 1) / LINE * LINE;
    void *m = aligned_alloc(LINE, bytes);
    if (m) memset(m, 0, bytes);
    return m;
}

int af_readahead_start(af_readahead **out, af_source *src, const af_prepare *pp, atomic_int *stop,
                       uint32_t consumers, int every_lane) {
    *out = NULL;
    if (consumers < 1 || consumers > AF_MAX_WORKERS) return AF_ERR_CONFIG;
    af_readahead *r = zalloc_lines(sizeof *r);
    if (!r) return AF_ERR_NOMEM;
    r->consumers = consumers;
    r->every_lane = every_lane;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->data, NULL);
    r->src = src;
    r->pp = pp;
    r->stop = stop;
    r->entry_size = pp->table->headers_per_flow ? sizeof(af_queued) : offsetof(af_queued, raw);
    /* the lanes share the bytes of one ring; each holds the largest fragment copy many times */
    for (r->lane_bytes = AF_RING_BYTES; r->lane_bytes * consumers > AF_RING_BYTES;) r->lane_bytes /= 2;
    _Static_assert(AF_RING_BYTES / AF_MAX_WORKERS >= 4 * AF_MAX_PAYLOAD, "a lane holds a few of the largest copies");
    int ok = (r->lanes = zalloc_lines(consumers * sizeof *r->lanes)) != NULL;
    for (uint32_t c = 0; ok && c < consumers; c++) {
        af_lane *l = &r->lanes[c];
        ok = (l->entries = calloc(AF_RING, sizeof *l->entries)) && (l->bytes = malloc(r->lane_bytes));
    }
    if (!ok || pthread_create(&r->thread, NULL, run, r) != 0) {
        af_readahead_free(r);
        return AF_ERR_NOMEM;
    }
    r->started = 1;
    *out = r;
    return AF_OK;
}

int af_readahead_wait(af_readahead *r, uint32_t c, uint32_t head, const atomic_int *stop) {
    const atomic_uint *tail = &r->lanes[c].tail;
    atomic_fetch_add(&r->counter_waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    pthread_mutex_lock(&r->mu);
    /* idle, or the reading thread waits for room (maybe in this lane): take what there is */
    while (!atomic_load(&r->done) && atomic_load(tail) - head < AF_RING_WAKE && !atomic_load(stop) &&
           !((atomic_load(&r->idle) || atomic_load(&r->reader_waiting)) && atomic_load(tail) != head))
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
