/* JA4, FoxIO's TLS client fingerprint (BSD-3-Clause; github.com/FoxIO-LLC/ja4, technical_details/
 * JA4.md), from a flow's ClientHello: over TCP ('t') and in QUIC Initial packets ('q', opened by
 * quic_initial.h). Only JA4 itself: the other JA4+ methods are under FoxIO's non-free licence.
 *
 * The dissect meter gives each flow's packets to af_ja4_packet while it dissects the flow (its
 * first max_dissections packets) and asks af_ja4_pending whether a ClientHello is still coming.
 * The ClientHello message is gathered into a bounded buffer (AF_JA4_HELLO_MAX bytes): over TCP
 * from the client's TLS records, in sequence order, starting at a client segment that begins a
 * handshake record (so a ClientHello after a SOCKS or CONNECT exchange is found too); a client
 * segment that comes ahead of a missing one (reordered, or the missing one retransmitted later)
 * is placed in the buffer by its sequence number and taken when the gap fills, as tshark's
 * out-of-order reassembly does, also before the segment that begins the ClientHello when the
 * client's SYN was seen. In QUIC from the CRYPTO frames of the client's Initial packets, placed by
 * their offsets (any order). What is not fingerprinted is counted (af_stats dissect_ja4_*): a
 * ClientHello larger than the buffer, one with a TCP segment still missing when the dissection
 * ends (gap), one not whole then for want of packets (incomplete), one whose fields overrun, a
 * QUIC Initial not opened. Only the first ClientHello of a flow counts; DTLS is not fingerprinted. */
#ifndef AIOFLOW_JA4_H
#define AIOFLOW_JA4_H
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "decode.h"
#include "quic_initial.h"

#define AF_JA4_HELLO_MAX 4096u       /* ClientHello bytes (handshake header included) kept at most */
#define AF_JA4_LEN 37                /* "t13d1516h2_8daaf6152771_e5627efa2ab1" and its NUL */

/* One flow's JA4 while it is dissected. af_ja4_start sets the head; the buffers after it are
 * written only as a ClientHello comes, so a flow without one never touches (backs) them. */
typedef struct {
    uint8_t phase;                   /* enum in ja4.c */
    uint8_t transport;               /* 't' or 'q' once a ClientHello began */
    uint8_t record_head_have;        /* TCP: bytes of a TLS record header gathered */
    uint8_t record_head[5];
    uint16_t record_left;            /* TCP: bytes of the current record's body still to come */
    uint8_t anchored;                /* TCP: anchor is known (the SYN's, or where the hello began) */
    uint32_t anchor;                 /* TCP: the sequence number placed at buf[0] */
    uint32_t placed_end;             /* TCP: end of the bytes placed ahead of a gap in buf (0: none;
                                        else filled is in use) */
    uint32_t next_seq;               /* TCP: sequence number of the next client byte (before the
                                        hello began: of the next byte after the SYN's, anchored) */
    uint32_t have;                   /* ClientHello bytes in buf from 0 on, contiguous */
    uint32_t hello_len;              /* the ClientHello's bytes, header included (0: not known yet) */
    af_quic_keys keys;
    uint8_t filled[AF_JA4_HELLO_MAX / 8];   /* buf bytes written (QUIC) or placed (TCP), a bit each */
    uint8_t buf[AF_JA4_HELLO_MAX];
} af_ja4_flow;

/* The lists' hashes of recent ClientHellos, by their text: a client (a browser, a TLS library)
 * offers the same ciphers and extensions on every connection, so most hellos' lists were hashed
 * before. Direct-mapped (a slot per text hash, the newest text in it), compared in full; a list
 * longer than a slot's text is hashed each time. The dissect meter keeps one per engine (64 KiB,
 * zeroed: every slot empty). */
#define AF_JA4_CACHE_SLOTS 256u
typedef struct {
    uint8_t len;                     /* text's bytes; 0: empty */
    char hash[12];                   /* hash12 of text */
    char text[243];
} af_ja4_cached;
typedef struct {
    af_ja4_cached slot[AF_JA4_CACHE_SLOTS];
} af_ja4_cache;

void af_ja4_start(af_ja4_flow *f);
/* A packet of the flow: p its headers (protocol, TCP sequence number), direction 0 when the client
 * sent it, its transport payload. crypto: for QUIC Initials (may be NULL: then none is opened). */
void af_ja4_packet(af_ja4_flow *f, af_quic_crypto *crypto, const af_packet *p, int direction, const uint8_t *payload,
                   uint32_t len, af_stats *st);
/* The frames of an opened QUIC Initial (af_quic_open's out): their CRYPTO data into the flow's
 * ClientHello. af_ja4_packet calls it; so does the fuzz harness, which cannot forge a GCM tag. */
void af_ja4_quic_frames(af_ja4_flow *f, const uint8_t *frames, uint32_t len, af_stats *st);
/* 1 while a ClientHello has begun and is not whole yet (the dissection should go on for it). */
int af_ja4_pending(const af_ja4_flow *f);
/* 1 while no ClientHello has begun and one still may (a TCP flow whose client sent no TLS yet). */
int af_ja4_waiting(const af_ja4_flow *f);
/* The dissection ends: ja4 and ja4_r (raw_size bytes) written, "" when there is none (counted).
 * Returns 1 when ja4_r did not fit raw_size (then it is "", ja4 still set). cache: may be NULL. */
uint32_t af_ja4_finish(af_ja4_flow *f, af_ja4_cache *cache, char ja4[AF_JA4_LEN], char *ja4_r, size_t raw_size,
                       af_stats *st);
/* The fingerprint of one ClientHello handshake message (type, 3-byte length, body), transport 't'
 * or 'q'. Returns 0 when the message is malformed (ja4 and ja4_r then ""), 2 when only ja4_r did not
 * fit (it is ""), else 1. Pure but for the cache (may be NULL): the fuzz harness calls it directly. */
int af_ja4_hello(const uint8_t *msg, uint32_t len, char transport, af_ja4_cache *cache, char ja4[AF_JA4_LEN],
                 char *ja4_r, size_t raw_size);

#endif
