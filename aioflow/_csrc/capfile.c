#include "capfile.h"

#include <pcap/dlt.h>   /* DLT values only (defines): the parser links nothing of libpcap */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"   /* AF_DLT_PSEUDO_BE */

#define PCAP_MAGIC 0xa1b2c3d4u
#define PCAP_MAGIC_NS 0xa1b23c4du
#define PCAP_MAGIC_MODIFIED 0xa1b2cd34u   /* Kuznetzov's patched libpcap: 24-byte records */
#define NG_SHB 0x0A0D0D0Au
#define NG_BOM 0x1A2B3C4Du
#define NG_IDB 1u
#define NG_PB 2u                          /* obsolete packet block */
#define NG_SPB 3u
#define NG_EPB 6u
#define NG_OPT_TSRESOL 9u
#define NG_OPT_TSOFFSET 14u

static inline uint16_t rd16(const uint8_t *p, int swapped) {
    uint16_t v;
    memcpy(&v, p, 2);
    return swapped ? __builtin_bswap16(v) : v;
}
static inline uint32_t rd32(const uint8_t *p, int swapped) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}
static inline uint64_t rd64(const uint8_t *p, int swapped) {
    uint64_t v;
    memcpy(&v, p, 8);
    return swapped ? __builtin_bswap64(v) : v;
}

static int fail(af_capfile *c, uint64_t at, const char *fmt, ...) {
    int k = snprintf(c->error, sizeof c->error, "damaged at byte %llu: ", (unsigned long long)at);
    va_list ap;
    va_start(ap, fmt);
    if (k > 0 && (size_t)k < sizeof c->error) vsnprintf(c->error + k, sizeof c->error - (size_t)k, fmt, ap);
    va_end(ap);
    return AF_CAP_ERROR;
}

/* libpcap's linktype_to_dlt: the few LINKTYPE_ values whose DLT_ differs by platform. */
static int32_t dlt_of(uint32_t linktype) {
    switch (linktype) {
    case 100: return DLT_ATM_RFC1483;
    case 101: return DLT_RAW;
    case 102: return DLT_SLIP_BSDOS;
    case 103: return DLT_PPP_BSDOS;
    case 106: return DLT_ATM_CLIP;
    default: return (int32_t)linktype;
    }
}

/* An interface's frames' link type for af_decode (af_cap_iface.frame_dlt, set once per interface):
 * NFLOG's TLV lengths and types are in the byte order of the host that wrote the file, which is
 * the file's (libpcap swaps them when that is not the reader's: swap_pseudo_headers); big-endian
 * ones are flagged. Other pseudo-headers libpcap swaps (Linux USB) carry no IP: aioflow does not
 * decode them. */
static int32_t frame_dlt(const af_capfile *c, const af_cap_iface *i) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int big_endian = c->swapped;
#else
    int big_endian = !c->swapped;
#endif
    return i->dlt == DLT_NFLOG && big_endian ? i->dlt | AF_DLT_PSEUDO_BE : i->dlt;
}

/* libpcap's max_snaplen_for_dlt and pcap_adjust_snapshot. */
static uint32_t max_snaplen(int32_t dlt) {
    switch (dlt) {
    case DLT_DBUS: return 128u << 20;
    case DLT_EBHSCR: return 8u << 20;
    case DLT_USBPCAP: return 1u << 20;
    default: return 262144u;
    }
}
static uint32_t adjust_snaplen(int32_t dlt, uint32_t snaplen) {
    return snaplen == 0 || snaplen > max_snaplen(dlt) ? max_snaplen(dlt) : snaplen;
}

/* Seconds (as libpcap's time_t holds them) and ns within the second, as af_packet_ns reads them. */
static inline uint64_t ns_of(uint64_t sec, uint64_t sub_ns) {
    if ((int64_t)sec < 0) return 0;
    /* far below the limit (sub_ns < 2^32 * 1000 here): no division per packet */
    if (sec < 18446700000ULL) return sec * 1000000000ULL + sub_ns;
    if (sec > (UINT64_MAX - sub_ns) / 1000000000ULL) return UINT64_MAX;
    return sec * 1000000000ULL + sub_ns;
}

