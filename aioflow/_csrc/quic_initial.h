/* QUIC's client Initial packets opened (RFC 9001 section 5, RFC 9369 for v2), for JA4's 'q'
 * fingerprint: the ClientHello travels in their CRYPTO frames, protected with keys anyone can
 * derive from the packet's Destination Connection ID. The keys come from HKDF-SHA-256 (sha256.h);
 * AES (header protection, AES-128-GCM) comes from OpenSSL's libcrypto when _build_pcap.py found it
 * (AF_HAVE_LIBCRYPTO); without it af_quic_open says AF_QUIC_NO_CRYPTO and nothing is decrypted. */
#ifndef AIOFLOW_QUIC_INITIAL_H
#define AIOFLOW_QUIC_INITIAL_H
#include <stdint.h>

/* A client's Initial keys: from its first Initial's DCID, kept for the flow's later Initials
 * (whose DCID may be the server's by then). */
typedef struct {
    uint8_t key[16], iv[12], hp[16];
    uint8_t set;                     /* 1: derived */
} af_quic_keys;

typedef struct af_quic_crypto af_quic_crypto;   /* cipher contexts, made once (not per packet) */

enum {
    AF_QUIC_OK,                      /* an Initial opened: its frames are in out */
    AF_QUIC_NOT_INITIAL,             /* not a QUIC v1/v2 Initial long-header packet */
    AF_QUIC_FAILED,                  /* an Initial, but cut short, too big, or its tag did not verify */
    AF_QUIC_NO_CRYPTO,               /* an Initial, but this build has no libcrypto */
};

/* NULL without memory (or without libcrypto: then af_quic_open answers AF_QUIC_NO_CRYPTO). */
af_quic_crypto *af_quic_crypto_open(void);
void af_quic_crypto_close(af_quic_crypto *c);
/* Opens the long-header packet at the start of dgram (len bytes): derives keys if !keys->set,
 * decrypts its payload into out (out_size bytes at most, *out_len written) and sets *packet_len to
 * the packet's bytes (a datagram may hold several packets, coalesced). */
int af_quic_open(af_quic_crypto *c, af_quic_keys *keys, const uint8_t *dgram, uint32_t len, uint32_t *packet_len,
                 uint8_t *out, uint32_t out_size, uint32_t *out_len);
/* The next CRYPTO frame of an opened Initial's frames from *pos on: 1 with its stream offset and
 * data, 0 at the end, -1 for a frame an Initial may not hold or one cut short. */
int af_quic_next_crypto(const uint8_t *frames, uint32_t len, uint32_t *pos, uint64_t *offset, const uint8_t **data,
                        uint32_t *data_len);

#endif
