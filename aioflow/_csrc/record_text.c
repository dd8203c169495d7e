/* The text columns of read_frame for a batch of records, written in C so that the bulk path
 * makes no Python call per flow to write them: src_ip, dst_ip and bidirectional_id (Flow's text:
 * "proto-vlan-a:port-b:port", endpoints ordered by raw address then port). Addresses are
 * written by hand (inet_ntop and snprintf cost ~3 us a record): IPv4 dotted, IPv6 as RFC 5952
 * and Python's ipaddress write them (lowercase, no leading zeros, the first longest run of two or
 * more zero groups as "::"). IPv6 addresses whose first 80 bits are zero (::ffff:a.b.c.d and
 * the like, which Python versions write differently) are left empty for Python to write.
 * af_pack_text then packs such fixed-width text (and meters' char[N] fields) into Arrow's string
 * layout, so that pandas and pyarrow get their text columns without a str object per value. */
#include <string.h>

#include "aioflow.h"

static char *put_uint(char *out, unsigned v) {
    char digits[10];
    int n = 0;
    do digits[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    while (n) *out++ = digits[--n];
    return out;
}

static char *put_ipv4(char *out, const uint8_t *ip) {
    for (int i = 0; i < 4; i++) {
        if (i) *out++ = '.';
        out = put_uint(out, ip[i]);
    }
    return out;
}

static char *put_ipv6(char *out, const uint8_t *ip) {
    static const char hex[] = "0123456789abcdef";
    unsigned g[8];
    int best = -1, best_len = 1, run = 0;
    for (int i = 0; i < 8; i++) {
        g[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
        run = g[i] ? 0 : run + 1;
        if (run > best_len) best = i - run + 1, best_len = run;
    }
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            *out++ = ':', *out++ = ':';
            i += best_len - 1;
            continue;
        }
        if (i && i != best + best_len) *out++ = ':';
        int shift = 12;
        while (shift && !(g[i] >> shift & 0xf)) shift -= 4;
        for (; shift >= 0; shift -= 4) *out++ = hex[g[i] >> shift & 0xf];
    }
    return out;
}

/* The address's text and its end, or NULL when Python writes it. */
static char *put_address(char *out, int version, const uint8_t *ip) {
    static const uint8_t zero[10];
    if (version == 4) return put_ipv4(out, ip);
    if (memcmp(ip, zero, sizeof zero) == 0) return NULL;
    return put_ipv6(out, ip);
}

static char *put_endpoint(char *out, const char *text, size_t len, unsigned port) {
    memcpy(out, text, len);
    out += len;
    *out++ = ':';
    return put_uint(out, port);
}

void af_records_text(const af_record *records, size_t n, char *src, char *dst, char *flow_id) {
    memset(src, 0, n * AF_ADDRESS_TEXT);
    memset(dst, 0, n * AF_ADDRESS_TEXT);
    memset(flow_id, 0, n * AF_FLOW_ID_TEXT);
    for (size_t i = 0; i < n; i++) {
        const af_record *r = &records[i];
        char *s = src + i * AF_ADDRESS_TEXT, *d = dst + i * AF_ADDRESS_TEXT;
        char *s_end = put_address(s, r->ip_version, r->src_ip);
        char *d_end = put_address(d, r->ip_version, r->dst_ip);
        if (!s_end || !d_end) {   /* Python writes the flow id too */
            memset(s, 0, AF_ADDRESS_TEXT);
            memset(d, 0, AF_ADDRESS_TEXT);
            continue;
        }
        int order = memcmp(r->src_ip, r->dst_ip, 16);
        int swap = order > 0 || (order == 0 && r->src_port > r->dst_port);
        char *out = put_uint(flow_id + i * AF_FLOW_ID_TEXT, r->protocol);
        *out++ = '-';
        out = put_uint(out, r->vlan_id);
        *out++ = '-';
        if (swap) {
            out = put_endpoint(out, d, (size_t)(d_end - d), r->dst_port);
            *out++ = '-';
            put_endpoint(out, s, (size_t)(s_end - s), r->src_port);
        } else {
            out = put_endpoint(out, s, (size_t)(s_end - s), r->src_port);
            *out++ = '-';
            put_endpoint(out, d, (size_t)(d_end - d), r->dst_port);
        }
    }
}

int af_pack_text(const char *fixed, size_t n, size_t width, int64_t *offsets, char *out) {
    unsigned char seen = 0;   /* every byte or'ed: bit 7 set when one is past ASCII */
    int64_t at = 0;
    offsets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const char *text = fixed + i * width;
        const char *nul = memchr(text, 0, width);
        size_t len = nul ? (size_t)(nul - text) : width;
        for (size_t j = 0; j < len; j++) seen |= (unsigned char)text[j];
        memcpy(out + at, text, len);
        at += (int64_t)len;
        offsets[i + 1] = at;
    }
    return !(seen & 0x80);
}
