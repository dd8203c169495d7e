#include "pipeline.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account.h"
#include "batch.h"
#include "defrag.h"
#include "expiry.h"
#include "flowtable.h"
#include "early_fragments.h"
#include "fragments.h"
#include "prepare.h"
#include "record.h"

/* READING: packets come in; DRAINING: the source ended (or stop), queued packets are still
 * counted; FLUSHING: every remaining flow is emitted; DONE. */
enum af_phase { PHASE_READING, PHASE_DRAINING, PHASE_FLUSHING, PHASE_DONE };

/* Prepared packets wait in a short queue before they are counted, so that their hash bucket and
 * flow record can be prefetched: a flow lookup is otherwise a cache miss on nearly every packet.
 * With a read-ahead thread its longer ring (readahead.h) is the queue. */
#define AF_QUEUE 32u                 /* packets queued by the counting thread itself (power of two) */
#define AF_PREFETCH_AHEAD 8u         /* flow records are prefetched this many packets ahead */
/* Live: after a stop, how long packets from before it may still be on their way (a ring block). */
#define AF_STOP_GRACE_NS ((uint64_t)(AF_LIVE_LATENCY_MS + 10) * 1000000ULL)

struct af_pipeline {
    pthread_mutex_t mu;
    af_source src;
    af_config cfg;
    af_table table;
    af_frag_table frags;
    af_early_frags early;            /* without defragment: later fragments waiting for their first */
    af_defrag *defrag;               /* cfg.defragment: IP reassembly (defrag.h), else NULL */
    af_meter_set meters;
    af_stats stats;
    af_prepare prep;
    af_accounting acc;
    uint64_t now_ns;                 /* newest packet time seen: the clock of a file source */
    enum af_phase phase;
    uint8_t flush_reason;
    atomic_int stop_requested;
    _Atomic uint64_t stop_ns;        /* live: wall clock at the stop; packets stamped before it are still read */
    af_queued *queue;                /* AF_RING entries (AF_QUEUE used without read-ahead) */
    uint32_t queue_head, queue_count;    /* queue_head: free-running index (& qmask to use) */
    uint32_t qmask;                  /* AF_QUEUE - 1; read ahead: AF_RING - 1 (a small queue stays in cache) */
    af_readahead *ahead;             /* files read by af_start's thread: the reading thread */
    int ahead_shared;                /* workers: another pipeline's reading thread (and lanes), not ours */
    uint32_t lane;                   /* read ahead: this pipeline's lane of that thread (0 when its own) */
    af_prepare reader_prep;          /* what that thread prepares with (workers: for all of them) */
    af_queued frag_q;                /* read ahead: the head fragment, prepared here (the ring is read-only) */
    int frag_ready;                  /* frag_q holds the head entry, prepared */
    uint8_t *frag_payload;           /* read ahead: payload copy of a fragment prepared here */
    uint8_t *payloads;               /* payload meters: AF_QUEUE payload copies (libpcap reuses its buffer) */
    uint64_t pulled;                 /* packets taken from libpcap (af_pump_some reports its share) */
    char error[PCAP_ERRBUF_SIZE + 256];
};

static int check_config(const af_config *cfg, char *error, size_t n) {
    if (cfg->max_flows == 0 || cfg->headers_per_flow > AF_MAX_HEADERS_PER_FLOW) {
        snprintf(error, n, "max_flows must be >= 1 and headers <= %d", AF_MAX_HEADERS_PER_FLOW);
        return AF_ERR_CONFIG;
    }
    if (cfg->defragment &&
        (cfg->max_fragment_datagrams == 0 || cfg->max_fragment_datagrams > AF_MAX_FRAGMENT_DATAGRAMS ||
         cfg->max_fragments_per_datagram == 0 || cfg->max_fragments_per_datagram > AF_MAX_FRAGMENTS_PER_DATAGRAM ||
         cfg->max_datagram_size < AF_MIN_DATAGRAM_SIZE || cfg->max_datagram_size > AF_MAX_DATAGRAM_SIZE ||
         cfg->max_fragment_memory < AF_MIN_FRAGMENT_MEMORY)) {
        snprintf(error, n, "defragment bounds out of range");
        return AF_ERR_CONFIG;
    }
    if (cfg->reassemble && (cfg->max_stream_bytes == 0 || cfg->max_stream_bytes > AF_MAX_STREAM_BYTES ||
                            cfg->max_reassembly_memory < AF_MIN_REASSEMBLY_MEMORY)) {
        snprintf(error, n, "max_stream_bytes must be 1..2**30 and max_reassembly_memory >= 1 MiB");
        return AF_ERR_CONFIG;
    }
    return AF_OK;
}
_Static_assert(AF_MIN_FRAGMENT_MEMORY == AF_DEFRAG_BLOCK, "the fragment pool holds at least one block");