int af_capfile_sniff(const uint8_t *head, size_t len) {
    if (len < 4) return 0;
    uint32_t m = rd32(head, 0), s = __builtin_bswap32(m);
    for (int i = 0; i < 2; i++, m = s)
        if (m == PCAP_MAGIC || m == PCAP_MAGIC_NS || m == PCAP_MAGIC_MODIFIED || m == NG_SHB) return 1;
    return 0;
}

void af_capfile_close(af_capfile *c) {
    free(c->ifaces);
    memset(c, 0, sizeof *c);
}

static int open_pcap(af_capfile *c, const uint8_t *h, size_t len) {
    if (len < 24) {
        c->need = 24;
        return AF_CAP_MORE;
    }
    uint32_t magic = rd32(h, 0);
    c->swapped = magic != PCAP_MAGIC && magic != PCAP_MAGIC_NS && magic != PCAP_MAGIC_MODIFIED;
    magic = rd32(h, c->swapped);
    uint16_t major = rd16(h + 4, c->swapped), minor = rd16(h + 6, c->swapped);
    if (major < 2) return fail(c, 4, "archaic pcap savefile format");
    if (!((major == 2 && minor <= 4) || (major == 543 && minor == 0)))
        return fail(c, 4, "unsupported pcap savefile version %u.%u", major, minor);
    c->format = AF_CAP_PCAP;
    c->lengths_swapped = major == 543 || minor < 3 ? 1 : minor == 3 ? 2 : 0;
    c->ts_scale = magic == PCAP_MAGIC_NS ? 1 : 1000;
    c->record_header = magic == PCAP_MAGIC_MODIFIED ? 24 : 16;
    af_cap_iface *i = &c->pcap_iface;
    i->dlt = dlt_of(rd32(h + 20, c->swapped) & 0x03FFFFFFu);
    i->snaplen = adjust_snaplen(i->dlt, rd32(h + 16, c->swapped));
    c->max_caplen = max_snaplen(i->dlt);
    i->frame_dlt = frame_dlt(c, i);
    if (magic == PCAP_MAGIC_MODIFIED && i->dlt == DLT_EN10MB)   /* libpcap: cooked mode's fake header */
        i->snaplen = i->snaplen <= INT32_MAX - 14 ? i->snaplen + 14 : INT32_MAX;
    c->pos = 24;
    return AF_CAP_FRAME;
}

static int next_pcap(af_capfile *c, const uint8_t *p, size_t avail, af_frame *f) {
    if (af_capfile_pcap_usual(c, p, avail, f)) return AF_CAP_FRAME;
    uint32_t hdr = c->record_header;
    if (avail < hdr) {
        c->need = hdr;
        return AF_CAP_MORE;
    }
    int sw = c->swapped;
    uint32_t caplen = rd32(p + 8, sw), len = rd32(p + 12, sw);
    if (c->lengths_swapped == 1 || (c->lengths_swapped == 2 && caplen > len)) {
        uint32_t t = caplen;
        caplen = len;
        len = t;
    }
    const af_cap_iface *i = &c->pcap_iface;
    if (caplen > c->max_caplen)
        return fail(c, c->pos, "a packet record says %u captured bytes, more than the %u its link type allows",
                    caplen, c->max_caplen);
    if (avail - hdr < caplen) {
        c->need = (uint64_t)hdr + caplen;
        return AF_CAP_MORE;
    }
    int32_t sec = (int32_t)rd32(p, sw), sub = (int32_t)rd32(p + 4, sw);
    f->data = p + hdr;
    f->caplen = caplen > i->snaplen ? i->snaplen : caplen;   /* libpcap cuts at the file's snaplen */
    f->len = len;
    f->dlt = i->frame_dlt;
    f->ts_ns = sec < 0 ? 0 : ns_of((uint64_t)sec, sub < 0 ? 0 : (uint64_t)sub * c->ts_scale);
    c->pos += hdr + caplen;
    return AF_CAP_FRAME;
}

/* A section header at p (whole, len bytes): its byte order; drops the last section's interfaces. */
static int section(af_capfile *c, const uint8_t *p, uint32_t len) {
    if (len < 28) return fail(c, c->pos, "a section header block of %u bytes (at least 28)", len);
    uint16_t major = rd16(p + 12, c->swapped);
    if (major != 1) return fail(c, c->pos, "unsupported pcapng version %u.%u", major, rd16(p + 14, c->swapped));
    c->n_ifaces = 0;
    return AF_CAP_FRAME;
}

