/* SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104); sha256.h says why aioflow has its own. */
#include "sha256.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n) { return x >> n | x << (32 - n); }

static inline uint32_t load_be(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Eight rounds a step with the working variables' roles rotated by name rather than moved, and
 * the message schedule in a 16-word ring computed as it is used: about 60% of the instructions of
 * the textbook loop (JA4 hashes two short lists per ClientHello, QUIC's key derivation ~20 blocks a
 * flow). */
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BIG0(x) (ror(x, 2) ^ ror(x, 13) ^ ror(x, 22))
#define BIG1(x) (ror(x, 6) ^ ror(x, 11) ^ ror(x, 25))
#define SMALL0(x) (ror(x, 7) ^ ror(x, 18) ^ (x) >> 3)
#define SMALL1(x) (ror(x, 17) ^ ror(x, 19) ^ (x) >> 10)
#define W(j) (w[(j) & 15] += SMALL1(w[((j) + 14) & 15]) + w[((j) + 9) & 15] + SMALL0(w[((j) + 1) & 15]))
#define ROUND(a, b, c, d, e, f, g, h, k, wj)                                            \
    do {                                                                                \
        uint32_t t1 = h + BIG1(e) + CH(e, f, g) + (k) + (wj);                           \
        d += t1;                                                                        \
        h = t1 + BIG0(a) + MAJ(a, b, c);                                                \
    } while (0)
#define EIGHT(i, j, WJ)                                                                 \
    ROUND(a, b, c, d, e, f, g, h, K[(i) + 0], WJ((j) + 0));                             \
    ROUND(h, a, b, c, d, e, f, g, K[(i) + 1], WJ((j) + 1));                             \
    ROUND(g, h, a, b, c, d, e, f, K[(i) + 2], WJ((j) + 2));                             \
    ROUND(f, g, h, a, b, c, d, e, K[(i) + 3], WJ((j) + 3));                             \
    ROUND(e, f, g, h, a, b, c, d, K[(i) + 4], WJ((j) + 4));                             \
    ROUND(d, e, f, g, h, a, b, c, K[(i) + 5], WJ((j) + 5));                             \
    ROUND(c, d, e, f, g, h, a, b, K[(i) + 6], WJ((j) + 6));                             \
    ROUND(b, c, d, e, f, g, h, a, K[(i) + 7], WJ((j) + 7))
#define W0(j) w[j]

/* With BMI2 (chosen at load time where the compiler can make clones) a rotation is one instruction
 * that leaves its operand alone (rorx), not a copy and a rotation: ~20% fewer instructions. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SHA256_CLONES __attribute__((target_clones("bmi2", "default")))
#else
#define SHA256_CLONES
#endif

SHA256_CLONES static void compress(uint32_t hash[8], const uint8_t *p) {
    uint32_t w[16];
    for (int i = 0; i < 16; i++) w[i] = load_be(p + 4 * i);
    uint32_t a = hash[0], b = hash[1], c = hash[2], d = hash[3], e = hash[4], f = hash[5], g = hash[6], h = hash[7];
    EIGHT(0, 0, W0);
    EIGHT(8, 8, W0);
    for (int i = 16; i < 64; i += 16) {   /* j: the ring's positions, the same each time round */
        EIGHT(i, 0, W);
        EIGHT(i + 8, 8, W);
    }
    hash[0] += a, hash[1] += b, hash[2] += c, hash[3] += d, hash[4] += e, hash[5] += f, hash[6] += g, hash[7] += h;
}

void af_sha256_init(af_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->bytes = 0;
}

void af_sha256_update(af_sha256 *s, const void *data, size_t len) {
    if (!len) return;   /* data may be NULL then (an empty HMAC message) */
    const uint8_t *p = data;
    size_t have = (size_t)(s->bytes % 64);
    s->bytes += len;
    if (have) {
        size_t n = 64 - have < len ? 64 - have : len;
        memcpy(s->block + have, p, n);
        p += n, len -= n, have += n;
        if (have < 64) return;
        compress(s->h, s->block);
    }
    for (; len >= 64; p += 64, len -= 64) compress(s->h, p);
    if (len) memcpy(s->block, p, len);
}

void af_sha256_final(af_sha256 *s, uint8_t digest[32]) {
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t have = (size_t)(s->bytes % 64);
    size_t n = (have < 56 ? 56 : 120) - have;   /* up to the length field of the last block */
    for (int i = 0; i < 8; i++) pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    af_sha256_update(s, pad, n + 8);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24), digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8), digest[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void af_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *m1, size_t len1, const uint8_t *m2,
                    size_t len2, uint8_t mac[32]) {
    uint8_t k[64] = {0}, pad[64], inner[32];
    af_sha256 s;
    if (key_len > 64) {
        af_sha256_init(&s);
        af_sha256_update(&s, key, key_len);
        af_sha256_final(&s, k);
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    af_sha256_init(&s);
    af_sha256_update(&s, pad, 64);
    af_sha256_update(&s, m1, len1);
    af_sha256_update(&s, m2, len2);
    af_sha256_final(&s, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    af_sha256_init(&s);
    af_sha256_update(&s, pad, 64);
    af_sha256_update(&s, inner, 32);
    af_sha256_final(&s, mac);
}