void af_pipeline_close(af_pipeline *p) {
    if (!p) return;
    if (!p->ahead_shared) af_readahead_free(p->ahead);   /* else its owner (worker 0, closed last) does */
    if (!p->ahead) free(p->queue);   /* else the queue is a lane of the reading thread's */
    af_source_close(&p->src);
    free(p->frag_payload);
    free(p->payloads);
    af_table_free(&p->table);
    af_early_free(&p->early);
    af_defrag_free(p->defrag);
    af_meters_close(&p->meters);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* What both kinds of source share once the source is open: the table, stages and clocks. */
static int finish_open(af_pipeline *p, char *error, size_t n) {
    const af_config *cfg = &p->cfg;
    p->qmask = AF_QUEUE - 1;
    if (!(p->queue = calloc(AF_RING, sizeof *p->queue))) {
        snprintf(error, n, "out of memory for the packet queue");
        return AF_ERR_NOMEM;
    }
    if (af_table_init(&p->table, cfg->max_flows, cfg->headers_per_flow, cfg->hash_seed) != 0) {
        snprintf(error, n, "out of memory for max_flows=%u (lower it)", cfg->max_flows);
        return AF_ERR_NOMEM;
    }
    af_frag_init(&p->frags, cfg->hash_seed * 31 + 7);
    /* without defragment, later fragments before their first wait for it (early_fragments.h) */
    if (af_early_init(&p->early, cfg->hash_seed * 31 + 7, cfg->defragment ? 0 : cfg->max_fragment_datagrams,
                      cfg->fragment_timeout_ns) != 0) {
        snprintf(error, n, "out of memory for early fragments (lower max_fragment_datagrams)");
        return AF_ERR_NOMEM;
    }
    if (cfg->defragment && !(p->defrag = af_defrag_new(cfg, cfg->hash_seed * 37 + 11, &p->stats, &p->frags))) {
        snprintf(error, n, "out of memory for the defragmenter (lower max_fragment_datagrams, "
                 "max_fragments_per_datagram or max_fragment_memory)");
        return AF_ERR_NOMEM;
    }
    int code = af_meters_open(&p->meters, cfg, &p->stats, error, n);
    if (code == AF_ERR_NOMEM && cfg->reassemble)
        snprintf(error, n, "out of memory for reassembly (lower max_reassembly_memory)");
    if (code != AF_OK) return code;
    if (p->meters.needs_payload && !(p->payloads = malloc((size_t)AF_QUEUE * AF_MAX_PAYLOAD))) {
        snprintf(error, n, "out of memory for the queued packets' payload copies");
        return AF_ERR_NOMEM;
    }
    p->stats.link_type = p->src.dlt;
    p->stats.file_size = p->src.file_size;
    if ((p->meters.decode_flags & AF_DECODE_TUNNELS) && af_table_tunnels(&p->table) != 0) {
        snprintf(error, n, "out of memory for tunnel ids (lower max_flows)");
        return AF_ERR_NOMEM;
    }
    p->prep = (af_prepare){&p->src, &p->table, &p->frags, &p->early, p->defrag, p->meters.needs_payload,
                           p->meters.needs_l3, 1,
                           p->meters.decode_flags | (cfg->check_checksums ? AF_DECODE_CHECKSUMS : 0u), cfg->worker,
                           p->src.live ? 1u : cfg->workers};   /* live: the kernel's fanout picked the flows */
    af_account_init(&p->acc, &p->cfg, (af_emitter){&p->table, &p->meters, &p->stats, NULL});
    p->phase = PHASE_READING;
    return AF_OK;
}

/* A checked config and an empty pipeline for it (*out), or an error code with its message. */
static int pipeline_new(af_pipeline **out, const af_config *cfg, char *error, size_t n) {
    *out = NULL;
    int code = check_config(cfg, error, n);
    if (code != AF_OK) return code;
    af_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(error, n, "out of memory");
        return AF_ERR_NOMEM;
    }
    p->cfg = *cfg;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return AF_OK;
}

