#include "decode.h"

#include <stddef.h>
#include <string.h>

#include "aioflow.h"
#include "wire.h"

/* DLT values as libpcap reports them (pcap_datalink). Listed here so the decoder does not need
 * pcap.h; DLT_RAW differs between platforms, hence both values. */
enum {
    DLT_NULL_ = 0, DLT_EN10MB_ = 1, DLT_PPP_ = 9, DLT_RAW_A = 12, DLT_RAW_B = 14,
    DLT_PPP_SERIAL_ = 50, DLT_LINKTYPE_RAW = 101, DLT_C_HDLC_ = 104, DLT_LOOP_ = 108,
    DLT_LINUX_SLL_ = 113, DLT_IPV4_ = 228, DLT_IPV6_ = 229, DLT_NFLOG_ = 239,
    DLT_LINUX_SLL2_ = 276
};

/* Tag walking is bounded so a crafted frame of endless tags cannot loop for long. */
#define MAX_ENCAPS 16


/* A transport header kept for its ports alone (a decode event says why): no flags, no payload. */
static int ports_only(const uint8_t *l4, uint32_t header_len, af_packet *pkt) {
    pkt->sport = rd16(l4);
    pkt->dport = rd16(l4 + 2);
    pkt->l4_offset = (uint16_t)(l4 - pkt->l3);
    pkt->l3_headers_len = (uint32_t)(l4 - pkt->l3) + header_len;
    return AF_DECODED;
}

/* Inline in decode_ipv4 and decode_ipv6: once per packet. */
__attribute__((always_inline)) static inline int decode_transport(const uint8_t *l4, uint32_t avail, int snap_cut,
                                                                  af_packet *pkt) {
    uint32_t need;
    switch (pkt->protocol) {
    case 6: need = 20; break;        /* TCP */
    case 17: need = 8; break;        /* UDP */
    case 132: need = 12; break;      /* SCTP */
    case 1: case 58: need = 8; break;/* ICMP, ICMPv6: type, code, checksum, id/seq */
    default: need = 0; break;
    }
    if (avail < need) {
        /* a first fragment cut inside its transport header: its ports still name the flow (and
         * its later fragments'), as tshark reads them */
        if (pkt->frag != AF_FRAG_FIRST || snap_cut || avail < 4 || (pkt->protocol != 6 && pkt->protocol != 132))
            return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
        pkt->events |= EVENT(AF_EVENT_FIRST_FRAGMENT_SHORT);
        return ports_only(l4, avail, pkt);
    }
    switch (pkt->protocol) {
    case 6: {
        uint32_t off = (uint32_t)(l4[12] >> 4) * 4;
        if (off < 20) {   /* the rest of the header cannot be placed; tshark too shows only the ports */
            pkt->events |= EVENT(AF_EVENT_TCP_BAD_DATA_OFFSET);
            return ports_only(l4, need, pkt);
        }
        if (off > avail && !snap_cut) pkt->events |= EVENT(AF_EVENT_TCP_BAD_DATA_OFFSET);
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        pkt->tcp_seq = rd32(l4 + 4);
        pkt->tcp_ack = rd32(l4 + 8);
        pkt->tcp_flags = l4[13];
        pkt->tcp_window = rd16(l4 + 14);
        need = off < avail ? off : avail;
        if (off < avail) {
            pkt->payload = l4 + off;
            pkt->payload_len = avail - off;
        }
        break;
    }
    case 17: {
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        if (avail > 8) {
            pkt->payload = l4 + 8;
            pkt->payload_len = avail - 8;
        }
        break;
    }
    case 132:
        pkt->sport = rd16(l4);
        pkt->dport = rd16(l4 + 2);
        break;
    case 1: case 58: {
        uint8_t type = l4[0];
        pkt->icmp_type = type;
        pkt->icmp_code = l4[1];
        int query = pkt->protocol == 1
            ? (type == 0 || type == 8 || type == 13 || type == 14 || type == 15 || type == 16 ||
               type == 17 || type == 18)
            : (type == 128 || type == 129);
        if (query) {          /* both directions of one echo session share the identifier */
            pkt->sport = pkt->dport = rd16(l4 + 4);
        } else {
            pkt->sport = type;
            pkt->dport = l4[1];
        }
        break;
    }
    default:
        break;
    }
    /* TCP and UDP set theirs above; other protocols carry what follows the header read here
     * (SCTP's common header, ICMP's 8 bytes, ngrep's view too) or, unknown, the whole IP payload */
    if (pkt->protocol != 6 && pkt->protocol != 17 && avail > need) {
        pkt->payload = l4 + need;
        pkt->payload_len = avail - need;
    }
    pkt->l4_offset = (uint16_t)(l4 - pkt->l3);
    pkt->l3_headers_len = (uint32_t)(l4 - pkt->l3) + need;
    return AF_DECODED;
}

