/* Zeek's connection state (meters=("conn_state",)): conn.log's conn_state, history, orig_bytes,
 * resp_bytes and who Zeek calls the originator, by Zeek's rules (its TCP session adapter and
 * endpoints, the UDP adapter, base/protocols/conn's conn_state()), written anew here in C.
 *
 * Roles: Zeek's originator is the first packet's sender, flipped when that packet is not a bare
 * SYN (TCP) or always (UDP) if its source port is a likely server port and its destination port
 * is not (`likely_server_ports`: the ports Zeek's default analyzers register, table below); and
 * flipped later on a SYN/SYN-ACK reversal. aioflow's src instead flips on a first SYN-ACK only:
 * `orig_is_src` says which endpoint Zeek's originator is.
 *
 * TCP per packet, in Zeek's order: endpoint sequence init (a partial endpoint starts as if a SYN
 * preceded it), history letters (S H A D F R, Q multi-flag, I FIN+RST; upper case for the
 * originator; SYN/FIN/RST again with a new sequence number add their letter again), zero window
 * (W, scaled: at counts 1, 10, 100...), the peer's ack, the endpoint's last sequence number (a
 * packet with data not past it is a retransmission: T, scaled), then the endpoint state machine.
 * Sizes are Zeek's TCP_Endpoint::Size(): the highest of last sequence and acknowledged sequence,
 * minus the start, minus the SYN and a FIN. Not done: C (checksums are not verified).
 *
 * Content gaps (G, missed_bytes): Zeek reassembles every TCP connection it analyzes
 * (dpd_reassemble_first_packets), and its reassembler (TCP_Reassembler, Reassem.cc) reports a gap
 * when the peer acknowledges data it never delivered. Gaps need no payload, only which sequence
 * ranges were seen whole, so each endpoint keeps Zeek's reassembler's numbers (zreasm, below):
 * relative to the endpoint's start, like Zeek's, in 32 bits (streams under 4 GiB), with up to
 * GAP_RANGES ranges of data seen above a hole; past that, the two nearest merge (the hole between
 * them counts as seen) and the record says `gaps_inexact`. UDP: each direction active on its
 * first packet (history D/d), sizes = UDP payload bytes by the UDP length field; ICMP: payload
 * after the 8-byte header; other protocols: OTH, no history. */
#include <string.h>

#include "icmp_pair.h"
#include "meter.h"

#define HIST_MAX 31

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET };
enum { H_SYN = 1, H_FIN = 2, H_RST = 4, H_FIN_RST = 8, H_DATA = 16, H_ACK = 32, H_MULTI = 64 };
#define TOO_LARGE_SEQ_DELTA 1048576
#define GAP_RANGES 3
#define MAX_INITIAL_WINDOW 16384             /* Zeek's tcp_max_initial_window */
#define MAX_ABOVE_HOLE 16384                 /* tcp_max_above_hole_without_any_acks */
#define MAX_UNACKED (10u * 1024 * 1024)     /* tcp_excessive_data_without_further_acks */

/* One endpoint's Zeek reassembler, as far as gaps go: its sequence numbers relative to the
 * endpoint's start (data starts at 1), no data. */
typedef struct {
    uint32_t l;                      /* last_reassem_seq: data delivered (seen without holes) up to here */
    uint32_t trim;                   /* trim_seq: acknowledged up to here (blocks below are gone) */
    uint32_t top;                    /* the highest end of data it took */
    uint32_t fin;                    /* FIN_seq: relative sequence after the last FIN */
    uint32_t ooo[GAP_RANGES][2];     /* data seen above a hole: [start, end), sorted, disjoint, > l */
    uint32_t gaps, gaps_next;        /* G's scaled count */
    uint8_t n, skip, inexact, _pad;  /* ranges held; deliveries stopped (Zeek's skip_deliveries) */
} zreasm;

