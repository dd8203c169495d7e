#include "checksum.h"

#include <string.h>

#include "aioflow.h"
#include "decode.h"
#include "wire.h"

static inline uint64_t add32(uint64_t acc, const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    return acc + (acc < w);
}

uint64_t af_csum_add(uint64_t acc, const uint8_t *p, uint32_t n) {
    for (; n >= 8; p += 8, n -= 8) {   /* a 64-bit add with end-around carry sums four words */
        uint64_t w;
        memcpy(&w, p, 8);
        acc += w;
        acc += acc < w;
    }
    if (n >= 4) acc = add32(acc, p), p += 4, n -= 4;
    uint8_t last[4] = {0};   /* 0 to 3 bytes left, zero-padded: an odd last byte is its word's first */
    memcpy(last, p, n);
    return add32(acc, last);
}

uint16_t af_csum_fold(uint64_t acc) {
    acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* Whether a whole transport segment's checksum is wrong (0: right, or none to check). */
static int transport_bad(const af_packet *pkt) {
    uint32_t off = pkt->l4_offset, len = pkt->ip_length > off ? pkt->ip_length - off : 0;
    const uint8_t *l4 = pkt->l3 + off;
    uint32_t need;
    switch (pkt->protocol) {
    case 6: need = 20; break;
    case 17: need = 8; break;
    case 1: case 58: need = 4; break;
    default: return 0;
    }
    if (!off || len < need) return 0;
    if (pkt->protocol == 17 && pkt->ip_version == 4 && rd16(l4 + 6) == 0) return 0;   /* no checksum sent */
    uint64_t acc = 0;
    if (pkt->protocol != 1) {          /* the pseudo-header: addresses, protocol, transport length */
        uint32_t n = pkt->ip_version == 4 ? 4 : 16;
        uint8_t tail[8] = {0};
        if (n == 4) {
            tail[1] = pkt->protocol;
            tail[2] = (uint8_t)(len >> 8), tail[3] = (uint8_t)len;
        } else {
            tail[0] = (uint8_t)(len >> 24), tail[1] = (uint8_t)(len >> 16);
            tail[2] = (uint8_t)(len >> 8), tail[3] = (uint8_t)len;
            tail[7] = pkt->protocol;
        }
        acc = af_csum_add(af_csum_add(af_csum_add(0, pkt->src, n), pkt->dst, n), tail, n == 4 ? 4 : 8);
    }
    return af_csum_fold(af_csum_add(acc, l4, len)) != 0xffff;
}

void af_check_checksums(af_packet *pkt, int snap_cut) {
    const uint8_t *ip = pkt->l3;
    uint8_t bad = 0;
    if (pkt->ip_version == 4) {
        if (af_csum_fold(af_csum_add(0, ip, (uint32_t)(ip[0] & 0x0f) * 4)) != 0xffff) bad |= AF_BAD_IP_HEADER;
        if (rd16(ip + 2) == 0) snap_cut = 1;   /* TCP segmentation offload's length 0: no length to check by */
    }
    if (pkt->frag == AF_FRAG_NONE && !snap_cut && transport_bad(pkt)) bad |= AF_BAD_TRANSPORT;
    if (bad) {
        pkt->checksum_bad = bad;
        pkt->events |= EVENT(AF_EVENT_BAD_CHECKSUM);
    }
}