/* The source opened (code): the other stages, then *out; else everything is freed. */
static int opened(af_pipeline **out, af_pipeline *p, int code, char *error, size_t n) {
    if (code == AF_OK) code = finish_open(p, error, n);
    if (code != AF_OK) {
        af_pipeline_close(p);
        return code;
    }
    *out = p;
    return AF_OK;
}

int af_pipeline_open_file(af_pipeline **out, const char *path, const char *bpf, const af_config *cfg,
                          char *error, size_t n) {
    *out = NULL;
    af_pipeline *p;
    int code = pipeline_new(&p, cfg, error, n);
    if (code != AF_OK) return code;
    return opened(out, p, af_source_open_file(&p->src, path, bpf, cfg->follow, cfg->libpcap_files, error, n), error, n);
}

int af_pipeline_open_live(af_pipeline **out, const char *device, const char *bpf, const af_config *cfg,
                          int promiscuous, int32_t buffer_bytes, char *error, size_t n) {
    *out = NULL;
    af_pipeline *p;
    int code = pipeline_new(&p, cfg, error, n);
    if (code != AF_OK) return code;
    code = af_source_open_live(&p->src, device, bpf, cfg->snaplen, promiscuous, buffer_bytes, error, n);
    return opened(out, p, code, error, n);
}

/* The clock the kernel stamps captured packets with. */
static uint64_t realtime_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
}

void af_pipeline_stop(af_pipeline *p) {
    if (p->src.live && !atomic_load(&p->stop_requested)) atomic_store(&p->stop_ns, realtime_ns());
    atomic_store(&p->stop_requested, 1);
}
const char *af_pipeline_error(af_pipeline *p) { return p->error; }
int af_pipeline_is_live(const af_pipeline *p) { return p->src.live; }
int af_pipeline_fanout(af_pipeline *p, uint16_t group) { return af_source_fanout(&p->src, group); }
void af_pipeline_discard(af_pipeline *p) {
    af_frame f;
    while (af_source_next(&p->src, &f, p->error, sizeof p->error) == 1) {}
}
int af_pipeline_fd(const af_pipeline *p) { return af_source_fd(&p->src); }
void af_pipeline_lock(af_pipeline *p) { pthread_mutex_lock(&p->mu); }
void af_pipeline_unlock(af_pipeline *p) { pthread_mutex_unlock(&p->mu); }
af_meter_set *af_pipeline_meters(af_pipeline *p) { return &p->meters; }
const af_config *af_pipeline_config(const af_pipeline *p) { return &p->cfg; }
uint32_t af_pipeline_slots_used(const af_pipeline *p) { return p->table.hwm; }
const af_table *af_pipeline_table(const af_pipeline *p) { return &p->table; }
int af_pipeline_started_reading(const af_pipeline *p) { return p->stats.packets_read != 0 || p->ahead; }

/* Gives up datagrams timed out as of now, counted before queue position `at` (defrag.h). Inline:
 * once per packet, and most pipelines do not defragment. */
static inline void defrag_expire(af_pipeline *p, uint32_t at, uint64_t now) {
    if (p->defrag) af_defrag_give_up(p->defrag, at, now);
}

/* Filters and prepares one packet read by the counting thread itself (live sources, or no
 * read-ahead); a flow packet joins the queue with its key and hash. */
static void enqueue(af_pipeline *p, const af_frame *f) {
    uint32_t at = p->queue_head + p->queue_count;
    af_queued *q = &p->queue[at & p->qmask];
    p->pulled++;
    uint8_t *payload_to = p->payloads ? p->payloads + (size_t)(at & (AF_QUEUE - 1)) * AF_MAX_PAYLOAD : NULL;
    if (af_prepare_frame(&p->prep, &p->stats, f, q, at, payload_to)) p->queue_count++;
}

