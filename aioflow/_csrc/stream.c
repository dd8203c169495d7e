#define _DEFAULT_SOURCE   /* mmap flags under -std=c11 */
#include "stream.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "prefault.h"
#include "record.h"

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

typedef af_chain chain;

/* An out-of-order segment: a chain whose first block starts with this header. */
typedef struct {
    uint64_t off;                 /* stream offset */
    uint32_t len;
    uint32_t next;                /* next segment (its first block), by offset */
} seg_hdr;

typedef struct {
    chain kept;                   /* kept stream (datagrams: framed) */
    chain over;                   /* chunk data past the bound, until it is emitted */
    chain holes;                  /* (offset, length) uint64 pairs */
    uint32_t ooo;                 /* first out-of-order segment */
    uint32_t ooo_bytes;
    uint32_t emit_blk, emit_off;  /* kept-chain position of the first byte not in a chunk yet */
    uint32_t emitted;             /* kept bytes already in chunks */
    uint32_t hole_count;
    uint64_t next_off;            /* stream offset of the next in-order byte */
    uint64_t chunk_off;           /* stream offset of the first pending chunk byte */
    uint64_t ts;                  /* newest packet that added data */
    uint32_t base_seq, last_ack;  /* base_seq: sequence number of stream offset 0 */
    uint8_t started, has_ack, truncated, stopped, pending;
    uint8_t syn_seen;             /* the stream started at a SYN (else mid-stream) */
    uint8_t handed_over;          /* some of it left in a chunk or an active-timeout record */
} dir_state;

typedef struct {
    dir_state d[2];               /* by key endpoint */
    uint32_t dirty_next;          /* the batch's list of flows with chunk data pending */
    uint8_t in_dirty;
} flow_state;

struct af_streams {
    af_arena arena;               /* every stored byte (arena.h) */
    flow_state *flows;            /* per flow slot, reserved */
    uint32_t max_flows;
    uint32_t dirty_head;
    uint32_t pending_dirs;
    uint64_t pending_bytes;
    uint32_t max_stream;
    int chunks;
    int discard;                  /* keep nothing for the records (cfg.discard_streams) */
    af_stats *stats;
    uint64_t flow_bytes;          /* af_streams_flow_bytes of this bound and arena */
    const af_batch *room_batch;   /* af_streams_room's last quotient, for `need` in [min, max] */
    uint64_t room_capacity, room_need_min, room_need_max, room_slots;
    uint32_t n_consumers;
    af_stream_consumer consumer[AF_STREAM_CONSUMERS_MAX];   /* stream.h: meters reading the streams */
};


static size_t flows_bytes(const af_streams *s) { return (size_t)s->max_flows * sizeof(flow_state); }

af_streams *af_streams_new(const af_config *cfg, af_stats *stats) {
    af_streams *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->max_flows = cfg->max_flows;
    s->max_stream = cfg->max_stream_bytes;
    s->chunks = cfg->stream_chunks != 0;
    s->discard = cfg->discard_streams != 0;
    s->stats = stats;
    s->flows = af_reserve(flows_bytes(s));
    if (!s->flows || af_arena_init(&s->arena, cfg->max_reassembly_memory, stats) != AF_OK) {
        af_streams_free(s);
        return NULL;
    }
    s->flow_bytes = af_streams_flow_bytes(s->max_stream, (uint64_t)s->arena.max_blocks * AF_STREAM_BLOCK);
    return s;
}

void af_streams_prefault(af_streams *s, void *base, size_t bytes) {
    if (s) af_prefault_add(s->arena.prefault, base, bytes);
}

void af_streams_stop_prefault(af_streams *s) {
    if (!s) return;
    af_arena_stop_prefault(&s->arena);
}

void af_streams_free(af_streams *s) {
    if (!s) return;
    af_streams_stop_prefault(s);
    af_arena_free(&s->arena);
    if (s->flows) munmap(s->flows, flows_bytes(s));
    free(s);
}



