/* SHA-256 and HMAC-SHA-256 (FIPS 180-4, RFC 2104), aioflow's own: JA4 hashes its lists with
 * SHA-256 and QUIC's Initial keys come from HKDF-SHA-256, and neither should need a crypto library
 * (libcrypto is optional, for QUIC's AES only). Not constant-time: it hashes public bytes. */
#ifndef AIOFLOW_SHA256_H
#define AIOFLOW_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;                  /* hashed so far */
    uint8_t block[64];               /* the partial block (bytes % 64 of it) */
} af_sha256;

void af_sha256_init(af_sha256 *s);
void af_sha256_update(af_sha256 *s, const void *data, size_t len);
void af_sha256_final(af_sha256 *s, uint8_t digest[32]);
/* HMAC-SHA-256 of the concatenation of two messages (HKDF's info then counter needs no copy). */
void af_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *m1, size_t len1, const uint8_t *m2,
                    size_t len2, uint8_t mac[32]);

#endif