/* Counts the later fragments held for this first fragment (fragments.h), before it: they came
 * first. 0 when the batch ran out of room first (the rest go on the next call). */
static int count_early(af_pipeline *p, const af_queued *first) {
    af_queued q;
    while (af_emit_room(&p->acc.em) > AF_ROOM_PER_PACKET) {
        if (!af_prepare_early(&p->prep, &p->stats, first, &q)) return 1;
        if (!q.foreign) af_account(&p->acc, &q);   /* released in every worker: their tables agree */
    }
    return 0;
}

/* Counts the fragments the defragmenter handed over (datagrams given up, defrag.h) that come
 * before queue position `before` (all of them with `all`). 0 when the batch ran out of room first. */
static int count_unmerged(af_pipeline *p, uint32_t before, int all) {
    af_queued q;
    while (af_emit_room(&p->acc.em) > AF_ROOM_PER_PACKET) {
        if (!af_prepare_unmerged(&p->prep, before, all, &q)) return 1;
        if (!q.foreign) af_account(&p->acc, &q);   /* handed over in every worker: their tables agree */
    }
    return 0;
}

/* Counts the oldest queued packet, after prefetching the flow record of one further back. Inline in
 * count_head: once per packet. */
__attribute__((always_inline)) static inline void count_queued(af_pipeline *p) {
    af_table *t = &p->table;
    if (p->ahead && p->queue_count > 2 * AF_PREFETCH_AHEAD) {   /* read on another core: its bucket too */
        if (p->queue_count > 4 * AF_PREFETCH_AHEAD) {   /* and the entry itself, written over there */
            const char *next = (const char *)&p->queue[(p->queue_head + 4 * AF_PREFETCH_AHEAD) & p->qmask];
            size_t lines = t->headers_per_flow ? sizeof(af_queued) : offsetof(af_queued, raw);
            for (size_t at = 0; at < lines; at += 64) __builtin_prefetch(next + at);
        }
        const af_queued *far = &p->queue[(p->queue_head + 2 * AF_PREFETCH_AHEAD) & p->qmask];
        if (!far->pending && !far->foreign) __builtin_prefetch(&t->buckets[far->hash & t->mask]);
    }
    if (p->queue_count > AF_PREFETCH_AHEAD) {
        const af_queued *ahead = &p->queue[(p->queue_head + AF_PREFETCH_AHEAD) & p->qmask];
        uint32_t s = ahead->pending || ahead->foreign ? AF_NIL : t->buckets[ahead->hash & t->mask];
        if (s != AF_NIL) {   /* the flow's two lines (side entries: see the halfway point below) */
            const char *f = (const char *)af_table_flow(t, s);
            __builtin_prefetch(f);
            __builtin_prefetch(f + 64);
            if (p->meters.n_prefetch) af_meters_prefetch(p->meters.prefetch, p->meters.n_prefetch, s, ahead->sender);
            af_meters_prefetch_state(&p->meters, s);
        }
        /* halfway: the flow and meter state are in cache now, prefetch what they point to (an
         * IPv6 flow's addresses; the TCP entry, when flags other than ACK will touch it) */
        const af_queued *half = &p->queue[(p->queue_head + AF_PREFETCH_AHEAD / 2) & p->qmask];
        int side = !half->pending && (half->key.ver != 4 || (half->p.protocol == 6 && (half->p.tcp_flags & ~AF_TCP_ACK)));
        if (p->meters.n_deep || side) {
            uint32_t h = half->pending || half->foreign ? AF_NIL : t->buckets[half->hash & t->mask];
            if (h != AF_NIL && p->meters.n_deep) af_meters_prefetch(p->meters.deep, p->meters.n_deep, h, half->sender);
            if (h != AF_NIL && side) {
                const af_flow *f = af_table_flow(t, h);
                if (f->key.ver != 4) __builtin_prefetch(af_side_entry(&t->v6, f->key.a[1]));
                if (f->tcp) __builtin_prefetch(af_side_entry(&t->tcp, f->tcp));
            }
        }
    }
    const af_queued *q = p->frag_ready ? &p->frag_q : &p->queue[p->queue_head & p->qmask];
    if (p->defrag && !count_unmerged(p, p->queue_head, 0)) return;
    if (q->p.frag == AF_FRAG_FIRST && p->early.held && !count_early(p, q)) return;
    p->frag_ready = 0;
    p->queue_head++;
    p->queue_count--;
    if (!q->foreign) af_account(&p->acc, q);   /* another worker's flow: it moved the clock, that is all */
}

