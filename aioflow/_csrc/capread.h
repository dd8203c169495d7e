/* A capture file read by aioflow's own parser (capfile.h): mapped whole (mmap; no copy per packet),
 * or, when compressed (gzip, zstd) or not mappable (a pipe), through a streaming decompressor into
 * a sliding buffer. Also the BPF filter, compiled by libpcap once per link type the file uses and
 * run on the mapped bytes; and following a file as it grows (af_config.follow). */
#ifndef AIOFLOW_CAPREAD_H
#define AIOFLOW_CAPREAD_H
#include <stddef.h>
#include <stdint.h>

#include "capfile.h"

typedef struct af_capread_stream af_capread_stream;   /* decompressor and its buffer (capread.c) */
typedef struct af_capread_filters af_capread_filters; /* BPF programs by link type (capread.c) */

typedef struct {
    af_capfile cap;
    const uint8_t *win;              /* stream bytes [win_start, win_start + win_len) */
    uint64_t win_start;
    size_t win_len;
    int fd;
    uint8_t *map;                    /* mapped: the whole file as of the last look */
    size_t map_len;
    uint64_t slide_at;               /* mapped: at this offset, drop the pages behind, map those ahead */
    uint64_t released, populated;    /* mapped: pages dropped below, mapped up to (offsets) */
    af_capread_stream *stream;       /* compressed or not mappable; NULL when mapped */
    af_capread_filters *filters;     /* NULL: no filter */
    int follow;                      /* at the end, wait for the file to grow (until stopped) */
    int inotify;                     /* following a regular file: an inotify fd watching it, or -1 */
    uint64_t file_size;
} af_capread;

/* Opens path (AF_OK, or an AF_ERR_* code with a message saying what to do). */
int af_capread_open(af_capread *r, const char *path, const char *bpf, int follow, char *error, size_t n);
void af_capread_close(af_capread *r);
/* The slow path of af_capread_next: the window ended (or the parser said status). */
int af_capread_more(af_capread *r, int status, af_frame *f, char *error, size_t n);
/* Mapped, every AF_SLIDE bytes: the pages read are dropped from this process (they stay in the
 * page cache), so its RSS does not grow with the file, and the next ones are mapped in one go. */
#define AF_SLIDE (1u << 20)
void af_capread_slide(af_capread *r);
/* 1 a packet into f (valid until the next call), 0 none yet (following), -1 end, -2 damage or a
 * read error (error says where and why). */
static inline int af_capread_next(af_capread *r, af_frame *f, char *error, size_t n) {
    if (r->cap.pos >= r->slide_at) af_capread_slide(r);
    int k = af_capfile_read(&r->cap, r->win, r->win_start, r->win_len, f);
    return k == AF_CAP_FRAME ? 1 : af_capread_more(r, k, f, error, n);
}
int af_capread_filter(af_capread *r, const af_frame *f);
/* Whether the packet passes the BPF filter (a link type the filter cannot apply to: no). */
static inline int af_capread_pass(af_capread *r, const af_frame *f) {
    return !r->filters || af_capread_filter(r, f);
}
/* Following: waits until the file is written to (inotify, at most AF_FOLLOW_INOTIFY_MS, so a stop
 * is seen), or without inotify sleeps AF_FOLLOW_POLL_MS, before the caller looks again. */
#define AF_FOLLOW_POLL_MS 10
#define AF_FOLLOW_INOTIFY_MS 50
void af_capread_wait(const af_capread *r);
uint64_t af_capread_offset(const af_capread *r);   /* bytes of the file read (compressed: of the file) */

#endif
