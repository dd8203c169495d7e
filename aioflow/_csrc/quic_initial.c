/* QUIC client Initial packets opened for JA4 (quic_initial.h says why and how). Every length is
 * read from the packet, so each is checked against the bytes there before use. */
#include "quic_initial.h"

#include <stdlib.h>
#include <string.h>

#include "sha256.h"

#define QUIC_V1 0x00000001u
#define QUIC_V2 0x6b3343cfu

/* A variable-length integer (RFC 9000 16) at p[*pos], len bytes in all; 0 when cut short. */
static int varint(const uint8_t *p, uint32_t len, uint32_t *pos, uint64_t *v) {
    if (*pos >= len) return 0;
    uint32_t n = 1u << (p[*pos] >> 6);
    if (n > len - *pos) return 0;
    uint64_t x = p[*pos] & 0x3fu;
    for (uint32_t i = 1; i < n; i++) x = x << 8 | p[*pos + i];
    *pos += n;
    *v = x;
    return 1;
}

int af_quic_next_crypto(const uint8_t *frames, uint32_t len, uint32_t *pos, uint64_t *offset, const uint8_t **data,
                        uint32_t *data_len) {
    while (*pos < len) {
        uint64_t type, a, b, n;
        if (!varint(frames, len, pos, &type)) return -1;
        switch (type) {
        case 0x00: case 0x01: continue;   /* PADDING, PING */
        case 0x02: case 0x03:             /* ACK: largest, delay, range count, first range, ranges (, ECN) */
            if (!varint(frames, len, pos, &a) || !varint(frames, len, pos, &a) || !varint(frames, len, pos, &n) ||
                !varint(frames, len, pos, &a) || n > len)
                return -1;
            for (uint64_t i = 0; i < 2 * n + (type == 0x03 ? 3 : 0); i++)
                if (!varint(frames, len, pos, &a)) return -1;
            continue;
        case 0x06:                        /* CRYPTO: offset, length, data */
            if (!varint(frames, len, pos, &a) || !varint(frames, len, pos, &b) || b > len - *pos) return -1;
            *offset = a;
            *data = frames + *pos;
            *data_len = (uint32_t)b;
            *pos += (uint32_t)b;
            return 1;
        case 0x1c:                        /* CONNECTION_CLOSE: code, frame type, reason */
            if (!varint(frames, len, pos, &a) || !varint(frames, len, pos, &a) || !varint(frames, len, pos, &b) ||
                b > len - *pos)
                return -1;
            *pos += (uint32_t)b;
            continue;
        default:
            return -1;
        }
    }
    return 0;
}

/* HKDF-Expand-Label (RFC 8446 7.1) with an empty context, out_len <= 32: one HMAC block. */
static void expand_label(const uint8_t secret[32], const char *label, uint8_t *out, uint32_t out_len) {
    uint8_t info[64], t[32];
    size_t n = strlen(label);
    info[0] = 0, info[1] = (uint8_t)out_len, info[2] = (uint8_t)(6 + n);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, n);
    info[9 + n] = 0;
    static const uint8_t one = 1;
    af_hmac_sha256(secret, 32, info, 10 + n, &one, 1, t);
    memcpy(out, t, out_len);
}

