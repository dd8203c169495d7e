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
 * minus the start, minus the SYN and a FIN. With check_checksums, a packet with a bad checksum
 * adds C/c and nothing else (bad_checksum below).
 *
 * Content gaps (G, missed_bytes): Zeek reassembles every TCP connection it analyzes
 * (dpd_reassemble_first_packets), and its reassembler (TCP_Reassembler, Reassem.cc) reports a gap
 * when the peer acknowledges data it never delivered. Gaps need no payload, only which sequence
 * ranges were seen whole, so each endpoint keeps Zeek's reassembler's numbers (zreasm, zrare):
 * relative to the endpoint's start, like Zeek's, in 32 bits (streams under 4 GiB), with up to
 * GAP_RANGES ranges of data seen above a hole; past that, the two nearest merge (the hole between
 * them counts as seen) and the record says `gaps_inexact`. UDP: each direction active on its
 * first packet (history D/d), sizes = UDP payload bytes by the UDP length field; ICMP: payload
 * after the 8-byte header; other protocols: OTH, no history.
 *
 * Layout: with ~100k flows active every line of per-flow state a packet touches is a cache miss,
 * so the state is in two parts. The hot part (zhot, the meter's state block: one 64-byte line,
 * prefetched with the flow) has all that an in-order TCP segment or pure ACK (fast_packet) and a
 * UDP/ICMP packet after its direction's first need: the endpoints' sequence numbers (low 32
 * bits), reassembler edges, the time, the byte counts. The cold part (zconn, the meter's cold
 * block, five lines: each endpoint's states and sequence numbers in one, the history in one,
 * the holes and Zeek's repetition counters in two that only zero windows, retransmissions and
 * data above a hole read: a handshake or teardown packet touches three). The slow path
 * (handshakes, teardowns, out-of-order data, a letter's first time) works on the cold part alone:
 * it takes the hot part's numbers in first (sync_in) and gives them back after (sync_out), which
 * also says what the next packets may do on the fast path. */
#include <string.h>

#include "conn_gaps.h"
#include "icmp_pair.h"
#include "meter.h"


/* zhot.letters' bit for a role's packet with or without payload: zconn.seen's H_DATA and H_ACK
 * bits (16 and 32) of each role, side by side (sync_out) */
#define LETTER(role, payload) (2 * (role) + !(payload))
_Static_assert(H_DATA == 16 && H_ACK == 32, "zhot.letters is zconn.seen >> 4 and >> 18");

/* The hot part of a TCP endpoint: zend's sequence numbers, their low 32 bits for last and ack. */
typedef struct {
    uint32_t start, last, ack, l, trim, fin;
} zhend;

enum { K_TCP = 1, K_COUNT, K_OTHER };              /* zhot.kind: TCP; UDP/ICMP (bytes counted); others */
enum { F_FINS = 1, F_SKIP = 2, F_HELD = 4 };       /* zhot.ef: zend's fins, r.skip, r.n != 0 */

typedef struct {
    union {
        zhend e[2];                  /* TCP, by role */
        uint64_t bytes[2];           /* UDP / ICMP payload, by role */
    } u;
    uint64_t last_ns;                /* Zeek's last time */
    uint8_t kind;                    /* K_*: 0 before the first packet */
    uint8_t orig;                    /* zconn's orig */
    uint8_t did_close;               /* TCP: bit per role, its FIN or RST closed it (Zeek stops the clock at both) */
    /* The packets the fast path takes, bit `role`. TCP: an ACK from that role when both ends were
     * seen and are in FAST_STATES and the role's last and ack fit 32 bits. UDP/ICMP/others: any
     * packet after the role's first. */
    uint8_t ready;
    uint8_t ef[2];                   /* F_* by role */
    uint8_t letters;                 /* TCP: bit LETTER(role, payload): the role's D or A is in the history */
    uint8_t _pad;
} zhot;
_Static_assert(sizeof(zhot) == 64, "the hot part is one cache line");

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

/* Zeek's CheckHistory: adds the letter the first time; returns 1 when it was seen before. */
static int check(zconn *c, int role, uint32_t mask, char code) {
    if (role) mask <<= 16, code = (char)(code + ('a' - 'A'));
    if (c->seen & mask) return 1;
    c->seen |= mask;
    add(c, code);
    return 0;
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
    zrare x = c->x[0];
    c->x[0] = c->x[1], c->x[1] = x;
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
        scaled(c, role, 'W', &c->x[role].win0, &c->x[role].win0_next);
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
        scaled(c, role, 'T', &c->x[role].rxmit, &c->x[role].rxmit_next);
    role = state_machine(c, role, fl, seq, len);
    /* the reassemblers, after the state machine (a gap at a FIN or RST is not flagged) */
    if (fl & AF_TCP_ACK) af_conn_ack_received(c, 1 - role, rel_ack);
    if (len && !(fl & AF_TCP_RST) && p->payload_len >= len && rel >= 0)
        af_conn_data_sent(c, role, (uint32_t)rel + !!(fl & AF_TCP_SYN), len);
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


/* --- the hot part ------------------------------------------------------------------------------ */

/* zend's 64-bit number whose low 32 bits the hot part holds: the fast path never carries into
 * the high ones (it leaves such a packet to the slow path), so they are still zconn's. */
static int64_t joined(int64_t cold, uint32_t hot) { return (int64_t)(((uint64_t)cold & ~(uint64_t)UINT32_MAX) | hot); }

/* The numbers the fast path may have moved since the last slow packet, into the cold part. */
static void sync_in(const zhot *h, zconn *c) {
    for (int k = 0; k < 2; k++) {
        const zhend *x = &h->u.e[k];
        zend *e = &c->e[k];
        e->last = joined(e->last, x->last), e->ack = joined(e->ack, x->ack);
        e->r.l = x->l, e->r.trim = x->trim;
        e->r.skip = !!(h->ef[k] & F_SKIP);
    }
}

/* Back into the hot part after a slow TCP packet, and what the fast path may take next. */
static void sync_out(zhot *h, const zconn *c) {
    int fast = (FAST_STATES >> c->e[0].state & FAST_STATES >> c->e[1].state & 1) && c->first_seen == 3;
    unsigned ready = 0;
    for (int k = 0; k < 2; k++) {
        const zend *e = &c->e[k];
        zhend *x = &h->u.e[k];
        *x = (zhend){e->start, (uint32_t)e->last, (uint32_t)e->ack, e->r.l, e->r.trim, e->r.fin};
        h->ef[k] = (uint8_t)(e->fins * F_FINS | e->r.skip * F_SKIP | (e->r.n != 0) * F_HELD);   /* each 0 or 1 */
        /* last in [0, 2^32) and ack below 2^32: their high halves are 0 */
        ready |= (unsigned)((((uint64_t)e->last | (uint64_t)e->ack) >> 32) == 0) << k;
    }
    h->ready = (uint8_t)(fast ? ready : 0);
    h->letters = (uint8_t)((c->seen >> 4 & 3) | (c->seen >> 18 & 12));
    h->orig = c->orig;
}

/* A role's first A or D on the fast path: the history's letter (no other letter comes with it there). */
__attribute__((noinline)) static void first_letter(zhot *h, zconn *c, int role, uint32_t len) {
    check(c, role, len ? H_DATA : H_ACK, len ? 'D' : 'A');
    h->letters |= (uint8_t)(1 << LETTER(role, len));
}

/* The common case, in-order data or a pure ACK while both ends are in FAST_STATES (flags ACK,
 * maybe PSH/URG/ECE/CWR; window not zero; zhot.ready), with what tcp_packet() would do for it
 * and nothing else: no SYN/FIN/RST so no endpoint re-init, history only D/A (the cold part's, the
 * first time: first_letter), no W, no state change, no retransmission (T), no carry out of the
 * low 32 bits. Returns 0, having changed nothing, when the packet is not such a one: tcp_packet()
 * then runs. */
static int fast_packet(zhot *h, zconn *c, int role, const af_packet *p, uint32_t len) {
    if ((p->tcp_flags & (AF_TCP_SYN | AF_TCP_FIN | AF_TCP_RST | AF_TCP_ACK)) != AF_TCP_ACK ||
        p->tcp_window == 0)
        return 0;
    zhend *e = &h->u.e[role], *peer = &h->u.e[1 - role];
    uint8_t ef = h->ef[role];
    /* The reassemblers: the ack trims the peer's and the data extends the sender's, in order. An
     * ack past the peer's delivered data (a gap) or data out of order take the slow path. */
    int32_t rel_ack = seq_delta(p->tcp_ack, peer->start);
    uint32_t ra = rel_ack > 0 ? (uint32_t)rel_ack : 0;
    if ((h->ef[1 - role] & F_FINS) && ra >= peer->fin) ra = peer->fin - 1;
    if (ra > peer->trim && ra > peer->l) return 0;
    uint32_t rel = p->tcp_seq - e->start;
    int data = len && !(ef & F_SKIP) && p->payload_len >= len && (int32_t)rel >= 0;
    if (data && (rel != e->l || (ef & F_HELD) || rel < e->trim || rel < e->ack)) return 0;
    uint32_t ack = peer->ack, last = e->last;
    int32_t d = seq_delta(p->tcp_ack, peer->start + ack);
    if (rel_ack >= 0 && d > 0 && !(p->tcp_ack == 0 && d > TOO_LARGE_SEQ_DELTA) && (ack += (uint32_t)d) < peer->ack) return 0;
    int32_t delta_last = seq_delta(p->tcp_seq + len, e->start + last);
    if (delta_last > 0 ? (last += (uint32_t)delta_last) < e->last : len > 0) return 0;   /* a carry; T */
    peer->ack = ack, e->last = last;
    if (ra > peer->trim) peer->trim = ra;
    if (data) {
        e->l = rel + len;
        /* as deliver(): Zeek's NoDataAcked() and TCP_Endpoint::Size() (not RESET here) */
        uint32_t size = e->last > e->ack ? e->last : e->ack;
        if (size) size--;
        if ((ef & F_FINS) && size) size--;
        if (e->ack <= 1 && size > MAX_INITIAL_WINDOW) e->trim = e->l;
        if (e->l - e->trim > MAX_UNACKED) h->ef[role] = ef | F_SKIP;
    }
    if (!(h->letters >> LETTER(role, len) & 1)) first_letter(h, c, role, len);
    return 1;
}

/* A connection's first packet: its kind, start time and Zeek's originator. */
static void start(zhot *h, zconn *c, const af_packet *p, int sender, uint64_t ts) {
    h->kind = p->protocol == 6 ? K_TCP : (p->protocol == 17 || p->protocol == 1 || p->protocol == 58) ? K_COUNT : K_OTHER;
    c->first_ns = ts;
    c->orig = (uint8_t)sender;
    c->icmp_type = p->icmp_type, c->icmp_code = p->icmp_code;
    if (h->kind == K_TCP) h->u.e[0].l = h->u.e[0].trim = h->u.e[1].l = h->u.e[1].trim = 1;   /* Reassembler(1, ...) */
    int bare_syn = p->protocol == 6 && (p->tcp_flags & (AF_TCP_SYN | AF_TCP_ACK)) == AF_TCP_SYN;
    if ((p->protocol == 6 || p->protocol == 17) && !bare_syn && likely_server(p->protocol, p->sport) &&
        !likely_server(p->protocol, p->dport)) {
        c->orig ^= 1;
        add(c, '^');
    }
    h->orig = c->orig;
}

/* Everything but the fast path; out of line so on_packet stays a small function. */
__attribute__((noinline)) static void slow_packet(zhot *h, zconn *c, const af_packet *p, int sender, uint64_t ts,
                                                  uint32_t wire) {
    if (!h->kind) start(h, c, p, sender, ts);
    int role = sender != c->orig;
    switch (p->protocol) {
    case 6:
        sync_in(h, c);
        tcp_packet(c, role, p, wire);
        if (p->tcp_flags & (AF_TCP_FIN | AF_TCP_RST)) h->did_close |= (uint8_t)(1 << role);
        sync_out(h, c);
        return;
    case 17:
        h->u.bytes[role] += wire;
        check(c, role, H_DATA, 'D');
        break;
    case 1: case 58:
        h->u.bytes[role] += wire;
        break;
    default:
        break;
    }
    c->e[role].state = ESTABLISHED;   /* Zeek's UDP_ACTIVE: what this role's next packets repeat */
    h->ready |= (uint8_t)(1 << role);
}

/* check_checksums: a packet with a bad checksum is, as in Zeek, no more than its letter: C/c
 * (scaled) for TCP and UDP, nothing at all for a bad IPv4 header (Zeek drops it before any
 * connection sees it). It may start the connection (Zeek's start time and originator). */
__attribute__((noinline, cold)) static void bad_checksum(zhot *h, zconn *c, const af_packet *p, int sender,
                                                         uint64_t ts) {
    if (p->checksum_bad & AF_BAD_IP_HEADER) return;
    if (!h->kind) {
        start(h, c, p, sender, ts);
        h->last_ns = ts;   /* Zeek's new connection: its last time is its start */
    }
    int role = sender != c->orig;
    if (p->protocol == 6 || p->protocol == 17) scaled(c, role, 'C', &c->x[role].chk, &c->x[role].chk_next);
}

/* on_packet_brief: the headers, sender and time are all it needs (no af_meter_packet) */
static void on_packet(void *state, void *cold, const af_packet *p, int sender, uint64_t ts) {
    zhot *h = state;
    if (__builtin_expect(p->checksum_bad, 0)) {
        bad_checksum(h, cold, p, sender, ts);
        return;
    }
    uint32_t headers = p->l3_headers_len, wire = p->ip_length > headers ? p->ip_length - headers : 0;
    int role = sender != h->orig;
    if (h->did_close != 3) h->last_ns = ts;
    if (h->kind == K_TCP) {
        if ((h->ready >> role & 1) && fast_packet(h, cold, role, p, wire)) return;
    } else if (h->ready >> role & 1) {   /* started: a UDP/ICMP/other packet after its direction's first */
        if (h->kind == K_COUNT) h->u.bytes[role] += wire;
        return;
    }
    slow_packet(h, cold, p, sender, ts, wire);
}

static void on_end(void *ctx, void *state, const af_meter_end *me) {
    (void)ctx;
    const zhot *h = state;
    zconn *c = me->cold;
    const af_flow *f = af_table_flow(me->table, me->slot);
    zrecord *r = (zrecord *)(void *)me->block;
    const char *st = "OTH";
    if (f->key.proto == 6) {
        sync_in(h, c);
        st = tcp_conn_state(c);
        r->orig_bytes = tcp_size(&c->e[0], &c->e[1]);
        r->resp_bytes = tcp_size(&c->e[1], &c->e[0]);
    } else {
        if (f->key.proto == 17) {
            int o = c->e[0].state == ESTABLISHED, rs = c->e[1].state == ESTABLISHED;
            st = o ? (rs ? "SF" : "S0") : (rs ? "SHR" : "OTH");
        }
        if (h->kind == K_COUNT) r->orig_bytes = h->u.bytes[0], r->resp_bytes = h->u.bytes[1];
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
    r->duration_ns = h->last_ns - c->first_ns;
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
    .state_size = sizeof(zhot),
    .cold_size = sizeof(zconn),
    .on_packet_brief = on_packet,
    .on_end = on_end,
};