typedef struct {
    int64_t last, ack;               /* relative to start: highest seq end sent; highest ack of it received */
    int64_t hist_syn, hist_fin, hist_rst;
    uint32_t start;
    uint32_t rxmit, rxmit_next, win0, win0_next;
    uint8_t state, prev_state, fins, _pad;
    uint64_t bytes;                  /* UDP / ICMP payload */
    zreasm r;
} zend;

typedef struct {
    zend e[2];                       /* by Zeek's role: 0 originator, 1 responder */
    uint32_t seen;                   /* history bits: originator's low 16, responder's high 16 */
    uint8_t orig;                    /* key endpoint that is the originator */
    uint8_t started, first_seen, partial, hist_len;
    uint8_t icmp_type, icmp_code;     /* ICMP: the first packet's */
    uint8_t did_close;               /* TCP: bit per role, its FIN or RST closed it (Zeek stops the clock at both) */
    uint8_t fast;                    /* TCP: both ends seen and in FAST_STATES: fast_packet() may run */
    uint64_t first_ns, last_ns;      /* Zeek's start and last time */
    uint64_t missed;                 /* content gaps' bytes (conn.log's missed_bytes) */
    char hist[HIST_MAX + 1];
} zconn;

typedef struct {
    char state[8];
    char history[HIST_MAX + 1];
    uint64_t orig_bytes, resp_bytes;
    uint64_t duration_ns;            /* Zeek's: up to the packet that closed both TCP ends */
    uint64_t missed_bytes;
    uint16_t orig_p, resp_p;         /* Zeek's ports: ICMP's type and counterpart (or code); else 0 */
    uint8_t orig_is_src, gaps_inexact, _pad[2];
} zrecord;

/* Zeek's likely_server_ports with its default scripts (the ports its analyzers register). */
static int likely_server(int proto, uint16_t port) {
    static const uint16_t tcp[] = {21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 389, 443, 445, 502,
                                   563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 994, 995, 1080, 1433,
                                   1812, 2811, 3128, 3306, 3389, 5060, 5222, 5269, 5432, 5672, 6379, 6666,
                                   6667, 6668, 6669, 8000, 8080, 8888, 20000};
    static const uint16_t udp[] = {53, 67, 68, 69, 88, 111, 123, 137, 161, 162, 443, 514, 1812, 1813,
                                   2123, 2152, 3478, 3544, 4789, 5060, 5072, 5353, 5355, 6081, 20000};
    const uint16_t *t = proto == 6 ? tcp : udp;
    size_t n = proto == 6 ? sizeof tcp / sizeof tcp[0] : sizeof udp / sizeof udp[0];
    for (size_t i = 0; i < n; i++)
        if (t[i] == port) return 1;
    return 0;
}

