/* The `tunnel` meter (decode_tunnels=True): the outermost tunnel a flow came through, its type and
 * carrier endpoints from the flow's first packet (src->dst oriented), and its tunnel id (the flow
 * table keeps that one with the key: tunnels.h). On only with decode_tunnels, so the flow-only
 * path keeps no tunnel state. */
#include <stdio.h>
#include <string.h>

#include "meter.h"

typedef struct {
    uint8_t type, ip_version;
    uint8_t src[16], dst[16];
} tunnel_state;

/* The record under nfstream's names (plain_names: Python's columns are these names), the type
 * and endpoints as text ("" outside tunnels). */
typedef struct {
    char tunnel_src_ip[40];          /* IPv6's longest text form: 8 groups of 4 digits and 7 colons */
    char tunnel_dst_ip[40];
    uint32_t tunnel_id;
    char tunnel_type[12];            /* af_tunnel_type_name */
} tunnel_record;

/* An address as Python's ipaddress writes it (as aioflow's src_ip and dst_ip are): dotted IPv4;
 * IPv6 in RFC 5952 form, lowercase hex groups, the longest run of two or more zero groups (the
 * first of equal ones) written "::". version 0 (no carrier IP: MPLS over Ethernet): "". */
static void ip_text(char out[40], int version, const uint8_t *a) {
    if (version == 4) {
        snprintf(out, 40, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        return;
    }
    out[0] = 0;
    if (version != 6) return;
    unsigned g[8];
    for (int i = 0; i < 8; i++) g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
    int best = -1, best_length = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && !g[j]) j++;
        if (j - i > best_length) best = i, best_length = j - i;
        i = j > i ? j : i + 1;
    }
    size_t at = 0;
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            at += (size_t)snprintf(out + at, 40 - at, "::");
            i += best_length - 1;
            continue;
        }
        at += (size_t)snprintf(out + at, 40 - at, at && out[at - 1] != ':' ? ":%x" : "%x", g[i]);
    }
}

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
    ip_text(r->tunnel_src_ip, s->type ? s->ip_version : 0, s->src);
    ip_text(r->tunnel_dst_ip, s->type ? s->ip_version : 0, s->dst);
    r->tunnel_id = me->table->tunnel_ids ? me->table->tunnel_ids[me->slot - 1] : 0;
    snprintf(r->tunnel_type, sizeof r->tunnel_type, "%s", af_tunnel_type_name(s->type));
    /* an active-timeout split goes on in the same tunnel: the state stays */
}

static int wanted(const af_config *cfg) { return cfg->decode_tunnels != 0; }

static const af_meter_field fields[] = {
    {"tunnel_id", "uint32_t", "id", offsetof(tunnel_record, tunnel_id), 0},
    {"tunnel_type", "char[12]", "text", offsetof(tunnel_record, tunnel_type), 0},
    {"tunnel_src_ip", "char[40]", "text", offsetof(tunnel_record, tunnel_src_ip), 0},
    {"tunnel_dst_ip", "char[40]", "text", offsetof(tunnel_record, tunnel_dst_ip), 0},
};

const af_meter af_meter_tunnel = {
    .info = {"tunnel", "the outermost tunnel of a flow's packets (decode_tunnels=True)", "decode_tunnels", fields,
             sizeof fields / sizeof fields[0], sizeof(tunnel_record), 1},
    .state_size = sizeof(tunnel_state),
    .decode_flags = AF_DECODE_TUNNELS,
    .wanted = wanted,
    .on_packet = on_packet,
    .on_end = on_end,
};