static int interface(af_capfile *c, const uint8_t *p, uint32_t len) {
    int sw = c->swapped;
    if (len < 20) return fail(c, c->pos, "an interface description block of %u bytes (at least 20)", len);
    if (c->n_ifaces == c->cap_ifaces) {
        if (c->cap_ifaces >= AF_CAP_MAX_IFACES)
            return fail(c, c->pos, "more than %u interfaces in one section", AF_CAP_MAX_IFACES);
        uint32_t cap = c->cap_ifaces ? 2 * c->cap_ifaces : 4;
        af_cap_iface *grown = realloc(c->ifaces, cap * sizeof *grown);
        if (!grown) return fail(c, c->pos, "out of memory for %u interfaces", cap);
        c->ifaces = grown;
        c->cap_ifaces = cap;
    }
    af_cap_iface i = {dlt_of(rd16(p + 8, sw)), 0, 1000000, 0, 0};
    i.snaplen = adjust_snaplen(i.dlt, rd32(p + 12, sw));
    i.frame_dlt = frame_dlt(c, &i);
    for (uint32_t at = 16; at + 4 <= len - 4;) {   /* options, up to the trailing length */
        uint16_t code = rd16(p + at, sw), olen = rd16(p + at + 2, sw);
        if (code == 0 || at + 4 + (uint32_t)olen > len - 4) break;
        const uint8_t *v = p + at + 4;
        if (code == NG_OPT_TSRESOL && olen >= 1) {
            uint8_t r = v[0];
            if (r & 0x80) {
                if ((r & 0x7f) > 63) return fail(c, c->pos, "if_tsresol 2^-%u is finer than 64 bits hold", r & 0x7f);
                i.units = 1ULL << (r & 0x7f);
            } else {
                if (r > 19) return fail(c, c->pos, "if_tsresol 10^-%u is finer than 64 bits hold", r);
                i.units = 1;
                for (uint8_t k = 0; k < r; k++) i.units *= 10;
            }
        } else if (code == NG_OPT_TSOFFSET && olen >= 8) {
            i.offset_s = (int64_t)rd64(v, sw);
        }
        at += 4 + (((uint32_t)olen + 3) & ~3u);
    }
    c->ifaces[c->n_ifaces++] = i;
    return AF_CAP_FRAME;
}

static inline uint64_t sub_ns(uint64_t frac, uint64_t units) {
    if (units == 1000000000ULL) return frac;
    if (units < 1000000000ULL && 1000000000ULL % units == 0) return frac * (1000000000ULL / units);
    return (uint64_t)((unsigned __int128)frac * 1000000000ULL / units);
}

/* A packet block's interface, or an error. */
static const af_cap_iface *iface_of(af_capfile *c, uint32_t id) {
    if (id < c->n_ifaces) return &c->ifaces[id];
    fail(c, c->pos, "a packet on interface %u, but the section describes %u interface(s)", id, c->n_ifaces);
    return NULL;
}

/* An EPB, SPB or PB (whole, len bytes) into f: AF_CAP_FRAME, or AF_CAP_ERROR. */
static int packet(af_capfile *c, uint32_t type, const uint8_t *p, uint32_t len, af_frame *f) {
    int sw = c->swapped;
    uint32_t head = type == NG_SPB ? 12 : 28, caplen, wire;
    if (len < head + 4) return fail(c, c->pos, "a packet block of %u bytes (at least %u)", len, head + 4);
    uint32_t room = len - head - 4;
    const af_cap_iface *i;
    uint64_t t = 0;
    if (type == NG_SPB) {
        if (!(i = iface_of(c, 0))) return AF_CAP_ERROR;
        wire = rd32(p + 8, sw);
        caplen = wire < room ? wire : room;
    } else {
        if (!(i = iface_of(c, type == NG_EPB ? rd32(p + 8, sw) : rd16(p + 8, sw)))) return AF_CAP_ERROR;
        t = (uint64_t)rd32(p + 12, sw) << 32 | rd32(p + 16, sw);
        caplen = rd32(p + 20, sw);
        wire = rd32(p + 24, sw);
        if (caplen > room)
            return fail(c, c->pos, "a packet block of %u bytes cannot hold its %u captured bytes", len, caplen);
    }
    f->data = p + head;
    f->caplen = caplen > i->snaplen ? i->snaplen : caplen;
    f->len = wire;
    f->dlt = i->frame_dlt;
    f->ts_ns = type == NG_SPB ? 0 : ns_of(t / i->units + (uint64_t)i->offset_s, sub_ns(t % i->units, i->units));
    return AF_CAP_FRAME;
}