static int32_t seq_delta(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

static void add(zconn *c, char code) {
    if (c->hist_len < HIST_MAX) c->hist[c->hist_len++] = code;
}

/* Zeek's CheckHistory: adds the letter the first time; returns 1 when it was seen before. */
static int check(zconn *c, int role, uint32_t mask, char code) {
    if (role) mask <<= 16, code = (char)(code + ('a' - 'A'));
    if (c->seen & mask) return 1;
    c->seen |= mask;
    add(c, code);
    return 0;
}

/* Zeek's ScaledHistoryEntry: the letter at counts 1, 10, 100, ... */
static void scaled(zconn *c, int role, char code, uint32_t *count, uint32_t *next) {
    if (!*next) *next = 1;
    if (++*count == *next) {
        add(c, role ? (char)(code + ('a' - 'A')) : code);
        *next *= 10;
    }
}

static void set_state(zend *e, uint8_t s) {
    if (s == e->state) return;       /* as Zeek's SetState: prev_state is the last different one */
    e->prev_state = e->state;
    e->state = s;
}

static void init_seq(zend *e, uint32_t start, int64_t last) {
    e->start = start;
    e->ack = 0;
    e->last = last;
}

static void init_endpoint(zend *e, uint8_t fl, uint32_t seq, uint32_t seg_end) {
    int syn = fl & AF_TCP_SYN;
    switch (e->state) {
    case INACTIVE:
        if (syn) init_seq(e, seq, seq_delta(seg_end, seq));
        else init_seq(e, seq - 1, 1);   /* as though a SYN came first; this packet is not a duplicate */
        break;
    case SYN_SENT: case SYN_ACK_SENT: case ESTABLISHED: case PARTIAL:
        if (syn && (seq != e->start || e->state == ESTABLISHED || e->state == PARTIAL))
            init_seq(e, seq, seq_delta(seg_end, seq));
        break;
    case RESET:
        if (syn && e->prev_state == INACTIVE) init_seq(e, seq, seq_delta(seg_end, seq));
        break;
    default:
        break;
    }
}

static void history(zconn *c, int role, zend *e, uint8_t fl, int64_t rel, uint32_t len) {
    int syn = !!(fl & AF_TCP_SYN), fin = !!(fl & AF_TCP_FIN), rst = !!(fl & AF_TCP_RST);
    if (syn + fin + rst > 1) {
        if (fin && rst) check(c, role, H_FIN_RST, 'I');
        else check(c, role, H_MULTI, 'Q');
    } else if (syn) {
        char code = (fl & AF_TCP_ACK) ? 'H' : 'S';
        if (check(c, role, H_SYN, code) && rel != e->hist_syn) add(c, role ? (char)(code + 32) : code);
        e->hist_syn = rel;
    } else if (fin) {
        if (check(c, role, H_FIN, 'F') && rel + len != e->hist_fin) add(c, role ? 'f' : 'F');
        e->hist_fin = rel + len;
    } else if (rst) {
        if (check(c, role, H_RST, 'R') && rel != e->hist_rst) add(c, role ? 'r' : 'R');
        e->hist_rst = rel;
    } else if (len) {
        check(c, role, H_DATA, 'D');
    } else if (fl & AF_TCP_ACK) {
        check(c, role, H_ACK, 'A');
    }
}

/* The SYN/SYN-ACK reversal: roles swap, '^' marks it. */
static void flip(zconn *c) {
    zend t = c->e[0];
    c->e[0] = c->e[1], c->e[1] = t;
    c->seen = c->seen >> 16 | c->seen << 16;
    c->orig ^= 1;
    add(c, '^');
}

/* Returns the sender's role afterwards (a SYN/SYN-ACK reversal swaps them). */
static int state_machine(zconn *c, int role, uint8_t fl, uint32_t seq, uint32_t len) {
    zend *e = &c->e[role], *peer = &c->e[1 - role];
    int syn = fl & AF_TCP_SYN, fin = fl & AF_TCP_FIN, rst = fl & AF_TCP_RST, ack = fl & AF_TCP_ACK;
    switch (e->state) {
    case INACTIVE:
        if (syn) {
            if (role == 0) {
                set_state(e, ack ? SYN_ACK_SENT : SYN_SENT);
            } else {
                if (!ack && peer->state == SYN_ACK_SENT && seq == e->start) {
                    c->partial = 0;
                    flip(c);             /* e and peer swapped places */
                    e = &c->e[0], peer = &c->e[1];
                    role = 0;
                    set_state(peer, ESTABLISHED);
                }
                if (peer->state == SYN_SENT) set_state(peer, ESTABLISHED);
                set_state(e, ESTABLISHED);
            }
        }
        if (fin) set_state(e, CLOSED);
        if (rst) set_state(e, RESET);
        if (e->state == INACTIVE) {
            if (role == 1 && len == 0 && c->e[0].state == SYN_SENT)
                ;   /* an ACK of the SYN before the SYN-ACK: not a partial connection */
            else if (ack && peer->state == ESTABLISHED) {
                set_state(e, ESTABLISHED);
                c->partial = 0;
            } else {
                set_state(e, PARTIAL);
            }
        }
        break;
    case SYN_SENT: case SYN_ACK_SENT:
        if (fin) set_state(e, CLOSED);
        if (rst) set_state(e, RESET);
        break;
    case ESTABLISHED: case PARTIAL:
        if (syn && e->state == PARTIAL && peer->state == INACTIVE && !ack) set_state(e, SYN_SENT);
        if (fin && !rst) {
            set_state(e, CLOSED);
            if (peer->state == RESET && peer->prev_state == CLOSED) set_state(peer, CLOSED);
        }
        if (rst) set_state(e, RESET);
        break;
    case CLOSED:
        if (rst && peer->state != CLOSED) set_state(e, RESET);
        break;
    default:
        break;
    }
    return role;
}

/* Zeek's TCP_Endpoint::Size() */
static uint64_t tcp_size(const zend *e, const zend *peer) {
    if (e->prev_state == SYN_SENT && e->state == RESET && peer->state == INACTIVE && e->ack > 1) return 0;
    int64_t top = e->last > e->ack ? e->last : e->ack;
    uint64_t size = top > 0 ? (uint64_t)top : 0;
    if (size) size--;
    if (e->fins && size) size--;
    return size;
}

/* --- Zeek's reassembler, for gaps (TCP_Reassembler, Reassem.cc) ---------------------------- */

static int no_data_acked(const zend *e) { return e->ack <= 1; }   /* Zeek's NoDataAcked() */

static int is_clean(const zend *e) {
    return e->state == ESTABLISHED || (e->state == CLOSED && e->prev_state == ESTABLISHED);
}

/* TCP_Reassembler::Gap: reported (history G, content_gap's bytes into missed_bytes) only while
 * both ends are established or closing cleanly. */
static void gap(zconn *c, int role, uint32_t len) {
    zend *e = &c->e[role];
    if (is_clean(e) && is_clean(&c->e[1 - role])) {
        scaled(c, role, 'G', &e->r.gaps, &e->r.gaps_next);
        c->missed += len;
    }
}

/* BlockInserted: data now reaches `to`; delivery runs on over the ranges above that it reaches.
 * Then, if none of this endpoint's data was acknowledged and it sent more than an initial
 * window, Zeek trims to what it delivered. */
static void deliver(zconn *c, int role, uint32_t to) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    r->l = to;
    uint32_t k = 0;
    for (; k < r->n && r->ooo[k][0] <= r->l; k++)
        if (r->ooo[k][1] > r->l) r->l = r->ooo[k][1];
    if (k) memmove(r->ooo, r->ooo + k, (r->n - k) * sizeof r->ooo[0]), r->n = (uint8_t)(r->n - k);
    if (no_data_acked(e) && tcp_size(e, &c->e[1 - role]) > MAX_INITIAL_WINDOW && r->l > r->trim) r->trim = r->l;
}

