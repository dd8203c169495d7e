/* Stream search as a meter (stream_search.h): reassembly's in-order bytes and datagrams go through
 * the matcher (match.h); a flow's first match waits, its text in reassembly's arena (so it counts
 * in max_reassembly_memory), until the flow's chunks leave, where it follows the data chunks. */
#define _DEFAULT_SOURCE   /* munmap under -std=c11 */
#include "stream_search.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "arena.h"

_Static_assert(AF_MATCH_TEXT <= AF_STREAM_CONSUMER_CHUNK, "a match's text fits the batch room a flow has");

typedef struct {
    af_hit hit;                   /* the flow's match waiting for its chunk (text in `text`) */
    af_chain text;
    uint8_t pending;
} flow_state;

typedef struct {
    af_matcher *matcher;
    af_streams *streams;          /* whose consumer it is (its arena, its chunks) */
    const af_table *table;        /* which endpoint is the client */
    flow_state *flows;            /* per flow slot, reserved */
    uint32_t max_flows;
    int subscribed;
    af_stats *stats;              /* stream_matches, stream_match_memory */
} search;

static size_t flows_bytes(const search *x) { return (size_t)x->max_flows * sizeof(flow_state); }

/* A match was found: it waits for a chunk of its own, like a direction's pending data. */
static void pend(search *x, uint32_t slot, const af_hit *hit, const uint8_t *text) {
    flow_state *f = &x->flows[slot - 1];
    af_arena *a = af_streams_arena(x->streams);
    f->hit = *hit;
    if (af_chain_append(a, &f->text, text, hit->text_length, 0) != hit->text_length) {
        af_chain_free(a, &f->text);   /* no arena room for the text: the match goes without */
        f->hit.text_length = 0;
        f->hit.partial = 1;
    }
    f->pending = 1;
    x->stats->stream_matches++;
    af_streams_pend(x->streams, slot, f->hit.text_length);
}

/* --- reassembly's consumer hooks (stream.h) --- */

static void on_data(void *ctx, uint32_t slot, int endpoint, int datagram, uint64_t off, const uint8_t *data,
                    uint32_t n) {
    search *x = ctx;
    int side = endpoint != af_table_flow(x->table, slot)->src_idx;
    af_hit hit;
    uint8_t text[AF_MATCH_TEXT];
    if (af_matcher_data(x->matcher, slot, endpoint, side, datagram, off, data, n, &hit, text)) pend(x, slot, &hit, text);
}

static void on_stream_end(void *ctx, uint32_t slot, int ending) {
    search *x = ctx;
    if (!ending) {
        af_matcher_split(x->matcher, slot);
        return;
    }
    af_hit hit;
    uint8_t text[AF_MATCH_TEXT];
    if (af_matcher_end(x->matcher, slot, &hit, text)) pend(x, slot, &hit, text);
    af_matcher_reset(x->matcher, slot);   /* the search states it still holds go now */
}

static void on_chunks(void *ctx, const af_table *t, uint32_t slot, af_batch *out) {
    search *x = ctx;
    flow_state *f = &x->flows[slot - 1];
    if (!f->pending) return;
    const af_hit *h = &f->hit;
    f->pending = 0;
    int client = af_table_flow(t, slot)->src_idx;
    af_chunk *c = af_streams_chunk(x->streams, t, slot, h->side ? 1 - client : client, h->text_length, out);
    af_arena *a = af_streams_arena(x->streams);
    uint32_t b = f->text.head, off = 0;
    af_copy_out(a, &b, &off, h->text_length, out->stream_data + c->data_at);
    af_chain_free(a, &f->text);
    c->kind = AF_CHUNK_MATCH;
    c->offset = h->start;
    c->match_end = h->end;
    c->pattern = h->pattern;
    c->partial = h->partial;
}

int af_stream_search_start(void *ctx, af_streams *s, const af_table *t, af_matcher *m) {
    search *x = ctx;
    if (!x->subscribed) {
        af_stream_consumer c = {x, on_data, on_stream_end, on_chunks};
        if (af_streams_subscribe(s, &c) != AF_OK) {
            af_matcher_free(m);
            return AF_ERR_CONFIG;
        }
        x->subscribed = 1;
    }
    af_matcher_free(x->matcher);
    x->matcher = m;
    x->streams = s;
    x->table = t;
    return AF_OK;
}

/* --- the meter --- */

static int wanted(const af_config *cfg) {
    (void)cfg;
    return 0;   /* af_set_stream_patterns turns it on */
}

static void close_meter(void *ctx) {
    search *x = ctx;
    if (!x) return;
    af_matcher_free(x->matcher);   /* match texts live in the arena, which goes with reassembly */
    if (x->flows) munmap(x->flows, flows_bytes(x));
    free(x);
}

static void *open_meter(const af_config *cfg, af_stats *stats) {
    search *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->max_flows = cfg->max_flows;
    x->stats = stats;
    if (!(x->flows = af_reserve(flows_bytes(x)))) {
        close_meter(x);
        return NULL;
    }
    return x;
}

static void on_new(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender) {
    (void)first, (void)sender;
    (void)state;
    search *x = ctx;
    if (!x->matcher) return;   /* not started (af_stream_search_start failed) */
    af_chain_free(af_streams_arena(x->streams), &x->flows[slot - 1].text);   /* normally emitted before */
    af_matcher_reset(x->matcher, slot);
}

static void prefetch(const void *ctx, uint32_t slot, int sender) {
    const search *x = ctx;
    if (x->matcher) af_matcher_prefetch(x->matcher, slot, sender, 0);
}

static void prefetch_deep(const void *ctx, uint32_t slot, int sender) {
    const search *x = ctx;
    if (x->matcher) af_matcher_prefetch(x->matcher, slot, sender, 1);
}

static void batch_finish(void *ctx, const af_table *t, af_batch *b) {
    (void)t, (void)b;
    search *x = ctx;
    if (x->matcher) x->stats->stream_match_memory = af_matcher_memory(x->matcher);
}

const af_meter af_meter_stream_search = {
    .info = {"stream_search", "native stream search: each flow's first stream-pattern match per record, as a "
             "match chunk", "stream patterns (with reassemble)", NULL, 0, 0},
    .wanted = wanted,
    .open = open_meter,
    .close = close_meter,
    .on_new = on_new,
    .prefetch = prefetch,
    .prefetch_deep = prefetch_deep,
    .batch_finish = batch_finish,
};