static int decode_ipv6(const uint8_t *p, uint32_t caplen, af_packet *pkt);

/* check_checksums, then decode_tunnels: a whole (unfragmented) IP packet with a payload may carry
 * a tunnel (its carrier's checksums are checked first: the tunnel replaces it). */
__attribute__((noinline)) static int decoded_more(af_packet *pkt, int snap_cut) {
    if (pkt->decode_flags & AF_DECODE_CHECKSUMS) af_check_checksums(pkt, snap_cut);
    if ((pkt->decode_flags & AF_DECODE_TUNNELS) && pkt->frag == AF_FRAG_NONE && pkt->payload)
        return af_tunnel_open(pkt);
    return AF_DECODED;
}

/* Both extras behind one branch: without them, the decoder's path is as it was. */
static inline int carried(int r, int snap_cut, af_packet *pkt) {
    if (__builtin_expect(pkt->decode_flags & (AF_DECODE_TUNNELS | AF_DECODE_CHECKSUMS), 0) && r == AF_DECODED)
        return decoded_more(pkt, snap_cut);
    return r;
}

/* A link that says IPv4 carrying IPv6: tshark decodes it too. Out of line, so the usual path
 * keeps its code small. */
__attribute__((noinline, cold)) static int decode_ipv6_on_ipv4(const uint8_t *p, uint32_t caplen, af_packet *pkt) {
    pkt->events |= EVENT(AF_EVENT_IPV6_IN_IPV4);
    return decode_ipv6(p, caplen, pkt);
}

static int decode_ipv4(const uint8_t *p, uint32_t caplen, af_packet *pkt) {
    if (caplen < 20) return AF_ASIDE_TRUNCATED;   /* an IPv6 header would be truncated too */
    if ((p[0] >> 4) != 4) return (p[0] >> 4) == 6 ? decode_ipv6_on_ipv4(p, caplen, pkt) : AF_ASIDE_BAD_HEADER;
    uint32_t hl = (uint32_t)(p[0] & 0x0f) * 4;
    uint32_t total = rd16(p + 2);
    /* 0 is what captures of TCP segmentation offload show: like Wireshark, trust the capture */
    if (total == 0) total = caplen;
    if (hl < 20 || total < hl) return AF_ASIDE_BAD_HEADER;
    if (caplen < hl) return AF_ASIDE_TRUNCATED;
    pkt->l3 = p;
    pkt->ip_version = 4;
    pkt->ip_length = total;
    pkt->ip_id = rd16(p + 4);
    pkt->ip_frag = rd16(p + 6);
    pkt->ttl = p[8];
    pkt->protocol = p[9];
    memcpy(pkt->src, p + 12, 4);
    memcpy(pkt->dst, p + 16, 4);
    pkt->frag_id = pkt->ip_id;
    uint16_t offset = pkt->ip_frag & 0x1fff;
    int more = (pkt->ip_frag & 0x2000) != 0;
    pkt->l3_headers_len = hl;
    if (offset != 0) {
        pkt->frag = AF_FRAG_LATER;
        if (pkt->decode_flags & AF_DECODE_CHECKSUMS) af_check_checksums(pkt, 1);   /* the IP header's */
        return AF_DECODED;
    }
    pkt->frag = more ? AF_FRAG_FIRST : AF_FRAG_NONE;
    uint32_t end = caplen < total ? caplen : total;
    return carried(decode_transport(p + hl, end - hl, caplen < total, pkt), caplen < total, pkt);
}

