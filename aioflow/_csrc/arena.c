#define _DEFAULT_SOURCE   /* mmap flags under -std=c11 */
#include "arena.h"

#include <string.h>
#include <sys/mman.h>

/* Blocks kept back for in-order data, so that draining out-of-order segments (copy a block, then
 * free it) never fails for want of the one block it needs before it frees one. */
#define RESERVE_BLOCKS 16u
/* The arena is populated this far past its high-water mark (prefault.h), checked every
 * PREFAULT_EVERY new blocks. */
#define PREFAULT_AHEAD ((size_t)32 << 20)
#define PREFAULT_EVERY 512u

void *af_reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= (2u << 20)) madvise(p, bytes, MADV_HUGEPAGE);   /* blocks are touched at random */
#endif
    return p;
}

static size_t mem_bytes(const af_arena *a) { return (size_t)a->max_blocks * AF_STREAM_BLOCK; }
static size_t next_bytes(const af_arena *a) { return (size_t)a->max_blocks * sizeof(uint32_t); }

int af_arena_init(af_arena *a, uint64_t bytes, af_stats *stats) {
    memset(a, 0, sizeof *a);
    uint64_t blocks = bytes / AF_STREAM_BLOCK;
    a->max_blocks = (uint32_t)(blocks > UINT32_MAX - 1 ? UINT32_MAX - 1 : blocks);
    a->stats = stats;
    a->mem = af_reserve(mem_bytes(a));
    a->next = af_reserve(next_bytes(a));
    if (!a->mem || !a->next) {
        af_arena_free(a);
        return AF_ERR_NOMEM;
    }
    a->prefault = af_prefault_start(a->mem, mem_bytes(a), PREFAULT_AHEAD);
    return AF_OK;
}

void af_arena_stop_prefault(af_arena *a) {
    af_prefault_stop(a->prefault);
    a->prefault = NULL;
}

void af_arena_free(af_arena *a) {
    af_arena_stop_prefault(a);
    if (a->mem) munmap(a->mem, mem_bytes(a));
    if (a->next) munmap(a->next, next_bytes(a));
    a->mem = NULL;
    a->next = NULL;
}

uint32_t af_block_new(af_arena *s, int may_use_reserve) {
    uint32_t left = s->max_blocks - s->used;
    if (left == 0 || (!may_use_reserve && left <= RESERVE_BLOCKS)) return 0;
    uint32_t b;
    if (s->free_head) {
        b = s->free_head;
        s->free_head = s->next[b - 1];
    } else {
        b = ++s->hwm;
        if (b % PREFAULT_EVERY == 0) af_prefault_used(s->prefault, (size_t)b * AF_STREAM_BLOCK);
    }
    s->next[b - 1] = 0;
    s->used++;
    uint64_t bytes = (uint64_t)s->used * AF_STREAM_BLOCK;
    s->stats->stream_memory = bytes;
    if (bytes > s->stats->stream_peak_memory) s->stats->stream_peak_memory = bytes;
    return b;
}

void af_block_free(af_arena *s, uint32_t b) {
    s->next[b - 1] = s->free_head;
    s->free_head = b;
    s->used--;
    s->stats->stream_memory = (uint64_t)s->used * AF_STREAM_BLOCK;
}

void af_blocks_free(af_arena *s, uint32_t b) {
    while (b) {
        uint32_t n = s->next[b - 1];
        af_block_free(s, b);
        b = n;
    }
}

void af_chain_free(af_arena *s, af_chain *c) {
    af_blocks_free(s, c->head);
    memset(c, 0, sizeof *c);
}

/* Appends up to n bytes; returns how many fit in the arena. */
uint32_t af_chain_append(af_arena *s, af_chain *c, const uint8_t *data, uint32_t n, int may_use_reserve) {
    uint32_t done = 0;
    while (done < n) {
        if (!c->tail || c->tail_fill == AF_STREAM_BLOCK) {
            uint32_t b = af_block_new(s, may_use_reserve);
            if (!b) break;
            if (c->tail) s->next[c->tail - 1] = b; else c->head = b;
            c->tail = b;
            c->tail_fill = 0;
        }
        uint32_t k = AF_STREAM_BLOCK - c->tail_fill;
        if (k > n - done) k = n - done;
        memcpy(af_blk(s, c->tail) + c->tail_fill, data + done, k);
        c->tail_fill += k;
        c->len += k;
        done += k;
    }
    return done;
}

/* The next block of a chain lies elsewhere in the arena, long out of cache: load its first n
 * bytes while the current one is copied. */
static inline void prefetch_block(const af_arena *s, uint32_t b, uint32_t n) {
    if (n > AF_STREAM_BLOCK) n = AF_STREAM_BLOCK;
    for (uint32_t at = 0; at < n; at += 64) __builtin_prefetch(af_blk(s, b) + at);
}

/* Copies n bytes from position (*b, *off) on, advancing it. */
void af_copy_out(const af_arena *s, uint32_t *b, uint32_t *off, uint32_t n, uint8_t *dst) {
    while (n) {
        if (*off == AF_STREAM_BLOCK) {
            *b = s->next[*b - 1];
            *off = 0;
        }
        uint32_t k = AF_STREAM_BLOCK - *off;
        if (k > n) k = n;
        uint32_t later = n > k ? s->next[*b - 1] : 0;
        if (later) prefetch_block(s, later, n - k);
        memcpy(dst, af_blk(s, *b) + *off, k);
        dst += k;
        *off += k;
        n -= k;
    }
}

/* Copies a whole chain to dst and frees its blocks on the way: one walk of the chain, not two. */
void af_chain_move_out(af_arena *s, af_chain *c, uint8_t *dst) {
    uint32_t n = c->len;
    for (uint32_t b = c->head; b;) {
        uint32_t next = s->next[b - 1];
        uint32_t k = n < AF_STREAM_BLOCK ? n : AF_STREAM_BLOCK;
        if (next) prefetch_block(s, next, n - k);
        memcpy(dst, af_blk(s, b), k);
        dst += k;
        n -= k;
        af_block_free(s, b);
        b = next;
    }
    memset(c, 0, sizeof *c);
}


/* Moves chain `from` to the end of chain `to`, a block at a time (one freed per one taken). */
void af_chain_move(af_arena *s, af_chain *to, af_chain *from) {
    uint32_t left = from->len;
    for (uint32_t b = from->head; b;) {
        uint32_t k = left < AF_STREAM_BLOCK ? left : AF_STREAM_BLOCK;
        uint32_t next = s->next[b - 1];
        af_chain_append(s, to, af_blk(s, b), k, 1);
        af_block_free(s, b);
        left -= k;
        b = next;
    }
    memset(from, 0, sizeof *from);
}
