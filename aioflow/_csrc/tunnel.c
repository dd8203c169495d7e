/* The `tunnel` meter (decode_tunnels=True): the outermost tunnel a flow came through, its type and
 * carrier endpoints from the flow's first packet (src->dst oriented), and its tunnel id (the flow
 * table keeps that one with the key: tunnels.h). On only with decode_tunnels, so the flow-only
 * path keeps no tunnel state. */
#include <string.h>

#include "meter.h"

typedef struct {
    uint8_t type, ip_version;
    uint8_t src[16], dst[16];
} tunnel_state;

typedef struct {
    uint64_t src_ip_hi, src_ip_lo;   /* the address's 16 bytes as two big-endian numbers (IPv4: hi's top 4) */
    uint64_t dst_ip_hi, dst_ip_lo;
    uint32_t id;
    uint8_t type;                    /* enum af_tunnel_type */
    uint8_t ip_version;              /* of the endpoints: 4, 6, 0 (none) */
    uint8_t _pad[2];
} tunnel_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)ctx;
    tunnel_state *s = state;
    const af_packet *p = mp->p;
    if (s->type || !p->tunnel_type) return;
    s->type = p->tunnel_type;
    s->ip_version = p->tunnel_ip_version;
    memcpy(mp->direction ? s->dst : s->src, p->tunnel_src, 16);
    memcpy(mp->direction ? s->src : s->dst, p->tunnel_dst, 16);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    const tunnel_state *s = state;
    tunnel_record *r = (tunnel_record *)(void *)me->block;
    r->src_ip_hi = af_meter_be(s->src, 8);
    r->src_ip_lo = af_meter_be(s->src + 8, 8);
    r->dst_ip_hi = af_meter_be(s->dst, 8);
    r->dst_ip_lo = af_meter_be(s->dst + 8, 8);
    r->id = me->table->tunnel_ids ? me->table->tunnel_ids[me->slot - 1] : 0;
    r->type = s->type;
    r->ip_version = s->ip_version;
    /* an active-timeout split goes on in the same tunnel: the state stays */
}

static int wanted(const af_config *cfg) { return cfg->decode_tunnels != 0; }

static const af_meter_field fields[] = {
    {"id", "uint32_t", "id", offsetof(tunnel_record, id), 0},
    {"type", "uint8_t", "enum", offsetof(tunnel_record, type), 0},
    {"ip_version", "uint8_t", "version", offsetof(tunnel_record, ip_version), 0},
    {"src_ip_hi", "uint64_t", "address", offsetof(tunnel_record, src_ip_hi), 0},
    {"src_ip_lo", "uint64_t", "address", offsetof(tunnel_record, src_ip_lo), 0},
    {"dst_ip_hi", "uint64_t", "address", offsetof(tunnel_record, dst_ip_hi), 0},
    {"dst_ip_lo", "uint64_t", "address", offsetof(tunnel_record, dst_ip_lo), 0},
};

const af_meter af_meter_tunnel = {
    .info = {"tunnel", "the outermost tunnel of a flow's packets (decode_tunnels=True)", "decode_tunnels", fields,
             sizeof fields / sizeof fields[0], sizeof(tunnel_record)},
    .state_size = sizeof(tunnel_state),
    .decode_flags = AF_DECODE_TUNNELS,
    .wanted = wanted,
    .on_packet = on_packet,
    .on_end = on_end,
};