static int decode_ipv6(const uint8_t *p, uint32_t caplen, af_packet *pkt) {
    if (caplen < 40) return AF_ASIDE_TRUNCATED;
    if ((p[0] >> 4) != 6) return AF_ASIDE_BAD_HEADER;
    uint32_t total = 40u + rd16(p + 4);
    pkt->l3 = p;
    pkt->ip_version = 6;
    pkt->ip_length = total;
    pkt->ip_id = rd16(p + 2);
    pkt->ttl = p[7];
    memcpy(pkt->src, p + 8, 16);
    memcpy(pkt->dst, p + 24, 16);
    uint32_t end = caplen < total ? caplen : total;
    int snap_cut = caplen < total;
    uint32_t off = 40;
    uint8_t next = p[6];
    /* every extension header is at least 8 bytes, so this ends within the packet */
    for (;;) {
        uint32_t len;
        switch (next) {
        case 0: case 43: case 60:    /* hop-by-hop, routing, destination options */
            if (end < off + 8) return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
            len = ((uint32_t)p[off + 1] + 1) * 8;
            break;
        case 51:                     /* AH */
            if (end < off + 8) return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
            len = ((uint32_t)p[off + 1] + 2) * 4;
            break;
        case 44: {                   /* fragment */
            if (end < off + 8) return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
            uint16_t fo = rd16(p + off + 2);
            pkt->frag_id = rd32(p + off + 4);
            pkt->ip_frag = fo;
            if ((fo & 0xfff8) != 0) {
                pkt->protocol = p[off];
                pkt->frag = AF_FRAG_LATER;
                pkt->l3_headers_len = off + 8;
                return AF_DECODED;
            }
            /* offset 0: first fragment, or an atomic fragment (RFC 6946) when M is clear */
            if (fo & 1) pkt->frag = AF_FRAG_FIRST;
            len = 8;
            break;
        }
        default:
            pkt->protocol = next;
            pkt->l3_headers_len = off;
            if (off > end) return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
            return carried(decode_transport(p + off, end - off, snap_cut, pkt), snap_cut, pkt);
        }
        next = p[off];
        off += len;
        if (off > end) return snap_cut ? AF_ASIDE_TRUNCATED : AF_ASIDE_BAD_HEADER;
    }
}

static int decode_ip_by_version(const uint8_t *p, uint32_t len, af_packet *pkt) {
    if (len < 1) return AF_ASIDE_TRUNCATED;
    switch (p[0] >> 4) {
    case 4: return decode_ipv4(p, len, pkt);
    case 6: return decode_ipv6(p, len, pkt);
    default: return AF_ASIDE_NON_IP;
    }
}

static int decode_ppp_protocol(uint16_t proto, const uint8_t *p, uint32_t len, af_packet *pkt);

