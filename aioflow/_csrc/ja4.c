/* JA4 (TLS client fingerprint) from a flow's ClientHello: ja4.h says what is gathered and what is
 * counted. The bytes are untrusted: every length read from them is checked against what is there
 * before it is used, and the buffers are never written past AF_JA4_HELLO_MAX. */
#include "ja4.h"

#include <stdlib.h>
#include <string.h>

#include "sha256.h"

enum { WAITING, COLLECTING, COMPLETE, NONE };   /* af_ja4_flow.phase */

#define TLS_HANDSHAKE 0x16
#define CLIENT_HELLO 1
#define MAX_VALUES (AF_JA4_HELLO_MAX / 2)   /* ciphers or extensions a ClientHello can hold */

/* A bounds-checked reader: a read past the end sets bad and yields 0. */
typedef struct {
    const uint8_t *p;
    uint32_t len, pos;
    int bad;
} reader;

static uint32_t get(reader *r, uint32_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = 0;
    for (uint32_t i = 0; i < n; i++) v = v << 8 | r->p[r->pos + i];
    r->pos += n;
    return v;
}

/* A sub-reader over the next n bytes (skipped in r). */
static reader sub(reader *r, uint32_t n) {
    reader s = {r->p + r->pos, n, 0, r->bad || n > r->len - r->pos};
    if (s.bad) s.len = 0, r->bad = 1;
    else r->pos += n;
    return s;
}

