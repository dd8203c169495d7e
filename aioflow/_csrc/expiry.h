/* Expiry: which flows are due (idle, FIN/RST), ending them oldest first as batch room allows,
 * the least recently seen flow (eviction, flush), and the next deadline (live reaping). */
#ifndef AIOFLOW_EXPIRY_H
#define AIOFLOW_EXPIRY_H
#include <stdint.h>

#include "aioflow.h"
#include "batch.h"
#include "flowtable.h"

static inline int af_expired(uint64_t now, uint64_t last, uint64_t timeout) {
    return now > last && now - last >= timeout;
}

static inline uint8_t af_closing_reason(const af_flow *f) {
    return (f->state & AF_ST_RST) ? AF_END_RST : AF_END_FIN;
}

uint32_t af_least_recent(const af_table *t);
/* Ends flows whose idle or FIN/RST deadline is at or before now_ns, oldest first, while more than
 * `keep` records of room remain (wall time spent counts in stats->reap_ns). Returns 1 when expired
 * flows still wait for room. */
int af_reap(af_emitter *em, const af_config *cfg, uint64_t now_ns, uint32_t keep);
/* When a flow last seen at `last` is due (af_expired from then on, unless last moves on). */
static inline uint64_t af_deadline(uint64_t last, uint64_t timeout) {
    return last > UINT64_MAX - timeout ? UINT64_MAX : last + timeout;
}
/* Whether af_reap has anything to do at now_ns: the oldest flow of either list is due. Inline,
 * so the common case (nothing due) costs the counting loop one compare: t->due_floor keeps the
 * earlier of the two heads' deadlines, a lower bound while the heads stay (their last times
 * only grow; flowtable.c and a counter reset clear it). */
static inline int af_reap_due(af_table *t, const af_config *cfg, uint64_t now_ns) {
    if (now_ns < t->due_floor) return 0;
    uint32_t c = t->lists[AF_LIST_CLOSING].head, o = t->lists[AF_LIST_OPEN].head;
    uint64_t lc = c != AF_NIL ? af_flow_last(af_table_flow(t, c)) : 0;
    uint64_t lo = o != AF_NIL ? af_flow_last(af_table_flow(t, o)) : 0;
    if ((c != AF_NIL && af_expired(now_ns, lc, cfg->fin_timeout_ns)) ||
        (o != AF_NIL && af_expired(now_ns, lo, cfg->idle_timeout_ns)))
        return 1;
    uint64_t dc = c != AF_NIL ? af_deadline(lc, cfg->fin_timeout_ns) : UINT64_MAX;
    uint64_t dl = o != AF_NIL ? af_deadline(lo, cfg->idle_timeout_ns) : UINT64_MAX;
    t->due_floor = dc < dl ? dc : dl;
    return 0;
}
/* Ends every flow with `reason`, as room allows. Returns 1 when the table is empty. */
int af_flush(af_emitter *em, uint8_t reason);
/* Epoch ns of the next idle/FIN expiry; 0 when no flow is active. */
uint64_t af_next_expiry(const af_table *t, const af_config *cfg);

#endif
