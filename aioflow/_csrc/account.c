#include "account.h"

#include <stddef.h>
#include <string.h>

#include "expiry.h"

void af_account_init(af_accounting *a, const af_config *cfg, af_emitter em) {
    a->em = em;
    a->cfg = cfg;
    a->next_id = cfg->worker;   /* nfstream numbers flows from 0 per source, as aioflow does since issue 14 */
    a->id_step = cfg->workers > 1 ? cfg->workers : 1;
    a->sliced = cfg->max_packets || cfg->max_bytes;
    /* Moving a flow to the tail of its recency list on every packet costs two cache misses (its
     * neighbours). An open flow moves on its first packet in each window of packet time instead,
     * windows of the largest power of two ns up to min(2^30 ns (1.07 s), idle_timeout/64): its
     * place in the list is then less than a window behind its last packet, so idle expiry and
     * eviction order are exact to within that resolution, and every record is still exact (a
     * packet for an expired flow ends it before counting). The window is the flow's last time's,
     * so no move time is stored in the slot. */
    uint64_t g = cfg->idle_timeout_ns / 64;
    if (g > (1ULL << 30)) g = 1ULL << 30;
    a->touch_shift = 0;
    while (g >> (a->touch_shift + 1)) a->touch_shift++;
}

static void keep_header(af_accounting *a, uint32_t slot, const af_queued *q, int dir) {
    af_table *t = a->em.table;
    af_header_count *hc = af_table_header_count(t, slot);
    if (hc->kept >= t->headers_per_flow) {
        hc->dropped++;
        a->em.stats->headers_dropped++;
        return;
    }
    const af_packet *p = &q->p;
    af_header *hd = &af_table_headers(t, slot)[hc->kept++];
    hd->ts_ns = q->ts;
    hd->ip_length = p->ip_length;
    hd->captured_length = q->caplen;
    hd->tcp_seq = p->tcp_seq;
    hd->tcp_ack = p->tcp_ack;
    hd->ip_id = p->ip_id;
    hd->ip_frag = p->ip_frag;
    hd->tcp_window = p->tcp_window;
    hd->direction = (uint8_t)dir;
    hd->ttl = p->ttl;
    hd->tcp_flags = p->tcp_flags;
    uint32_t n = p->l3_headers_len < sizeof hd->raw ? p->l3_headers_len : (uint32_t)sizeof hd->raw;
    hd->raw_length = (uint8_t)n;
    memcpy(hd->raw, q->raw, n);
    memset(hd->raw + n, 0, sizeof hd->raw - n);
}

static void reset_counters(af_accounting *a, uint32_t slot) {
    af_table *t = a->em.table;
    af_flow *f = af_table_flow(t, slot);
    size_t from = offsetof(af_flow, last_ns);
    memset((char *)f + from, 0, sizeof *f - from);
    memset(f->flags, 0, sizeof f->flags);
    memset(f->ttl_min, 0, sizeof f->ttl_min);
    memset(f->ttl_max, 0, sizeof f->ttl_max);
    memset(f->first_ns, 0, sizeof f->first_ns);
    t->due_floor = 0;   /* its last time may go back (a packet older than the one before) */
    if (f->tcp) memset(af_table_tcp_take(t, f), 0, sizeof(af_flow_tcp));
    f->id = a->next_id;
    a->next_id += a->id_step;
    if (t->headers_per_flow) memset(af_table_header_count(t, slot), 0, sizeof(af_header_count));
}

/* Whether counting one more packet with these TCP flags would overflow a counter. */
static int counter_full(const af_table *t, uint32_t slot, int dir, uint8_t tcp_flags) {
    const af_flow *f = af_table_flow(t, slot);
    if (f->packets[dir] == UINT32_MAX) return 1;
    uint8_t rare = tcp_flags & AF_RARE_FLAGS;
    if (!rare) return 0;
    const af_flow_tcp *c = af_table_tcp(t, f);
    for (int b = 0; rare; b++, rare >>= 1)
        if ((rare & 1) && c->rare_flags[dir][af_rare_slot[b]] == UINT16_MAX) return 1;
    return 0;
}

/* Whether a slicing rule ends the flow with the packet just counted (nfstream's FlowSlicer). */
static int sliced_off(const af_config *cfg, const af_flow *f) {
    return (cfg->max_packets && (uint64_t)f->packets[0] + f->packets[1] >= cfg->max_packets) ||
           (cfg->max_bytes && f->bytes[0] + f->bytes[1] >= cfg->max_bytes);
}

