/* Meters: every per-flow feature beyond the flow table's own counters is one.
 *
 * A meter is an af_meter descriptor (its own .c file) plus one line in meters.h. It has
 *   - a fixed-size state block per flow slot (state_size bytes, zeroed when a flow takes the
 *     slot; the meter set reserves one array per enabled meter, indexed by slot, backed as used);
 *   - optionally a cold state block (cold_size bytes, a second array alike): what the per-packet
 *     hook needs only on rare packets, kept apart so the common packet touches state_size bytes;
 *   - on_new: called when a flow takes a slot, with its first packet;
 *   - on_packet (or on_packet_brief, with fewer arguments): called for every packet counted into a flow;
 *   - on_end: called when the flow's record is emitted (the flow ends, or an active-timeout split:
 *     `ending` says which), writing its fields into its block of the record's meter area;
 *   - its fields (af_meter_field: name, C type, unit, offset in the block), which Python reads
 *     from the compiled module (af_meter_info) to build Flow.meter() and the bulk columns.
 * Optional hooks serve meters with batch-side data (reassembly: stream data and chunks).
 * A meter may also be turned on after open, before reading starts (af_meters_enable: stream
 * search, once stream patterns are set), if it has no record fields, flow state, payload or batch
 * room; and a meter may read another's output through a hook that one offers (reassembly's
 * stream consumers, stream.h), rather than on_packet.
 *
 * Only enabled meters are called and only they take record room: with none enabled, a packet
 * pays one test of the enabled count. Meters never call back into Python nor up into the
 * pipeline: what they need (the flow table, the batch) is handed to them. */
#ifndef AIOFLOW_METER_H
#define AIOFLOW_METER_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "decode.h"
#include "flowtable.h"

/* One packet counted into a flow, as a meter sees it. */
typedef struct {
    uint32_t slot;
    int sender;                      /* key endpoint (0/1) that sent it; af_table_flow()->src_idx is the client */
    int direction;                   /* 0: src->dst (client to server), 1: dst->src */
    uint64_t ts;                     /* packet time, ns */
    const af_packet *p;              /* decoded headers (l3/payload pointers are not valid here) */
    const uint8_t *payload;          /* payload copy (meters with needs_payload), else NULL */
    uint32_t payload_len;
    const uint8_t *l3;               /* meters with needs_l3: the IP packet as captured (headers, then
                                        the payload), l3_len bytes; a first fragment as it is; NULL for
                                        a later fragment not reassembled */
    uint32_t l3_len;
    uint32_t caplen;                 /* bytes captured of the whole frame */
    uint32_t wire_len;               /* the frame's length on the wire (statistics' accounting mode 0) */
    const af_flow *flow;             /* the flow's slot, this packet already counted into it */
    uint64_t sender_last_ns;         /* the sender's latest time before this packet (0: its first) */
} af_meter_packet;

/* A flow's record is being emitted into out->records[record] (it is written just after). */
typedef struct {
    const af_table *table;
    uint32_t slot;
    int ending;                      /* 1: the flow leaves the table; 0: active-timeout split, it goes on */
    af_batch *out;
    uint32_t record;
    uint8_t *block;                  /* the meter's record_size bytes for this record, zeroed (NULL if 0) */
    void *cold;                      /* the flow's cold state block (NULL without cold_size) */
} af_meter_end;

