/* What the packet decoders (decode.c, tunnels.c) share: network-order reads, the EtherTypes they
 * both dispatch on, and the decode-event bit of a packet (af_packet.events). */
#ifndef AIOFLOW_WIRE_H
#define AIOFLOW_WIRE_H
#include <stdint.h>

enum { ETH_IPV4 = 0x0800, ETH_IPV6 = 0x86dd, ETH_VLAN = 0x8100, ETH_QINQ = 0x88a8,
       ETH_QINQ_OLD = 0x9100, ETH_QINQ_OLD2 = 0x9200, ETH_MPLS_UC = 0x8847, ETH_MPLS_MC = 0x8848,
       ETH_PPPOE_SESSION = 0x8864, ETH_VNTAG = 0x8926, ETH_ETAG = 0x893f, ETH_BRIDGING = 0x6558,
       ETH_ERSPAN_2 = 0x88be, ETH_ERSPAN_3 = 0x22eb, ETH_PPP = 0x880b, ETH_ARUBA_WLAN = 0x8200 };

#define EVENT(e) ((uint16_t)(1u << (e)))

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd24(const uint8_t *p) { return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2]; }
static inline uint32_t rd32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#endif
