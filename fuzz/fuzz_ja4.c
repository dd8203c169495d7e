/* libFuzzer harness (c): the JA4 parser (aioflow/_csrc/ja4.c) on its own, fast enough to reach
 * its corners (the packet path harness runs the whole engine, and nDPI's set-up per input would
 * slow it tenfold). The input is one flow's payloads, as the dissect meter gives them:
 *   [0] bit 0: UDP (QUIC Initials), else TCP; bit 1: the payloads are also given as an opened
 *       Initial's frames (af_ja4_quic_frames: the fuzzer cannot forge a GCM tag to reach them)
 *   then payloads: [u16 length, little-endian][u8 flags][length bytes], the last one cut where
 *   the input ends; flags bit 0: sent by the server; bit 1: a retransmission (the previous
 *   segment's sequence number); bit 2: one byte is missing before it (a gap).
 * Then the whole input after byte 0 is parsed as one ClientHello message (af_ja4_hello), with a
 * raw field too small and one large enough, and through the cache of recent lists' hashes (kept
 * across inputs) and without it. Each JA4 must be "" or 36 characters, the cached one the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ja4.h"

static void check(const char *ja4) {
    size_t n = strlen(ja4);
    if (n != 0 && n != AF_JA4_LEN - 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static af_ja4_flow flow;
    static af_ja4_cache cache;   /* kept across inputs: a hit must give what hashing gives */
    static af_quic_crypto *crypto;
    if (!crypto && !(crypto = af_quic_crypto_open())) abort();
    if (size < 1) return 0;
    af_stats st;
    memset(&st, 0, sizeof st);
    af_ja4_start(&flow);
    af_packet p;
    memset(&p, 0, sizeof p);
    p.protocol = data[0] & 1 ? 17 : 6;
    uint32_t seq = 1000, last = seq;
    for (size_t at = 1; at + 3 <= size;) {
        uint32_t len = (uint32_t)data[at] | (uint32_t)data[at + 1] << 8;
        uint8_t flags = data[at + 2];
        at += 3;
        if (len > size - at) len = (uint32_t)(size - at);
        if (flags & 2) seq = last;
        if (flags & 4) seq++;
        p.tcp_seq = seq;
        af_ja4_packet(&flow, crypto, &p, flags & 1, data + at, len, &st);
        if (data[0] & 2) af_ja4_quic_frames(&flow, data + at, len, &st);
        last = seq;
        seq += len;
        at += len;
    }
    af_ja4_pending(&flow);
    char ja4[AF_JA4_LEN], raw[512], small[40];
    af_ja4_finish(&flow, &cache, ja4, raw, sizeof raw, &st);
    check(ja4);
    uint32_t n = size - 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(size - 1);
    af_ja4_hello(data + 1, n, 't', &cache, ja4, raw, sizeof raw);
    check(ja4);
    char hashed[AF_JA4_LEN];   /* the same without the cache */
    af_ja4_hello(data + 1, n, 't', NULL, hashed, raw, sizeof raw);
    if (strcmp(ja4, hashed)) abort();
    af_ja4_hello(data + 1, n, 'q', NULL, ja4, small, sizeof small);
    check(ja4);
    if (strlen(small) >= sizeof small) abort();
    return 0;
}
