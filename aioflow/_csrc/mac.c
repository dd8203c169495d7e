/* The `mac` meter: the Ethernet addresses of a flow's first packet, src->dst oriented, as
 * nfstream's src_mac, dst_mac, src_oui and dst_oui (text; zeros when the link has none). Only this
 * meter has the decoder keep them (AF_DECODE_MAC), so the flow-only path copies nothing. */
#include <string.h>

#include "meter.h"

typedef struct {
    uint8_t seen;
    uint8_t dst[6], src[6];          /* as the first packet's header has them */
    uint8_t first_direction;
} mac_state;

/* The record under nfstream's names, as text: "aa:bb:cc:dd:ee:ff" and the OUI "aa:bb:cc" */
typedef struct {
    char src_mac[18], dst_mac[18];
    char src_oui[9], dst_oui[9];
} mac_record;

static void on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    (void)ctx;
    mac_state *s = state;
    if (s->seen) return;
    s->seen = 1;
    s->first_direction = (uint8_t)mp->direction;
    memcpy(s->dst, mp->p->mac, 12);
}

/* n octets as lowercase hex pairs joined by ':', NUL-terminated (3n bytes) */
static void hex_octets(char *out, const uint8_t *octets, int n) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[3 * i] = digits[octets[i] >> 4];
        out[3 * i + 1] = digits[octets[i] & 15];
        out[3 * i + 2] = i + 1 < n ? ':' : 0;
    }
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    const mac_state *s = state;
    mac_record *r = (mac_record *)(void *)me->block;
    /* the first packet went dst->src (a SYN+ACK seen first): its source is the flow's dst */
    const uint8_t *src = s->first_direction ? s->dst : s->src, *dst = s->first_direction ? s->src : s->dst;
    hex_octets(r->src_mac, src, 6);
    hex_octets(r->dst_mac, dst, 6);
    hex_octets(r->src_oui, src, 3);
    hex_octets(r->dst_oui, dst, 3);
}

static const af_meter_field fields[] = {
    {"src_mac", "char[18]", "text", offsetof(mac_record, src_mac), 0},
    {"dst_mac", "char[18]", "text", offsetof(mac_record, dst_mac), 0},
    {"src_oui", "char[9]", "text", offsetof(mac_record, src_oui), 0},
    {"dst_oui", "char[9]", "text", offsetof(mac_record, dst_oui), 0},
};

const af_meter af_meter_mac = {
    .info = {"mac", "the first packet's Ethernet addresses, src->dst oriented (nfstream's src_mac, dst_mac)", NULL,
             fields, sizeof fields / sizeof fields[0], sizeof(mac_record), 1},
    .state_size = sizeof(mac_state),
    .decode_flags = AF_DECODE_MAC,
    .on_packet = on_packet,
    .on_end = on_end,
};
