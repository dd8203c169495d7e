/* The packet as it travels from the reading stages (source, prepare, read-ahead ring) to the
 * counting stages (account, meters): decoded, keyed and hashed, with copies of what the capture
 * buffer held (libpcap, or a decompressor, reuses it for the next packet). */
#ifndef AIOFLOW_PACKET_H
#define AIOFLOW_PACKET_H
#include <stdint.h>

#include "aioflow.h"
#include "decode.h"
#include "flowtable.h"

#define AF_MAX_PAYLOAD 65600u        /* largest payload one packet (or datagram) carries */

/* What counting reads first comes first; raw (headers=N only) last. */
typedef struct {
    uint64_t hash;
    int pending;                     /* read ahead, a fragment: the counting thread prepares it */
    int foreign;                     /* workers: another worker's flow, only its time counts here
                                      * (set where keyed, or by the reading thread per lane) */
    int sender;                      /* 1 when the packet's sender is the key's endpoint 1 */
    uint64_t ts;
    uint64_t clock;                  /* the newest time of the packets read so far (read ahead with
                                      * workers: of every worker's; fragments: before this one) */
    uint32_t caplen;
    uint32_t payload_len;            /* meters that read payloads: payload copied to `payload` */
    const uint8_t *payload;          /* the payload copy; a fragment read ahead: the frame's copy */
    uint32_t l3_len;                 /* meters that read IP packets: bytes of it copied (0: none), */
    uint32_t l3_headers;             /* of which network + transport headers, just before `payload` */
    uint64_t ring_end;               /* read ahead: ring bytes used up to the end of its copy */
    int decoded;                     /* af_decode's result */
    int32_t dlt;                     /* its link type (a pcapng's interfaces may differ) */
    uint32_t wire_len;               /* the frame's length on the wire (the capture's original length) */
    af_key key;
    af_packet p;
    uint8_t raw[sizeof(((af_header *)0)->raw)];   /* headers kept: libpcap reuses its buffer */
} af_queued;

#endif
