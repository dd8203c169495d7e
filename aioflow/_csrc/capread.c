#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mremap; also libpcap's u_char & co */
#endif
#include "capread.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#ifdef AF_HAVE_ZSTD
#include <zstd.h>
#endif

#include "aioflow.h"
#include "decode.h"   /* AF_DLT_PSEUDO_BE */

#define AF_STREAM_BUFFER (1u << 20)     /* decompressed bytes held at first (grows to a whole block) */
#define AF_STREAM_INPUT (1u << 16)      /* compressed bytes read at a time */
#define AF_ADVISE (8u << 20)            /* mapped: the first stretch read ahead at once */
#define AF_MAX_FILTERS 16u              /* link types with a compiled filter; more are filtered out */

enum { PLAIN, GZIP, ZSTD };

struct af_capread_stream {
    int kind;
    gzFile gz;                       /* GZIP and PLAIN (zlib reads an uncompressed stream as is) */
#ifdef AF_HAVE_ZSTD
    ZSTD_DStream *zs;
    ZSTD_inBuffer in;
    uint8_t *input;
    size_t last_ret;                 /* ZSTD_decompressStream's: 0 at a frame's end */
#endif
    uint64_t read;                   /* bytes of the file read */
    int follow;                      /* a regular file followed: its end is only where it is now */
    uint8_t *buf;
    size_t cap;
    int eof;
};

struct af_capread_filters {
    char *text;
    int last;                        /* index of the program used last */
    uint32_t count;
    struct {
        int32_t dlt;
        int ok;                      /* 0: the expression does not apply to this link type */
        struct bpf_program prog;
    } by_dlt[AF_MAX_FILTERS];
};

/* Compiles the filter for dlt (an entry); on failure ok = 0 and the message in error. */
static void compile(af_capread_filters *fs, int32_t dlt, char *error, size_t n) {
    uint32_t i = fs->count++;
    fs->by_dlt[i].dlt = dlt;
    pcap_t *dead = pcap_open_dead(dlt, 262144);
    if (!dead) {
        snprintf(error, n, "%s: out of memory", fs->text);
        return;
    }
    fs->by_dlt[i].ok = pcap_compile(dead, &fs->by_dlt[i].prog, fs->text, 1, PCAP_NETMASK_UNKNOWN) == 0;
    if (!fs->by_dlt[i].ok) snprintf(error, n, "%s: %s", fs->text, pcap_geterr(dead));
    pcap_close(dead);
}

int af_capread_filter(af_capread *r, const af_frame *f) {
    int32_t dlt = f->dlt & ~AF_DLT_PSEUDO_BE;
    af_capread_filters *fs = r->filters;
    int i = fs->last;
    if (fs->by_dlt[i].dlt != dlt) {
        for (i = 0; i < (int)fs->count && fs->by_dlt[i].dlt != dlt; i++) {}
        if (i == (int)fs->count) {
            if (fs->count == AF_MAX_FILTERS) return 0;
            char unused[PCAP_ERRBUF_SIZE + 256];
            compile(fs, dlt, unused, sizeof unused);
        }
        fs->last = i;
    }
    if (!fs->by_dlt[i].ok) return 0;
    struct pcap_pkthdr h = {.caplen = f->caplen, .len = f->len};
    return pcap_offline_filter(&fs->by_dlt[i].prog, &h, f->data) != 0;
}

static void free_filters(af_capread_filters *fs) {
    if (!fs) return;
    for (uint32_t i = 0; i < fs->count; i++)
        if (fs->by_dlt[i].ok) pcap_freecode(&fs->by_dlt[i].prog);
    free(fs->text);
    free(fs);
}

static void free_stream(af_capread_stream *s) {
    if (!s) return;
    if (s->gz) gzclose(s->gz);
#ifdef AF_HAVE_ZSTD
    if (s->zs) ZSTD_freeDStream(s->zs);
    free(s->input);
#endif
    free(s->buf);
    free(s);
}

void af_capread_close(af_capread *r) {
    af_capfile_close(&r->cap);
    if (r->map) munmap(r->map, r->map_len);
    free_filters(r->filters);
    free_stream(r->stream);   /* zlib closes its own duplicate of fd */
    if (r->fd >= 0) close(r->fd);
    if (r->inotify >= 0) close(r->inotify);
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->inotify = -1;
}