/* --- batch room --- */

/* Batch bytes one more flow end (both kept streams, which the arena bounds too, and their holes,
 * 8-aligned) or one more packet (its pending chunk data) may take. */
uint64_t af_streams_flow_bytes(uint64_t max_stream, uint64_t arena) {
    uint64_t kept = 2 * max_stream < arena ? 2 * max_stream : arena;
    return kept + 2 * (16ull * AF_STREAM_MAX_HOLES + 16) + AF_STREAM_MAX_PAYLOAD + AF_STREAM_CONSUMER_CHUNK + 16;
}

/* Asked before every packet: the quotient below is kept with the range of `need` that gives it,
 * so a 64-bit division is done only when the batch's bytes cross a multiple of flow_bytes. */
uint32_t af_streams_room(void *ctx, const af_batch *b) {
    af_streams *s = ctx;
    uint64_t chunks_free = (uint64_t)b->chunk_capacity - b->chunk_count;
    uint64_t chunk_slots = chunks_free > s->pending_dirs ? (chunks_free - s->pending_dirs) / 3 : 0;
    uint64_t need = b->stream_data_used + s->pending_bytes + 8ull * s->pending_dirs;
    uint64_t cap = b->stream_data_capacity;
    if (b != s->room_batch || cap != s->room_capacity || need < s->room_need_min || need > s->room_need_max) {
        uint64_t fb = s->flow_bytes, left = cap > need ? cap - need : 0, q = left / fb;
        /* the same q for left in [q * fb, q * fb + fb - 1] */
        uint64_t most_left = q * fb + fb - 1, least_left = q * fb;
        s->room_need_min = cap > most_left ? cap - most_left : 0;
        s->room_need_max = q ? cap - least_left : UINT64_MAX;
        s->room_batch = b;
        s->room_capacity = cap;
        s->room_slots = q;
    }
    uint64_t byte_slots = s->room_slots;
    uint64_t r = chunk_slots < byte_slots ? chunk_slots : byte_slots;
    return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

/* --- per direction --- */

static inline uint32_t pending_of(const dir_state *d) { return d->kept.len - d->emitted + d->over.len; }

/* The flow goes on the batch's list of flows with something to put in chunks. */
static void mark_dirty(af_streams *s, flow_state *fs, uint32_t slot) {
    if (fs->in_dirty) return;
    fs->in_dirty = 1;
    fs->dirty_next = s->dirty_head;
    s->dirty_head = slot;
}

static void mark_pending(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d, uint32_t added) {
    if (!s->chunks || !added) return;
    if (!d->pending) {
        d->pending = 1;
        s->pending_dirs++;
        mark_dirty(s, fs, slot);
    }
    s->pending_bytes += added;
}

/* --- stream consumers (stream.h) --- */

int af_streams_subscribe(af_streams *s, const af_stream_consumer *c) {
    if (s->n_consumers == AF_STREAM_CONSUMERS_MAX) return AF_ERR_CONFIG;
    s->consumer[s->n_consumers++] = *c;
    return AF_OK;
}

af_arena *af_streams_arena(af_streams *s) { return &s->arena; }

/* A consumer's chunk waits like a direction's pending data (counted in the batch room). */
void af_streams_pend(af_streams *s, uint32_t slot, uint32_t bytes) {
    s->pending_dirs++;
    s->pending_bytes += bytes;
    mark_dirty(s, &s->flows[slot - 1], slot);
}

/* In-order bytes of endpoint `d` at d->next_off go to the consumers. */
static void consume(af_streams *s, const flow_state *fs, uint32_t slot, const dir_state *d, const uint8_t *data,
                    uint32_t n, int datagram) {
    int endpoint = (int)(d - fs->d);
    for (uint32_t k = 0; k < s->n_consumers; k++)
        s->consumer[k].data(s->consumer[k].ctx, slot, endpoint, datagram, d->next_off, data, n);
}

static void stop_keeping(dir_state *d) {
    d->stopped = 1;
    d->truncated = 1;
}

/* Appends `head` (hn bytes) then `data` (n bytes) whole, or leaves the chain as it was. */
static int append_whole(af_streams *s, chain *c, const void *head, uint32_t hn, const uint8_t *data, uint32_t n) {
    chain before = *c;
    if (af_chain_append(&s->arena, c, head, hn, 1) == hn && af_chain_append(&s->arena, c, data, n, 1) == n) return 1;
    if (before.tail) {
        af_blocks_free(&s->arena, s->arena.next[before.tail - 1]);
        s->arena.next[before.tail - 1] = 0;
    } else {
        af_blocks_free(&s->arena, c->head);
    }
    *c = before;
    return 0;
}

/* Bytes that continue the stream at d->next_off: TCP payload, or one datagram (frame: its
 * 4-byte length). Kept up to max_stream_bytes; past it (or once keeping stopped) only chunks
 * get them, held until the batch ends. */
static void keep(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d, const uint8_t *data, uint32_t n,
                 const uint8_t *frame) {
    uint32_t hn = frame ? 4 : 0;
    uint32_t kept_now = 0;
    s->stats->stream_bytes += n;
    if (s->n_consumers) consume(s, fs, slot, d, data, n, frame != NULL);
    if (s->chunks && pending_of(d) == 0) d->chunk_off = d->next_off;
    if (s->discard) {
        /* by choice: only chunks take the bytes */
    } else if (d->stopped) {
        s->stats->stream_bytes_truncated += n;
    } else {
        uint32_t room = s->max_stream - d->kept.len;
        if (frame) {   /* a datagram is kept whole or not at all */
            if (n + hn > room) {
                s->stats->stream_bytes_truncated += n;
                stop_keeping(d);
            } else if (append_whole(s, &d->kept, frame, hn, data, n)) {
                kept_now = n + hn;
            } else {
                s->stats->stream_bytes_dropped += n;
                stop_keeping(d);
                return;
            }
        } else {
            uint32_t k = n < room ? n : room;
            kept_now = af_chain_append(&s->arena, &d->kept, data, k, 1);
            if (kept_now < k) {   /* the arena is full: the rest is lost, for chunks too */
                s->stats->stream_bytes_dropped += n - kept_now;
                stop_keeping(d);
                mark_pending(s, fs, slot, d, kept_now);
                return;
            }
            if (k < n) {
                s->stats->stream_bytes_truncated += n - k;
                stop_keeping(d);
            }
        }
    }
    mark_pending(s, fs, slot, d, kept_now);
    if (!s->chunks || kept_now == n + hn) return;
    const uint8_t *rest = frame ? data : data + kept_now;
    uint32_t rest_n = frame ? n : n - kept_now;
    if (append_whole(s, &d->over, frame, hn, rest, rest_n)) mark_pending(s, fs, slot, d, rest_n + hn);
    else s->stats->stream_bytes_dropped += rest_n;
}

static void add_hole(af_streams *s, dir_state *d, uint64_t off, uint64_t len) {
    s->stats->stream_holes++;
    s->stats->stream_hole_bytes += len;
    if (d->stopped) return;   /* the kept stream already ended before it */
    uint64_t pair[2] = {off, len};
    if (d->hole_count >= AF_STREAM_MAX_HOLES || !append_whole(s, &d->holes, pair, sizeof pair, NULL, 0)) {
        s->stats->stream_holes_dropped++;
        stop_keeping(d);
        return;
    }
    d->hole_count++;
}

static seg_hdr *seg(const af_streams *s, uint32_t b) { return (seg_hdr *)(void *)af_blk(&s->arena, b); }

/* Appends the first out-of-order segment to the stream (it starts at next_off) and frees it. */
static void take_segment(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d) {
    uint32_t b = d->ooo;
    seg_hdr h = *seg(s, b);
    d->ooo = h.next;
    d->ooo_bytes -= h.len;
    uint32_t off = sizeof(seg_hdr), left = h.len;
    while (b) {
        uint32_t k = AF_STREAM_BLOCK - off;
        if (k > left) k = left;
        if (k) keep(s, fs, slot, d, af_blk(&s->arena, b) + off, k, NULL);
        d->next_off += k;
        left -= k;
        off = 0;
        uint32_t n = s->arena.next[b - 1];
        af_block_free(&s->arena, b);
        b = n;
    }
}

static void drain(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d) {
    while (d->ooo && seg(s, d->ooo)->off == d->next_off) take_segment(s, fs, slot, d);
}

/* Moves past the missing data before the first buffered segment. */
static void skip_hole(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d) {
    uint64_t to = seg(s, d->ooo)->off;
    add_hole(s, d, d->next_off, to - d->next_off);
    d->next_off = to;
    drain(s, fs, slot, d);
}

/* Buffers [off, off + n) where no byte is buffered yet (first wins). Returns 0 without memory. */
static int buffer_piece(af_streams *s, dir_state *d, uint32_t *link, uint64_t off, const uint8_t *data, uint32_t n) {
    chain c = {0, 0, 0, 0};
    seg_hdr h = {off, n, *link};
    if (af_chain_append(&s->arena, &c, (const uint8_t *)&h, sizeof h, 0) != sizeof h ||
        af_chain_append(&s->arena, &c, data, n, 0) != n) {
        af_blocks_free(&s->arena, c.head);
        return 0;
    }
    *link = c.head;
    d->ooo_bytes += n;
    return 1;
}

static void buffer_segment(af_streams *s, dir_state *d, uint64_t from, const uint8_t *data, uint64_t to) {
    uint32_t *link = &d->ooo;
    uint64_t at = from;
    while (at < to) {
        seg_hdr *h = *link ? seg(s, *link) : NULL;
        if (h && h->off + h->len <= at) {
            link = &h->next;
            continue;
        }
        uint64_t end = h && h->off < to ? h->off : to;
        if (end > at) {
            if (!buffer_piece(s, d, link, at, data + (at - from), (uint32_t)(end - at))) {
                s->stats->stream_segments_dropped++;
                return;
            }
            link = &seg(s, *link)->next;
            at = end;
        }
        if (!h) break;
        if (h->off + h->len > at && h->off <= at) {   /* already buffered: the first copy wins */
            uint64_t covered = (h->off + h->len < to ? h->off + h->len : to) - at;
            s->stats->stream_retransmitted_bytes += covered;
            at += covered;
        }
    }
}


/* A stream picked up mid-stream meets data from before its first segment (reordering): as
 * tcpflow does, the stream is extended at the front, while none of it was handed over yet and
 * it fits. When a gap separates the new data from the old start, what was in order so far waits
 * as an out-of-order segment, so that the gap can still fill. Returns 0 when it cannot be done
 * (the data is then ignored). */
static int prepend(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d, const uint8_t *data,
                   uint32_t n, uint32_t shift) {
    uint32_t gap = shift - n;
    if (d->syn_seen || d->handed_over || d->stopped || d->over.len || (uint64_t)d->kept.len + n > s->max_stream ||
        (gap && d->hole_count))
        return 0;
    chain kept = {0, 0, 0, 0}, seg_chain = {0, 0, 0, 0};
    seg_hdr h = {shift, d->kept.len, d->ooo};
    if (af_chain_append(&s->arena, &kept, data, n, 1) != n ||
        (gap && d->kept.len && af_chain_append(&s->arena, &seg_chain, (const uint8_t *)&h, sizeof h, 1) != sizeof h)) {
        af_chain_free(&s->arena, &kept);
        af_chain_free(&s->arena, &seg_chain);
        return 0;
    }
    uint32_t old_pending = pending_of(d);
    for (uint32_t b = d->ooo; b; b = seg(s, b)->next) seg(s, b)->off += shift;
    if (gap) {   /* the old data becomes the first out-of-order segment */
        if (d->kept.len) {
            d->ooo_bytes += d->kept.len;
            af_chain_move(&s->arena, &seg_chain, &d->kept);
            d->ooo = seg_chain.head;
        }
        d->next_off = n;
    } else {
        af_chain_move(&s->arena, &kept, &d->kept);
        d->next_off += shift;
        uint32_t left = d->hole_count;   /* holes move back with the data after them */
        for (uint32_t b = d->holes.head; b && left; b = s->arena.next[b - 1])
            for (uint32_t i = 0; i < AF_STREAM_BLOCK / 16 && left; i++, left--)
                ((uint64_t *)(void *)af_blk(&s->arena, b))[2 * i] += shift;
    }
    d->kept = kept;
    d->base_seq -= shift;
    d->emit_blk = d->emit_off = d->emitted = 0;
    s->stats->stream_bytes += n;
    if (s->chunks) {
        d->chunk_off = 0;
        if (d->kept.len >= old_pending) mark_pending(s, fs, slot, d, d->kept.len - old_pending);
        else s->pending_bytes -= old_pending - d->kept.len;
    }
    return 1;
}

static void tcp_data(af_streams *s, flow_state *fs, uint32_t slot, dir_state *d, uint32_t seq,
                     const uint8_t *data, uint32_t n) {
    int32_t rel = (int32_t)(seq - (d->base_seq + (uint32_t)d->next_off));
    int64_t start = (int64_t)d->next_off + rel;
    uint64_t end_off = (uint64_t)(start + (int64_t)n);
    if (start < 0) {   /* before the stream's start */
        uint32_t front = (int64_t)end_off < 0 ? n : (uint32_t)-start;   /* the bytes before it */
        if (start < -(int64_t)s->max_stream || !prepend(s, fs, slot, d, data, front, (uint32_t)-start)) {
            if ((int64_t)end_off <= 0) return;
            data += -start;
            start = 0;
        } else {   /* now at the front: the rest overlaps what was there (first wins) */
            if ((int64_t)end_off <= 0) return;
            data += -start;
            end_off += (uint64_t)-start;
            start = (int64_t)-start;
        }
    }
    uint64_t at = (uint64_t)start;
    while (at < end_off) {
        if (at < d->next_off) {   /* received already: the first copy wins */
            uint64_t dup = (end_off < d->next_off ? end_off : d->next_off) - at;
            s->stats->stream_retransmitted_bytes += dup;
            data += dup;
            at += dup;
            continue;
        }
        if (at == d->next_off) {
            uint64_t lim = end_off;
            if (d->ooo && seg(s, d->ooo)->off < lim) lim = seg(s, d->ooo)->off;
            uint32_t k = (uint32_t)(lim - at);
            keep(s, fs, slot, d, data, k, NULL);
            d->next_off += k;
            data += k;
            at += k;
            drain(s, fs, slot, d);
            continue;
        }
        /* a gap before this data: buffer it, or first move past the oldest gap to make room */
        if (d->ooo && d->ooo_bytes + (end_off - at) > s->max_stream) {
            s->stats->stream_forced++;
            skip_hole(s, fs, slot, d);
            continue;
        }
        buffer_segment(s, d, at, data, end_off);
        return;
    }
}

void af_streams_prefetch(const void *ctx, uint32_t slot, int sender) {
    const af_streams *s = ctx;
    const char *d = (const char *)&s->flows[slot - 1].d[sender];
    for (size_t at = 0; at < sizeof(dir_state); at += 64) __builtin_prefetch(d + at);
}

void af_streams_reset(af_streams *s, uint32_t slot) {
    flow_state *fs = &s->flows[slot - 1];
    for (int i = 0; i < 2; i++) {   /* normally freed when the flow was emitted */
        dir_state *d = &fs->d[i];
        af_chain_free(&s->arena, &d->kept);
        af_chain_free(&s->arena, &d->over);
        af_chain_free(&s->arena, &d->holes);
        af_blocks_free(&s->arena, d->ooo);
        memset(d, 0, sizeof *d);
    }
}

void af_streams_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)state;
    af_streams *s = ctx;
    uint32_t slot = mp->slot, n = mp->payload_len;
    const af_packet *p = mp->p;
    const uint8_t *payload = mp->payload;
    uint64_t ts = mp->ts;
    int sender = mp->sender;
    flow_state *fs = &s->flows[slot - 1];
    dir_state *d = &fs->d[sender];
    if (p->protocol != 6) {   /* UDP and every other IP protocol: datagrams, each kept whole */
        uint8_t frame[4];
        memcpy(frame, &n, 4);
        s->stats->stream_datagrams++;
        d->started = 1;
        d->ts = ts;
        keep(s, fs, slot, d, payload, n, frame);
        d->next_off += n;
        return;
    }
    uint8_t fl = p->tcp_flags;
    if (fl & TCP_ACK) {
        d->last_ack = p->tcp_ack;
        d->has_ack = 1;
    }
    uint32_t seq = p->tcp_seq;
    if (fl & TCP_SYN) seq++;   /* the SYN takes one sequence number */
    if (!d->started) {
        if (!(fl & TCP_SYN) && n == 0) return;
        d->base_seq = seq;
        d->started = 1;
        d->syn_seen = (fl & TCP_SYN) != 0;
    }
    if (n == 0 || (fl & TCP_RST)) return;
    d->ts = ts;
    tcp_data(s, fs, slot, d, seq, payload, n);
}

