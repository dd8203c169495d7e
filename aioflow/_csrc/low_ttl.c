/* Example meter (off by default; meters=("low_ttl",)): packets whose IPv4 TTL or IPv6 hop limit
 * is below 10, per direction — traceroute probes, routing loops, TTL-expiry scans. This file and
 * its line in meters.h are all it takes. */
#include "meter.h"

#define LOW_TTL 10

typedef struct {
    uint32_t packets[2];             /* by direction: 0 src->dst, 1 dst->src */
} low_ttl_state;

typedef struct {
    uint64_t src2dst_packets;
    uint64_t dst2src_packets;
} low_ttl_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)ctx;
    low_ttl_state *s = state;
    s->packets[mp->direction] += mp->p->ttl < LOW_TTL;
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    low_ttl_state *s = state;
    low_ttl_record *r = (low_ttl_record *)(void *)me->block;
    r->src2dst_packets = s->packets[0];
    r->dst2src_packets = s->packets[1];
    s->packets[0] = s->packets[1] = 0;   /* an active-timeout split starts a new record */
}

static const af_meter_field fields[] = {
    {"src2dst_packets", "uint64_t", "packets", offsetof(low_ttl_record, src2dst_packets), 0},
    {"dst2src_packets", "uint64_t", "packets", offsetof(low_ttl_record, dst2src_packets), 0},
};

const af_meter af_meter_low_ttl = {
    .info = {"low_ttl", "packets with an IPv4 TTL or IPv6 hop limit below 10, per direction", NULL, fields,
             sizeof fields / sizeof fields[0], sizeof(low_ttl_record)},
    .state_size = sizeof(low_ttl_state),
    .on_packet = on_packet,
    .on_end = on_end,
};
