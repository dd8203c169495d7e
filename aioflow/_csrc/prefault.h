/* Backing reserved memory ahead of its use, in a thread of its own at idle priority.
 *
 * The first write to an anonymous page makes the kernel allocate and zero it. On a VM whose host
 * backs guest memory lazily that costs ~3 ms per MiB (measured on the benchmark VM), and with
 * reassembly on it fell on the counting thread, the bottleneck: the stream arena's 256 MiB took
 * ~1 s of it. This thread populates the memory just past what has been used, so the counting
 * thread mostly finds pages ready. At SCHED_IDLE it only takes CPU time nothing else wants; when it
 * gets none, the user faults the pages in itself, as before. Nothing is ever populated beyond
 * `ahead` bytes past the high-water mark, nor past the reservation. */
#ifndef AIOFLOW_PREFAULT_H
#define AIOFLOW_PREFAULT_H
#include <stddef.h>

typedef struct af_prefault af_prefault;

/* Starts populating [base, base + min(ahead, bytes)). NULL when the system cannot (no thread, no
 * MADV_POPULATE_WRITE): the memory is then backed on first use, as usual. */
af_prefault *af_prefault_start(void *base, size_t bytes, size_t ahead);
/* The user has touched `used` bytes from base on: keep `ahead` past it populated. Cheap unless it
 * moves the target, so call it at most every few hundred KiB. */
void af_prefault_used(af_prefault *p, size_t used);
/* Stops and joins the thread (within one step of work); before the memory is unmapped. */
void af_prefault_stop(af_prefault *p);

#endif