static void ahead_release(af_pipeline *p) { af_readahead_release(p->ahead, p->lane, p->queue_head); }

/* With a reading thread: what it read becomes the queue; the packet at the head is prepared if
 * it is a fragment (in packet order). Returns 1 to go on counting (a packet at the head, or none
 * left at all: the phase moved on), 0 to end this pump with *status: AF_OK when nothing is read
 * ahead yet (wait with af_pipeline_wait, outside the lock), AF_MORE after max_packets. */
static int take_read_ahead(af_pipeline *p, uint32_t *n, uint32_t max_packets, int *status) {
    af_readahead *r = p->ahead;
    for (;;) {
        if (p->queue_count == 0) {
            ahead_release(p);
            int done;
            uint64_t clock;
            p->queue_count = af_readahead_available(r, p->lane, p->queue_head, &done, &clock);
            if (p->queue_count == 0) {
                /* workers: nothing of this one's flows was read before the reader's clock, so
                 * its flows end by that time now, as the other workers' packets would end them
                 * with one shared ring (af_reap: the same flows whatever times it ran at) */
                if (clock > p->now_ns) p->now_ns = clock;
                if (af_reap_due(&p->table, &p->cfg, p->now_ns) &&
                    af_reap(&p->acc.em, &p->cfg, p->now_ns, AF_ROOM_PER_PACKET)) {
                    *status = AF_MORE;
                    return 0;
                }
                if (!done) {
                    *status = AF_OK;
                    return 0;
                }
                if (p->phase == PHASE_READING) {
                    p->phase = PHASE_DRAINING;
                    if (!atomic_load(&p->stop_requested)) p->flush_reason = af_readahead_flush_reason(r);
                    const char *error = af_readahead_error(r);
                    if (error[0]) snprintf(p->error, sizeof p->error, "%s", error);
                }
                return 1;
            }
        }
        if (*n >= max_packets) {
            *status = AF_MORE;
            return 0;
        }
        const af_queued *q = &p->queue[p->queue_head & p->qmask];
        defrag_expire(p, p->queue_head, q->ts);
        if (q->pending && !p->frag_ready) {   /* a fragment: prepared here, in packet order, in a copy */
            af_queued *f = &p->frag_q;
            *f = *q;
            f->pending = 0;
            f->decoded = af_decode(f->dlt, q->payload, f->caplen, &f->p, p->prep.decode_flags);
            if (!af_prepare_packet(&p->prep, &p->stats, f, q->payload, p->frag_payload)) {
                p->queue_head++;
                p->queue_count--;
                continue;
            }
            p->frag_ready = 1;
        }
        ++*n;
        return 1;
    }
}

static void stopped(af_pipeline *p) {
    p->phase = PHASE_DRAINING;
    p->flush_reason = AF_END_STOP;
}

/* The counting thread's own reading: one packet read into the queue. 1 when a packet was read
 * (queued or put aside), 0 when none was (*drained: none right now; else the source ended). */
__attribute__((always_inline)) static inline int read_one(af_pipeline *p, int stopping, int *drained) {
    af_frame f;
    int r = af_source_next(&p->src, &f, p->error, sizeof p->error);
    if (r == 1) {
        enqueue(p, &f);
        if (stopping && f.ts_ns > atomic_load(&p->stop_ns)) stopped(p);   /* came after it */
        return 1;
    }
    if (r == 0) {
        *drained = 1;        /* live source, or a followed file: nothing to read right now */
        /* live: the kernel hands a ring block over AF_LIVE_LATENCY_MS after its first packet
         * at the latest: until then, packets from before the stop may still come */
        if (stopping && realtime_ns() > atomic_load(&p->stop_ns) + AF_STOP_GRACE_NS) stopped(p);
    } else {
        if (r == -2) p->stats.read_errors++;
        p->phase = PHASE_DRAINING;
        p->flush_reason = AF_END_EOF;
    }
    return 0;
}