/* Up to n decompressed bytes into to: how many, 0 at the end, -1 on error (message in error). */
static long decompress(af_capread_stream *s, int fd, uint8_t *to, size_t n, char *error, size_t en) {
    if (s->kind != ZSTD) {
        int k = gzread(s->gz, to, (unsigned)(n > (1u << 30) ? 1u << 30 : n));
        if (k < 0) {
            int code;
            const char *why = gzerror(s->gz, &code);
            snprintf(error, en, "decompressing (gzip): %s", why);
        }
        return k;
    }
#ifdef AF_HAVE_ZSTD
    ZSTD_outBuffer out = {to, n, 0};
    while (out.pos == 0) {
        if (s->in.pos == s->in.size) {
            ssize_t got = read(fd, s->input, AF_STREAM_INPUT);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) {
                snprintf(error, en, "reading: %s", strerror(errno));
                return -1;
            }
            if (got == 0) {
                if (s->last_ret == 0 || s->follow) return 0;   /* following: the rest may come */
                snprintf(error, en, "the zstd stream ends in the middle of a frame (truncated file)");
                return -1;
            }
            s->read += (uint64_t)got;
            s->in = (ZSTD_inBuffer){s->input, (size_t)got, 0};
        }
        s->last_ret = ZSTD_decompressStream(s->zs, &out, &s->in);
        if (ZSTD_isError(s->last_ret)) {
            snprintf(error, en, "decompressing (zstd): %s", ZSTD_getErrorName(s->last_ret));
            return -1;
        }
    }
    return (long)out.pos;
#else
    (void)fd, (void)to, (void)n, (void)error, (void)en;
    return -1;
#endif
}

/* Stream: keeps the bytes from the parser's position, then decompresses more after them (the
 * buffer grows to hold the block the parser needs). >0 bytes added, 0 none (end), -1 error. */
static long refill_stream(af_capread *r, char *error, size_t n) {
    af_capread_stream *s = r->stream;
    size_t keep = r->win_len - (size_t)(r->cap.pos - r->win_start);
    memmove(s->buf, s->buf + (r->cap.pos - r->win_start), keep);
    r->win_start = r->cap.pos;
    if (r->cap.need > s->cap) {
        size_t cap = r->cap.need > 2 * s->cap ? (size_t)r->cap.need : 2 * s->cap;
        uint8_t *grown = realloc(s->buf, cap);
        if (!grown) {
            snprintf(error, n, "out of memory for a %llu-byte record", (unsigned long long)r->cap.need);
            return -1;
        }
        s->buf = grown;
        s->cap = cap;
    }
    r->win = s->buf;
    long added = 0;
    while (keep + (size_t)added < s->cap && !s->eof) {
        long k = decompress(s, r->fd, s->buf + keep + added, s->cap - keep - (size_t)added, error, n);
        if (k < 0) return -1;
        if (k == 0 && s->follow) {
            if (s->gz) gzclearerr(s->gz);   /* zlib reads on once the file grew (its EOF is sticky) */
            break;
        }
        if (k == 0) s->eof = 1;
        added += k;
        if (keep + (size_t)added >= r->cap.need && added >= (long)AF_STREAM_INPUT) break;
    }
    r->win_len = keep + (size_t)added;
    return added;
}

/* Mapped: the window's end, at most 2 slides past the reader (further for a longer record), and
 * never past the size the file had at the last look: the pages it covers existed then. */
static size_t window_end(const af_capread *r, uint64_t size) {
    uint64_t end = r->cap.pos + (r->cap.need > 2 * AF_SLIDE ? r->cap.need : 2 * AF_SLIDE);
    if (end > r->map_len) end = r->map_len;
    return (size_t)(end < size ? end : size);
}

/* The file's size now (fstat), or -1 with error set. */
static long long size_now(af_capread *r, char *error, size_t n) {
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        snprintf(error, n, "reading: %s", strerror(errno));
        return -1;
    }
    return (long long)st.st_size;
}

