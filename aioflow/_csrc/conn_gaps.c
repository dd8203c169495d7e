/* Zeek's reassembler as conn_state needs it: which sequence ranges each endpoint sent whole,
 * so that an acknowledgement past a hole is a content gap (history G, missed_bytes). See
 * conn_state.c's first comment. */
#include "conn_gaps.h"

#include <string.h>

/* --- Zeek's reassembler, for gaps (TCP_Reassembler, Reassem.cc) ---------------------------- */

static int is_clean(const zend *e) {
    return e->state == ESTABLISHED || (e->state == CLOSED && e->prev_state == ESTABLISHED);
}

/* TCP_Reassembler::Gap: reported (history G, content_gap's bytes into missed_bytes) only while
 * both ends are established or closing cleanly. */
static void gap(zconn *c, int role, uint32_t len) {
    zend *e = &c->e[role];
    if (is_clean(e) && is_clean(&c->e[1 - role])) {
        scaled(c, role, 'G', &c->x[role].gaps, &c->x[role].gaps_next);
        c->missed += len;
    }
}

/* BlockInserted: data now reaches `to`; delivery runs on over the ranges above that it reaches.
 * Then, if none of this endpoint's data was acknowledged and it sent more than an initial
 * window, Zeek trims to what it delivered. */
static void deliver(zconn *c, int role, uint32_t to) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    uint32_t (*ooo)[2] = c->x[role].ooo;
    r->l = to;
    uint32_t k = 0;
    for (; k < r->n && ooo[k][0] <= r->l; k++)
        if (ooo[k][1] > r->l) r->l = ooo[k][1];
    if (k) memmove(ooo, ooo + k, (r->n - k) * sizeof ooo[0]), r->n = (uint8_t)(r->n - k);
    if (no_data_acked(e) && tcp_size(e, &c->e[1 - role]) > MAX_INITIAL_WINDOW && r->l > r->trim) r->trim = r->l;
}

/* Data [s, u) above the delivered part: a range of its own, or merged with those it meets. With
 * GAP_RANGES held, the two ranges with the smallest hole between them become one. */
static void add_range(zreasm *r, uint32_t (*ooo)[2], uint32_t s, uint32_t u) {
    uint32_t k = 0;
    while (k < r->n && ooo[k][1] < s) k++;               /* ranges wholly below */
    uint32_t j = k;
    while (j < r->n && ooo[j][0] <= u) {                  /* ranges it meets */
        if (ooo[j][0] < s) s = ooo[j][0];
        if (ooo[j][1] > u) u = ooo[j][1];
        j++;
    }
    if (j - k != 1) {                                     /* make room for exactly one at k */
        if (j == k && r->n == GAP_RANGES) {
            uint32_t best = 0, hole = UINT32_MAX;         /* nearest pair, the new range included */
            uint32_t all[GAP_RANGES + 1][2];
            memcpy(all, ooo, k * sizeof all[0]);
            all[k][0] = s, all[k][1] = u;
            memcpy(all + k + 1, ooo + k, (r->n - k) * sizeof all[0]);
            for (uint32_t i = 0; i < GAP_RANGES; i++)
                if (all[i + 1][0] - all[i][1] < hole) hole = all[i + 1][0] - all[i][1], best = i;
            all[best][1] = all[best + 1][1];
            memmove(all + best + 1, all + best + 2, (GAP_RANGES - 1 - best) * sizeof all[0]);
            memcpy(ooo, all, GAP_RANGES * sizeof ooo[0]);
            r->inexact = 1;
            return;
        }
        memmove(ooo + k + 1, ooo + j, (r->n - j) * sizeof ooo[0]);
        r->n = (uint8_t)(r->n + 1 - (j - k));
    }
    ooo[k][0] = s, ooo[k][1] = u;
}

void af_conn_data_sent(zconn *c, int role, uint32_t seq, uint32_t len) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    uint32_t (*ooo)[2] = c->x[role].ooo;
    if (r->skip) return;
    uint32_t up = seq + len, ack = (uint32_t)e->ack;
    if (seq < ack) {                                      /* acknowledged already: only the rest */
        if (up <= ack) return;
        seq = ack;
    }
    if (up <= r->trim) return;
    if (seq < r->trim) seq = r->trim;
    if (seq <= r->l) {
        if (up > r->l) deliver(c, role, up);
    } else {
        add_range(r, ooo, seq, up);
    }
    uint64_t held = r->l > r->trim ? r->l - r->trim : 0;  /* Zeek's DataSize(), to within a segment */
    for (uint32_t k = 0; k < r->n; k++) held += ooo[k][1] - ooo[k][0];
    /* the highest end of data it took: every piece taken is delivered (up to l) or in a range */
    uint32_t top = r->n ? ooo[r->n - 1][1] : r->l;
    if ((no_data_acked(e) && top > r->trim && top - r->l > MAX_ABOVE_HOLE) || held > MAX_UNACKED)
        r->skip = 1, r->n = 0;                            /* Zeek gives up on the stream's content */
}

/* Reassembler::Undelivered: the peer acknowledged up to `up`, past the delivered data; every hole
 * below it is a gap. */
static void undelivered(zconn *c, int role, uint32_t up) {
    zreasm *r = &c->e[role].r;
    uint32_t (*ooo)[2] = c->x[role].ooo;
    if (up <= 2 && c->partial) return;   /* a partial connection's made-up start: not a gap */
    if (!r->skip) {
        while (r->n && ooo[0][0] < up) {
            gap(c, role, ooo[0][0] - r->l);
            deliver(c, role, ooo[0][0]);
        }
        if (up > r->l) gap(c, role, up - r->l);
    }
    if (up > r->l) r->l = up;
}

void af_conn_ack_received(zconn *c, int role, uint32_t seq) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    if (e->fins && seq >= r->fin) seq = r->fin - 1;
    if (seq <= r->trim) return;
    if (seq > r->l) undelivered(c, role, seq);
    r->trim = seq;
}
