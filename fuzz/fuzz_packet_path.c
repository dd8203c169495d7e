/* libFuzzer harness (b): the packet path. The input is a link type, a configuration and packets;
 * they go through the whole pipeline as a file source would — decode, defragment, flow table,
 * meters (reassembly always, stream search, low_ttl + conn_state + community_id, kept headers as
 * the input chooses),
 * expiry by packet time (idle, FIN/RST, active, eviction at a tiny max_flows), the final flush —
 * and every emitted record, chunk and stream is read back. Conservation is checked: a packet is
 * in exactly one flow or counted aside, so a slip there aborts like a memory error.
 *
 * Input layout (fuzz/seed_corpus.py writes seeds in it from real captures):
 *   [0] bits 0-6: link type, index into LINK_TYPES; bit 7: decode_tunnels and the mac meter
 *   [1] options: bit 0 defragment off, 1 reassembly off, 2 stream search, 3 kept headers,
 *       4 stream chunks, 5 discard streams, 6 meters (low_ttl, conn_state, community_id), 7 stop after the first pump
 *   [2] bits 0-6: max_flows - 1 (1..128: evictions are the common case); bit 7: read through the
 *       producer and read-ahead threads (af_start, af_ready) instead of pumping here
 *   then packets: [u16 length, little-endian][u8 time step, 1/32 s][length bytes], the last one
 *   cut where the input ends.
 * The packets are written as a pcap file into a memfd that the engine opens by its /proc path,
 * so the file reader here is libpcap's (fuzz_capture_file.c covers aioflow's own). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aioflow.h"

static const uint32_t LINK_TYPES[] = {1, 113, 276, 101, 228, 229, 0, 108, 9, 50, 104, 239, 12, 14};
#define N_LINK_TYPES (sizeof LINK_TYPES / sizeof *LINK_TYPES)
enum {
    OPT_NO_DEFRAG = 1, OPT_NO_REASSEMBLY = 2, OPT_SEARCH = 4, OPT_HEADERS = 8, OPT_CHUNKS = 16,
    OPT_DISCARD = 32, OPT_LOW_TTL = 64, OPT_STOP = 128
};
#define STEP_NS (1000000000ull / 32)
#define BATCH 64u

static int fd = -1;
static char path[64];
static uint8_t *file;                 /* the pcap file, rebuilt per input */
static size_t file_room;

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }   /* host order, like pcap writers */

/* The input's packets as a pcap file (microsecond times from 2020 on). Its length. */
static size_t build_pcap(const uint8_t *data, size_t size, uint32_t dlt) {
    size_t need = 24 + size / 3 * 16 + size;   /* each 3-byte packet header becomes a 16-byte one */
    if (need > file_room) {
        free(file);
        file_room = need * 2;
        if (!(file = malloc(file_room))) abort();
    }
    put32(file, 0xa1b2c3d4);
    put32(file + 4, 2 | 4u << 16);
    put32(file + 8, 0);
    put32(file + 12, 0);
    put32(file + 16, 262144);
    put32(file + 20, dlt);
    size_t at = 24, i = 0;
    uint64_t us = 1577836800ull * 1000000;
    while (i + 3 <= size) {
        uint32_t len = data[i] | (uint32_t)data[i + 1] << 8;
        us += data[i + 2] * (STEP_NS / 1000);
        i += 3;
        if (len > size - i) len = (uint32_t)(size - i);
        put32(file + at, (uint32_t)(us / 1000000));
        put32(file + at + 4, (uint32_t)(us % 1000000));
        put32(file + at + 8, len);
        put32(file + at + 12, len + (data[i - 1] & 1) * 7);   /* odd steps: a snapped packet */
        memcpy(file + at + 16, data + i, len);
        at += 16 + len;
        i += len;
    }
    return at;
}

static void write_file(const uint8_t *bytes, size_t n) {
    if (ftruncate(fd, 0) != 0 || pwrite(fd, bytes, n, 0) != (ssize_t)n) abort();
}