void af_capread_slide(af_capread *r) {
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), behind = r->cap.pos & ~(page - 1);
    if (behind > r->released) {   /* the previous frame is done with: nothing points below pos */
        madvise(r->map + r->released, (size_t)(behind - r->released), MADV_DONTNEED);
        r->released = behind;
    }
    /* look at the size again before the window moves on: a file another process cut is read to
     * the cut (refill_map then reports it), not past it into pages that are gone (SIGBUS) */
    char unused[64];
    long long size = size_now(r, unused, sizeof unused);
    r->win_len = window_end(r, size < 0 ? 0 : (uint64_t)size);
    if (r->win_len < r->cap.pos) r->win_len = (size_t)r->cap.pos;
    uint64_t from = r->populated > behind ? r->populated : behind, to = r->win_len;
    if (to > from) {
#ifdef MADV_POPULATE_READ
        if (madvise(r->map + from, (size_t)(to - from), MADV_POPULATE_READ) != 0)   /* before Linux 5.14 */
#endif
            madvise(r->map + from, (size_t)(to - from), MADV_WILLNEED);
        r->populated = to;
    }
    r->slide_at = r->cap.pos + AF_SLIDE;
}

/* Mapped: at the window's end, maps the file again when it grew and moves the window on.
 * >0 bytes added to the window, 0 none (the end of the file), -1 error or the file shrank. */
static long refill_map(af_capread *r, char *error, size_t n) {
    long long now = size_now(r, error, n);
    if (now < 0) return -1;
    size_t size = (size_t)now;
    if (size < r->map_len) {
        snprintf(error, n, "truncated at byte %llu: the file shrank from %llu to %llu bytes while it was read "
                 "(another process cut it)", (unsigned long long)r->cap.pos, (unsigned long long)r->map_len,
                 (unsigned long long)size);
        return -1;
    }
    if (size > r->map_len) {
        void *m = r->map ? mremap(r->map, r->map_len, size, MREMAP_MAYMOVE)
                         : mmap(NULL, size, PROT_READ, MAP_SHARED, r->fd, 0);
        if (m == MAP_FAILED) {
            snprintf(error, n, "mapping the file: %s", strerror(errno));
            return -1;
        }
        r->map = m;
        r->map_len = size;
        r->win = r->map;
        r->file_size = size;
        /* read in order once: the kernel reads further ahead; and it starts reading the first
         * stretch now, while the rest of the engine is set up */
        madvise(r->map, r->map_len, MADV_SEQUENTIAL);
        size_t from = (size_t)r->populated;
        if (from < size) madvise(r->map + from, size - from < AF_ADVISE ? size - from : AF_ADVISE, MADV_WILLNEED);
        r->slide_at = r->cap.pos;   /* map the next pages now (also those that came since) */
    }
    size_t end = window_end(r, size);
    long added = end > r->win_len ? (long)(end - r->win_len) : 0;
    if (added) r->win_len = end;
    return added;
}

int af_capread_more(af_capread *r, int status, af_frame *f, char *error, size_t n) {
    for (;;) {
        if (status == AF_CAP_ERROR) {
            snprintf(error, n, "%s", r->cap.error);
            return -2;
        }
        if (status == AF_CAP_FRAME) return 1;
        long added = r->stream ? refill_stream(r, error, n) : refill_map(r, error, n);
        if (added < 0) return -2;
        if (added == 0) {
            uint64_t end = r->win_start + r->win_len;
            if (r->follow && (!r->stream || r->stream->follow)) return 0;
            if (r->cap.pos == end) return -1;
            snprintf(error, n, "truncated at byte %llu: the record there needs %llu bytes, the file has %llu",
                     (unsigned long long)r->cap.pos, (unsigned long long)r->cap.need,
                     (unsigned long long)(end - r->cap.pos));
            return -2;
        }
        status = af_capfile_next(&r->cap, r->win, r->win_start, r->win_len, f);
    }
}

void af_capread_wait(const af_capread *r) {
    if (r->inotify >= 0) {   /* woken as soon as the file is written to; stop() is seen after a tick */
        struct pollfd pfd = {r->inotify, POLLIN, 0};
        if (poll(&pfd, 1, AF_FOLLOW_INOTIFY_MS) > 0) {
            char events[4096];
            while (read(r->inotify, events, sizeof events) > 0) {}
        }
        return;
    }
    struct timespec ts = {0, AF_FOLLOW_POLL_MS * 1000000L};
    nanosleep(&ts, NULL);
}

uint64_t af_capread_offset(const af_capread *r) {
    if (!r->stream) return r->cap.pos;
    if (r->stream->kind == ZSTD) return r->stream->read;
    long at = gzoffset(r->stream->gz);
    return at > 0 ? (uint64_t)at : 0;
}

static int failed(af_capread *r, int code, char *error, size_t n, const char *path, const char *why) {
    snprintf(error, n, "%s: %s", path, why);
    af_capread_close(r);
    return code;
}

