/* The timeline meter's one entry beside the meter interface: a copy of what it counted. */
#ifndef AIOFLOW_TIMELINE_H
#define AIOFLOW_TIMELINE_H
#include "meter.h"

extern const af_meter af_meter_timeline;

/* ctx: the timeline meter's context (af_meters_ctx); the caller holds the pipeline lock. */
void af_timeline_copy(const void *ctx, af_timeline *out);

#endif
