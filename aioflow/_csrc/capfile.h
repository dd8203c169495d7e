/* Capture files parsed by aioflow itself: pcap (µs and ns, either byte order, the modified
 * "Kuznetzov" record header, versions 2.0-2.4 and 543.0 as libpcap accepts them) and pcapng (every
 * section, every interface with its own link type, snapshot length, if_tsresol and if_tsoffset;
 * EPB, SPB and the obsolete PB; other blocks skipped). A pure parser over a window of the file's
 * bytes: no I/O, no allocation per packet, no copy (a frame points into the window), so the same
 * code reads an mmap, a decompressor's buffer, or a fuzzer's input. Link types come out as the
 * DLT values libpcap would report (pcap_datalink), so decode and BPF see what they saw before. */
#ifndef AIOFLOW_CAPFILE_H
#define AIOFLOW_CAPFILE_H
#include <stddef.h>
#include <stdint.h>

/* One packet as read: what decode and BPF need. `data` points into the window given to
 * af_capfile_next and is valid until the window changes. */
typedef struct {
    const uint8_t *data;
    uint32_t caplen, len;
    uint64_t ts_ns;                  /* epoch ns; before 1970: 0; past 2554: UINT64_MAX */
    int32_t dlt;
} af_frame;

typedef struct {
    int32_t dlt;
    uint32_t snaplen;                /* as libpcap adjusts it (0 or too large: the link type's maximum) */
    uint64_t units;                  /* timestamp ticks per second (if_tsresol) */
    int64_t offset_s;                /* if_tsoffset */
    int32_t frame_dlt;               /* the frames' link type: dlt, maybe flagged AF_DLT_PSEUDO_BE (decode.h) */
} af_cap_iface;

#define AF_CAP_MAX_IFACES 4096u      /* interfaces per section; more is called damage */
#define AF_CAP_MAX_BLOCK (64u << 20) /* largest pcapng block (libpcap: 16 MiB and the link type's snaplen) */

enum { AF_CAP_PCAP = 1, AF_CAP_PCAPNG = 2 };
/* af_capfile_next's results */
enum { AF_CAP_ERROR = -2, AF_CAP_MORE = 0, AF_CAP_FRAME = 1 };

typedef struct {
    int format;                      /* AF_CAP_PCAP / AF_CAP_PCAPNG */
    int swapped;                     /* the file's (pcapng: the section's) byte order is not ours */
    /* pcap */
    uint32_t record_header;          /* 16, or 24 for the modified format */
    int lengths_swapped;             /* 0 no, 1 yes, 2 maybe (version 2.3) */
    uint32_t ts_scale;               /* ns per sub-second unit: 1000 (µs) or 1 (ns) */
    uint32_t max_caplen;             /* the link type's largest record (libpcap's max_snaplen_for_dlt) */
    af_cap_iface pcap_iface;
    /* pcapng: the current section's interfaces */
    af_cap_iface *ifaces;
    uint32_t n_ifaces, cap_ifaces;
    uint64_t pos;                    /* stream offset of the next record or block */
    uint64_t need;                   /* AF_CAP_MORE: bytes from pos the next record needs (0: unknown) */
    char error[256];                 /* AF_CAP_ERROR: where (byte offset) and why */
} af_capfile;

/* Whether these first bytes (at least 4) start a capture file this parser reads. */
int af_capfile_sniff(const uint8_t *head, size_t len);
/* Reads the file header (pcap) or first section header and interfaces' start (pcapng) from the
 * stream's first `len` bytes: AF_CAP_FRAME (1) when ready, AF_CAP_MORE when more bytes are needed,
 * AF_CAP_ERROR (message in c->error) when this is not a readable capture. */
int af_capfile_open(af_capfile *c, const uint8_t *head, size_t len);
void af_capfile_close(af_capfile *c);
/* The next packet from the window holding stream bytes [win_start, win_start + win_len) (c->pos
 * must lie in it): AF_CAP_FRAME with *f filled and c->pos past it; AF_CAP_MORE when the next
 * record runs past the window (c->need says how far, when known); AF_CAP_ERROR on damage
 * (c->error says the offset and why; reading must stop). Other pcapng blocks are consumed. */
int af_capfile_next(af_capfile *c, const uint8_t *win, uint64_t win_start, size_t win_len, af_frame *f);
/* The usual pcap record, read inline by af_capfile_read (once per packet): the file's own byte
 * order and length order, not negative times, and the whole record in the window. 1 when *f
 * is filled; 0 leaves every other case (and every error) to af_capfile_next's full parser,
 * which tries this first too. */
static inline int af_capfile_pcap_usual(af_capfile *c, const uint8_t *p, size_t avail, af_frame *f) {
    uint32_t hdr = c->record_header, w[4];   /* seconds, sub-second units, caplen, len */
    if (c->swapped || c->lengths_swapped || avail < hdr) return 0;
    __builtin_memcpy(w, p, sizeof w);
    if (w[2] > c->max_caplen || avail - hdr < w[2] || (int32_t)w[0] < 0 || (int32_t)w[1] < 0) return 0;
    f->data = p + hdr;
    f->caplen = w[2] > c->pcap_iface.snaplen ? c->pcap_iface.snaplen : w[2];   /* libpcap cuts at snaplen */
    f->len = w[3];
    f->dlt = c->pcap_iface.frame_dlt;   /* as af_capfile_next gives it (NFLOG's byte order flag) */
    f->ts_ns = (uint64_t)w[0] * 1000000000ULL + (uint64_t)w[1] * c->ts_scale;   /* < 2^62: no overflow */
    c->pos += hdr + w[2];
    return 1;
}
/* af_capfile_next with the usual pcap record inline. */
static inline int af_capfile_read(af_capfile *c, const uint8_t *win, uint64_t win_start, size_t win_len, af_frame *f) {
    size_t at = (size_t)(c->pos - win_start);
    if (c->format == AF_CAP_PCAP && af_capfile_pcap_usual(c, win + at, win_len - at, f)) return AF_CAP_FRAME;
    return af_capfile_next(c, win, win_start, win_len, f);
}
/* The link type of the first interface (pcapng: 1 = Ethernet until an IDB is seen). */
int32_t af_capfile_first_dlt(const af_capfile *c);

#endif