/* Data [s, u) above the delivered part: a range of its own, or merged with those it meets. With
 * GAP_RANGES held, the two ranges with the smallest hole between them become one. */
static void add_range(zreasm *r, uint32_t s, uint32_t u) {
    uint32_t k = 0;
    while (k < r->n && r->ooo[k][1] < s) k++;            /* ranges wholly below */
    uint32_t j = k;
    while (j < r->n && r->ooo[j][0] <= u) {               /* ranges it meets */
        if (r->ooo[j][0] < s) s = r->ooo[j][0];
        if (r->ooo[j][1] > u) u = r->ooo[j][1];
        j++;
    }
    if (j - k != 1) {                                     /* make room for exactly one at k */
        if (j == k && r->n == GAP_RANGES) {
            uint32_t best = 0, hole = UINT32_MAX;         /* nearest pair, the new range included */
            uint32_t all[GAP_RANGES + 1][2];
            memcpy(all, r->ooo, k * sizeof all[0]);
            all[k][0] = s, all[k][1] = u;
            memcpy(all + k + 1, r->ooo + k, (r->n - k) * sizeof all[0]);
            for (uint32_t i = 0; i < GAP_RANGES; i++)
                if (all[i + 1][0] - all[i][1] < hole) hole = all[i + 1][0] - all[i][1], best = i;
            all[best][1] = all[best + 1][1];
            memmove(all + best + 1, all + best + 2, (GAP_RANGES - 1 - best) * sizeof all[0]);
            memcpy(r->ooo, all, sizeof r->ooo);
            r->inexact = 1;
            return;
        }
        memmove(r->ooo + k + 1, r->ooo + j, (r->n - j) * sizeof r->ooo[0]);
        r->n = (uint8_t)(r->n + 1 - (j - k));
    }
    r->ooo[k][0] = s, r->ooo[k][1] = u;
}

