/* An ended (or snapshot) flow's fixed record, filled from its flow-table slot. The lowest stage
 * that writes into what Python reads: meters (a chunk's flow snapshot) and the batch hand-off
 * both use it, so neither has to call up into the pipeline. */
#ifndef AIOFLOW_RECORD_H
#define AIOFLOW_RECORD_H
#include <stdint.h>

#include "aioflow.h"
#include "flowtable.h"

/* Every field but end_reason and the header span (the batch hand-off sets those). */
void af_record_fill(const af_table *t, uint32_t slot, af_record *r);

#endif
