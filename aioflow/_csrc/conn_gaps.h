/* conn_state's per-flow state beyond its hot line (conn_state.c: the meter; conn_gaps.c: Zeek's
 * reassembler, for content gaps), and what both parts use. */
#ifndef AIOFLOW_CONN_GAPS_H
#define AIOFLOW_CONN_GAPS_H
#include <stddef.h>
#include <stdint.h>

#define HIST_MAX 31

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET };
enum { H_SYN = 1, H_FIN = 2, H_RST = 4, H_FIN_RST = 8, H_DATA = 16, H_ACK = 32, H_MULTI = 64 };
#define TOO_LARGE_SEQ_DELTA 1048576
#define GAP_RANGES 3
#define MAX_INITIAL_WINDOW 16384             /* Zeek's tcp_max_initial_window */
#define MAX_ABOVE_HOLE 16384                 /* tcp_max_above_hole_without_any_acks */
#define MAX_UNACKED (10u * 1024 * 1024)     /* tcp_excessive_data_without_further_acks */

/* One endpoint's Zeek reassembler, as far as gaps go: its sequence numbers relative to the
 * endpoint's start (data starts at 1), no data. The ranges above a hole are in zrare. */
typedef struct {
    uint32_t l;                      /* last_reassem_seq: data delivered (seen without holes) up to here */
    uint32_t trim;                   /* trim_seq: acknowledged up to here (blocks below are gone) */
    uint32_t fin;                    /* FIN_seq: relative sequence after the last FIN */
    uint8_t n, skip, inexact, _pad;  /* ranges held; deliveries stopped (Zeek's skip_deliveries) */
} zreasm;

/* An endpoint as a handshake or teardown packet reads and writes it: one cache line. */
typedef struct {
    int64_t last, ack;               /* relative to start: highest seq end sent; highest ack of it received */
    int64_t hist_syn, hist_fin, hist_rst;
    uint32_t start;
    uint8_t state, prev_state, fins, _pad;
    zreasm r;
} zend;
_Static_assert(sizeof(zend) == 64, "an endpoint is one cache line");

/* What only rarer packets touch (zero windows, retransmissions, gaps, bad checksums, data above a hole). */
typedef struct {
    uint32_t rxmit, rxmit_next, win0, win0_next;
    uint32_t gaps, gaps_next;        /* G's scaled count */
    uint32_t chk, chk_next;          /* C's scaled count (check_checksums) */
    uint32_t ooo[GAP_RANGES][2];     /* data seen above a hole: [start, end), sorted, disjoint, > r.l */
} zrare;

/* The cold part: everything, but the numbers the hot part keeps (sync_in). Laid out by line
 * (the block is 64-byte aligned: its size is a multiple of 64, the array page-aligned) so that a
 * slow packet touches three: the two endpoints and the history; zrare's only when it needs them. */
typedef struct {
    _Alignas(64) zend e[2];          /* by Zeek's role: 0 originator, 1 responder */
    uint32_t seen;                   /* history bits: originator's low 16, responder's high 16 */
    uint8_t orig;                    /* key endpoint that is the originator */
    uint8_t first_seen, partial, hist_len;
    uint8_t icmp_type, icmp_code;     /* ICMP: the first packet's */
    uint64_t first_ns;               /* Zeek's start time */
    uint64_t missed;                 /* content gaps' bytes (conn.log's missed_bytes) */
    char hist[HIST_MAX + 1];
    _Alignas(64) zrare x[2];         /* by role, as e */
} zconn;
_Static_assert(sizeof(zconn) == 320 && offsetof(zconn, hist) + HIST_MAX + 1 <= 192, "zconn's lines");

static inline int32_t seq_delta(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

static inline void add(zconn *c, char code) {
    if (c->hist_len < HIST_MAX) c->hist[c->hist_len++] = code;
}

/* Zeek's ScaledHistoryEntry: the letter at counts 1, 10, 100, ... */
static inline void scaled(zconn *c, int role, char code, uint32_t *count, uint32_t *next) {
    if (!*next) *next = 1;
    if (++*count == *next) {
        add(c, role ? (char)(code + ('a' - 'A')) : code);
        *next *= 10;
    }
}

/* Zeek's TCP_Endpoint::Size() */
static inline uint64_t tcp_size(const zend *e, const zend *peer) {
    if (e->prev_state == SYN_SENT && e->state == RESET && peer->state == INACTIVE && e->ack > 1) return 0;
    int64_t top = e->last > e->ack ? e->last : e->ack;
    uint64_t size = top > 0 ? (uint64_t)top : 0;
    if (size) size--;
    if (e->fins && size) size--;
    return size;
}

/* Zeek's NoDataAcked() */
static inline int no_data_acked(const zend *e) { return e->ack <= 1; }

/* TCP_Reassembler::DataSent then Reassembler::NewBlock: `len` bytes at relative `seq`, captured whole. */
void af_conn_data_sent(zconn *c, int role, uint32_t seq, uint32_t len);
/* TCP_Reassembler::AckReceived: the peer acknowledged `role`'s data up to relative `seq`. */
void af_conn_ack_received(zconn *c, int role, uint32_t seq);

#endif
