#include "expiry.h"

#include <time.h>

static uint64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int af_reap(af_emitter *em, const af_config *cfg, uint64_t now_ns, uint32_t keep) {
    af_table *t = em->table;
    uint64_t started = 0;
    int waiting = 0;
    static const uint8_t list_of[2] = {AF_LIST_CLOSING, AF_LIST_OPEN};
    for (int i = 0; i < 2; i++) {
        int l = list_of[i];
        uint64_t timeout = l == AF_LIST_CLOSING ? cfg->fin_timeout_ns : cfg->idle_timeout_ns;
        uint32_t s;
        while ((s = t->lists[l].head) != AF_NIL) {
            af_flow *f = af_table_flow(t, s);
            if (!af_expired(now_ns, af_flow_last(f), timeout)) break;
            if (af_emit_room(em) <= keep) { waiting = 1; break; }
            if (!started) started = wall_ns();
            af_emit_end(em, s, l == AF_LIST_CLOSING ? af_closing_reason(f) : AF_END_IDLE);
        }
    }
    if (started) em->stats->reap_ns += wall_ns() - started;
    return waiting;
}

uint32_t af_least_recent(const af_table *t) {
    uint32_t a = t->lists[AF_LIST_OPEN].head, b = t->lists[AF_LIST_CLOSING].head;
    if (a == AF_NIL) return b;
    if (b == AF_NIL) return a;
    return af_flow_last(af_table_flow(t, a)) <= af_flow_last(af_table_flow(t, b)) ? a : b;
}

int af_flush(af_emitter *em, uint8_t reason) {
    uint32_t s;
    while ((s = af_least_recent(em->table)) != AF_NIL) {
        if (af_emit_room(em) == 0) return 0;
        af_emit_end(em, s, reason);
    }
    return 1;
}

uint64_t af_next_expiry(const af_table *t, const af_config *cfg) {
    uint64_t best = 0;
    for (int l = 0; l < 2; l++) {
        uint32_t s = t->lists[l].head;
        if (s == AF_NIL) continue;
        uint64_t timeout = l == AF_LIST_CLOSING ? cfg->fin_timeout_ns : cfg->idle_timeout_ns;
        uint64_t last = af_flow_last(af_table_flow(t, s));
        uint64_t due = af_deadline(last, timeout);
        if (best == 0 || due < best) best = due;
    }
    return best;
}