/* --- into the batch --- */

static uint64_t take_bytes(af_batch *out, uint32_t n, int align8) {
    if (align8) out->stream_data_used = (out->stream_data_used + 7) & ~7ull;
    uint64_t at = out->stream_data_used;
    out->stream_data_used += n;
    return at;
}

/* A new chunk of endpoint d's direction, with `n` bytes of room at c->data_at. */
static af_chunk *new_chunk(const af_table *t, uint32_t slot, const dir_state *d, int endpoint, uint32_t n,
                           af_batch *out) {
    const af_flow *f = af_table_flow(t, slot);
    af_chunk *c = &out->chunks[out->chunk_count++];
    memset(c, 0, sizeof *c);
    af_record_fill(t, slot, &c->flow);
    c->data_at = take_bytes(out, n, 0);
    c->length = n;
    c->ts_ns = d->ts;
    c->before_record = out->count;
    c->next_seq = d->base_seq + (uint32_t)d->next_off;
    c->last_ack = d->last_ack;
    c->has_ack = d->has_ack;
    c->direction = (uint8_t)(endpoint != f->src_idx);
    c->protocol = f->key.proto;
    return c;
}

af_chunk *af_streams_chunk(af_streams *s, const af_table *t, uint32_t slot, int endpoint, uint32_t bytes,
                           af_batch *out) {
    s->pending_dirs--;
    s->pending_bytes -= bytes;
    return new_chunk(t, slot, &s->flows[slot - 1].d[endpoint], endpoint, bytes, out);
}

