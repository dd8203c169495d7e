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
    uint8_t events;           /* bit i: enum af_decode_event i happened decoding it */
    uint16_t ip_id, ip_frag, tcp_window;
    uint16_t l4_offset;       /* transport header's offset from l3 (IP + extension headers); 0 if none */
    uint8_t icmp_type, icmp_code;   /* ICMP/ICMPv6 (an echo's ports are its identifier, so kept here) */
    uint32_t frag_id;         /* IPv4 id or IPv6 fragment identification */
    uint32_t ip_length;       /* as announced by the IP header */
    uint32_t tcp_seq, tcp_ack;
    const uint8_t *l3;        /* network header in the captured bytes */
    uint32_t l3_headers_len;  /* network + transport header bytes available from l3 */
    const uint8_t *payload;   /* transport payload as captured (valid while the frame is); NULL if none */
    uint32_t payload_len;     /* captured payload bytes (Ethernet padding excluded) */
} af_packet;

/* Or'ed into a link type given to af_decode: the frame's pseudo-header fields that are in the
 * capturing host's byte order (NFLOG's TLV lengths and types) are big-endian, because the file was
 * written in that order (libpcap's swap_pseudo_headers; without the flag, little-endian). */
#define AF_DLT_PSEUDO_BE 0x40000000

/* Fills pkt from one captured frame. Returns AF_DECODED, or an enum af_aside_reason. */
int af_decode(int dlt, const uint8_t *data, uint32_t caplen, af_packet *pkt);

#endif