/* Counts the packet at the head of the queue (queue_count > 0) after moving the clock to it and
 * ending the flows due by then. 0 when the batch has no room for that (the pump returns AF_MORE). */
__attribute__((always_inline)) static inline int count_head(af_pipeline *p, af_emitter *em) {
    const af_queued *head = &p->queue[p->queue_head & p->qmask];
    /* clock: the newest time read before it, other workers' packets too (read ahead) */
    uint64_t ts = head->ts > head->clock ? head->ts : head->clock;
    if (ts > p->now_ns) p->now_ns = ts;
    if ((af_reap_due(&p->table, &p->cfg, p->now_ns) && af_reap(em, &p->cfg, p->now_ns, AF_ROOM_PER_PACKET)) ||
        af_emit_room(em) <= AF_ROOM_PER_PACKET)
        return 0;
    count_queued(p);
    return 1;
}

/* Out-of-line copies for the pump's start and end (filling the queue, draining it): the steady
 * loop has its own, inline. */
__attribute__((noinline)) static int read_one_filling(af_pipeline *p, int stopping, int *drained) {
    return read_one(p, stopping, drained);
}
__attribute__((noinline)) static int count_head_draining(af_pipeline *p, af_emitter *em) { return count_head(p, em); }

static int pump_locked(af_pipeline *p, uint32_t max_packets, af_batch *out) {
    if (out->capacity < AF_ROOM_PER_PACKET + 1 ||
        (uint64_t)out->header_capacity < (uint64_t)out->capacity * p->cfg.headers_per_flow) {
        snprintf(p->error, sizeof p->error, "batch too small for headers_per_flow");
        return AF_ERR_CONFIG;
    }
    if (p->meters.count && !af_meters_batch_ready(&p->meters, out)) {
        snprintf(p->error, sizeof p->error, "batch without room for meter data (af_batch_meters_alloc)");
        return AF_ERR_CONFIG;
    }
    af_emitter *em = &p->acc.em;
    em->out = out;
    /* Files stop at once; a live source first reads what its ring holds from before the stop
     * (below): a signal loses no packet that had arrived. Queued packets were read: still counted. */
    int stopping = atomic_load(&p->stop_requested);
    if (stopping && p->phase == PHASE_READING && !p->src.live) stopped(p);
    /* live workers: pumped by their own thread, not the event loop's reaper: flows end on wall-clock
     * time here (as af_pipeline_expire does for one worker) */
    if (p->src.live && p->cfg.workers > 1 && p->phase == PHASE_READING) {
        uint64_t wall = realtime_ns();
        if (wall > p->now_ns) p->now_ns = wall;
        if (af_reap_due(&p->table, &p->cfg, p->now_ns) && af_reap(em, &p->cfg, p->now_ns, AF_ROOM_PER_PACKET))
            return AF_MORE;
        defrag_expire(p, p->queue_head + p->queue_count, p->now_ns);
        af_early_expire(&p->early, &p->stats, p->now_ns);
    }
    uint32_t n = 0;
    int drained = 0;                 /* live: the interface had nothing more; do not ask again */
    for (;;) {
        int status;
        if (p->ahead && (p->phase == PHASE_READING || p->phase == PHASE_DRAINING) &&
            !take_read_ahead(p, &n, max_packets, &status))
            return status;
        /* keep the queue full while reading, so each packet waits a few before it is counted */
        while (!p->ahead && p->phase == PHASE_READING && !drained && p->queue_count < AF_QUEUE && n < max_packets)
            n += read_one_filling(p, stopping, &drained);
        /* the steady state of the counting thread's own reading, the queue full: each packet
         * counted makes room for one read. The order of this loop's two steps, its tests out. */
        if (!p->ahead && p->queue_count == AF_QUEUE && n < max_packets && p->phase == PHASE_READING && !drained) {
            do {
                if (!count_head(p, em)) return AF_MORE;
                if (p->queue_count == AF_QUEUE) continue;   /* not counted (no room): count_head ends it */
                n += read_one(p, stopping, &drained);
            } while (p->queue_count == AF_QUEUE && n < max_packets && p->phase == PHASE_READING && !drained);
            continue;   /* the queue is no longer full: reading fills it first, as above */
        }
        if (p->queue_count == 0) {
            if (p->phase == PHASE_READING) return drained ? AF_OK : AF_MORE;
            if (p->phase == PHASE_DRAINING) {
                p->phase = PHASE_FLUSHING;
                if (p->defrag) af_defrag_flush(p->defrag);   /* incomplete datagrams: given up */
                af_early_flush(&p->early, &p->stats);          /* early fragments: orphans */
            }
            if (p->phase == PHASE_FLUSHING) {
                /* what the last give-ups handed over, before the flows end */
                if (p->defrag && !count_unmerged(p, 0, 1)) return AF_MORE;
                if (!af_flush(em, p->flush_reason)) return AF_MORE;
                p->phase = PHASE_DONE;
            }
            return AF_DONE;
        }
        if (!count_head_draining(p, em)) return AF_MORE;
    }
}

