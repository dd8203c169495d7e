/* Packet decoding: link layer -> IP -> transport, into the few fields a flow needs.
 * One function per layer; every malformed input ends as a counted aside reason, never an error,
 * or, where the flow is still known (its ports readable), as a decode event on the packet. */
#ifndef AIOFLOW_DECODE_H
#define AIOFLOW_DECODE_H
#include <stdint.h>

#define AF_DECODED (-1)       /* af_decode result: the packet belongs to a flow */

enum af_frag_kind { AF_FRAG_NONE = 0, AF_FRAG_FIRST = 1, AF_FRAG_LATER = 2 };

typedef struct {
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint16_t vlan_id;
    uint8_t ip_version, protocol;
    uint8_t ttl, tcp_flags;
    uint8_t frag;             /* enum af_frag_kind */
    uint8_t tunnel_type;      /* enum af_tunnel_type of the outermost tunnel (decode_tunnels) */
    uint16_t events;          /* bit i: enum af_decode_event i happened decoding it */
    uint16_t ip_id, ip_frag, tcp_window;
    uint16_t l4_offset;       /* transport header's offset from l3 (IP + extension headers); 0 if none */
    uint8_t icmp_type, icmp_code;   /* ICMP/ICMPv6 (an echo's ports are its identifier, so kept here) */
    uint32_t frag_id;         /* IPv4 id or IPv6 fragment identification */
    uint32_t ip_length;       /* as announced by the IP header */
    uint32_t tcp_seq, tcp_ack;
    const uint8_t *l3;        /* network header in the captured bytes */
    uint32_t l3_headers_len;  /* network + transport header bytes available from l3 */
    uint8_t checksum_bad;     /* AF_DECODE_CHECKSUMS: AF_BAD_* of this packet's own IP and transport
                                 headers (an outer tunnel's is in events alone); here, in padding,
                                 so the part af_decode clears per packet stays as long */
    const uint8_t *payload;   /* transport payload as captured (valid while the frame is); NULL if none */
    uint32_t payload_len;     /* captured payload bytes (Ethernet padding excluded) */
    uint32_t tunnel_id;       /* decode_tunnels: identity of the tunnel path (tunnels.h), 0: none; in the flow key */
    uint8_t tunnel_depth;     /* tunnels opened so far (while decoding) */
    uint8_t decode_flags;     /* AF_DECODE_* the packet was decoded with */
    /* Zeroed and filled only when decode_flags asks (the flow-only path clears none of it): */
    uint8_t tunnel_ip_version;/* outermost tunnel's endpoints: 4, 6, or 0 (none: MPLS over Ethernet) */
    uint8_t mac[12];          /* AF_DECODE_MAC: the outermost Ethernet destination then source; zero without */
    uint8_t tunnel_src[16], tunnel_dst[16];
} af_packet;

/* Or'ed into a link type given to af_decode: the frame's pseudo-header fields that are in the
 * capturing host's byte order (NFLOG's TLV lengths and types) are big-endian, because the file was
 * written in that order (libpcap's swap_pseudo_headers; without the flag, little-endian). */
#define AF_DLT_PSEUDO_BE 0x40000000

#define AF_DECODE_TUNNELS 1u  /* af_decode flag: open tunnels (tunnels.h) */
#define AF_DECODE_MAC 2u      /* af_decode flag: keep the Ethernet addresses (mac) */
#define AF_DECODE_CHECKSUMS 4u/* af_decode flag: verify checksums (checksum.h) */

enum { AF_BAD_IP_HEADER = 1, AF_BAD_TRANSPORT = 2 };   /* af_packet.checksum_bad */

/* Fills pkt from one captured frame (flags: AF_DECODE_*). Returns AF_DECODED, or an enum
 * af_aside_reason. */
int af_decode(int dlt, const uint8_t *data, uint32_t caplen, af_packet *pkt, unsigned flags);

/* The layers tunnels.c re-enters for a tunnel's payload (decode.c). */
int af_decode_ethertype(uint16_t type, const uint8_t *p, uint32_t len, af_packet *pkt);
int af_decode_ip(const uint8_t *p, uint32_t len, af_packet *pkt);
int af_decode_ethernet(const uint8_t *p, uint32_t len, af_packet *pkt);
int af_decode_ppp(const uint8_t *p, uint32_t len, af_packet *pkt);

/* tunnels.c (decode_tunnels): a decoded IP packet (pkt->payload: its transport payload, or for IP
 * protocols without ports the whole IP payload) that may carry a tunnel is opened; Ethernet over
 * MPLS (the bytes after the bottom label) too. AF_DECODED (the inner packet, or the carrier when
 * the inner is no IP or is malformed: a decode event) or an aside reason. */
int af_tunnel_open(af_packet *pkt);

/* checksum.c, with AF_DECODE_CHECKSUMS, on a decoded IP packet (snap_cut: the capture holds less of
 * it than its IP length): sets pkt->checksum_bad (AF_BAD_*) and AF_EVENT_BAD_CHECKSUM when the IPv4
 * header's checksum is wrong, or the transport's of a whole packet (not cut, not a fragment; a UDP
 * checksum of 0 over IPv4 is none). */
void af_check_checksums(af_packet *pkt, int snap_cut);
int af_tunnel_mpls(af_packet *pkt, const uint8_t *p, uint32_t len);

#endif