static void emit_chunk(af_streams *s, const af_table *t, uint32_t slot, int endpoint, af_batch *out) {
    dir_state *d = &s->flows[slot - 1].d[endpoint];
    if (!d->pending) return;
    uint32_t n = pending_of(d);
    d->handed_over = 1;
    d->pending = 0;
    s->pending_dirs--;
    s->pending_bytes -= n;
    if (n == 0) return;
    af_chunk *c = new_chunk(t, slot, d, endpoint, n, out);
    uint8_t *dst = out->stream_data + c->data_at;
    uint32_t from_kept = d->kept.len - d->emitted;
    if (from_kept) {
        if (!d->emit_blk) {
            d->emit_blk = d->kept.head;
            d->emit_off = 0;
        }
        af_copy_out(&s->arena, &d->emit_blk, &d->emit_off, from_kept, dst);
        d->emitted += from_kept;
    }
    if (d->over.len) {
        uint32_t b = d->over.head, off = 0;
        af_copy_out(&s->arena, &b, &off, d->over.len, dst + from_kept);
        af_chain_free(&s->arena, &d->over);
    }
    c->offset = d->chunk_off;
    s->stats->stream_chunks++;
}

void af_streams_enable_chunks(af_streams *s, uint32_t slots) {
    if (s->chunks) return;
    /* what was kept so far counts as handed over: chunks start with the data that comes next */
    for (uint32_t slot = 1; slot <= slots; slot++) {
        for (int i = 0; i < 2; i++) {
            dir_state *d = &s->flows[slot - 1].d[i];
            if (!d->started) continue;
            d->emitted = d->kept.len;
            d->emit_blk = d->kept.tail;
            d->emit_off = d->kept.tail_fill;
            d->handed_over = 1;
        }
    }
    s->chunks = 1;
}