typedef struct af_meter {
    af_meter_info info;              /* name, doc, fields, record_size (api.h: what Python sees) */
    uint32_t state_size;             /* per-flow state bytes (0: none, or the meter keeps its own) */
    /* Per-flow state bytes for this configuration, when they depend on it (splt=N keeps N places);
     * NULL: state_size. Built-in meters only: a loaded meter's size is its descriptor's
     * state_size (aioflow_meter.h is unchanged), and af_meters_enable takes no meter with state. */
    uint32_t (*state_size_for)(const af_config *cfg);
    /* Cold per-flow state bytes (0: none), for a meter with on_packet_brief: what its rare packets
     * need (conn_state: handshakes, teardowns, history). A second array indexed like the state
     * one and zeroed with it, but not prefetched with the flow: with ~100k flows active each line
     * of state a packet touches is a cache miss, so the common packet's state is kept to
     * state_size bytes (one line) and the rest is read only by the packets that need it. */
    uint32_t cold_size;
    int needs_payload;               /* on_packet wants the payload bytes (copied while reading) */
    int needs_l3;                    /* on_packet wants whole IP packets (mp->l3; implies payload copies) */
    unsigned decode_flags;           /* AF_DECODE_* the decoder must do for on_packet (decode.h) */
    /* on_packet reads nothing of its state (it only stores, or returns first on what the flow's
     * slot says): the counting loop does not prefetch the state's lines with the flow's
     * (af_meters_prefetch_state), which would fetch them for every packet. */
    int no_prefetch;
    /* Turned on by a config option of its own (info.option) rather than by name; NULL: by name.
     * A meter that only af_meters_enable turns on returns 0. */
    int (*wanted)(const af_config *cfg);
    /* Meter-wide context (NULL hook: none). open returns NULL without memory. */
    void *(*open)(const af_config *cfg, af_stats *stats);
    void (*close)(void *ctx);
    /* A new flow took the slot; `first` is its first packet (decoded headers only), from key
     * endpoint `sender`, before on_packet sees it: a meter that needs only the first packet needs
     * no on_packet, so costs nothing per packet. */
    void (*on_new)(void *ctx, void *state, uint32_t slot, const af_packet *first, int sender);
    void (*on_packet)(void *ctx, void *state, const af_meter_packet *mp);
    /* Instead of on_packet, for a meter that needs only the decoded headers, the sender (key
     * endpoint) and the time, and no context: called with those in registers, so the counting loop
     * builds no af_meter_packet for it (a cheap meter would pay more for that than for its work).
     * `cold`: the flow's cold state block (cold_size), NULL without one. */
    void (*on_packet_brief)(void *state, void *cold, const af_packet *p, int sender, uint64_t ts);
    /* Instead of either, the statistics meter's: its per-packet work is af_statistics_packet, which
     * the counting loop calls by name with the values it reads (no af_meter_packet to build, no
     * call through a pointer: ~50 instructions a packet, a sixth of what the meter adds). */
    int packet_by_name;
    void (*on_end)(void *ctx, void *state, const af_meter_end *me);
    /* A packet of `sender` in `slot` comes soon: prefetch a few packets ahead (the meter's state),
     * prefetch_deep nearer (what that state points to, in cache by then). Each hook is called only
     * for meters that have it, so a meter without a deep stage costs no second lookup per packet. */
    void (*prefetch)(const void *ctx, uint32_t slot, int sender);
    void (*prefetch_deep)(const void *ctx, uint32_t slot, int sender);
    /* Batch side: room to give a batch of `capacity` records, records it can still take, and
     * what to add when it is handed over; stop: before batch memory is unmapped. */
    int (*batch_alloc)(const af_config *cfg, af_batch *b, uint32_t capacity);
    void (*batch_free)(af_batch *b);
    int (*batch_ready)(const af_batch *b);   /* the batch has this meter's room */
    uint32_t (*batch_room)(void *ctx, const af_batch *b);   /* ctx: it may cache what it computed */
    void (*batch_finish)(void *ctx, const af_table *t, af_batch *b);
    /* Batch memory the counting thread writes soon: back `usual` bytes of it ahead (prefault.h). */
    void (*prefault)(void *ctx, af_batch *b, uint64_t usual);
    void (*stop)(void *ctx);
} af_meter;

/* The registry (meter.c, from meters.h): index i is bit i of af_config.meters. */
uint32_t af_meter_registry_count(void);
const af_meter *af_meter_registry(uint32_t index);

#define AF_METERS_MAX 32

/* The per-packet hooks of the enabled meters, gathered so the counting loop calls them directly. */
typedef struct {
    void (*fn)(void *ctx, void *state, const af_meter_packet *mp);
    void *ctx;
    uint8_t *state;                  /* the meter's state array (slot 1 first), or NULL */
    uint32_t state_size;
} af_packet_hook;

