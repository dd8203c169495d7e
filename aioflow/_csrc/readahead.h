/* The read-ahead thread of a file source read by af_start's thread: it reads (libpcap), filters,
 * decodes, keys and copies packets into a ring of af_queued entries (AF_RING of them, their
 * payload or fragment copies in AF_RING_BYTES), ahead of the counting thread, so reading and
 * counting run on two cores. Fragments go through whole: the counting thread prepares them, in
 * packet order. It keeps its own counters (what it filters or cannot decode), published every
 * AF_RING_WAKE packets. Single producer. With workers, one ring per worker ("lane", Suricata's
 * autofp): a packet goes to the lane of the worker its flow's hash picks, and only there, with
 * the clock (the newest time read so far, of every lane's packets) in the entry; the clock is
 * also published as a watermark for a worker whose lane is empty. Fragments (each worker keeps
 * every fragment table) and, when defragmenting (datagrams given up on every packet's time),
 * every packet go to every lane. Entries are published a batch at a time (one release-store per
 * lane per AF_PUBLISH packets, and before the thread waits or idles). The ring indexes are
 * atomics, on cache lines of their own; a mutex and two condition variables only put a side to
 * sleep. */
#ifndef AIOFLOW_READAHEAD_H
#define AIOFLOW_READAHEAD_H
#include "prepare.h"   /* first: libpcap's feature macros */

#include <stdatomic.h>
#include <stdint.h>

#include "aioflow.h"
#include "packet.h"

#define AF_RING 4096u                /* packets read ahead per lane (power of two) */
#define AF_RING_BYTES (32u << 20)    /* their payload (or fragment) copies, all lanes together */
#define AF_RING_WAKE 256u            /* the counting thread sleeps until this many are read ahead */
#define AF_PUBLISH 32u               /* entries are published after this many packets read */

typedef struct af_readahead af_readahead;

/* Starts the thread for `consumers` (1..AF_MAX_WORKERS) consumers, numbered from 0, each with its
 * lane of AF_RING entries (af_readahead_queue). AF_OK or AF_ERR_NOMEM. `stop`: set by af_stop.
 * `every_lane`: every packet goes to every lane (defragmenting workers). */
int af_readahead_start(af_readahead **out, af_source *src, const af_prepare *pp, atomic_int *stop,
                       uint32_t consumers, int every_lane);
void af_readahead_free(af_readahead *r);   /* stops and joins it; frees the lanes */
af_queued *af_readahead_queue(af_readahead *r, uint32_t c);   /* consumer c's lane */

/* The counting side, consumer c. Entries published past `head` (the first not yet taken); *done
 * is loaded first, so when it says done every entry is counted in; *clock (loaded before the
 * lane's entries): the newest time read, a watermark when the lane holds nothing past head. */
uint32_t af_readahead_available(af_readahead *r, uint32_t c, uint32_t head, int *done, uint64_t *clock);
/* Consumer `c` is done with the entries before `head`: their ring bytes may be reused. */
void af_readahead_release(af_readahead *r, uint32_t c, uint32_t head);
/* Sleeps (no engine lock held) until AF_RING_WAKE entries past head are read, or all, or stop,
 * or the reading thread waits for room. Returns 1 when the reader is idle (a followed file that
 * has not grown). */
int af_readahead_wait(af_readahead *r, uint32_t c, uint32_t head, const atomic_int *stop);
/* Once done: why reading ended (AF_END_EOF or AF_END_STOP) and the read error, if any (""). */
uint8_t af_readahead_flush_reason(const af_readahead *r);
const char *af_readahead_error(const af_readahead *r);
/* Adds the thread's published counters to out; `reading`: also its file offset. */
void af_readahead_add_stats(af_readahead *r, af_stats *out, int reading);

#endif
