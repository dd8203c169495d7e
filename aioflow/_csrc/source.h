/* Sources: a capture file, read by aioflow's own reader (capread.h: mmap or a decompressor, every
 * link type of a pcapng) or, for comparison, by libpcap (af_config.libpcap_files); or a live
 * interface opened with libpcap. Their BPF filter (files: run here per packet; live: in the
 * kernel), reading one packet as an af_frame, and what libpcap counts. libpcap stays inside the
 * reading files: no other stage sees its types. */
#ifndef AIOFLOW_SOURCE_H
#define AIOFLOW_SOURCE_H
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE   /* libpcap's headers need u_char & co, hidden by -std=c11 */
#endif
#include <pcap/pcap.h>
#include <stddef.h>
#include <stdint.h>

#include "aioflow.h"
#include "capread.h"

typedef struct {
    pcap_t *pcap;                    /* live, or a file read by libpcap */
    int own;                         /* a file read by aioflow's reader (file) */
    af_capread file;
    int dlt;                         /* libpcap: the link type; own reader: its first interface's */
    int live;                        /* an interface (wall-clock expiry, kernel counters) */
    int has_filter;                  /* files: the BPF program runs in af_source_filter */
    struct bpf_program filter;
    char *read_buffer;               /* the file stream's stdio buffer (freed after pcap_close) */
    uint64_t file_size;              /* files only */
} af_source;

/* Each returns AF_OK or an AF_ERR_* code with an actionable message in error. */
/* follow: keep reading as the file grows (own reader); libpcap: read it with libpcap instead. */
int af_source_open_file(af_source *s, const char *path, const char *bpf, int follow, int libpcap, char *error,
                        size_t error_length);
int af_source_open_live(af_source *s, const char *device, const char *bpf, int32_t snaplen, int promiscuous,
                        int32_t buffer_bytes, char *error, size_t error_length);
void af_source_close(af_source *s);

/* Packet time in ns (libpcap opened the source at ns precision). Times before 1970 read as 0 and
 * times past what 64 bits of ns hold (year 2554) as the largest value, rather than wrapping. */
static inline uint64_t af_packet_ns(const struct pcap_pkthdr *h) {
    if (h->ts.tv_sec < 0) return 0;
    uint64_t sec = (uint64_t)h->ts.tv_sec, sub = h->ts.tv_usec < 0 ? 0 : (uint64_t)h->ts.tv_usec;
    if (sec > (UINT64_MAX - sub) / 1000000000ULL) return UINT64_MAX;
    return sec * 1000000000ULL + sub;
}

/* The next packet into f (valid until the next call): 1 read, 0 none yet (live; a followed file
 * that has not grown), -1 end of file, -2 read error or damage (message in error). Inline: it runs
 * once per packet. */
int af_source_read_error(af_source *s, int status, char *error, size_t error_length);
static inline int af_source_next(af_source *s, af_frame *f, char *error, size_t error_length) {
    if (s->own) return af_capread_next(&s->file, f, error, error_length);
    struct pcap_pkthdr *h;
    const u_char *data;
    int r = pcap_next_ex(s->pcap, &h, &data);
    if (r != 1) return r == 0 ? 0 : af_source_read_error(s, r, error, error_length);
    *f = (af_frame){data, h->caplen, h->len, af_packet_ns(h), s->dlt};
    return 1;
}
/* Files with a filter: whether the packet passes it (live: the kernel already filtered). */
static inline int af_source_pass(af_source *s, const af_frame *f) {
    if (s->own) return af_capread_pass(&s->file, f);
    if (!s->has_filter) return 1;
    struct pcap_pkthdr h = {.caplen = f->caplen, .len = f->len};
    return pcap_offline_filter(&s->filter, &h, f->data) != 0;
}
/* A followed file that has not grown: waits a little (outside any lock) before reading again. */
static inline int af_source_following(const af_source *s) { return s->own && s->file.follow; }
static inline void af_source_wait(const af_source *s) { af_capread_wait(&s->file); }
/* Files: bytes of the file read so far (progress); 0 when unknown. */
uint64_t af_source_offset(const af_source *s);
/* Live: the kernel's counters (pcap_stats) into out; nothing for files. */
void af_source_kernel_stats(const af_source *s, af_stats *out);
int af_source_fd(const af_source *s);   /* live: selectable; -1 for files */
/* Live, workers: joins PACKET_FANOUT group `group` (hash, with defrag). 0, or -1 (errno). */
int af_source_fanout(af_source *s, uint16_t group);

#endif