typedef struct {
    void (*fn)(void *state, void *cold, const af_packet *p, int sender, uint64_t ts);
    uint8_t *state;                  /* as in af_packet_hook */
    uint8_t *cold;                   /* the cold state array (slot 1 first), or NULL */
    uint32_t state_size, cold_size;
} af_brief_hook;

typedef struct {
    void (*fn)(const void *ctx, uint32_t slot, int sender);
    const void *ctx;
} af_prefetch_hook;

/* A state array a per-packet hook reads: its flow's block is prefetched with the flow. The array
 * starts on a page, so a block whose size is a multiple of 64 is its size / 64 lines; any other
 * spans at most size / 64 + 2 from its start (the last may be a neighbour's: harmless). */
typedef struct {
    uint8_t *state;
    uint32_t state_size;
    uint32_t lines;                  /* lines to prefetch from a block's start, 64 bytes apart */
} af_hot_state;

typedef struct {
    uint32_t (*fn)(void *ctx, const af_batch *b);
    void *ctx;
} af_room_hook;

/* The enabled meters of one engine, with their state arrays and record-block offsets. The
 * per-packet part (hook counts and the first hooks) comes first, on the cache lines the counting
 * loop reads for every packet; the rest is read per flow or per batch. */
typedef struct {
    uint32_t n_per_packet;           /* n_packet + n_brief: the one test a packet pays with no meter */
    uint32_t n_packet, n_brief, n_prefetch, n_deep, n_room;   /* enabled meters with those hooks (0: nothing to call) */
    uint32_t n_hot;                  /* meters with state and a per-packet hook */
    void *statistics_ctx;            /* the statistics meter (packet_by_name), when on */
    uint8_t *statistics_state;       /* its state array (slot 1 first), NULL when off */
    uint32_t statistics_size;
    af_brief_hook brief[AF_METERS_MAX];
    af_packet_hook packet[AF_METERS_MAX];
    af_prefetch_hook prefetch[AF_METERS_MAX];
    af_prefetch_hook deep[AF_METERS_MAX];
    af_room_hook room[AF_METERS_MAX];
    af_hot_state hot[AF_METERS_MAX];
    uint32_t count;                  /* enabled */
    const af_meter *m[AF_METERS_MAX];
    void *ctx[AF_METERS_MAX];
    uint8_t *state[AF_METERS_MAX];   /* max_flows * state_size[k], reserved */
    uint32_t state_size[AF_METERS_MAX];   /* per-flow state bytes of enabled meter k (state_size_for) */
    uint8_t *cold[AF_METERS_MAX];    /* max_flows * cold_size[k], reserved (NULL: none) */
    uint32_t cold_size[AF_METERS_MAX];
    uint32_t index[AF_METERS_MAX];   /* registry index */
    int32_t offset[AF_METERS_MAX + 1];   /* by registry index: record-block offset, -1 when off */
    uint32_t stride;                 /* record meter-block bytes (0 when no enabled meter has fields) */
    const af_config *cfg;            /* what it was opened with (they outlive it: the pipeline's) */
    af_stats *stats;
    int needs_payload;
    int needs_l3;
    unsigned decode_flags;           /* AF_DECODE_*: the enabled meters' */
    uint32_t loaded_count;           /* meters loaded from libraries (cfg->meter_libraries) */
    struct af_loaded_meter *loaded[AF_METERS_MAX];
} af_meter_set;

/* Enables the meters cfg asks for. AF_OK, AF_ERR_CONFIG (unknown bit; message in error), or
 * AF_ERR_NOMEM. */
int af_meters_open(af_meter_set *s, const af_config *cfg, af_stats *stats, char *error, size_t error_length);
void af_meters_close(af_meter_set *s);
/* The j-th loaded meter's info, or NULL. */
const af_meter_info *af_meters_loaded_info(const af_meter_set *s, uint32_t j);
/* Turns on meter m after open (lock held, before reading starts; nothing if it is on already):
 * for meters without record fields, flow state, payload or batch room. AF_OK, AF_ERR_CONFIG
 * (m cannot be), AF_ERR_NOMEM (message in error). */