/* Walks VLAN tags, VN-Tag and E-Tag shims, MPLS labels and PPPoE from an EtherType on. */
static int decode_ethertype(uint16_t type, const uint8_t *p, uint32_t len, af_packet *pkt) {
    for (int i = 0; i < MAX_ENCAPS; i++) {
        switch (type) {
        case ETH_IPV4: return decode_ipv4(p, len, pkt);
        case ETH_IPV6: return decode_ipv6(p, len, pkt);
        case ETH_VLAN: case ETH_QINQ: case ETH_QINQ_OLD: case ETH_QINQ_OLD2:
            if (len < 4) return AF_ASIDE_TRUNCATED;
            pkt->vlan_id = rd16(p) & 0x0fff;    /* the innermost tag wins */
            type = rd16(p + 2);
            p += 4; len -= 4;
            continue;
        case ETH_VNTAG: case ETH_ETAG: {   /* Cisco VN-Tag (4 bytes), 802.1BR E-Tag (6), then a type */
            uint32_t tag = type == ETH_VNTAG ? 4 : 6;
            if (len < tag + 2) return AF_ASIDE_TRUNCATED;
            type = rd16(p + tag);
            p += tag + 2; len -= tag + 2;
            continue;
        }
        case ETH_MPLS_UC: case ETH_MPLS_MC:
            for (int j = 0;; j++) {
                if (len < 4) return AF_ASIDE_TRUNCATED;
                int bottom = (p[2] & 1) != 0;
                p += 4; len -= 4;
                if (bottom) break;
                if (j >= MAX_ENCAPS) return AF_ASIDE_BAD_HEADER;
            }
            if ((pkt->decode_flags & AF_DECODE_TUNNELS) && len >= 1 && (p[0] >> 4) != 4 && (p[0] >> 4) != 6)
                return af_tunnel_mpls(pkt, p, len);   /* a pseudowire */
            return decode_ip_by_version(p, len, pkt);
        case ETH_PPPOE_SESSION:
            if (len < 8) return AF_ASIDE_TRUNCATED;
            return decode_ppp_protocol(rd16(p + 6), p + 8, len - 8, pkt);
        default:
            return AF_ASIDE_NON_IP;
        }
    }
    return AF_ASIDE_BAD_HEADER;
}

/* PPP protocol numbers map onto EtherTypes, so MPLS over PPP is walked as over Ethernet. */
static int decode_ppp_protocol(uint16_t proto, const uint8_t *p, uint32_t len, af_packet *pkt) {
    switch (proto) {
    case 0x0021: return decode_ethertype(ETH_IPV4, p, len, pkt);
    case 0x0057: return decode_ethertype(ETH_IPV6, p, len, pkt);
    case 0x0281: return decode_ethertype(ETH_MPLS_UC, p, len, pkt);
    case 0x0283: return decode_ethertype(ETH_MPLS_MC, p, len, pkt);
    default: return AF_ASIDE_NON_IP;
    }
}

static int decode_null(const uint8_t *p, uint32_t len, af_packet *pkt) {
    if (len < 4) return AF_ASIDE_TRUNCATED;
    /* the address family is in the capturing host's byte order: accept either */
    uint32_t be = rd32(p), le = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                                ((uint32_t)p[3] << 24);
    uint32_t af = be < 256 ? be : le;
    switch (af) {
    case 2: return decode_ipv4(p + 4, len - 4, pkt);
    case 10: case 24: case 28: case 30: return decode_ipv6(p + 4, len - 4, pkt);
    default: return AF_ASIDE_NON_IP;
    }
}

int af_decode_ppp(const uint8_t *p, uint32_t len, af_packet *pkt) {
    if (len >= 2 && p[0] == 0xff && p[1] == 0x03) { p += 2; len -= 2; }
    if (len < 1) return AF_ASIDE_TRUNCATED;
    if (p[0] & 1)   /* protocol field compressed to one byte (RFC 1661) */
        return decode_ppp_protocol(p[0], p + 1, len - 1, pkt);
    if (len < 2) return AF_ASIDE_TRUNCATED;
    return decode_ppp_protocol(rd16(p), p + 2, len - 2, pkt);
}

static int decode_nflog(const uint8_t *p, uint32_t len, int big_endian, af_packet *pkt) {
    if (len < 4) return AF_ASIDE_TRUNCATED;
    uint8_t family = p[0];
    uint32_t off = 4;
    /* TLV lengths and types in the capturing host's byte order, the file's (big_endian) */
    int lo = big_endian ? 1 : 0, hi = 1 - lo;
    while (off + 4 <= len) {
        uint32_t tlv_len = (uint32_t)p[off + lo] | ((uint32_t)p[off + hi] << 8);
        uint16_t tlv_type = (uint16_t)(p[off + 2 + lo] | (p[off + 2 + hi] << 8));
        if (tlv_len < 4) return AF_ASIDE_BAD_HEADER;
        if (tlv_type == 9) {   /* NFULA_PAYLOAD */
            uint32_t plen = tlv_len - 4;
            if (off + 4 + plen > len) plen = len - off - 4;
            if (family == 2) return decode_ipv4(p + off + 4, plen, pkt);
            if (family == 10) return decode_ipv6(p + off + 4, plen, pkt);
            return decode_ip_by_version(p + off + 4, plen, pkt);
        }
        off += (tlv_len + 3) & ~3u;
    }
    return AF_ASIDE_TRUNCATED;
}