/* TCP_Reassembler::DataSent then Reassembler::NewBlock: `len` bytes at relative `seq`, captured
 * whole. */
static void data_sent(zconn *c, int role, uint32_t seq, uint32_t len) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    if (r->skip) return;
    uint32_t up = seq + len, ack = (uint32_t)e->ack;
    if (seq < ack) {                                      /* acknowledged already: only the rest */
        if (up <= ack) return;
        seq = ack;
    }
    if (up <= r->trim) return;
    if (seq < r->trim) seq = r->trim;
    if (up > r->top) r->top = up;
    if (seq <= r->l) {
        if (up > r->l) deliver(c, role, up);
    } else {
        add_range(r, seq, up);
    }
    uint64_t held = r->l > r->trim ? r->l - r->trim : 0;  /* Zeek's DataSize(), to within a segment */
    for (uint32_t k = 0; k < r->n; k++) held += r->ooo[k][1] - r->ooo[k][0];
    if ((no_data_acked(e) && r->top > r->trim && r->top - r->l > MAX_ABOVE_HOLE) || held > MAX_UNACKED)
        r->skip = 1, r->n = 0;                            /* Zeek gives up on the stream's content */
}

/* Reassembler::Undelivered: the peer acknowledged up to `up`, past the delivered data; every hole
 * below it is a gap. */
static void undelivered(zconn *c, int role, uint32_t up) {
    zreasm *r = &c->e[role].r;
    if (up <= 2 && c->partial) return;   /* a partial connection's made-up start: not a gap */
    if (!r->skip) {
        while (r->n && r->ooo[0][0] < up) {
            gap(c, role, r->ooo[0][0] - r->l);
            deliver(c, role, r->ooo[0][0]);
        }
        if (up > r->l) gap(c, role, up - r->l);
    }
    if (up > r->l) r->l = up;
}

/* TCP_Reassembler::AckReceived: the peer acknowledged `role`'s data up to relative `seq`. */
static void ack_received(zconn *c, int role, uint32_t seq) {
    zend *e = &c->e[role];
    zreasm *r = &e->r;
    if (e->fins && seq >= r->fin) seq = r->fin - 1;
    if (seq <= r->trim) return;
    if (seq > r->l) undelivered(c, role, seq);
    r->trim = seq;
}

