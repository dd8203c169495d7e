#include "tunnels.h"

#include <string.h>

#include "aioflow.h"
#include "wire.h"

enum { PORT_VXLAN = 4789, PORT_GENEVE = 6081, PORT_GTP_U = 2152, PORT_TEREDO = 3544 };

/* What a tunnel carries. */
enum inner { INNER_IP, INNER_ETHERNET, INNER_ETHERTYPE, INNER_PPP, INNER_WLAN };


/* An 802.11 data frame (Aruba's GRE) whose LLC/SNAP header names an EtherType; anything else
 * (management, control, protected frames) is no IP. */
static int wlan(const uint8_t *p, uint32_t len, af_packet *pkt) {
    if (len < 24) return AF_ASIDE_TRUNCATED;
    uint8_t fc = p[0], flags = p[1];
    if (((fc >> 2) & 3) != 2 || (flags & 0x40)) return AF_ASIDE_NON_IP;
    uint32_t hl = 24;
    if ((flags & 3) == 3) hl += 6;                    /* to and from the DS: a fourth address */
    if (fc & 0x80) hl += (flags & 0x80) ? 6 : 2;      /* QoS control, and HT control with Order */
    if (len < hl + 8) return AF_ASIDE_TRUNCATED;
    p += hl;
    len -= hl;
    if (p[0] != 0xaa || p[1] != 0xaa || p[2] != 0x03) return AF_ASIDE_NON_IP;
    return af_decode_ethertype(rd16(p + 6), p + 8, len - 8, pkt);
}

