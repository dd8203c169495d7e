/* Native stream matching (aioflow grep): the in-order bytes of each flow direction run through a
 * Vectorscan/Hyperscan database compiled from the user's regexes — TCP in streaming mode (a match
 * may span segments, found by the bytes that complete it, nothing scanned twice), each UDP
 * datagram alone in block mode. A flow reports its first match, one per record.
 *
 * Built without Vectorscan's headers, af_matcher_new fails with a message saying so. Memory: one
 * Vectorscan stream state per open direction (opened at its first data, closed at the flow's end
 * or first match), plus 512 bytes per flow slot (each endpoint's state and tail; reserved, backed
 * as used). A match's text waits for its batch in the stream arena (stream_search.c). */
#ifndef AIOFLOW_MATCH_H
#define AIOFLOW_MATCH_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"

/* Bytes of a direction kept before its newest data, so a match that began in earlier packets can
 * be reported with its text; and the most text reported for one match. */
#define AF_MATCH_TAIL 224u
#define AF_MATCH_TEXT 512u

typedef struct af_matcher af_matcher;

typedef struct {
    uint64_t start, end;          /* stream offsets (UDP: offsets among the direction's payload bytes) */
    uint32_t pattern;             /* index in its side's pattern list */
    uint32_t text_length;         /* bytes of the match's text held (<= AF_MATCH_TEXT) */
    uint8_t side;                 /* 0: client, 1: server */
    uint8_t partial;              /* the text is not the whole match (began before the tail, or too long) */
} af_hit;

/* patterns[side]: count[side] NUL-terminated regexes (MULTILINE; flags: enum af_match_flag).
 * NULL on failure with `error` saying which pattern and why (`*unsupported` = 1: a valid regex
 * the library cannot run, e.g. a backreference, so the caller may search another way). */
af_matcher *af_matcher_new(uint32_t max_flows, const char *const *patterns[2], const uint32_t count[2],
                           uint32_t flags, char *error, size_t error_length, int *unsupported);
void af_matcher_free(af_matcher *m);

/* A new flow took `slot`: whatever it held is dropped. */
void af_matcher_reset(af_matcher *m, uint32_t slot);
/* The flow's record was emitted at the active timeout: its stream goes on; one that had matched
 * may match again in the next record. */
void af_matcher_split(af_matcher *m, uint32_t slot);
/* In-order data sent by key endpoint `endpoint` (which is `side`: 0 client, 1 server) at stream
 * offset `off`; after missing bytes a search starts afresh (no match spans a hole). Returns 1 when
 * it completes the flow's first match (then `hit` and `text` are filled and the flow is not
 * searched again in this record). */
int af_matcher_data(af_matcher *m, uint32_t slot, int endpoint, int side, int datagram, uint64_t off,
                    const uint8_t *data, uint32_t n, af_hit *hit, uint8_t *text);
/* The flow leaves the table: matches waiting on what would follow ($, \b) settle. Returns 1 with
 * hit/text filled when one does; its search states are freed (af_matcher_reset follows). */
int af_matcher_end(af_matcher *m, uint32_t slot, af_hit *hit, uint8_t *text);
/* A packet from `endpoint` of the flow in `slot` comes soon: its state lines (load_state 0), then,
 * once those are in cache, the search state they point to (1). */
void af_matcher_prefetch(const af_matcher *m, uint32_t slot, int endpoint, int load_state);
/* Vectorscan stream state bytes in use now (counted in stream memory). */
uint64_t af_matcher_memory(const af_matcher *m);

#endif