void af_streams_finish_batch(af_streams *s, const af_table *t, af_batch *out) {
    while (s->dirty_head) {
        uint32_t slot = s->dirty_head;
        flow_state *fs = &s->flows[slot - 1];
        s->dirty_head = fs->dirty_next;
        fs->in_dirty = 0;
        af_streams_chunks_of(s, t, slot, out);
    }
}

void af_streams_chunks_of(af_streams *s, const af_table *t, uint32_t slot, af_batch *out) {
    emit_chunk(s, t, slot, 0, out);
    emit_chunk(s, t, slot, 1, out);
    for (uint32_t k = 0; k < s->n_consumers; k++) s->consumer[k].chunks(s->consumer[k].ctx, t, slot, out);
}

void af_streams_emit(af_streams *s, const af_table *t, uint32_t slot, af_batch *out, uint32_t record,
                     int ending) {
    flow_state *fs = &s->flows[slot - 1];
    const af_flow *f = af_table_flow(t, slot);
    if (ending) {   /* the flow ends: move past every gap so buffered data is not lost */
        for (int i = 0; i < 2; i++)
            while (fs->d[i].ooo) skip_hole(s, fs, slot, &fs->d[i]);
    }
    for (uint32_t k = 0; k < s->n_consumers; k++) s->consumer[k].end(s->consumer[k].ctx, slot, ending);
    af_streams_chunks_of(s, t, slot, out);
    af_stream_info *info = &out->streams[record];
    memset(info, 0, sizeof *info);
    int kept = !s->discard;
    for (int dir = 0; dir < 2; dir++) {
        dir_state *d = &fs->d[dir == 0 ? f->src_idx : 1 - f->src_idx];
        info->kept[dir] = (uint8_t)kept;
        info->truncated[dir] = d->truncated;
        info->data_length[dir] = d->kept.len;
        info->hole_count[dir] = d->hole_count;
        /* handed over: keeping starts again (active timeout) or the state is freed (end) */
        info->data_at[dir] = take_bytes(out, d->kept.len, 0);
        af_chain_move_out(&s->arena, &d->kept, out->stream_data + info->data_at[dir]);
        info->holes_at[dir] = take_bytes(out, d->holes.len, 1);
        af_chain_move_out(&s->arena, &d->holes, out->stream_data + info->holes_at[dir]);
        d->emit_blk = d->emit_off = d->emitted = 0;
        d->hole_count = 0;
        d->truncated = 0;
        d->stopped = 0;
        d->handed_over = 1;
    }
    if (ending) af_streams_reset(s, slot);
}