static void tcp_packet(zconn *c, int role, const af_packet *p, uint32_t len) {
    zend *e = &c->e[role], *peer = &c->e[1 - role];
    uint8_t fl = p->tcp_flags;
    if (role == 0 && !(c->first_seen & 1)) c->partial = !(fl & AF_TCP_SYN) || (fl & AF_TCP_ACK);
    else if (role == 1 && !(c->first_seen & 2) && !c->partial) c->partial = !(fl & AF_TCP_SYN);
    uint32_t seg = len + !!(fl & AF_TCP_SYN) + !!(fl & AF_TCP_FIN) - ((fl & AF_TCP_RST) ? len : 0);
    uint32_t seq = p->tcp_seq, seg_end = seq + seg;
    init_endpoint(e, fl, seq, seg_end);
    int64_t rel = seq_delta(seq, e->start);
    c->first_seen |= (uint8_t)(1 << role);
    history(c, role, e, fl, rel, len);
    if (p->tcp_window == 0 && !(fl & AF_TCP_RST) && peer->state != CLOSED && e->state != RESET)
        scaled(c, role, 'W', &e->win0, &e->win0_next);
    if (fl & AF_TCP_FIN) e->fins = 1, e->r.fin = (uint32_t)rel + seg;
    uint32_t rel_ack = 0;            /* Zeek's: relative to the peer's start, 0 when below it */
    if (fl & AF_TCP_ACK) {
        if (peer->state == INACTIVE) {
            init_seq(peer, p->tcp_ack - 1, 0);
            rel_ack = 1;
        } else {
            int32_t r = seq_delta(p->tcp_ack, peer->start);
            rel_ack = r > 0 ? (uint32_t)r : 0;
            int32_t d = seq_delta(p->tcp_ack, peer->start + (uint32_t)peer->ack);
            if (r >= 0 && !(fl & AF_TCP_RST) && !(p->tcp_ack == 0 && d > TOO_LARGE_SEQ_DELTA) && d > 0) peer->ack += d;
        }
    }
    int32_t delta_last = seq_delta(seg_end, e->start + (uint32_t)e->last);
    if ((fl & (AF_TCP_SYN | AF_TCP_RST)) && (delta_last > TOO_LARGE_SEQ_DELTA || delta_last < -TOO_LARGE_SEQ_DELTA))
        ;   /* an outlandish SYN or RST sequence number is not trusted */
    else if ((fl & AF_TCP_FIN) && e->last == 1)
        e->last += delta_last;
    else if (e->state == RESET)
        ;
    else if (delta_last > 0)
        e->last += delta_last;
    else if (len > 0)
        scaled(c, role, 'T', &e->rxmit, &e->rxmit_next);
    role = state_machine(c, role, fl, seq, len);
    /* the reassemblers, after the state machine (a gap at a FIN or RST is not flagged) */
    if (fl & AF_TCP_ACK) ack_received(c, 1 - role, rel_ack);
    if (len && !(fl & AF_TCP_RST) && p->payload_len >= len && rel >= 0)
        data_sent(c, role, (uint32_t)rel + !!(fl & AF_TCP_SYN), len);
}

