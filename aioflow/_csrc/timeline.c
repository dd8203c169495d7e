/* The timeline meter (meters=("timeline",)): packets and captured bytes of every packet counted
 * into a flow, per time bucket and protocol class, for traffic-over-time charts (`aioflow report`)
 * that must equal tshark's `-z io,stat` buckets, which flow records alone cannot give.
 *
 * Bucket i covers [origin + i * interval, origin + (i + 1) * interval), origin being the first
 * packet's time (as tshark's io,stat counts from the first frame). The interval starts at 1 ms and
 * grows (x2, x5, x2, ...: 2 ms, 10 ms, 20 ms, 100 ms, ...) whenever a packet would need a bucket past
 * AF_TIMELINE_MAX_BUCKETS, merging buckets, so memory is fixed whatever the capture's span. It keeps
 * no per-flow state: one context per engine. */
#include <stdlib.h>
#include <string.h>

#include "timeline.h"

#define START_INTERVAL_NS 1000000u

typedef struct {
    af_timeline t;
    uint64_t cur_start, cur_end;     /* the bucket the last packet fell in, [start, end) in packet time */
    uint32_t cur;
} timeline_ctx;

static void *open_timeline(const af_config *cfg, af_stats *stats) {
    (void)cfg, (void)stats;
    timeline_ctx *c = calloc(1, sizeof *c);
    if (c) c->t.interval_ns = START_INTERVAL_NS;
    return c;
}

static void close_timeline(void *ctx) { free(ctx); }

static unsigned class_of(uint8_t protocol) {
    switch (protocol) {
    case 6: return AF_TIMELINE_TCP;
    case 17: return AF_TIMELINE_UDP;
    case 1: case 58: return AF_TIMELINE_ICMP;
    default: return AF_TIMELINE_OTHER;
    }
}

/* Merges every `factor` buckets into one: the interval grows by that factor. */
static void coarsen(af_timeline *t) {
    uint32_t factor = t->coarsened % 2 ? 5 : 2;
    uint32_t count = (t->count + factor - 1) / factor;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t packets[AF_TIMELINE_CLASSES] = {0}, bytes[AF_TIMELINE_CLASSES] = {0};
        for (uint32_t j = i * factor; j < (i + 1) * factor && j < t->count; j++)
            for (unsigned k = 0; k < AF_TIMELINE_CLASSES; k++) {
                packets[k] += t->packets[j][k];
                bytes[k] += t->bytes[j][k];
            }
        memcpy(t->packets[i], packets, sizeof packets);
        memcpy(t->bytes[i], bytes, sizeof bytes);
    }
    memset(t->packets[count], 0, (size_t)(t->count - count) * sizeof t->packets[0]);
    memset(t->bytes[count], 0, (size_t)(t->count - count) * sizeof t->bytes[0]);
    t->count = count;
    t->interval_ns *= factor;
    t->coarsened++;
}

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)state;
    timeline_ctx *c = ctx;
    af_timeline *t = &c->t;
    uint64_t ts = mp->ts;
    if (!t->count) {
        t->origin_ns = ts;
        c->cur_start = ts;
        c->cur_end = ts + t->interval_ns;
        c->cur = 0;
        t->count = 1;
    }
    /* most packets fall in the last packet's bucket: no division for them */
    if (ts < c->cur_start || ts >= c->cur_end) {
        uint64_t rel = 0;
        if (ts < t->origin_ns) t->before_origin++;
        else rel = ts - t->origin_ns;
        uint64_t i;
        while ((i = rel / t->interval_ns) >= AF_TIMELINE_MAX_BUCKETS) coarsen(t);
        c->cur = (uint32_t)i;
        c->cur_start = t->origin_ns + i * t->interval_ns;
        c->cur_end = c->cur_start + t->interval_ns;
        if (c->cur >= t->count) t->count = c->cur + 1;
    }
    unsigned k = class_of(mp->p->protocol);
    t->packets[c->cur][k]++;
    t->bytes[c->cur][k] += mp->caplen;
}

void af_timeline_copy(const void *ctx, af_timeline *out) { *out = ((const timeline_ctx *)ctx)->t; }

const af_meter af_meter_timeline = {
    .info = {"timeline", "packets and captured bytes per time bucket and protocol class (FlowParser.timeline())",
             NULL, NULL, 0, 0},
    .open = open_timeline,
    .close = close_timeline,
    .on_packet = on_packet,
};
