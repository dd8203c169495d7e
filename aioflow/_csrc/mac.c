/* The `mac` meter: the Ethernet addresses of a flow's first packet, src->dst oriented (nfstream's
 * src_mac / dst_mac), 0 when the link has none. Only this meter has the decoder keep them
 * (AF_DECODE_MAC), so the flow-only path copies nothing. */
#include <string.h>

#include "meter.h"

typedef struct {
    uint8_t seen;
    uint8_t dst[6], src[6];          /* as the first packet's header has them */
    uint8_t first_direction;
} mac_state;

typedef struct {
    uint64_t src_mac;                /* the 48-bit address as a number (first octet most significant) */
    uint64_t dst_mac;
} mac_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)ctx;
    mac_state *s = state;
    if (s->seen) return;
    s->seen = 1;
    s->first_direction = (uint8_t)mp->direction;
    memcpy(s->dst, mp->p->mac, 12);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    const mac_state *s = state;
    mac_record *r = (mac_record *)(void *)me->block;
    /* the first packet went dst->src (a SYN+ACK seen first): its source is the flow's dst */
    r->src_mac = af_meter_be(s->first_direction ? s->dst : s->src, 6);
    r->dst_mac = af_meter_be(s->first_direction ? s->src : s->dst, 6);
}

static const af_meter_field fields[] = {
    {"src_mac", "uint64_t", "address", offsetof(mac_record, src_mac), 0},
    {"dst_mac", "uint64_t", "address", offsetof(mac_record, dst_mac), 0},
};

const af_meter af_meter_mac = {
    .info = {"mac", "the first packet's Ethernet addresses, src->dst oriented (nfstream's src_mac, dst_mac)", NULL,
             fields, sizeof fields / sizeof fields[0], sizeof(mac_record)},
    .state_size = sizeof(mac_state),
    .decode_flags = AF_DECODE_MAC,
    .on_packet = on_packet,
    .on_end = on_end,
};