/* GREASE (RFC 8701): 0x?a?a with both bytes equal; JA4 ignores these everywhere. */
static int grease(uint32_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static int by_value(const void *a, const void *b) {
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Sorted in place: insertion for the usual few dozen values (no call per comparison, as qsort
 * makes), qsort past that (a crafted hello may hold up to MAX_VALUES). */
static void sort_values(uint16_t *v, uint32_t n) {
    if (n > 64) {
        qsort(v, n, sizeof v[0], by_value);
        return;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint16_t x = v[i];
        uint32_t j = i;
        for (; j && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

static const char HEX[] = "0123456789abcdef";

/* A list as "xxxx,xxxx" at text + at; the new end. */
static size_t put_list(char *text, size_t at, const uint16_t *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (i) text[at++] = ',';
        text[at] = HEX[v[i] >> 12], text[at + 1] = HEX[v[i] >> 8 & 15];
        text[at + 2] = HEX[v[i] >> 4 & 15], text[at + 3] = HEX[v[i] & 15];
        at += 4;
    }
    return at;
}

/* The cache slot of a text: FNV-1a over 8-byte words (a slot index, not a fingerprint). */
static uint32_t slot_of(const char *text, size_t len) {
    uint64_t h = 0xcbf29ce484222325u, w;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) memcpy(&w, text + i, 8), h = (h ^ w) * 0x100000001b3u;
    for (; i < len; i++) h = (h ^ (uint8_t)text[i]) * 0x100000001b3u;
    return (uint32_t)(h ^ h >> 32) % AF_JA4_CACHE_SLOTS;
}

/* 12 hex characters of the SHA-256 of len bytes of text, or twelve zeros for an empty list (n
 * values: JA4.md); from the cache when the same text was hashed last in its slot. */
static void hash12(af_ja4_cache *cache, const char *text, size_t len, uint32_t n, char out[12]) {
    if (!n) {
        memset(out, '0', 12);
        return;
    }
    af_ja4_cached *slot = cache && len <= sizeof slot->text ? &cache->slot[slot_of(text, len)] : NULL;
    if (slot && slot->len == len && !memcmp(slot->text, text, len)) {
        memcpy(out, slot->hash, 12);
        return;
    }
    uint8_t d[32];
    af_sha256 h;
    af_sha256_init(&h);
    af_sha256_update(&h, text, len);
    af_sha256_final(&h, d);
    for (int i = 0; i < 6; i++) out[2 * i] = HEX[d[i] >> 4], out[2 * i + 1] = HEX[d[i] & 15];
    if (slot) {
        slot->len = (uint8_t)len;
        memcpy(slot->text, text, len);
        memcpy(slot->hash, out, 12);
    }
}

static const char *version_text(uint32_t v) {
    switch (v) {
    case 0x0304: return "13";
    case 0x0303: return "12";
    case 0x0302: return "11";
    case 0x0301: return "10";
    case 0x0300: return "s3";
    case 0x0002: return "s2";
    case 0xfeff: return "d1";
    case 0xfefd: return "d2";
    case 0xfefc: return "d3";
    default: return "00";
    }
}

/* One ALPN byte as FoxIO's tools print it: ASCII as it is, anything else '9'. (JA4.md asks for hex
 * digits when a byte is not alphanumeric, but FoxIO's Python and Rust tools, whose outputs are the
 * reference, replace non-ASCII with '9' and keep ASCII; control characters are '9' here too, so the
 * text field never holds one.) */
static char alpn_char(uint8_t c) { return c >= 0x20 && c < 0x7f ? (char)c : '9'; }

/* The first and last characters of the first ALPN value: "00" when there is none; like FoxIO's
 * tools, a one-character value gives that character then '0'. */
static void alpn_chars(reader ext, char out[2]) {
    reader list = sub(&ext, get(&ext, 2));
    uint32_t n = get(&list, 1);
    reader value = sub(&list, n);
    out[0] = out[1] = '0';
    if (value.bad || !n) return;
    out[0] = alpn_char(value.p[0]);
    if (n > 1) out[1] = alpn_char(value.p[n - 1]);
}

int af_ja4_hello(const uint8_t *msg, uint32_t len, char transport, af_ja4_cache *cache, char ja4[AF_JA4_LEN],
                 char *ja4_r, size_t raw_size) {
    /* On the stack (22 KiB), not thread-local: in a shared library every thread-local access may be
     * a call (__tls_get_addr), and these are written a value at a time. */
    uint16_t ciphers[MAX_VALUES], exts[MAX_VALUES], sigs[MAX_VALUES];
    /* ja4_r, whose two spans are what is hashed: every value is at least 2 bytes of the hello, so
     * there are MAX_VALUES of them at most, 5 characters each */
    char text[32 + MAX_VALUES * 5];
    uint32_t n_ciphers = 0, n_exts = 0, n_sorted = 0, n_sigs = 0, version = 0, best = 0;
    int sni = 0;
    char alpn[2] = {'0', '0'};
    ja4[0] = '\0';
    if (raw_size) ja4_r[0] = '\0';
    if (len > AF_JA4_HELLO_MAX) return 0;   /* bounds the value arrays: 2 bytes a value at least */
    reader r = {msg, len, 0, 0};
    if (get(&r, 1) != CLIENT_HELLO) return 0;
    reader body = sub(&r, get(&r, 3));
    version = get(&body, 2);
    get(&body, 32);                                  /* random */
    sub(&body, get(&body, 1));                       /* session id */
    reader suites = sub(&body, get(&body, 2));
    while (suites.pos + 2 <= suites.len) {
        uint32_t c = get(&suites, 2);
        if (!grease(c)) ciphers[n_ciphers++] = (uint16_t)c;
    }
    sub(&body, get(&body, 1));                       /* compression methods */
    if (body.pos < body.len) {                       /* extensions are optional (before TLS 1.2) */
        reader list = sub(&body, get(&body, 2));
        while (!list.bad && list.pos < list.len) {
            uint32_t type = get(&list, 2);
            reader ext = sub(&list, get(&list, 2));
            if (list.bad || grease(type)) continue;
            n_exts++;
            if (type == 0x0000) sni = 1;
            else if (type == 0x0010) alpn_chars(ext, alpn);
            if (type != 0x0000 && type != 0x0010) exts[n_sorted++] = (uint16_t)type;
            if (type == 0x000d) {                    /* signature algorithms, in their order */
                reader algs = sub(&ext, get(&ext, 2));
                while (algs.pos + 2 <= algs.len) {
                    uint32_t a = get(&algs, 2);
                    if (!grease(a)) sigs[n_sigs++] = (uint16_t)a;
                }
            } else if (type == 0x002b) {             /* supported versions: the highest one */
                reader versions = sub(&ext, get(&ext, 1));
                while (versions.pos + 2 <= versions.len) {
                    uint32_t v = get(&versions, 2);
                    if (!grease(v) && v > best) best = v;
                }
            }
        }
        if (list.bad) return 0;
    }
    if (r.bad || body.bad || suites.bad) return 0;
    if (best) version = best;
    sort_values(ciphers, n_ciphers);
    sort_values(exts, n_sorted);

    /* a: t13d1516h2 */
    char a[11] = {transport, 0, 0, sni ? 'd' : 'i', 0, 0, 0, 0, alpn[0], alpn[1], 0};
    memcpy(a + 1, version_text(version), 2);
    uint32_t nc = n_ciphers > 99 ? 99 : n_ciphers, ne = n_exts > 99 ? 99 : n_exts;
    a[4] = (char)('0' + nc / 10), a[5] = (char)('0' + nc % 10), a[6] = (char)('0' + ne / 10), a[7] = (char)('0' + ne % 10);
    /* ja4_r: a_ciphers_extensions[_signature algorithms]; ja4 hashes its ciphers and what follows */
    memcpy(text, a, 10);
    text[10] = '_';
    size_t at = put_list(text, 11, ciphers, n_ciphers);
    size_t ciphers_end = at;
    text[at++] = '_';
    size_t exts_at = at;
    at = put_list(text, at, exts, n_sorted);
    if (n_sigs) {
        text[at++] = '_';
        at = put_list(text, at, sigs, n_sigs);
    }
    int fits = at < raw_size;
    if (fits) memcpy(ja4_r, text, at);
    if (raw_size) ja4_r[fits ? at : 0] = '\0';
    memcpy(ja4, a, 10);
    ja4[10] = '_';
    hash12(cache, text + 11, ciphers_end - 11, n_ciphers, ja4 + 11);
    ja4[23] = '_';
    hash12(cache, text + exts_at, at - exts_at, n_sorted, ja4 + 24);
    ja4[36] = '\0';
    return fits ? 1 : 2;
}

void af_ja4_start(af_ja4_flow *f) { memset(f, 0, offsetof(af_ja4_flow, filled)); }

int af_ja4_pending(const af_ja4_flow *f) { return f->phase == COLLECTING; }

int af_ja4_waiting(const af_ja4_flow *f) { return f->phase == WAITING; }

static void mark(af_ja4_flow *f, uint32_t from, uint32_t n) {
    for (uint32_t i = from; i < from + n; i++) f->filled[i / 8] |= (uint8_t)(1u << (i % 8));
}
static int is_filled(const af_ja4_flow *f, uint32_t i) { return f->filled[i / 8] >> (i % 8) & 1; }

/* Once the first 4 bytes are in: the ClientHello's length, or NONE (not one, or too big). */
static void check_complete(af_ja4_flow *f, af_stats *st) {
    if (!f->hello_len && f->have >= 4) {
        if (f->buf[0] != CLIENT_HELLO) {
            f->phase = NONE;
            return;
        }
        f->hello_len = 4 + ((uint32_t)f->buf[1] << 16 | (uint32_t)f->buf[2] << 8 | f->buf[3]);
        if (f->hello_len > AF_JA4_HELLO_MAX) {
            st->dissect_ja4_too_big++;
            f->phase = NONE;
            return;
        }
    }
    if (f->hello_len && f->have >= f->hello_len) f->phase = COMPLETE;
}

/* TCP: the client's bytes, in order, through the TLS record layer into buf. */
static void tcp_bytes(af_ja4_flow *f, const uint8_t *d, uint32_t len, af_stats *st) {
    while (len && f->phase == COLLECTING) {
        if (!f->record_left) {   /* a record header, perhaps split across segments */
            f->record_head[f->record_head_have++] = *d++;
            len--;
            if (f->record_head_have < 5) continue;
            f->record_head_have = 0;
            f->record_left = (uint16_t)(f->record_head[3] << 8 | f->record_head[4]);
            if (f->record_head[0] != TLS_HANDSHAKE || f->record_head[1] != 3 || !f->record_left) f->phase = NONE;
            continue;
        }
        uint32_t n = len < f->record_left ? len : f->record_left;
        if (n > AF_JA4_HELLO_MAX - f->have) {
            st->dissect_ja4_too_big++;
            f->phase = NONE;
            return;
        }
        memmove(f->buf + f->have, d, n);   /* d may be placed bytes further on in buf (take_placed) */
        f->have += n, d += n, len -= n;
        f->record_left = (uint16_t)(f->record_left - n);
        check_complete(f, st);
    }
}

/* TCP: a client segment ahead of the next byte expected waits in buf, at its sequence number's
 * distance from the anchor, until the bytes before it come (one that would not fit is dropped: its
 * gap stays). The ClientHello's bytes are written at or before the place of the stream bytes they
 * come from (record headers are left out), so bytes placed ahead are not written over before
 * they are taken. */
static void place(af_ja4_flow *f, uint32_t seq, const uint8_t *d, uint32_t len) {
    uint32_t at = seq - f->anchor;
    if (at >= AF_JA4_HELLO_MAX || len > AF_JA4_HELLO_MAX - at) return;
    if (!f->placed_end) memset(f->filled, 0, sizeof f->filled);
    memcpy(f->buf + at, d, len);
    mark(f, at, len);
    if (at + len > f->placed_end) f->placed_end = at + len;
}

/* TCP: the placed bytes from the next one expected on, as far as they are contiguous. */
static void take_placed(af_ja4_flow *f, af_stats *st) {
    uint32_t at = f->next_seq - f->anchor, n = 0;
    while (at < AF_JA4_HELLO_MAX - n && is_filled(f, at + n)) n++;
    if (!n) return;
    f->next_seq += n;
    tcp_bytes(f, f->buf + at, n, st);
}

static int begins_hello(const uint8_t *d, uint32_t len) {
    return d[0] == TLS_HANDSHAKE && (len < 2 || d[1] == 3) && (len < 6 || d[5] == CLIENT_HELLO);
}

static void tcp_segment(af_ja4_flow *f, uint32_t seq, const uint8_t *d, uint32_t len, af_stats *st) {
    if (f->phase == WAITING) {   /* a segment that begins a handshake record begins the ClientHello */
        if (!begins_hello(d, len)) {
            if (!f->anchored) return;   /* no SYN seen: nothing is placed before a ClientHello begins */
            int32_t ahead = (int32_t)(seq - f->next_seq);
            if (ahead > 0) place(f, seq, d, len);   /* a later part of a ClientHello, perhaps */
            else if (ahead + (int32_t)len > 0) f->next_seq = seq + len;   /* bytes before one (SOCKS, ...) */
            return;
        }
        f->phase = COLLECTING;
        f->transport = 't';
        if (!f->placed_end) f->anchor = seq, f->anchored = 1;   /* nothing placed: buf[0] is the hello's */
        f->next_seq = seq;
    }
    int32_t ahead = (int32_t)(seq - f->next_seq);
    if (ahead > 0) {   /* a segment is missing, or comes later */
        place(f, seq, d, len);
        return;
    }
    uint32_t old = (uint32_t)-ahead;   /* bytes already taken (a retransmission) */
    if (old >= len) return;
    f->next_seq = seq + len;
    tcp_bytes(f, d + old, len - old, st);
    if (f->placed_end) take_placed(f, st);
}

/* QUIC: CRYPTO data at its offset in buf; `have` is how far from 0 it is contiguous. */
static void quic_crypto(af_ja4_flow *f, uint64_t offset, const uint8_t *d, uint32_t len, af_stats *st) {
    if (offset >= AF_JA4_HELLO_MAX || len > AF_JA4_HELLO_MAX - offset) {
        st->dissect_ja4_too_big++;
        f->phase = NONE;
        return;
    }
    memcpy(f->buf + offset, d, len);
    mark(f, (uint32_t)offset, len);
    while (f->have < AF_JA4_HELLO_MAX && is_filled(f, f->have)) f->have++;
    check_complete(f, st);
}

void af_ja4_quic_frames(af_ja4_flow *f, const uint8_t *frames, uint32_t len, af_stats *st) {
    if (f->phase == WAITING) {
        f->phase = COLLECTING;
        f->transport = 'q';
        memset(f->filled, 0, sizeof f->filled);
    }
    uint32_t pos = 0, n;
    uint64_t offset;
    const uint8_t *data;
    int found = 0;
    while (f->phase == COLLECTING && (found = af_quic_next_crypto(frames, len, &pos, &offset, &data, &n)) == 1)
        quic_crypto(f, offset, data, n, st);
    if (f->phase == COLLECTING && found < 0) {
        st->dissect_ja4_malformed++;
        f->phase = NONE;
    }
}

static void quic_datagram(af_ja4_flow *f, af_quic_crypto *crypto, const uint8_t *d, uint32_t len, af_stats *st) {
    static _Thread_local uint8_t frames[16384];
    while (len && (f->phase == WAITING || f->phase == COLLECTING)) {   /* coalesced packets */
        uint32_t packet_len = 0, frames_len = 0;
        int r = crypto ? af_quic_open(crypto, &f->keys, d, len, &packet_len, frames, sizeof frames, &frames_len)
                       : AF_QUIC_NO_CRYPTO;
        if (r == AF_QUIC_NOT_INITIAL) {
            if (f->phase == WAITING) f->phase = NONE;   /* a UDP flow that does not start with an Initial */
            return;
        }
        if (r != AF_QUIC_OK) {
            st->dissect_ja4_quic_unopened++;
            f->phase = NONE;
            return;
        }
        af_ja4_quic_frames(f, frames, frames_len, st);
        d += packet_len, len -= packet_len;
    }
}

void af_ja4_packet(af_ja4_flow *f, af_quic_crypto *crypto, const af_packet *p, int direction, const uint8_t *payload,
                   uint32_t len, af_stats *st) {
    if (direction || f->phase >= COMPLETE) return;
    if (p->protocol == 6 && p->tcp_flags & 0x02 && f->phase == WAITING && !f->anchored) {
        f->anchor = f->next_seq = p->tcp_seq + 1;   /* the client's first byte: placing can begin */
        f->anchored = 1;
    }
    if (!len || !payload) return;
    if (p->protocol == 6) tcp_segment(f, p->tcp_seq + (p->tcp_flags & 0x02 ? 1u : 0u), payload, len, st);   /* SYN data: after the SYN's number */
    else if (p->protocol == 17) quic_datagram(f, crypto, payload, len, st);
    else f->phase = NONE;
}

uint32_t af_ja4_finish(af_ja4_flow *f, af_ja4_cache *cache, char ja4[AF_JA4_LEN], char *ja4_r, size_t raw_size,
                       af_stats *st) {
    ja4[0] = '\0';
    if (raw_size) ja4_r[0] = '\0';
    if (f->phase == COLLECTING) {   /* a segment still missing, or too few packets */
        if (f->placed_end > f->next_seq - f->anchor) st->dissect_ja4_gap++;
        else st->dissect_ja4_incomplete++;
    }
    if (f->phase != COMPLETE) return 0;
    int r = af_ja4_hello(f->buf, f->hello_len, (char)f->transport, cache, ja4, ja4_r, raw_size);
    if (!r) {
        st->dissect_ja4_malformed++;
        return 0;
    }
    if (f->transport == 'q') st->dissect_ja4_quic++;
    else st->dissect_ja4_tcp++;
    return r == 2;
}