/* Reads back what a batch holds, so ASan sees every byte the engine says it wrote. */
static uint64_t check_batch(const af_batch *b, uint32_t headers_per_flow) {
    uint64_t packets = 0;
    volatile uint8_t sink = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        const af_record *r = &b->records[i];
        packets += r->src2dst_packets + r->dst2src_packets;
        if (r->end_reason == AF_END_NONE || r->end_reason >= AF_END_COUNT) abort();
        if (r->header_count > headers_per_flow || (uint64_t)r->header_offset + r->header_count > b->header_count)
            abort();
        for (uint32_t h = 0; h < r->header_count; h++) {
            const af_header *hd = &b->headers[r->header_offset + h];
            if (hd->raw_length > sizeof hd->raw) abort();
            for (uint32_t k = 0; k < hd->raw_length; k++) sink ^= hd->raw[k];
        }
        if (b->meter_stride)
            for (uint32_t k = 0; k < b->meter_stride; k++) sink ^= b->meter_data[(size_t)i * b->meter_stride + k];
        if (b->streams)
            for (int d = 0; d < 2; d++) {
                const af_stream_info *s = &b->streams[i];
                if (!s->kept[d]) continue;
                if (s->data_at[d] + s->data_length[d] > b->stream_data_used) abort();
                if (s->holes_at[d] + (uint64_t)s->hole_count[d] * 16 > b->stream_data_used) abort();
                for (uint32_t k = 0; k < s->data_length[d]; k++) sink ^= b->stream_data[s->data_at[d] + k];
            }
    }
    for (uint32_t c = 0; c < b->chunk_count; c++) {
        const af_chunk *ch = &b->chunks[c];
        if (ch->data_at + ch->length > b->stream_data_used || ch->before_record > b->count) abort();
        for (uint32_t k = 0; k < ch->length; k++) sink ^= b->stream_data[ch->data_at + k];
    }
    (void)sink;
    return packets;
}

/* Looks the flows of a batch up again (active ones are found, ended ones may be), and walks a
 * snapshot: the entry points Python calls between pumps. */
static void probe(af_engine *e, const af_batch *b) {
    af_record r;
    for (uint32_t i = 0; i < b->count && i < 4; i++) {
        const af_record *f = &b->records[i];
        af_lookup(e, f->ip_version, f->src_ip, f->src_port, f->dst_ip, f->dst_port, f->protocol, f->vlan_id, &r);
    }
    af_record snap[8];
    uint32_t cursor = 0;
    while (af_snapshot(e, &cursor, snap, 8) == 8) {
    }
}

/* Pumps here, in this thread, as live sources are read. The records' packets. */
static uint64_t run_pumped(af_engine *e, uint32_t headers_per_flow, int stop) {
    af_record records[BATCH];
    af_header *headers = calloc((size_t)BATCH * (headers_per_flow ? headers_per_flow : 1), sizeof *headers);
    af_batch b = {.records = records, .capacity = BATCH, .headers = headers, .header_capacity = BATCH * headers_per_flow};
    if (!headers || af_batch_meters_alloc(e, &b, BATCH) != AF_OK) abort();
    uint64_t packets = 0;
    int status, pumps = 0;
    do {
        status = af_pump_some(e, 16, &b);
        if (status < 0) abort();   /* a file we wrote: reading it never fails */
        packets += check_batch(&b, headers_per_flow);
        probe(e, &b);
        if (stop && ++pumps == 1) af_stop(e);
    } while (status != AF_DONE);
    af_batch_meters_free(&b);
    free(headers);
    return packets;
}

/* Through the producer and read-ahead threads, as FlowParser reads files. The records' packets. */
static uint64_t run_threaded(af_engine *e, uint32_t headers_per_flow, int stop) {
    if (af_start(e, BATCH, 2, 1) != AF_OK) abort();
    struct pollfd pfd = {.fd = af_notify_fd(e), .events = POLLIN};
    uint64_t packets = 0;
    for (int batches = 0;;) {
        af_batch *b;
        int status = af_ready(e, &b);
        if (status == AF_DONE) break;
        if (status < 0) abort();
        if (status == AF_OK) {
            poll(&pfd, 1, 1000);
            continue;
        }
        packets += check_batch(b, headers_per_flow);
        probe(e, b);
        af_release(e);
        if (stop && ++batches == 1) af_stop(e);
    }
    return packets;
}