int af_pipeline_pump(af_pipeline *p, uint32_t max_packets, af_batch *out) {
    pthread_mutex_lock(&p->mu);
    int status = pump_locked(p, max_packets, out);
    if (p->ahead) ahead_release(p);
    pthread_mutex_unlock(&p->mu);
    return status;
}

int af_pipeline_pump_some(af_pipeline *p, uint32_t max_packets, af_batch *out) {
    af_batch_clear(out);
    pthread_mutex_lock(&p->mu);
    uint64_t pulled = p->pulled, bytes = p->stats.bytes_read;
    int status = pump_locked(p, max_packets, out);
    /* what the call read tells the live reader how fast the capture ring fills */
    out->packets = (uint32_t)(p->pulled - pulled);
    out->bytes = p->stats.bytes_read - bytes;
    pthread_mutex_unlock(&p->mu);
    af_pipeline_finish(p, out);
    return status;
}

uint32_t af_pipeline_room(af_pipeline *p, af_batch *out) {
    pthread_mutex_lock(&p->mu);
    af_emitter em = p->acc.em;
    em.out = out;
    uint32_t r = af_emit_room(&em);
    pthread_mutex_unlock(&p->mu);
    return r;
}

void af_pipeline_finish(af_pipeline *p, af_batch *out) {
    if (!p->meters.count) return;
    pthread_mutex_lock(&p->mu);
    af_meters_finish_batch(&p->meters, &p->table, out);
    pthread_mutex_unlock(&p->mu);
}

int af_pipeline_batch_alloc(af_pipeline *p, af_batch *b, uint32_t capacity) {
    return af_meters_batch_alloc(&p->meters, &p->cfg, b, capacity);
}

void af_pipeline_prefault(af_pipeline *p, af_batch *b, uint64_t usual) { af_meters_prefault(&p->meters, b, usual); }
void af_pipeline_stop_prefault(af_pipeline *p) { af_meters_stop(&p->meters); }

int af_pipeline_read_ahead(af_pipeline *p, af_pipeline *reader, uint32_t consumers) {
    /* only before reading began: the queue is the counting thread's until then */
    if (p->src.live || p->ahead || p->queue_count != 0 || p->phase != PHASE_READING) return AF_OK;
    if (p->payloads && !p->frag_payload && !(p->frag_payload = malloc(AF_MAX_PAYLOAD))) return AF_ERR_NOMEM;
    p->prep.prefetch_bucket = 0;   /* counting runs on another core: it prefetches for itself */
    p->qmask = AF_RING - 1;
    if (reader && reader != p) {   /* workers: consumer of worker 0's thread, reading its lane */
        if (!reader->ahead) return AF_ERR_CONFIG;
        free(p->queue);
        p->lane = p->cfg.worker;
        p->queue = af_readahead_queue(reader->ahead, p->lane);
        p->ahead = reader->ahead;
        p->ahead_shared = 1;
        return AF_OK;
    }
    /* it prepares every packet for every worker: nothing is foreign to it, every copy is made;
     * but for one share of a file's flows (flow_share: one consumer, cfg.workers > 1) it prepares
     * as that share, marking the others' packets foreign and copying nothing of them */
    p->reader_prep = p->prep;
    p->reader_prep.worker = consumers == 1 ? p->cfg.worker : 0;
    p->reader_prep.workers = consumers == 1 ? p->cfg.workers : 1;
    /* defragmenting, each worker gives datagrams up on every packet's time: every packet to each */
    int code = af_readahead_start(&p->ahead, &p->src, &p->reader_prep, &p->stop_requested, consumers,
                                  consumers > 1 && p->defrag);
    if (code != AF_OK) {
        p->prep.prefetch_bucket = 1;
        p->qmask = AF_QUEUE - 1;
        return code;
    }
    free(p->queue);
    p->queue = af_readahead_queue(p->ahead, 0);
    return AF_OK;
}