/* The stream reader for a compressed or unmappable file, its first bytes in r->win. */
static int open_stream(af_capread *r, const uint8_t *magic, size_t got, int follow, char *error, size_t n) {
    af_capread_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->buf = malloc(AF_STREAM_BUFFER))) {
        free(s);
        return AF_ERR_NOMEM;
    }
    r->stream = s;
    s->follow = follow;
    r->slide_at = UINT64_MAX;   /* its buffer is reused: nothing to drop */
    s->cap = AF_STREAM_BUFFER;
    s->kind = got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd ? ZSTD
              : got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b ? GZIP : PLAIN;
    if (s->kind == ZSTD) {
#ifdef AF_HAVE_ZSTD
        if (!(s->zs = ZSTD_createDStream()) || !(s->input = malloc(AF_STREAM_INPUT))) return AF_ERR_NOMEM;
        ZSTD_initDStream(s->zs);
        s->last_ret = 0;
#else
        snprintf(error, n, "zstd-compressed, and this aioflow was built without zstd: install libzstd-dev "
                 "(Debian/Ubuntu; libzstd-devel on Fedora) and rebuild aioflow, or decompress it with `zstd -d`");
        return AF_ERR_FORMAT;
#endif
    } else {
        int fd = dup(r->fd);
        if (fd < 0 || !(s->gz = gzdopen(fd, "rb"))) {
            if (fd >= 0) close(fd);
            return AF_ERR_NOMEM;
        }
        gzbuffer(s->gz, 1u << 18);
    }
    (void)error, (void)n;
    r->win = s->buf;
    r->win_start = 0;
    r->win_len = 0;
    r->cap.pos = 0;
    r->cap.need = 64;   /* enough for any file header */
    return refill_stream(r, error, n) < 0 ? AF_ERR_FORMAT : AF_OK;
}

int af_capread_open(af_capread *r, const char *path, const char *bpf, int follow, char *error, size_t n) {
    memset(r, 0, sizeof *r);
    r->follow = follow;
    r->inotify = -1;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (r->fd < 0 || fstat(r->fd, &st) != 0)
        return failed(r, errno == EACCES ? AF_ERR_PERMISSION : AF_ERR_NOT_FOUND, error, n, path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return failed(r, AF_ERR_FORMAT, error, n, path, "is a directory, not a capture file");
    uint8_t magic[4] = {0};
    ssize_t got = pread(r->fd, magic, sizeof magic, 0);
    int compressed = got >= 2 && ((magic[0] == 0x1f && magic[1] == 0x8b) ||
                                  (got == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd));
    r->file_size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    char unused[256];
    if (!compressed && S_ISREG(st.st_mode) && refill_map(r, unused, sizeof unused) >= 0) {
        /* mapped (a file system that cannot map it is read as a stream instead) */
    } else {
        char why[256] = "";
        int code = open_stream(r, magic, got > 0 ? (size_t)got : 0, follow && S_ISREG(st.st_mode), why, sizeof why);
        if (code != AF_OK) return failed(r, code, error, n, path, why[0] ? why : "out of memory");
    }
    /* following a regular file: inotify says when it is written to (else it is looked at every
     * AF_FOLLOW_POLL_MS); a pipe needs neither, its reads wait for the writer */
    if (follow && S_ISREG(st.st_mode) && (r->inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0 &&
        inotify_add_watch(r->inotify, path, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE) < 0) {
        close(r->inotify);
        r->inotify = -1;
    }
    int k = af_capfile_open(&r->cap, r->win, r->win_len);
    if (k == AF_CAP_ERROR || (k == AF_CAP_MORE && !r->win_len))
        return failed(r, AF_ERR_FORMAT, error, n, path,
                      k == AF_CAP_ERROR ? r->cap.error : "empty file (no capture file header)");
    if (k == AF_CAP_MORE) return failed(r, AF_ERR_FORMAT, error, n, path, "truncated capture file header");
    if (bpf && bpf[0]) {
        if (!(r->filters = calloc(1, sizeof *r->filters)) || !(r->filters->text = strdup(bpf)))
            return failed(r, AF_ERR_NOMEM, error, n, path, "out of memory");
        compile(r->filters, af_capfile_first_dlt(&r->cap), error, n);
        if (!r->filters->by_dlt[0].ok) {
            af_capread_close(r);
            return AF_ERR_FILTER;
        }
    }
    return AF_OK;
}