static void derive(af_quic_keys *k, uint32_t version, const uint8_t *dcid, uint32_t dcid_len) {
    static const uint8_t salt_v1[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                        0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
    static const uint8_t salt_v2[20] = {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                                        0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};
    int v2 = version == QUIC_V2;
    uint8_t initial[32], client[32];
    af_hmac_sha256(v2 ? salt_v2 : salt_v1, 20, dcid, dcid_len, NULL, 0, initial);   /* HKDF-Extract */
    expand_label(initial, "client in", client, 32);
    expand_label(client, v2 ? "quicv2 key" : "quic key", k->key, 16);
    expand_label(client, v2 ? "quicv2 iv" : "quic iv", k->iv, 12);
    expand_label(client, v2 ? "quicv2 hp" : "quic hp", k->hp, 16);
    k->set = 1;
}

#ifdef AF_HAVE_LIBCRYPTO
#include <openssl/evp.h>

struct af_quic_crypto {
    EVP_CIPHER_CTX *ecb, *gcm;
};

af_quic_crypto *af_quic_crypto_open(void) {
    af_quic_crypto *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    /* the header protection cipher chosen once: choosing it again with each key costs ~30,000
     * instructions (OpenSSL 3 fetches the algorithm), keying it ~1,000 */
    if (!(c->ecb = EVP_CIPHER_CTX_new()) || !(c->gcm = EVP_CIPHER_CTX_new()) ||
        EVP_EncryptInit_ex(c->ecb, EVP_aes_128_ecb(), NULL, NULL, NULL) != 1) {
        af_quic_crypto_close(c);
        return NULL;
    }
    return c;
}

void af_quic_crypto_close(af_quic_crypto *c) {
    if (!c) return;
    EVP_CIPHER_CTX_free(c->ecb);
    EVP_CIPHER_CTX_free(c->gcm);
    free(c);
}

/* mask: AES-ECB of the 16-byte sample with the header protection key. */
static int hp_mask(af_quic_crypto *c, const uint8_t hp[16], const uint8_t *sample, uint8_t mask[16]) {
    int n = 0;
    return EVP_EncryptInit_ex(c->ecb, NULL, NULL, hp, NULL) == 1 && EVP_CIPHER_CTX_set_padding(c->ecb, 0) == 1 &&
           EVP_EncryptUpdate(c->ecb, mask, &n, sample, 16) == 1 && n == 16;
}

/* AES-128-GCM open: AAD in three parts (the unmasked first byte, the header, the unmasked number). */
static int gcm_open(af_quic_crypto *c, const af_quic_keys *k, const uint8_t nonce[12], const uint8_t *aad[3],
                    const int aad_len[3], const uint8_t *in, uint32_t in_len, const uint8_t tag[16], uint8_t *out) {
    int n = 0;
    if (EVP_DecryptInit_ex(c->gcm, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->gcm, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
        EVP_DecryptInit_ex(c->gcm, NULL, NULL, k->key, nonce) != 1)
        return 0;
    for (int i = 0; i < 3; i++)
        if (EVP_DecryptUpdate(c->gcm, NULL, &n, aad[i], aad_len[i]) != 1) return 0;
    if (EVP_DecryptUpdate(c->gcm, out, &n, in, (int)in_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->gcm, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) != 1)
        return 0;
    return EVP_DecryptFinal_ex(c->gcm, out + n, &n) == 1;
}
#else
struct af_quic_crypto {
    int unused;
};
af_quic_crypto *af_quic_crypto_open(void) { return calloc(1, sizeof(af_quic_crypto)); }
void af_quic_crypto_close(af_quic_crypto *c) { free(c); }
#endif

int af_quic_open(af_quic_crypto *c, af_quic_keys *keys, const uint8_t *p, uint32_t len, uint32_t *packet_len,
                 uint8_t *out, uint32_t out_size, uint32_t *out_len) {
    if (len < 7 || !(p[0] & 0x80)) return AF_QUIC_NOT_INITIAL;
    uint32_t version = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    unsigned initial_type = version == QUIC_V2 ? 1u : 0u;   /* RFC 9369 3.2: v2 renumbers the types */
    if ((version != QUIC_V1 && version != QUIC_V2) || ((p[0] >> 4) & 3u) != initial_type) return AF_QUIC_NOT_INITIAL;
    uint32_t pos = 5, dcid_len = p[pos++];
    if (dcid_len > 20 || dcid_len >= len - pos) return AF_QUIC_FAILED;
    const uint8_t *dcid = p + pos;
    pos += dcid_len;
    uint32_t scid_len = p[pos++];
    if (scid_len > 20 || scid_len > len - pos) return AF_QUIC_FAILED;
    pos += scid_len;
    uint64_t token_len, length;
    if (!varint(p, len, &pos, &token_len) || token_len > len - pos) return AF_QUIC_FAILED;
    pos += (uint32_t)token_len;
    if (!varint(p, len, &pos, &length) || length > len - pos || length < 4 + 16 + 16) return AF_QUIC_FAILED;
    *packet_len = pos + (uint32_t)length;
#ifdef AF_HAVE_LIBCRYPTO
    if (!keys->set) derive(keys, version, dcid, dcid_len);
    uint8_t mask[16];
    if (!hp_mask(c, keys->hp, p + pos + 4, mask)) return AF_QUIC_FAILED;   /* the sample: 4 bytes past the number */
    uint8_t first = p[0] ^ (mask[0] & 0x0f);
    uint32_t pn_len = (first & 3u) + 1, payload_len = (uint32_t)length - pn_len - 16;
    if (payload_len > out_size) return AF_QUIC_FAILED;
    uint8_t pn[4], nonce[12];
    memcpy(nonce, keys->iv, 12);
    for (uint32_t i = 0; i < pn_len; i++) {
        pn[i] = p[pos + i] ^ mask[1 + i];
        nonce[12 - pn_len + i] ^= pn[i];   /* the packet number, right-aligned, XORed into the IV */
    }
    const uint8_t *aad[3] = {&first, p + 1, pn};
    const int aad_len[3] = {1, (int)pos - 1, (int)pn_len};
    const uint8_t *in = p + pos + pn_len;
    if (!gcm_open(c, keys, nonce, aad, aad_len, in, payload_len, in + payload_len, out)) return AF_QUIC_FAILED;
    *out_len = payload_len;
    return AF_QUIC_OK;
#else
    (void)c, (void)keys, (void)dcid, (void)out, (void)out_size, (void)out_len, (void)derive;
    return AF_QUIC_NO_CRYPTO;
#endif
}