int af_meters_enable(af_meter_set *s, const af_meter *m, char *error, size_t error_length);
/* The context of an enabled meter, or NULL when it is off. */
void *af_meters_ctx(const af_meter_set *s, const af_meter *m);

void af_meters_new(af_meter_set *s, uint32_t slot, const af_packet *first, int sender);
void af_meters_end(af_meter_set *s, const af_table *t, uint32_t slot, int ending, af_batch *out, uint32_t record);
void af_meters_finish_batch(af_meter_set *s, const af_table *t, af_batch *b);
int af_meters_batch_alloc(const af_meter_set *s, const af_config *cfg, af_batch *b, uint32_t capacity);
void af_meters_batch_free(af_batch *b);
int af_meters_batch_ready(const af_meter_set *s, const af_batch *b);
void af_meters_prefault(af_meter_set *s, af_batch *b, uint64_t usual);
void af_meters_stop(af_meter_set *s);

/* The statistics meter's per-packet work (statistics.c; packet_by_name): a packet of sender
 * (key endpoint) at ts counted into flow f, whose sender's latest time before it was
 * sender_last_ns (0: its first), wire_len bytes on the wire. */
void af_statistics_packet(void *ctx, void *state, const af_packet *p, const af_flow *f, int sender, uint64_t ts,
                          uint64_t sender_last_ns, uint32_t wire_len);

/* Per packet (inline: the counting loop's own code). The loops run to an end pointer taken
 * before the first call: a hook may write memory, so a count in the set would be read again
 * after every call. */
static inline void af_meters_packet(const af_meter_set *s, const af_meter_packet *mp) {
    for (const af_packet_hook *h = s->packet, *end = h + s->n_packet; h < end; h++)
        h->fn(h->ctx, h->state ? h->state + (size_t)(mp->slot - 1) * h->state_size : NULL, mp);
}

/* s->n_brief > 0. The last hook is called last, with nothing after it: from the end of the
 * counting function, a tail call. */
static inline void af_meters_brief(const af_meter_set *s, uint32_t slot, const af_packet *p, int sender, uint64_t ts) {
    const af_brief_hook *h = s->brief, *last = h + s->n_brief - 1;
    for (;; h++) {
        void *state = h->state + (size_t)(slot - 1) * h->state_size;
        void *cold = h->cold ? h->cold + (size_t)(slot - 1) * h->cold_size : NULL;
        if (h == last) {
            h->fn(state, cold, p, sender, ts);
            return;
        }
        h->fn(state, cold, p, sender, ts);
    }
}

/* The state blocks the per-packet hooks will read for flow slot `slot`, every line of them: with
 * ~100k flows active they are cache misses as the flow's own lines are (statistics: 0.64x
 * flow-only in time against 0.78x in instructions), so they are fetched as far ahead. */
static inline void af_meters_prefetch_state(const af_meter_set *s, uint32_t slot) {
    for (const af_hot_state *h = s->hot, *end = h + s->n_hot; h < end; h++) {
        const uint8_t *at = h->state + (size_t)(slot - 1) * h->state_size;
        __builtin_prefetch(at);
        for (uint32_t i = 1; i < h->lines; i++) __builtin_prefetch(at + 64 * i);
    }
}

/* hooks: s->prefetch (n_prefetch of them) or s->deep (n_deep) */
static inline void af_meters_prefetch(const af_prefetch_hook *h, uint32_t n, uint32_t slot, int sender) {
    for (const af_prefetch_hook *end = h + n; h < end; h++) h->fn(h->ctx, slot, sender);
}

/* Records the batch can still take as far as the meters' batch-side data goes. */
static inline uint32_t af_meters_room(const af_meter_set *s, const af_batch *b) {
    uint32_t r = UINT32_MAX;
    for (const af_room_hook *h = s->room, *end = h + s->n_room; h < end; h++) {
        uint32_t x = h->fn(h->ctx, b);
        if (x < r) r = x;
    }
    return r;
}

#endif
