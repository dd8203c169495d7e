/* Internet checksums (RFC 1071): check_checksums=True verifies a packet's IPv4 header checksum and
 * its TCP, UDP, ICMP or ICMPv6 checksum while decoding it (decode.c), and the defragmenter writes a
 * reassembled IPv4 header's. */
#ifndef AIOFLOW_CHECKSUM_H
#define AIOFLOW_CHECKSUM_H
#include <stdint.h>

/* The one's complement sum of n bytes (at an even offset of what is summed) added to acc, in
 * 16-bit words of memory order: RFC 1071's sum is the same in either byte order, so the words are
 * summed as they lie, 8 bytes at a time, and only af_csum_fold's result is in memory order. */
uint64_t af_csum_add(uint64_t acc, const uint8_t *p, uint32_t n);

/* The 16-bit one's complement sum of af_csum_add's total, in memory order: 0xffff when what was
 * summed holds its own correct checksum. */
uint16_t af_csum_fold(uint64_t acc);

/* af_check_checksums, checksum.c's use of these for the decoder, is declared in decode.h (one
 * module pair, without an include cycle, as tunnels.c's entry points). */

#endif
