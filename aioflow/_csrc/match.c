#define _DEFAULT_SOURCE   /* mmap flags under -std=c11 */
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifdef AF_HAVE_HYPERSCAN
#include <hs/hs.h>

/* One endpoint's search, on its own cache lines (4), so a packet's prefetch takes only them. */
typedef struct {
    hs_stream_t *hs;              /* open TCP search state; NULL: none yet (or closed) */
    uint64_t base;                /* stream offset of the search state's offset 0 */
    uint64_t scanned;             /* stream offset just past the last byte searched */
    uint16_t tail_length;         /* bytes in tail, ending at scanned */
    uint8_t side;                 /* 0: the client, 1: the server (set with hs) */
    uint8_t matched;              /* the flow reported a match in this record (both endpoints say so) */
    uint8_t _pad[4];
    uint8_t tail[AF_MATCH_TAIL];
} end_state;

typedef struct {
    end_state end[2];             /* by the flow key's endpoint */
} slot_state;

struct af_matcher {
    hs_database_t *stream_db[2], *block_db[2];   /* per side; NULL: no patterns for it */
    hs_scratch_t *scratch;
    size_t stream_size[2];
    slot_state *slots;            /* per flow slot, reserved */
    uint32_t max_flows, hwm;      /* hwm: the highest slot reset (those above were never written) */
    uint64_t open_bytes;
};

int af_stream_patterns_available(void) { return 1; }

static size_t slots_bytes(uint32_t max_flows) { return (size_t)max_flows * sizeof(slot_state); }

/* What the match callback needs to report a hit with its text. */
typedef struct {
    const end_state *es;
    uint64_t base;                /* stream offset of the search's offset 0 */
    uint64_t data_off;            /* stream offset of data[0] */
    const uint8_t *data;
    int use_tail;                 /* the tail's bytes end at data_off */
    af_hit *hit;
    uint8_t *text;
    int found;
} search_ctx;

static void copy_text(search_ctx *c, uint64_t start, uint64_t end) {
    uint32_t tail = c->use_tail ? c->es->tail_length : 0;
    uint64_t avail = c->data_off - tail;
    uint64_t from = start > avail ? start : avail;
    uint64_t to = end - from > AF_MATCH_TEXT ? from + AF_MATCH_TEXT : end;
    uint32_t k = 0;
    for (uint64_t at = from; at < to && at < c->data_off; at++, k++)   /* from the tail */
        c->text[k] = c->es->tail[tail - (c->data_off - at)];
    if (to > c->data_off) {
        uint64_t at = from > c->data_off ? from : c->data_off;
        memcpy(c->text + k, c->data + (at - c->data_off), (size_t)(to - at));
        k += (uint32_t)(to - at);
    }
    c->hit->text_length = k;
    c->hit->partial = from > start || to < end;
}

/* Every match in the data at hand is reported (by end offset); the one kept is the leftmost, and
 * the longest of those that start there (as far as this data goes): `a+` over "aaa" gives "aaa". */
static int on_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                    void *ctx) {
    (void)flags;
    search_ctx *c = ctx;
    uint64_t start = c->base + from, end = c->base + to;
    if (c->found && (start > c->hit->start || (start == c->hit->start && end <= c->hit->end))) return 0;
    c->hit->pattern = id;
    c->hit->side = c->es->side;
    c->hit->start = start;
    c->hit->end = end;
    c->found = 1;
    return 0;
}

static void close_end(af_matcher *m, end_state *es, search_ctx *report) {
    if (!es->hs) return;
    hs_close_stream(es->hs, report ? m->scratch : NULL, report ? on_match : NULL, report);
    es->hs = NULL;
    m->open_bytes -= m->stream_size[es->side];
}

static hs_error_t compile(const char *const *patterns, uint32_t count, uint32_t flags, unsigned int mode,
                          hs_database_t **db, char *error, size_t error_length) {
    unsigned int *fl = malloc((size_t)count * sizeof *fl), *ids = malloc((size_t)count * sizeof *ids);
    if (!fl || !ids) {
        free(fl);
        free(ids);
        snprintf(error, error_length, "out of memory");
        return HS_NOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        fl[i] = HS_FLAG_MULTILINE | HS_FLAG_SOM_LEFTMOST | ((flags & AF_MATCH_CASELESS) ? HS_FLAG_CASELESS : 0);
        ids[i] = i;
    }
    hs_compile_error_t *err = NULL;
    hs_error_t rc = hs_compile_multi(patterns, fl, ids, count, mode, NULL, db, &err);
    if (rc != HS_SUCCESS) {
        if (err && err->expression >= 0)
            snprintf(error, error_length, "pattern %s: %s", patterns[err->expression], err->message);
        else
            snprintf(error, error_length, "%s", err ? err->message : "cannot compile the patterns");
        hs_free_compile_error(err);
    }
    free(fl);
    free(ids);
    return rc;
}

