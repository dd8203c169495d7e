/* The read-ahead thread of a file source read by af_start's thread: it reads (libpcap), filters,
 * decodes, keys and copies packets into a ring of af_queued entries (AF_RING of them, their
 * payload or fragment copies in AF_RING_BYTES), ahead of the counting thread, so reading and
 * counting run on two cores. Fragments go through whole: the counting thread prepares them, in
 * packet order. It keeps its own counters (what it filters or cannot decode), published every
 * AF_RING_WAKE packets. Single producer; one consumer, or with workers one per worker, each
 * taking every entry (its own flows' and, for the clock, the others'): an entry is reused once
 * every consumer is done with it. The ring indexes are atomics, a mutex and two condition
 * variables only put a side to sleep. */
#ifndef AIOFLOW_READAHEAD_H
#define AIOFLOW_READAHEAD_H
#include "prepare.h"   /* first: libpcap's feature macros */

#include <stdatomic.h>
#include <stdint.h>

#include "aioflow.h"
#include "packet.h"

#define AF_RING 4096u                /* packets read ahead (power of two) */
#define AF_RING_BYTES (32u << 20)    /* their payload (or fragment) copies */
#define AF_RING_WAKE 256u            /* the counting thread sleeps until this many are read ahead */

typedef struct af_readahead af_readahead;

/* Starts the thread over `ring` (AF_RING entries) for `consumers` (1..AF_MAX_WORKERS) consumers,
 * numbered from 0. AF_OK or AF_ERR_NOMEM. `stop`: set by af_stop. */
int af_readahead_start(af_readahead **out, af_source *src, const af_prepare *pp, af_queued *ring, atomic_int *stop,
                       uint32_t consumers);
void af_readahead_free(af_readahead *r);   /* stops and joins it */

/* The counting side. Entries published past `head` (the first not yet taken); *done is loaded
 * first, so when it says done every entry is counted in. */
uint32_t af_readahead_available(af_readahead *r, uint32_t head, int *done);
/* Consumer `c` is done with the entries before `head`: their ring bytes may be reused once every
 * consumer is. */
void af_readahead_release(af_readahead *r, uint32_t c, const af_queued *ring, uint32_t head);
/* Sleeps (no engine lock held) until AF_RING_WAKE entries past head are read, or all, or stop. */
/* Returns 1 when the reader is idle (a followed file that has not grown). */
int af_readahead_wait(af_readahead *r, uint32_t head, const atomic_int *stop);
/* Once done: why reading ended (AF_END_EOF or AF_END_STOP) and the read error, if any (""). */
uint8_t af_readahead_flush_reason(const af_readahead *r);
const char *af_readahead_error(const af_readahead *r);
/* Adds the thread's published counters to out; `reading`: also its file offset. */
void af_readahead_add_stats(af_readahead *r, af_stats *out, int reading);

#endif
