/* Flow accounting: one prepared packet into its flow — ending the flow first when it expired,
 * splitting the record at the active timeout or a full counter, creating it (evicting the least
 * recent flow at max_flows), then the per-direction counters, TCP flags and state, the recency
 * lists, kept headers (headers=N) and the enabled meters; last, a slicing rule (max_packets,
 * max_bytes) may end the flow with this packet. */
#ifndef AIOFLOW_ACCOUNT_H
#define AIOFLOW_ACCOUNT_H
#include <stdint.h>

#include "aioflow.h"
#include "batch.h"
#include "packet.h"

typedef struct {
    af_emitter em;
    const af_config *cfg;
    uint64_t next_id;
    uint32_t id_step;                /* workers: ids are worker + k * workers, unique across them */
    uint32_t touch_shift;            /* an open flow moves in its recency list on its first packet in
                                        each window of 2^touch_shift ns of packet time */
    int sliced;                      /* max_packets or max_bytes set: flows may end by AF_END_CUSTOM */
} af_accounting;

void af_account_init(af_accounting *a, const af_config *cfg, af_emitter em);
/* Counts q into its flow. Needs AF_ROOM_PER_PACKET records of room in a->em.out. */
void af_account(af_accounting *a, const af_queued *q);

#endif