static uint32_t fnv(uint32_t h, const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The id of one more tunnel level around what `carrier` already says (0 before the first). */
static uint32_t tunnel_id(const af_packet *carrier, int has_ip, uint8_t type, uint32_t vni) {
    uint32_t h = fnv(carrier->tunnel_id ? carrier->tunnel_id : 2166136261u, &type, 1);
    uint8_t v[3] = {(uint8_t)(vni >> 16), (uint8_t)(vni >> 8), (uint8_t)vni};
    h = fnv(h, v, 3);
    if (has_ip) {
        uint32_t n = carrier->ip_version == 4 ? 4 : 16;
        int swap = memcmp(carrier->src, carrier->dst, n) > 0;
        h = fnv(h, swap ? carrier->dst : carrier->src, n);
        h = fnv(h, swap ? carrier->src : carrier->dst, n);
    }
    return h ? h : 1;
}

/* Decodes what a tunnel carries into a fresh packet that keeps the outer layers' facts (VLAN,
 * MAC, events, the outermost tunnel). The carrier stays as it was unless an inner IP packet
 * came out of it. has_ip: the carrier is an IP packet (else MPLS: no flow to fall back on). */
static int enter(af_packet *pkt, int has_ip, uint8_t type, uint32_t vni, enum inner kind, uint16_t ethertype,
                 const uint8_t *p, uint32_t len) {
    if (pkt->tunnel_depth >= AF_MAX_TUNNELS) {
        pkt->events |= EVENT(AF_EVENT_TUNNEL_TOO_DEEP);
        return has_ip ? AF_DECODED : AF_ASIDE_BAD_HEADER;
    }
    af_packet in;
    memset(&in, 0, sizeof in);
    in.vlan_id = pkt->vlan_id;
    in.events = pkt->events;
    in.decode_flags = pkt->decode_flags;
    memcpy(in.mac, pkt->mac, sizeof in.mac);
    in.tunnel_depth = (uint8_t)(pkt->tunnel_depth + 1);
    in.tunnel_id = tunnel_id(pkt, has_ip, type, vni);
    if (pkt->tunnel_depth == 0) {
        in.tunnel_type = type;
        if (has_ip) {
            in.tunnel_ip_version = pkt->ip_version;
            memcpy(in.tunnel_src, pkt->src, sizeof in.tunnel_src);
            memcpy(in.tunnel_dst, pkt->dst, sizeof in.tunnel_dst);
        }
    } else {
        in.tunnel_type = pkt->tunnel_type;
        in.tunnel_ip_version = pkt->tunnel_ip_version;
        memcpy(in.tunnel_src, pkt->tunnel_src, sizeof in.tunnel_src);
        memcpy(in.tunnel_dst, pkt->tunnel_dst, sizeof in.tunnel_dst);
    }
    int r;
    switch (kind) {
    case INNER_IP:
        if (len < 1 || ((p[0] >> 4) != 4 && (p[0] >> 4) != 6)) return has_ip ? AF_DECODED : AF_ASIDE_NON_IP;
        r = af_decode_ip(p, len, &in);
        break;
    case INNER_ETHERNET: r = af_decode_ethernet(p, len, &in); break;
    case INNER_PPP: r = af_decode_ppp(p, len, &in); break;
    case INNER_WLAN: r = wlan(p, len, &in); break;
    default: r = af_decode_ethertype(ethertype, p, len, &in); break;
    }
    if (r == AF_DECODED) {
        *pkt = in;
        return r;
    }
    if (!has_ip) return r;
    pkt->events |= in.events;   /* what the inner layers hit (a deeper tunnel's events too) */
    if (r != AF_ASIDE_NON_IP) pkt->events |= EVENT(AF_EVENT_TUNNEL_MALFORMED);
    return AF_DECODED;
}

static int malformed(af_packet *pkt) {
    pkt->events |= EVENT(AF_EVENT_TUNNEL_MALFORMED);
    return AF_DECODED;
}

/* GRE (RFC 2784, keys and sequence numbers RFC 2890; version 1: PPTP, RFC 2637) and ERSPAN in it. */
static int gre(af_packet *pkt, const uint8_t *p, uint32_t len) {
    if (len < 4) return malformed(pkt);
    uint16_t flags = rd16(p), proto = rd16(p + 2);
    uint32_t hl = 4;
    switch (flags & 7) {
    case 0:
        if (flags & 0xc000) hl += 4;          /* checksum and/or routing present: checksum + offset */
        if (flags & 0x4000) return malformed(pkt);   /* source routing (RFC 1701): obsolete */
        if (flags & 0x2000) hl += 4;          /* key */
        if (flags & 0x1000) hl += 4;          /* sequence number */
        break;
    case 1:
        if (proto != ETH_PPP || !(flags & 0x2000)) return malformed(pkt);
        hl += 4;                              /* payload length + call id */
        if (flags & 0x1000) hl += 4;
        if (flags & 0x0080) hl += 4;          /* acknowledgment number */
        break;
    default:
        return malformed(pkt);
    }
    if (len < hl) return malformed(pkt);
    p += hl;
    len -= hl;
    switch (proto) {
    case ETH_IPV4: case ETH_IPV6: case ETH_MPLS_UC: case ETH_MPLS_MC:
        return enter(pkt, 1, AF_TUNNEL_GRE, 0, INNER_ETHERTYPE, proto, p, len);
    case ETH_BRIDGING:
        return enter(pkt, 1, AF_TUNNEL_GRE, 0, INNER_ETHERNET, 0, p, len);
    case ETH_PPP:
        return enter(pkt, 1, AF_TUNNEL_GRE, 0, INNER_PPP, 0, p, len);
    case ETH_ARUBA_WLAN:
        return enter(pkt, 1, AF_TUNNEL_GRE, 0, INNER_WLAN, 0, p, len);
    case ETH_ERSPAN_2: {                      /* type II has a sequence number; type I neither it nor a header */
        uint32_t eh = (flags & 0x1000) ? 8 : 0;
        if (len < eh) return malformed(pkt);
        return enter(pkt, 1, AF_TUNNEL_ERSPAN, 0, INNER_ETHERNET, 0, p + eh, len - eh);
    }
    case ETH_ERSPAN_3: {                      /* 12 bytes, 8 more with the platform subheader (O bit) */
        if (len < 12) return malformed(pkt);
        uint32_t eh = 12u + ((p[11] & 1) ? 8u : 0u);
        if (len < eh) return malformed(pkt);
        return enter(pkt, 1, AF_TUNNEL_ERSPAN, 0, INNER_ETHERNET, 0, p + eh, len - eh);
    }
    default:
        return AF_DECODED;                    /* keepalives, WCCP, ...: the GRE flow itself */
    }
}

/* GTP-U (3GPP TS 29.281): G-PDUs carry user IP packets; echo and error messages stay as they are. */
static int gtp_u(af_packet *pkt, const uint8_t *p, uint32_t len) {
    if (len < 8) return malformed(pkt);
    if ((p[0] >> 5) != 1 || !(p[0] & 0x10)) return malformed(pkt);   /* version 1, protocol type GTP */
    if (p[1] != 0xff) return AF_DECODED;
    uint32_t end = 8u + rd16(p + 2);
    if (end < len) len = end;                 /* the message length bounds the T-PDU */
    uint32_t hl = 8;
    if (p[0] & 0x07) {                        /* E, S or PN: sequence, N-PDU, next extension type */
        if (len < 12) return malformed(pkt);
        uint8_t next = p[11];
        hl = 12;
        while (next) {                        /* each extension: length in 4-byte units, next type last */
            if (len < hl + 1 || p[hl] == 0) return malformed(pkt);
            uint32_t el = (uint32_t)p[hl] * 4;
            if (len < hl + el) return malformed(pkt);
            next = p[hl + el - 1];
            hl += el;
        }
    }
    return enter(pkt, 1, AF_TUNNEL_GTP, 0, INNER_IP, 0, p + hl, len - hl);
}

/* VXLAN (RFC 7348): 8 bytes, the I flag says the VNI is valid; Ethernet follows. */
static int vxlan(af_packet *pkt, const uint8_t *p, uint32_t len) {
    if (len < 8 || !(p[0] & 0x08)) return malformed(pkt);
    return enter(pkt, 1, AF_TUNNEL_VXLAN, rd24(p + 4), INNER_ETHERNET, 0, p + 8, len - 8);
}

/* Geneve (RFC 8926): version 0, options in 4-byte units, an EtherType for what follows. */
static int geneve(af_packet *pkt, const uint8_t *p, uint32_t len) {
    if (len < 8 || (p[0] >> 6) != 0) return malformed(pkt);
    uint32_t hl = 8u + (uint32_t)(p[0] & 0x3f) * 4;
    if (len < hl) return malformed(pkt);
    uint16_t proto = rd16(p + 2);
    uint32_t vni = rd24(p + 4);
    if (proto == ETH_BRIDGING) return enter(pkt, 1, AF_TUNNEL_GENEVE, vni, INNER_ETHERNET, 0, p + hl, len - hl);
    if (proto == ETH_IPV4 || proto == ETH_IPV6)
        return enter(pkt, 1, AF_TUNNEL_GENEVE, vni, INNER_ETHERTYPE, proto, p + hl, len - hl);
    return AF_DECODED;
}

/* Teredo (RFC 4380): IPv6 in UDP, after an optional authentication and origin indication. */
static int teredo(af_packet *pkt, const uint8_t *p, uint32_t len) {
    uint32_t hl = 0;
    if (len >= 4 && p[0] == 0 && p[1] == 1) {          /* authentication: ids, auth, nonce, confirmation */
        hl = 4u + p[2] + p[3] + 9u;
        if (len < hl) return malformed(pkt);
    }
    if (len >= hl + 2 && p[hl] == 0 && p[hl + 1] == 0) {   /* origin indication */
        hl += 8;
        if (len < hl) return malformed(pkt);
    }
    if (len <= hl || (p[hl] >> 4) != 6) return AF_DECODED;   /* bubbles of no IPv6, other uses of the port */
    return enter(pkt, 1, AF_TUNNEL_TEREDO, 0, INNER_IP, 0, p + hl, len - hl);
}

int af_tunnel_open(af_packet *pkt) {
    const uint8_t *p = pkt->payload;
    uint32_t len = pkt->payload_len;
    switch (pkt->protocol) {
    case 4: case 41:
        return enter(pkt, 1, AF_TUNNEL_IPIP, 0, INNER_IP, 0, p, len);
    case 47:
        return gre(pkt, p, len);
    case 17:
        if (pkt->dport == PORT_VXLAN) return vxlan(pkt, p, len);
        if (pkt->dport == PORT_GENEVE) return geneve(pkt, p, len);
        if (pkt->dport == PORT_GTP_U || pkt->sport == PORT_GTP_U) return gtp_u(pkt, p, len);
        if (pkt->dport == PORT_TEREDO || pkt->sport == PORT_TEREDO) return teredo(pkt, p, len);
        return AF_DECODED;
    default:
        return AF_DECODED;
    }
}

int af_tunnel_mpls(af_packet *pkt, const uint8_t *p, uint32_t len) {
    /* RFC 4385's control word starts with a 0 nibble, where an IP header has 4 or 6 */
    if (len >= 4 && (p[0] >> 4) == 0) {
        p += 4;
        len -= 4;
    }
    return enter(pkt, 0, AF_TUNNEL_MPLS, 0, INNER_ETHERNET, 0, p, len);
}