int af_pipeline_wait(af_pipeline *p) {
    if (p->ahead) return af_readahead_wait(p->ahead, p->lane, p->queue_head, &p->stop_requested);
    if (p->src.live) {   /* live workers: until packets come, or a ring block's latency (then reap) */
        struct pollfd fd = {af_source_fd(&p->src), POLLIN, 0};
        poll(&fd, 1, AF_LIVE_LATENCY_MS);
        return 1;
    }
    if (!af_source_following(&p->src)) return 0;
    af_source_wait(&p->src);   /* the pump found nothing new: only a followed file gets here */
    return 1;
}

int af_pipeline_expire(af_pipeline *p, uint64_t now_ns, af_batch *out) {
    af_batch_clear(out);
    pthread_mutex_lock(&p->mu);
    af_emitter *em = &p->acc.em;
    em->out = out;
    if (now_ns > p->now_ns) p->now_ns = now_ns;
    int waiting = p->phase == PHASE_READING ? af_reap(em, &p->cfg, p->now_ns, 0) : 0;
    if (p->phase == PHASE_READING) defrag_expire(p, p->queue_head + p->queue_count, p->now_ns);
    if (p->phase == PHASE_READING) af_early_expire(&p->early, &p->stats, p->now_ns);
    if (p->meters.count) af_meters_finish_batch(&p->meters, &p->table, out);
    pthread_mutex_unlock(&p->mu);
    return waiting ? AF_MORE : AF_OK;
}

uint64_t af_pipeline_next_deadline(af_pipeline *p) {
    pthread_mutex_lock(&p->mu);
    uint64_t best = af_next_expiry(&p->table, &p->cfg);
    pthread_mutex_unlock(&p->mu);
    return best;
}

int af_pipeline_lookup(af_pipeline *p, const af_key *key, af_record *out) {
    pthread_mutex_lock(&p->mu);
    uint32_t s = af_table_find(&p->table, key, af_key_hash(&p->table, key), 0);
    if (s != AF_NIL) af_record_fill(&p->table, s, out);
    pthread_mutex_unlock(&p->mu);
    return s != AF_NIL;
}

uint32_t af_pipeline_snapshot(af_pipeline *p, uint32_t *cursor, af_record *out, uint32_t capacity) {
    uint32_t n = 0;
    af_table *t = &p->table;
    pthread_mutex_lock(&p->mu);
    while (n < capacity && *cursor < t->hwm) {
        uint32_t slot = ++*cursor;
        af_flow *f = af_table_flow(t, slot);
        if (f->state & AF_ST_LIVE) af_record_fill(t, slot, &out[n++]);
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

uint64_t af_pipeline_packets_read(af_pipeline *p) {
    pthread_mutex_lock(&p->mu);
    uint64_t n = p->stats.packets_read;
    pthread_mutex_unlock(&p->mu);
    if (p->ahead) {
        af_stats s;
        memset(&s, 0, sizeof s);
        af_readahead_add_stats(p->ahead, &s, 0);
        n += s.packets_read;
    }
    return n;
}

void af_pipeline_stats(af_pipeline *p, af_stats *out) {
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    out->last_ns = p->now_ns;
    out->active_flows = p->table.count;
    out->fragments_tracked = p->frags.tracked;
    out->fragment_table_evictions = p->frags.evictions;
    af_source_kernel_stats(&p->src, out);
    int reading = p->phase == PHASE_READING;
    out->file_offset = !reading ? out->file_size : !p->ahead ? af_source_offset(&p->src) : 0;
    /* what the reading thread counted (it publishes every AF_RING_WAKE packets) */
    if (p->ahead) af_readahead_add_stats(p->ahead, out, reading);
    pthread_mutex_unlock(&p->mu);
}
