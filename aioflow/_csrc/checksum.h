/* Internet checksums (RFC 1071): check_checksums=True verifies a packet's IPv4 header checksum and
 * its TCP, UDP, ICMP or ICMPv6 checksum while decoding it (decode.c), and the defragmenter writes a
 * reassembled IPv4 header's. */
#ifndef AIOFLOW_CHECKSUM_H
#define AIOFLOW_CHECKSUM_H
#include <stdint.h>

#include "decode.h"

/* The one's complement sum of n bytes (at an even offset of what is summed) added to acc, in
 * 16-bit words of memory order: RFC 1071's sum is the same in either byte order, so the words are
 * summed as they lie, 8 bytes at a time, and only af_csum_fold's result is in memory order. */
uint64_t af_csum_add(uint64_t acc, const uint8_t *p, uint32_t n);

/* The 16-bit one's complement sum of af_csum_add's total, in memory order: 0xffff when what was
 * summed holds its own correct checksum. */
uint16_t af_csum_fold(uint64_t acc);

/* decode.c with AF_DECODE_CHECKSUMS, on a decoded IP packet (snap_cut: the capture holds less of it
 * than its IP length): sets pkt->checksum_bad (AF_BAD_*) and AF_EVENT_BAD_CHECKSUM when the IPv4
 * header's checksum is wrong, or the transport's of a whole packet (not cut, not a fragment; a UDP
 * checksum of 0 over IPv4 is none). */
void af_check_checksums(af_packet *pkt, int snap_cut);

#endif