static const char *const METERS[] = {"low_ttl", "conn_state", "community_id"};
static const char *const TUNNEL_METERS[] = {"mac"};   /* with decode_tunnels */

/* The registry bits of these meters (their positions move as meters are added). */
static uint32_t meter_bits(const char *const *names, int n) {
    uint32_t bits = 0;
    for (uint32_t i = 0; af_meter_info_of(i); i++)
        for (int j = 0; j < n; j++)
            if (!strcmp(af_meter_info_of(i)->name, names[j])) bits |= 1u << i;
    return bits;
}

static void run(const uint8_t *data, size_t size) {
    uint8_t opt = data[1];
    af_config cfg = {
        .max_flows = 1u + (data[2] & 0x7f),
        .headers_per_flow = opt & OPT_HEADERS ? 3 : 0,
        .idle_timeout_ns = 2 * 1000000000ull,
        .active_timeout_ns = 5 * 1000000000ull,
        .fin_timeout_ns = 1000000000ull / 2,
        .hash_seed = 0x9e3779b97f4a7c15ull,
        .snaplen = 262144,
        .defragment = !(opt & OPT_NO_DEFRAG),
        .max_fragment_datagrams = 8,
        .max_fragments_per_datagram = 16,
        .max_datagram_size = 65575,
        .fragment_timeout_ns = 1000000000ull,
        .max_fragment_memory = 16384,
        .reassemble = !(opt & OPT_NO_REASSEMBLY),
        .stream_chunks = !!(opt & OPT_CHUNKS),
        .max_stream_bytes = 4096,
        .max_reassembly_memory = AF_MIN_REASSEMBLY_MEMORY,
        .discard_streams = !!(opt & OPT_DISCARD),
        .meters = (opt & OPT_LOW_TTL ? meter_bits(METERS, 3) : 0u) | (data[0] & 0x80 ? meter_bits(TUNNEL_METERS, 1) : 0u),
        .decode_tunnels = (data[0] & 0x80) != 0,
    };
    size_t n = build_pcap(data + 3, size - 3, LINK_TYPES[(data[0] & 0x7f) % N_LINK_TYPES]);
    write_file(file, n);
    af_engine *e;
    if (af_open_offline(path, NULL, &cfg, &e) != AF_OK) return;   /* libpcap's header checks: ours is valid */
    if (cfg.reassemble && (opt & OPT_SEARCH) && af_stream_patterns_available()) {
        static const char *const client[] = {"GET /", "USER [a-z]+\\r\\n"};
        static const char *const server[] = {"HTTP/1\\.1 200"};
        char error[256];
        if (af_set_stream_patterns(e, client, 2, server, 1, AF_MATCH_CASELESS, error, sizeof error) != AF_OK) abort();
    }
    if (cfg.reassemble && (opt & OPT_CHUNKS)) af_enable_chunks(e);
    uint64_t in_records = data[2] & 0x80 ? run_threaded(e, cfg.headers_per_flow, opt & OPT_STOP)
                                          : run_pumped(e, cfg.headers_per_flow, opt & OPT_STOP);
    af_stats st;
    af_get_stats(e, &st);
    uint64_t aside = 0;
    for (int i = 0; i < AF_ASIDE_COUNT; i++) aside += st.aside[i];
    if (st.packets_read != st.packets_in_flows + aside + st.defrag_fragments_held) abort();
    if (in_records != st.packets_in_flows || st.active_flows != 0 || st.defrag_fragments_held != 0) abort();
    if (st.stream_memory > cfg.max_reassembly_memory || st.defrag_peak_memory > cfg.max_fragment_memory) abort();
    if (st.peak_active_flows > cfg.max_flows) abort();
    af_close(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > (1u << 20)) return 0;
    if (fd < 0) {
        if ((fd = memfd_create("fuzz_packet_path.pcap", 0)) < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    run(data, size);
    return 0;
}
