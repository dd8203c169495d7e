/* Stream search (aioflow grep) as a meter: the stream patterns (match.h) run over what reassembly
 * puts in order, read through reassembly's stream-consumer hook (stream.h). A flow's first match
 * per record becomes a chunk of kind AF_CHUNK_MATCH, emitted after the flow's data chunks.
 *
 * Not on at open: af_set_stream_patterns turns it on (af_meters_enable, reassembly on, before
 * reading starts), so without patterns it is not in the meter set and costs nothing. */
#ifndef AIOFLOW_STREAM_SEARCH_H
#define AIOFLOW_STREAM_SEARCH_H
#include "flowtable.h"
#include "match.h"
#include "meter.h"
#include "stream.h"

extern const af_meter af_meter_stream_search;

/* Searches s's streams with m from now on (takes m; t says which endpoint is the client). The
 * first call subscribes to s; a later one replaces the patterns. AF_OK or AF_ERR_CONFIG (no
 * consumer room left on s). */
int af_stream_search_start(void *ctx, af_streams *s, const af_table *t, af_matcher *m);

#endif
