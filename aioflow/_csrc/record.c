#include "record.h"

#include <string.h>

void af_record_fill(const af_table *t, uint32_t slot, af_record *r) {
    const af_flow *f = af_table_flow(t, slot);
    const af_flow_tcp *c = af_table_tcp(t, f);
    int s = f->src_idx, d = 1 - s;
    af_key k;
    af_table_key(t, f, &k);
    memset(r, 0, sizeof *r);
    r->id = f->id;
    r->first_ns = af_flow_first(f);
    r->last_ns = af_flow_last(f);
    r->src2dst_first_ns = f->first_ns[s];
    r->src2dst_last_ns = f->last_ns[s];
    r->dst2src_first_ns = f->first_ns[d];
    r->dst2src_last_ns = f->last_ns[d];
    r->src2dst_packets = f->packets[s];
    r->dst2src_packets = f->packets[d];
    r->src2dst_bytes = f->bytes[s];
    r->dst2src_bytes = f->bytes[d];
    r->src2dst_captured_bytes = f->captured_bytes[s];
    r->dst2src_captured_bytes = f->captured_bytes[d];
    for (int b = 0; b < AF_TCP_FLAG_COUNT; b++) {
        uint8_t at = af_rare_slot[b];
        if (at == 0xff) continue;
        r->src2dst_flag_counts[b] = c->rare_flags[s][at];
        r->dst2src_flag_counts[b] = c->rare_flags[d][at];
    }
    r->src2dst_flag_counts[3] = c->psh_packets[s];
    r->dst2src_flag_counts[3] = c->psh_packets[d];
    r->src2dst_flag_counts[4] = f->ack_packets[s];
    r->dst2src_flag_counts[4] = f->ack_packets[d];
    memcpy(r->src_ip, k.ip[s], 16);
    memcpy(r->dst_ip, k.ip[d], 16);
    r->src_port = k.port[s];
    r->dst_port = k.port[d];
    r->vlan_id = k.vlan;
    r->ip_version = k.ver;
    r->protocol = k.proto;
    r->src2dst_tcp_flags = f->flags[s];
    r->dst2src_tcp_flags = f->flags[d];
    r->src2dst_min_ttl = f->ttl_min[s];
    r->src2dst_max_ttl = f->ttl_max[s];
    r->dst2src_min_ttl = f->ttl_min[d];
    r->dst2src_max_ttl = f->ttl_max[d];
}