void af_account(af_accounting *a, const af_queued *q) {
    af_emitter *em = &a->em;
    af_table *t = em->table;
    af_stats *st = em->stats;
    const af_config *cfg = a->cfg;
    const af_packet *p = &q->p;
    uint64_t ts = q->ts;
    int sender = q->sender;
    int is_tcp = p->protocol == 6 && p->frag != AF_FRAG_LATER;
    uint8_t fl = is_tcp ? p->tcp_flags : 0;
    uint32_t slot = af_table_find(t, &q->key, q->hash, p->tunnel_id);
    uint64_t last = 0;   /* the flow's last time before this packet */
    /* f: the slot's flow, taken once (the byte-wide stores below could alias the table's pointers) */
    af_flow *f = slot != AF_NIL ? af_table_flow(t, slot) : NULL;
    if (f) {
        last = af_flow_last(f);
        if (f->state & AF_ST_CLOSING) {
            int syn_only = (fl & (AF_TCP_SYN | AF_TCP_ACK)) == AF_TCP_SYN;
            if (af_expired(ts, last, cfg->fin_timeout_ns) || syn_only) {
                af_emit_end(em, slot, af_closing_reason(f));
                f = NULL;
            }
        } else if (af_expired(ts, last, cfg->idle_timeout_ns)) {
            af_emit_end(em, slot, AF_END_IDLE);
            f = NULL;
        }
        if (f && (af_expired(ts, af_flow_first(f), cfg->active_timeout_ns) || counter_full(t, slot, sender, fl))) {
            af_emit_record(em, slot, AF_END_ACTIVE);
            reset_counters(a, slot);
        }
    }
    if (!f) {
        if (t->count >= t->max_flows) af_emit_end(em, af_least_recent(t), AF_END_EVICTED);
        slot = af_table_insert(t, &q->key, q->hash, p->tunnel_id);
        if (slot == AF_NIL) {   /* out of memory below max_flows: counted, never a crash */
            st->aside[AF_ASIDE_NO_MEMORY]++;
            st->packets_read++;
            return;
        }
        f = af_table_flow(t, slot);
        f->id = a->next_id;
        a->next_id += a->id_step;
        if (em->meters->count) af_meters_new(em->meters, slot, p, sender);
        /* a SYN+ACK seen first means its receiver opened the connection */
        int synack = (fl & (AF_TCP_SYN | AF_TCP_ACK)) == (AF_TCP_SYN | AF_TCP_ACK);
        f->src_idx = (uint8_t)(synack ? 1 - sender : sender);
        st->flows_created++;
        if (t->count > st->peak_active_flows) st->peak_active_flows = t->count;
        af_count_active(st, p->protocol, +1);
    }
    uint64_t sender_last = f->packets[sender] ? f->last_ns[sender] : 0;   /* meters: the time before this packet */
    if (f->packets[sender] == 0) f->first_ns[sender] = f->last_ns[sender] = ts;
    else if (ts > f->last_ns[sender]) f->last_ns[sender] = ts;
    f->packets[sender]++;
    f->bytes[sender] += p->ip_length;
    f->captured_bytes[sender] += q->caplen;
    if (f->packets[sender] == 1 || p->ttl < f->ttl_min[sender]) f->ttl_min[sender] = p->ttl;
    if (p->ttl > f->ttl_max[sender]) f->ttl_max[sender] = p->ttl;
    enum af_list list = (f->state & AF_ST_CLOSING) ? AF_LIST_CLOSING : AF_LIST_OPEN;
    if (is_tcp) {
        f->flags[sender] |= fl;
        f->ack_packets[sender] += (fl & AF_TCP_ACK) != 0;
        af_flow_tcp *c;
        /* an ACK alone (most packets) leaves the TCP entry alone; an entry is never missing
         * (one per live flow at most, max_flows reserved): the test is for safety */
        if ((fl & ~AF_TCP_ACK) && (c = af_table_tcp_take(t, f)) != NULL) {
            c->psh_packets[sender] += (fl & AF_TCP_PSH) != 0;
            for (uint8_t rare = fl & AF_RARE_FLAGS, b = 0; rare; b++, rare >>= 1)
                if (rare & 1) c->rare_flags[sender][af_rare_slot[b]]++;
        }
        if (fl & AF_TCP_FIN) f->state |= sender ? AF_ST_FIN1 : AF_ST_FIN0;
        if (fl & AF_TCP_RST) f->state |= AF_ST_RST;
        if ((f->state & AF_ST_RST) || (f->state & (AF_ST_FIN0 | AF_ST_FIN1)) == (AF_ST_FIN0 | AF_ST_FIN1))
            list = AF_LIST_CLOSING;
    }
    /* a closing flow moves on every packet (list is closing once its state is) */
    if (list == AF_LIST_CLOSING || f->packets[0] + f->packets[1] == 1 ||
        (ts >> a->touch_shift) != (last >> a->touch_shift))
        af_table_touch(t, slot, list);
    if (t->headers_per_flow) keep_header(a, slot, q, sender != f->src_idx);
    st->packets_in_flows++;
    st->packets_read++;
    int sliced = a->sliced && sliced_off(cfg, f);   /* the flow's counters only: the meters see the packet first */
    if (em->meters->n_per_packet) {   /* the one test a packet pays when no meter looks at packets */
        const af_meter_set *ms = em->meters;
        if (ms->statistics_state)
            af_statistics_packet(ms->statistics_ctx, ms->statistics_state + (size_t)(slot - 1) * ms->statistics_size, p, f,
                                 sender, ts, sender_last, q->wire_len);
        if (ms->n_packet) {
            af_meter_packet mp = {slot, sender, sender != f->src_idx, ts, p, q->payload, q->payload_len,
                                  q->l3_len ? q->payload - q->l3_headers : NULL, q->l3_len, q->caplen, q->wire_len, f,
                                  sender_last};
            af_meters_packet(ms, &mp);
        }
        /* last, so that with nothing after it the last brief hook is a tail call: the counting
         * loop saves and restores no registers around it (~20 instructions a packet) */
        if (ms->n_brief && !sliced) {
            af_meters_brief(ms, slot, p, sender, ts);
            return;
        }
        if (ms->n_brief) af_meters_brief(ms, slot, p, sender, ts);
    }
    if (sliced) af_emit_end(em, slot, AF_END_CUSTOM);
}