static const char *tcp_conn_state(const zconn *c) {
    int os = c->e[0].state, rs = c->e[1].state;
    int o_inactive = os == INACTIVE || os == PARTIAL, r_inactive = rs == INACTIVE || rs == PARTIAL;
    if (rs == RESET) {
        if (os == SYN_SENT || os == SYN_ACK_SENT ||
            (os == RESET && tcp_size(&c->e[0], &c->e[1]) == 0 && tcp_size(&c->e[1], &c->e[0]) == 0))
            return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (os == RESET) {
        if (!r_inactive) return "RSTO";
        /* history matches ^?S[^HAFGIQ]*R.* */
        const char *h = c->hist + (c->hist[0] == '^');
        if (*h++ != 'S') return "OTH";
        for (; *h && !strchr("HAFGIQ", *h); h++)
            if (*h == 'R') return "RSTOS0";
        return "OTH";
    }
    if (rs == CLOSED && os == CLOSED) return "SF";
    if (os == CLOSED) return r_inactive ? "SH" : "S2";
    if (rs == CLOSED) return o_inactive ? "SHR" : "S3";
    if (os == SYN_SENT && rs == INACTIVE) return "S0";
    if (os == ESTABLISHED && rs == ESTABLISHED) return "S1";
    return "OTH";
}

/* Endpoint states in which a packet with ACK and no SYN/FIN/RST changes no state, re-inits no
 * sequence and is not the RESET case of the last-sequence update. */
#define FAST_STATES (1u << PARTIAL | 1u << ESTABLISHED | 1u << CLOSED)

/* The common case, in-order data or a pure ACK while both ends are in FAST_STATES (flags ACK,
 * maybe PSH/URG/ECE/CWR; window not zero), with what tcp_packet() would do for it and nothing
 * else: no SYN/FIN/RST so no endpoint re-init, history only D/A (already seen after the first),
 * no W, no state change. Returns 0 when the packet is not such a one: tcp_packet() then runs. */
static int fast_packet(zconn *c, int role, const af_packet *p, uint32_t len) {
    if ((p->tcp_flags & (AF_TCP_SYN | AF_TCP_FIN | AF_TCP_RST | AF_TCP_ACK)) != AF_TCP_ACK ||
        p->tcp_window == 0)
        return 0;
    zend *e = &c->e[role], *peer = &c->e[1 - role];
    /* The reassemblers: the ack trims the peer's and the data extends the sender's, in order. An
     * ack past the peer's delivered data (a gap) or data out of order take the slow path. */
    int32_t rel_ack = seq_delta(p->tcp_ack, peer->start);
    uint32_t ra = rel_ack > 0 ? (uint32_t)rel_ack : 0;
    if (peer->fins && ra >= peer->r.fin) ra = peer->r.fin - 1;
    if (ra > peer->r.trim && ra > peer->r.l) return 0;
    uint32_t rel = p->tcp_seq - e->start;
    int data = len && !e->r.skip && p->payload_len >= len && (int32_t)rel >= 0;
    if (data && (rel != e->r.l || e->r.n || rel < e->r.trim || (int64_t)rel < e->ack)) return 0;
    if (!(c->seen & ((uint32_t)(len ? H_DATA : H_ACK) << (16 * role)))) check(c, role, len ? H_DATA : H_ACK, len ? 'D' : 'A');
    int32_t d = seq_delta(p->tcp_ack, peer->start + (uint32_t)peer->ack);
    if (rel_ack >= 0 && d > 0 && !(p->tcp_ack == 0 && d > TOO_LARGE_SEQ_DELTA)) peer->ack += d;
    int32_t delta_last = seq_delta(p->tcp_seq + len, e->start + (uint32_t)e->last);
    if (delta_last > 0) e->last += delta_last;
    else if (len > 0) scaled(c, role, 'T', &e->rxmit, &e->rxmit_next);
    if (ra > peer->r.trim) peer->r.trim = ra;
    if (data) {
        e->r.l = e->r.top = rel + len;
        if (no_data_acked(e) && tcp_size(e, peer) > MAX_INITIAL_WINDOW) e->r.trim = e->r.l;   /* as deliver() */
        if (e->r.l - e->r.trim > MAX_UNACKED) e->r.skip = 1;
    }
    return 1;
}

/* Everything but the fast path; out of line so on_packet stays a small function. */
__attribute__((noinline)) static void slow_packet(zconn *c, const af_packet *p, int sender, uint64_t ts, uint32_t wire) {
    if (!c->started) {
        c->started = 1;
        c->first_ns = ts;
        c->orig = (uint8_t)sender;
        c->icmp_type = p->icmp_type, c->icmp_code = p->icmp_code;
        c->e[0].r.l = c->e[0].r.trim = c->e[1].r.l = c->e[1].r.trim = 1;   /* Reassembler(1, ...) */
        int bare_syn = p->protocol == 6 && (p->tcp_flags & (AF_TCP_SYN | AF_TCP_ACK)) == AF_TCP_SYN;
        if ((p->protocol == 6 || p->protocol == 17) && !bare_syn && likely_server(p->protocol, p->sport) &&
            !likely_server(p->protocol, p->dport)) {
            c->orig ^= 1;
            add(c, '^');
        }
    }
    int role = sender != c->orig;
    if (c->did_close != 3) c->last_ns = ts;
    switch (p->protocol) {
    case 6:
        tcp_packet(c, role, p, wire);
        if (p->tcp_flags & (AF_TCP_FIN | AF_TCP_RST)) c->did_close |= (uint8_t)(1 << role);
        c->fast = (FAST_STATES >> c->e[0].state & FAST_STATES >> c->e[1].state & 1) && c->first_seen == 3;
        break;
    case 17:
        c->e[role].state = ESTABLISHED;   /* Zeek's UDP_ACTIVE */
        c->e[role].bytes += wire;
        check(c, role, H_DATA, 'D');
        break;
    case 1: case 58:
        c->e[role].state = ESTABLISHED;
        c->e[role].bytes += wire;
        break;
    default:
        c->e[role].state = ESTABLISHED;
        break;
    }
}

/* on_packet_brief: the headers, sender and time are all it needs (no af_meter_packet) */
static void on_packet(void *state, const af_packet *p, int sender, uint64_t ts) {
    zconn *c = state;
    uint32_t headers = p->l3_headers_len, wire = p->ip_length > headers ? p->ip_length - headers : 0;
    if (c->fast) {   /* started, TCP */
        int role = sender != c->orig;
        if (c->did_close != 3) c->last_ns = ts;
        if (fast_packet(c, role, p, wire)) return;
    }
    slow_packet(c, p, sender, ts, wire);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    const zconn *c = state;
    const af_flow *f = af_table_flow(me->table, me->slot);
    zrecord *r = (zrecord *)(void *)me->block;
    const char *st = "OTH";
    if (f->key.proto == 6) {
        st = tcp_conn_state(c);
        r->orig_bytes = tcp_size(&c->e[0], &c->e[1]);
        r->resp_bytes = tcp_size(&c->e[1], &c->e[0]);
    } else {
        if (f->key.proto == 17) {
            int o = c->e[0].state == ESTABLISHED, rs = c->e[1].state == ESTABLISHED;
            st = o ? (rs ? "SF" : "S0") : (rs ? "SHR" : "OTH");
        }
        r->orig_bytes = c->e[0].bytes;
        r->resp_bytes = c->e[1].bytes;
        if (f->key.proto == 1 || f->key.proto == 58) {
            int peer = af_icmp_counterpart(f->key.proto == 58, c->icmp_type);
            r->orig_p = c->icmp_type;
            r->resp_p = peer < 0 ? c->icmp_code : (uint16_t)peer;
        }
    }
    memcpy(r->state, st, strlen(st));
    memcpy(r->history, c->hist, c->hist_len);
    r->missed_bytes = c->missed;
    r->gaps_inexact = c->e[0].r.inexact | c->e[1].r.inexact;
    r->orig_is_src = c->orig == f->src_idx;
    r->duration_ns = c->last_ns - c->first_ns;
    /* an active-timeout split keeps the state: Zeek has no such split, its connection goes on */
}

static const af_meter_field fields[] = {
    {"state", "char[8]", "text", offsetof(zrecord, state), 0},
    {"history", "char[32]", "text", offsetof(zrecord, history), 0},
    {"orig_bytes", "uint64_t", "bytes", offsetof(zrecord, orig_bytes), 0},
    {"resp_bytes", "uint64_t", "bytes", offsetof(zrecord, resp_bytes), 0},
    {"duration_ns", "uint64_t", "ns", offsetof(zrecord, duration_ns), 0},
    {"orig_is_src", "uint8_t", "bool", offsetof(zrecord, orig_is_src), 0},
    {"missed_bytes", "uint64_t", "bytes", offsetof(zrecord, missed_bytes), 0},
    {"gaps_inexact", "uint8_t", "bool", offsetof(zrecord, gaps_inexact), 0},
    {"icmp_orig_p", "uint16_t", "port", offsetof(zrecord, orig_p), 0},
    {"icmp_resp_p", "uint16_t", "port", offsetof(zrecord, resp_p), 0},
};

const af_meter af_meter_conn_state = {
    .info = {"conn_state", "Zeek's conn_state, history, payload sizes and originator", NULL, fields,
             sizeof fields / sizeof fields[0], sizeof(zrecord)},
    .state_size = sizeof(zconn),
    .on_packet_brief = on_packet,
    .on_end = on_end,
};
