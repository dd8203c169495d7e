/* Backing reserved memory ahead of its use, in a thread of its own at idle priority.
 *
 * The first write to an anonymous page makes the kernel allocate and zero it. On a VM whose host
 * backs guest memory lazily that costs ~3 ms per MiB (measured on the benchmark VM), and with
 * reassembly on it fell on the counting thread, the bottleneck: the stream arena's 256 MiB took
 * ~1 s of it, the producer's batch buffers ~0.3 s more. This thread populates such memory just
 * before it is needed, so the counting thread mostly finds pages ready. At SCHED_IDLE it only
 * takes CPU time nothing else wants; when it gets none, the user faults the pages in itself, as
 * before. MADV_POPULATE_WRITE never changes memory, so it is safe beside the thread using it.
 *
 * Regions: the first (af_prefault_start) is kept populated `ahead` bytes past its user's
 * high-water mark, never further nor past its end; each added one is populated once, up to the
 * size given. */
#ifndef AIOFLOW_PREFAULT_H
#define AIOFLOW_PREFAULT_H
#include <stddef.h>

#define AF_PREFAULT_REGIONS 8

typedef struct af_prefault af_prefault;

/* Starts populating [base, base + min(ahead, bytes)). NULL when the system cannot (no thread, no
 * MADV_POPULATE_WRITE): the memory is then backed on first use, as usual. */
af_prefault *af_prefault_start(void *base, size_t bytes, size_t ahead);
/* Also populate [base, base + bytes) (once). Nothing when p is NULL or has no room for it. The
 * memory must stay mapped until af_prefault_stop. */
void af_prefault_add(af_prefault *p, void *base, size_t bytes);
/* The first region's user has touched `used` bytes of it: keep `ahead` past that populated.
 * Cheap unless it moves the target, so call it at most every few hundred KiB. */
void af_prefault_used(af_prefault *p, size_t used);
/* Stops and joins the thread (within one step of work). Before any region is unmapped. */
void af_prefault_stop(af_prefault *p);

#endif