af_matcher *af_matcher_new(uint32_t max_flows, const char *const *patterns[2], const uint32_t count[2],
                           uint32_t flags, char *error, size_t error_length, int *unsupported) {
    *unsupported = 0;
    af_matcher *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(error, error_length, "out of memory");
        return NULL;
    }
    m->max_flows = max_flows;
    for (int side = 0; side < 2; side++) {
        if (!count[side]) continue;
        if (compile(patterns[side], count[side], flags, HS_MODE_STREAM | HS_MODE_SOM_HORIZON_LARGE,
                    &m->stream_db[side], error, error_length) != HS_SUCCESS ||
            compile(patterns[side], count[side], flags, HS_MODE_BLOCK, &m->block_db[side], error,
                    error_length) != HS_SUCCESS) {
            *unsupported = 1;
            af_matcher_free(m);
            return NULL;
        }
        if (hs_alloc_scratch(m->stream_db[side], &m->scratch) != HS_SUCCESS ||
            hs_alloc_scratch(m->block_db[side], &m->scratch) != HS_SUCCESS ||
            hs_stream_size(m->stream_db[side], &m->stream_size[side]) != HS_SUCCESS) {
            snprintf(error, error_length, "out of memory for the pattern search");
            af_matcher_free(m);
            return NULL;
        }
    }
    m->slots = mmap(NULL, slots_bytes(max_flows), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
    if (m->slots == MAP_FAILED) {
        m->slots = NULL;
        snprintf(error, error_length, "out of memory for max_flows=%u search states (lower it)", max_flows);
        af_matcher_free(m);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(m->slots, slots_bytes(max_flows), MADV_HUGEPAGE);   /* touched at random: fewer TLB misses */
#endif
    return m;
}

void af_matcher_free(af_matcher *m) {
    if (!m) return;
    if (m->slots) {
        for (uint32_t i = 0; i < m->hwm; i++)
            for (int e = 0; e < 2; e++) close_end(m, &m->slots[i].end[e], NULL);
        munmap(m->slots, slots_bytes(m->max_flows));
    }
    for (int side = 0; side < 2; side++) {
        hs_free_database(m->stream_db[side]);
        hs_free_database(m->block_db[side]);
    }
    hs_free_scratch(m->scratch);
    free(m);
}

void af_matcher_reset(af_matcher *m, uint32_t slot) {
    if (slot > m->hwm) {   /* never written: zero already; reading it first would map the zero page
                              and the first write would then cost every core a TLB flush */
        m->hwm = slot;
        return;
    }
    slot_state *st = &m->slots[slot - 1];
    for (int e = 0; e < 2; e++) {
        close_end(m, &st->end[e], NULL);
        st->end[e].matched = 0;
        st->end[e].tail_length = 0;
        st->end[e].scanned = 0;
    }
}

void af_matcher_split(af_matcher *m, uint32_t slot) {
    slot_state *st = &m->slots[slot - 1];
    st->end[0].matched = st->end[1].matched = 0;
}

/* Keeps the last AF_MATCH_TAIL bytes of the endpoint's searched data. */
static void remember(end_state *es, const uint8_t *data, uint32_t n) {
    if (n >= AF_MATCH_TAIL) {
        memcpy(es->tail, data + n - AF_MATCH_TAIL, AF_MATCH_TAIL);
        es->tail_length = AF_MATCH_TAIL;
        return;
    }
    uint32_t keep = es->tail_length;
    if (keep + n > AF_MATCH_TAIL) {
        memmove(es->tail, es->tail + (keep + n - AF_MATCH_TAIL), AF_MATCH_TAIL - n);
        keep = AF_MATCH_TAIL - n;
    }
    memcpy(es->tail + keep, data, n);
    es->tail_length = (uint16_t)(keep + n);
}

int af_matcher_data(af_matcher *m, uint32_t slot, int endpoint, int side, int datagram, uint64_t off,
                    const uint8_t *data, uint32_t n, af_hit *hit, uint8_t *text) {
    slot_state *st = &m->slots[slot - 1];
    end_state *es = &st->end[endpoint];
    if (es->matched || !m->stream_db[side] || n == 0) return 0;
    search_ctx c = {es, off, off, data, 0, hit, text, 0};
    if (datagram) {   /* each datagram alone, its offsets among the side's payload bytes */
        es->side = (uint8_t)side;
        hs_scan(m->block_db[side], (const char *)data, n, 0, m->scratch, on_match, &c);
        if (c.found) copy_text(&c, hit->start, hit->end);
    } else {
        /* first data, or data after a hole (no match spans missing bytes) */
        if (!es->hs || es->scanned != off) {
            close_end(m, es, NULL);
            es->side = (uint8_t)side;
            if (hs_open_stream(m->stream_db[side], 0, &es->hs) != HS_SUCCESS) {
                es->hs = NULL;
                return 0;
            }
            m->open_bytes += m->stream_size[side];
            es->base = off;
            es->tail_length = 0;
        }
        c.base = es->base;
        c.use_tail = 1;
        hs_scan_stream(es->hs, (const char *)data, n, 0, m->scratch, on_match, &c);
        es->scanned = off + n;
        if (c.found) copy_text(&c, hit->start, hit->end);   /* before the tail moves on */
        remember(es, data, n);
    }
    if (!c.found) return 0;
    for (int e = 0; e < 2; e++) {
        st->end[e].matched = 1;
        close_end(m, &st->end[e], NULL);
    }
    return 1;
}

int af_matcher_end(af_matcher *m, uint32_t slot, af_hit *hit, uint8_t *text) {
    if (slot > m->hwm) return 0;
    slot_state *st = &m->slots[slot - 1];
    int found = 0;
    for (int e = 0; e < 2 && !found; e++) {
        end_state *es = &st->end[e];
        if (!es->hs || es->matched) continue;
        search_ctx c = {es, es->base, es->scanned, NULL, 1, hit, text, 0};
        close_end(m, es, &c);
        if ((found = c.found)) copy_text(&c, hit->start, hit->end);
    }
    return found;   /* the slot's next af_matcher_reset clears the rest */
}

uint64_t af_matcher_memory(const af_matcher *m) { return m->open_bytes; }

void af_matcher_prefetch(const af_matcher *m, uint32_t slot, int endpoint, int load_state) {
    /* a slot never written would read the shared zero page (see af_matcher_reset) */
    if (slot > m->hwm) return;
    const end_state *es = &m->slots[slot - 1].end[endpoint];
    if (load_state) {   /* its lines were prefetched earlier: now the search state they point to */
        if (es->hs) __builtin_prefetch(es->hs);
        return;
    }
    for (size_t at = 0; at < sizeof *es; at += 64) __builtin_prefetch((const char *)es + at);
}

#else   /* built without Vectorscan/Hyperscan */

int af_stream_patterns_available(void) { return 0; }

af_matcher *af_matcher_new(uint32_t max_flows, const char *const *patterns[2], const uint32_t count[2],
                           uint32_t flags, char *error, size_t error_length, int *unsupported) {
    (void)max_flows, (void)patterns, (void)count, (void)flags;
    *unsupported = 1;
    snprintf(error, error_length, "aioflow was built without Vectorscan (apt-get install libvectorscan-dev, "
             "then reinstall aioflow)");
    return NULL;
}
void af_matcher_free(af_matcher *m) { (void)m; }
void af_matcher_reset(af_matcher *m, uint32_t slot) { (void)m, (void)slot; }
void af_matcher_split(af_matcher *m, uint32_t slot) { (void)m, (void)slot; }
int af_matcher_data(af_matcher *m, uint32_t slot, int endpoint, int side, int datagram, uint64_t off,
                    const uint8_t *data, uint32_t n, af_hit *hit, uint8_t *text) {
    (void)m, (void)slot, (void)endpoint, (void)side, (void)datagram, (void)off, (void)data, (void)n, (void)hit;
    (void)text;
    return 0;
}
int af_matcher_end(af_matcher *m, uint32_t slot, af_hit *hit, uint8_t *text) {
    (void)m, (void)slot, (void)hit, (void)text;
    return 0;
}
uint64_t af_matcher_memory(const af_matcher *m) { (void)m; return 0; }
void af_matcher_prefetch(const af_matcher *m, uint32_t slot, int endpoint, int load_state) {
    (void)m, (void)slot, (void)endpoint, (void)load_state;
}

#endif