/* One pcapng block at c->pos: a packet into f (AF_CAP_FRAME), another block taken in and passed
 * (AF_CAP_BLOCK), AF_CAP_MORE, or AF_CAP_ERROR. *type: the block's type. */
#define AF_CAP_BLOCK 3
static int block(af_capfile *c, const uint8_t *win, uint64_t win_start, size_t win_len, af_frame *f, uint32_t *type) {
    const uint8_t *p = win + (c->pos - win_start);
    size_t avail = win_len - (size_t)(c->pos - win_start);
    if (avail < 12) {
        c->need = 12;
        return AF_CAP_MORE;
    }
    int sw = c->swapped;
    *type = rd32(p, sw);
    if (*type == NG_SHB) {
        uint32_t bom = rd32(p + 8, 0);
        if (bom != NG_BOM && bom != __builtin_bswap32(NG_BOM))
            return fail(c, c->pos, "a section header block without a byte-order magic");
        sw = bom != NG_BOM;
    }
    uint32_t len = rd32(p + 4, sw);
    if (len < 12 || len % 4)
        return fail(c, c->pos, "a block of type 0x%x says it is %u bytes long (a multiple of 4, at least 12)", *type, len);
    if (len > AF_CAP_MAX_BLOCK)
        return fail(c, c->pos, "a block of type 0x%x says it is %u bytes long (more than %u)", *type, len, AF_CAP_MAX_BLOCK);
    if (avail < len) {
        c->need = len;
        return AF_CAP_MORE;
    }
    if (rd32(p + len - 4, sw) != len)
        return fail(c, c->pos, "a block of type 0x%x says it is %u bytes long at its start, %u at its end", *type, len,
                    rd32(p + len - 4, sw));
    int r = AF_CAP_BLOCK;
    if (*type == NG_SHB) {
        c->swapped = sw;
        if (section(c, p, len) == AF_CAP_ERROR) return AF_CAP_ERROR;
    } else if (*type == NG_IDB) {
        if (interface(c, p, len) == AF_CAP_ERROR) return AF_CAP_ERROR;
    } else if (*type == NG_EPB || *type == NG_SPB || *type == NG_PB) {
        r = packet(c, *type, p, len, f);
    }
    if (r == AF_CAP_ERROR) return r;
    c->pos += len;
    return r;
}

int af_capfile_open(af_capfile *c, const uint8_t *head, size_t len) {
    memset(c, 0, sizeof *c);
    if (len < 4) {
        c->need = 4;
        return AF_CAP_MORE;
    }
    if (!af_capfile_sniff(head, len)) return fail(c, 0, "not a pcap or pcapng file (unknown magic number)");
    if (rd32(head, 0) != NG_SHB) return open_pcap(c, head, len);
    c->format = AF_CAP_PCAPNG;
    /* the section header, and the interfaces right after it when they are there already (the
     * filter is compiled for the first one's link type at open) */
    for (;;) {
        uint32_t type;
        if (c->pos && (len - c->pos < 4 || rd32(head + c->pos, c->swapped) != NG_IDB)) return AF_CAP_FRAME;
        af_frame unused;
        int r = block(c, head, 0, len, &unused, &type);
        if (r == AF_CAP_ERROR) return r;
        if (r == AF_CAP_MORE) return c->pos ? AF_CAP_FRAME : AF_CAP_MORE;
    }
}

int af_capfile_next(af_capfile *c, const uint8_t *win, uint64_t win_start, size_t win_len, af_frame *f) {
    if (c->format == AF_CAP_PCAP) return next_pcap(c, win + (c->pos - win_start), win_len - (size_t)(c->pos - win_start), f);
    for (;;) {
        uint32_t type;
        int r = block(c, win, win_start, win_len, f, &type);
        if (r != AF_CAP_BLOCK) return r;
    }
}

int32_t af_capfile_first_dlt(const af_capfile *c) {
    if (c->format == AF_CAP_PCAP) return c->pcap_iface.dlt;
    return c->n_ifaces ? c->ifaces[0].dlt : DLT_EN10MB;
}
