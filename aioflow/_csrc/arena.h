/* The stream arena: fixed blocks of AF_STREAM_BLOCK bytes in one reservation (backed as first
 * used, populated ahead by a prefault thread), linked into chains; freed blocks are reused, so
 * reassembly never mallocs per packet. A few blocks are held back for in-order data. */
#ifndef AIOFLOW_ARENA_H
#define AIOFLOW_ARENA_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "prefault.h"

#define AF_STREAM_BLOCK 1024u       /* bytes of data per arena block */

typedef struct {
    uint32_t head, tail;          /* block numbers, 1-based; 0: none */
    uint32_t len;                 /* bytes in the chain */
    uint32_t tail_fill;           /* bytes used in the tail block */
} af_chain;

typedef struct {
    uint8_t *mem;                 /* max_blocks blocks, reserved; backed as first used */
    af_prefault *prefault;        /* backs mem just past hwm ahead of use, or NULL */
    uint32_t *next;               /* chain links, per block */
    uint32_t max_blocks, hwm, free_head, used;
    af_stats *stats;              /* stream_memory, stream_peak_memory */
} af_arena;

/* Address space of `bytes`, backed as touched (MAP_NORESERVE); NULL when refused. */
void *af_reserve(size_t bytes);
int af_arena_init(af_arena *a, uint64_t bytes, af_stats *stats);   /* AF_OK or AF_ERR_NOMEM */
void af_arena_free(af_arena *a);
void af_arena_stop_prefault(af_arena *a);

static inline uint8_t *af_blk(const af_arena *a, uint32_t b) { return a->mem + (size_t)(b - 1) * AF_STREAM_BLOCK; }
/* A free block (0 when none; may_use_reserve: the held-back ones too). */
uint32_t af_block_new(af_arena *a, int may_use_reserve);
void af_block_free(af_arena *a, uint32_t b);
void af_blocks_free(af_arena *a, uint32_t b);          /* b and every block linked after it */
void af_chain_free(af_arena *a, af_chain *c);
/* Appends up to n bytes; returns how many fit in the arena. */
uint32_t af_chain_append(af_arena *a, af_chain *c, const uint8_t *data, uint32_t n, int may_use_reserve);
/* Copies n bytes from position (*b, *off) on, advancing it. */
void af_copy_out(const af_arena *a, uint32_t *b, uint32_t *off, uint32_t n, uint8_t *dst);
/* Copies a whole chain to dst and frees its blocks on the way. */
void af_chain_move_out(af_arena *a, af_chain *c, uint8_t *dst);
/* Moves chain `from` to the end of chain `to`. */
void af_chain_move(af_arena *a, af_chain *to, af_chain *from);

#endif
