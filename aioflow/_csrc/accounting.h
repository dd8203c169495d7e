/* A packet's size as nfstream's accounting modes define it (statistics.c, splt.c):
 *   0: the frame on the wire (link layer included), 1: the IP packet (IP total length),
 *   2: the transport segment (IP payload after extension headers; 0 for a protocol other than
 *      TCP, UDP, ICMP and ICMPv6), 3: the transport payload (after the TCP/UDP/ICMP header).
 * Lengths come from the headers (as announced), not from what was captured. */
#ifndef AIOFLOW_ACCOUNTING_H
#define AIOFLOW_ACCOUNTING_H
#include <stdint.h>

#include "meter.h"

enum { AF_ACCOUNT_RAW = 0, AF_ACCOUNT_IP = 1, AF_ACCOUNT_TRANSPORT = 2, AF_ACCOUNT_PAYLOAD = 3 };

/* The transport segment's length (mode 2). */
static inline uint32_t af_transport_size(const af_packet *p) {
    uint8_t proto = p->protocol;
    if ((proto != 6 && proto != 17 && proto != 1 && proto != 58) || !p->l4_offset) return 0;
    return p->ip_length > p->l4_offset ? p->ip_length - p->l4_offset : 0;
}

/* The transport payload's length (mode 3): the segment less its TCP header (data offset), or
 * the 8 bytes of a UDP, ICMP or ICMPv6 header. */
static inline uint32_t af_payload_size(const af_packet *p) {
    uint32_t segment = af_transport_size(p);
    uint32_t header = p->protocol == 6 ? p->l3_headers_len - p->l4_offset : 8;
    return segment > header ? segment - header : 0;
}

static inline uint32_t af_accounted_size(const af_meter_packet *mp, int mode) {
    switch (mode) {
    case AF_ACCOUNT_RAW: return mp->wire_len;
    case AF_ACCOUNT_IP: return mp->p->ip_length;
    case AF_ACCOUNT_TRANSPORT: return af_transport_size(mp->p);
    default: return af_payload_size(mp->p);
    }
}

/* A meter's open hook for meters whose context is the configuration (its accounting mode and
 * options), which outlives them. */
static inline void *af_config_context(const af_config *cfg, af_stats *stats) {
    (void)stats;
    return (void *)(uintptr_t)cfg;
}

#endif
