/* The pipeline: one source's packets through every stage, in order —
 *   source -> (read-ahead ring) -> prepare -> account (flow table, meters) -> expiry -> batch —
 * driven by whichever thread pumps it (the producer thread, or the event loop for live sources).
 * A mutex makes each call safe from any thread; a pump holds it one chunk of packets at a time.
 * Stop only sets a flag. */
#ifndef AIOFLOW_PIPELINE_H
#define AIOFLOW_PIPELINE_H
#include "readahead.h"   /* first: libpcap's feature macros */

#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "flowtable.h"
#include "meter.h"

typedef struct af_pipeline af_pipeline;

/* AF_OK with *out, or an AF_ERR_* code with the reason in error. */
int af_pipeline_open_file(af_pipeline **out, const char *path, const char *bpf, const af_config *cfg,
                          char *error, size_t error_length);
int af_pipeline_open_live(af_pipeline **out, const char *device, const char *bpf, const af_config *cfg,
                          int promiscuous, int32_t buffer_bytes, char *error, size_t error_length);
void af_pipeline_close(af_pipeline *p);
void af_pipeline_stop(af_pipeline *p);
const char *af_pipeline_error(af_pipeline *p);
int af_pipeline_is_live(const af_pipeline *p);
int af_pipeline_fanout(af_pipeline *p, uint16_t group);   /* live workers: af_source_fanout */
void af_pipeline_discard(af_pipeline *p);   /* live: drops what the capture holds now, uncounted */
int af_pipeline_fd(const af_pipeline *p);          /* live: selectable fd */
void af_pipeline_lock(af_pipeline *p);
void af_pipeline_unlock(af_pipeline *p);
/* The enabled meters (lock held to use them), and the config. */
af_meter_set *af_pipeline_meters(af_pipeline *p);
const af_config *af_pipeline_config(const af_pipeline *p);
uint32_t af_pipeline_slots_used(const af_pipeline *p);   /* flow slots ever handed out */
const af_table *af_pipeline_table(const af_pipeline *p);   /* meters keep it to read flows' client side */
int af_pipeline_started_reading(const af_pipeline *p);

/* Files, before the first pump: a second thread reads and decodes ahead. AF_OK, AF_ERR_NOMEM;
 * nothing (AF_OK) when reading began already or for live sources. reader NULL (or p): p's own
 * thread, for `consumers` pipelines (workers: worker 0's, for all); else p, worker i, takes
 * every packet from reader's thread and ring (started first), as its consumer i. */
int af_pipeline_read_ahead(af_pipeline *p, af_pipeline *reader, uint32_t consumers);
/* Appends to out what up to max_packets more packets end: AF_MORE (call again), AF_OK (nothing
 * to read now: live drained, or read-ahead behind: af_pipeline_wait), AF_DONE, or an error. */
int af_pipeline_pump(af_pipeline *p, uint32_t max_packets, af_batch *out);
/* Live: clears out, pumps, hands the meters' batch data over; out->packets/bytes: what was read. */
int af_pipeline_pump_some(af_pipeline *p, uint32_t max_packets, af_batch *out);
/* Without the lock: until read-ahead has more; a followed file that has not grown: a short nap.
 * Returns 1 when the source is idle (a followed file): hand over what ended so far. */
int af_pipeline_wait(af_pipeline *p);
uint32_t af_pipeline_room(af_pipeline *p, af_batch *out);   /* flows the batch can still take */
void af_pipeline_finish(af_pipeline *p, af_batch *out);     /* before handing a batch over */
int af_pipeline_batch_alloc(af_pipeline *p, af_batch *b, uint32_t capacity);   /* meters' batch room */
void af_pipeline_prefault(af_pipeline *p, af_batch *b, uint64_t usual);
void af_pipeline_stop_prefault(af_pipeline *p);   /* before batch memory is unmapped */

int af_pipeline_expire(af_pipeline *p, uint64_t now_ns, af_batch *out);
uint64_t af_pipeline_next_deadline(af_pipeline *p);
int af_pipeline_lookup(af_pipeline *p, const af_key *key, af_record *out);
uint32_t af_pipeline_snapshot(af_pipeline *p, uint32_t *cursor, af_record *out, uint32_t capacity);
void af_pipeline_stats(af_pipeline *p, af_stats *out);
uint64_t af_pipeline_packets_read(af_pipeline *p);

#endif