/* The layers tunnels.c re-enters (decode.h); the usual path calls the static ones, inlined. */
int af_decode_ip(const uint8_t *p, uint32_t len, af_packet *pkt) { return decode_ip_by_version(p, len, pkt); }
int af_decode_ethertype(uint16_t type, const uint8_t *p, uint32_t len, af_packet *pkt) {
    return decode_ethertype(type, p, len, pkt);
}

static int decode_ethernet(const uint8_t *p, uint32_t len, af_packet *pkt) {
    if (len < 14) return AF_ASIDE_TRUNCATED;
    if (rd16(p + 12) < 0x0600) return AF_ASIDE_NON_IP;   /* 802.3 length: LLC frames */
    return decode_ethertype(rd16(p + 12), p + 14, len - 14, pkt);
}

int af_decode_ethernet(const uint8_t *p, uint32_t len, af_packet *pkt) { return decode_ethernet(p, len, pkt); }

int af_decode(int dlt, const uint8_t *data, uint32_t caplen, af_packet *pkt, unsigned flags) {
    if (flags) memset(pkt, 0, sizeof *pkt);
    else memset(pkt, 0, offsetof(af_packet, tunnel_ip_version));   /* the rest only its meters read */
    pkt->decode_flags = (uint8_t)flags;
    int big_endian = (dlt & AF_DLT_PSEUDO_BE) != 0;
    /* the usual frame first: Ethernet, untagged IPv4 or IPv6 (what decode_ethernet finds too) */
    if (dlt == DLT_EN10MB_ && !(flags & AF_DECODE_MAC) && caplen >= 14) {
        uint16_t type = rd16(data + 12);
        if (type == ETH_IPV4) return decode_ipv4(data + 14, caplen - 14, pkt);
        if (type == ETH_IPV6) return decode_ipv6(data + 14, caplen - 14, pkt);
    }
    switch (dlt & ~AF_DLT_PSEUDO_BE) {
    case DLT_EN10MB_:
        if ((flags & AF_DECODE_MAC) && caplen >= 12) memcpy(pkt->mac, data, 12);
        return decode_ethernet(data, caplen, pkt);
    case DLT_LINUX_SLL_:
        if (caplen < 16) return AF_ASIDE_TRUNCATED;
        return decode_ethertype(rd16(data + 14), data + 16, caplen - 16, pkt);
    case DLT_LINUX_SLL2_:
        if (caplen < 20) return AF_ASIDE_TRUNCATED;
        return decode_ethertype(rd16(data), data + 20, caplen - 20, pkt);
    case DLT_RAW_A: case DLT_RAW_B: case DLT_LINKTYPE_RAW:
        return decode_ip_by_version(data, caplen, pkt);
    case DLT_IPV4_: return decode_ipv4(data, caplen, pkt);
    case DLT_IPV6_: return decode_ipv6(data, caplen, pkt);
    case DLT_NULL_: case DLT_LOOP_: return decode_null(data, caplen, pkt);
    case DLT_PPP_: case DLT_PPP_SERIAL_: return af_decode_ppp(data, caplen, pkt);
    case DLT_C_HDLC_:
        if (caplen < 4) return AF_ASIDE_TRUNCATED;
        return decode_ethertype(rd16(data + 2), data + 4, caplen - 4, pkt);
    case DLT_NFLOG_: return decode_nflog(data, caplen, big_endian, pkt);
    default: return AF_ASIDE_UNSUPPORTED_LINK;
    }
}
