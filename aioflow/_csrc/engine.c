/* The engine: a libpcap source feeding the decoder and the flow table, expiry, and batches of
 * ended flow records for Python. A mutex makes the entry points safe to call from any thread
 * (the producer thread pumps while the event loop looks flows up); it is held one chunk of
 * packets at a time. af_stop only sets a flag. */
#define _DEFAULT_SOURCE   /* libpcap's headers need u_char & co, hidden by -std=c11 */
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pcap/pcap.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "aioflow.h"
#include "decode.h"
#include "defrag.h"
#include "flowtable.h"
#include "fragments.h"
#include "producer.h"
#include "stream.h"

/* READING: packets come in; DRAINING: the source ended (or stop), queued packets are still
 * counted; FLUSHING: every remaining flow is emitted; DONE. */
enum af_phase { PHASE_READING, PHASE_DRAINING, PHASE_FLUSHING, PHASE_DONE };

/* Decoded packets wait in a short queue before they are counted, so that their hash bucket and
 * flow record can be prefetched: a flow lookup is otherwise a cache miss on nearly every packet.
 * A file source read by af_start's thread has a second thread reading ahead (libpcap, filter,
 * decode, key, copies) into a longer ring of the same entries, so reading and counting run on
 * two cores. */
#define AF_QUEUE 32u                 /* packets queued by the counting thread itself (power of two) */
#define AF_RING 4096u                /* with a reading thread: packets read ahead (power of two) */
#define AF_RING_BYTES (32u << 20)    /* with a reading thread: their payload (or fragment) copies */
#define AF_RING_WAKE 256u            /* the counting thread sleeps until this many are read ahead */
#define AF_PREFETCH_AHEAD 8u         /* flow records are prefetched this many packets ahead */

/* What counting reads first comes first; raw (headers=N only) last. */
typedef struct {
    uint64_t hash;
    int pending;                     /* read ahead, a fragment: the counting thread prepares it */
    int sender;                      /* 1 when the packet's sender is the key's endpoint 1 */
    uint64_t ts;
    uint32_t caplen;
    uint32_t payload_len;            /* reassemble: payload copied to `payload` */
    const uint8_t *payload;          /* the payload copy; a fragment read ahead: the frame's copy */
    uint64_t ring_end;               /* read ahead: ring bytes used up to the end of its copy */
    int decoded;                     /* af_decode's result */
    af_key key;
    af_packet p;
    uint8_t raw[sizeof(((af_header *)0)->raw)];   /* headers kept: libpcap reuses its buffer */
} af_queued;

/* The reading thread of a file source (AF_RING entries and AF_RING_BYTES of copies, ahead of
 * the counting thread). It keeps its own counters (what it filters or cannot decode), published
 * every AF_RING_WAKE packets for af_get_stats. */
typedef struct {
    pthread_t thread;
    int started;
    atomic_uint tail;                /* entries published (the counting thread's queue_head chases it) */
    atomic_uint head;                /* entries the counting thread is done with */
    atomic_ullong consumed;          /* ring bytes the counting thread is done with */
    uint64_t written;                /* ring bytes reserved (reading thread only) */
    uint8_t *bytes;
    atomic_int done, closing;
    atomic_int reader_waiting, counter_waiting;
    pthread_mutex_t mu;
    pthread_cond_t space, data;
    af_stats st, pub;                /* the reading thread's counters; pub: published under mu */
    uint8_t flush_reason;
    char error[PCAP_ERRBUF_SIZE];
} af_readahead;

#define AF_TIME_UNIT_SHIFT 20         /* recency-list times in units of ~1 ms */
#define AF_READ_BUFFER (1u << 16)     /* stdio buffer of a capture file */

/* Room one packet may need in a batch: an expired or active-split record plus an eviction. */
#define ROOM_PER_PACKET 2u

struct af_engine {
    pthread_mutex_t mu;
    af_producer *producer;           /* af_start's reading thread, if started */
    pcap_t *pcap;
    int dlt;
    int has_filter;
    struct bpf_program filter;
    af_config cfg;
    af_table table;
    af_frag_table frags;
    af_stats stats;
    uint64_t now_ns;                 /* newest packet time seen: the clock of a file source */
    uint64_t next_id;
    uint32_t touch_units;            /* open flows move in their recency list at most this often */
    enum af_phase phase;
    int live;                        /* an interface (wall-clock expiry, kernel counters) */
    uint8_t flush_reason;
    atomic_int stop_requested;
    af_queued *queue;                /* AF_RING entries */
    uint32_t queue_head, queue_count;    /* queue_head: free-running index (& qmask to use) */
    uint32_t qmask;                  /* AF_QUEUE - 1; read ahead: AF_RING - 1 (a small queue stays in cache) */
    af_readahead *ahead;             /* files read by af_start's thread: the reading thread */
    uint8_t *frag_payload;           /* read ahead: payload copy of a fragment prepared here */
    af_batch *out;
    char error[PCAP_ERRBUF_SIZE + 256];
    char *read_buffer;               /* the file stream's stdio buffer (freed after pcap_close) */
    af_defrag *defrag;               /* cfg.defragment: IP reassembly (defrag.h), else NULL */
    af_streams *streams;             /* cfg.reassemble: stream.h, else NULL */
    uint8_t *payloads;               /* reassemble: AF_QUEUE payload copies (libpcap reuses its buffer) */
    uint64_t pulled;                 /* packets taken from libpcap (af_pump_some reports its share) */
};

static void ahead_free(af_readahead *r);

static _Thread_local char open_error[PCAP_ERRBUF_SIZE + 512];

const char *af_open_error(void) { return open_error; }
const char *af_error_message(af_engine *e) { return e->error; }

static uint64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int fail_open(int code, af_engine *e, const char *fmt, const char *a, const char *b) {
    snprintf(open_error, sizeof open_error, fmt, a, b);
    if (e) {
        if (e->has_filter) pcap_freecode(&e->filter);
        if (e->pcap) pcap_close(e->pcap);
        free(e->read_buffer);
        af_table_free(&e->table);
        af_defrag_free(e->defrag);
        af_streams_free(e->streams);
        free(e->payloads);
        free(e->queue);
        pthread_mutex_destroy(&e->mu);
        free(e);
    }
    return code;
}

/* What both kinds of source share once libpcap has a handle: the table and the clocks. */
static int finish_open(af_engine *e, const af_config *cfg) {
    e->dlt = pcap_datalink(e->pcap);
    e->qmask = AF_QUEUE - 1;
    if (!(e->queue = calloc(AF_RING, sizeof *e->queue)))
        return fail_open(AF_ERR_NOMEM, e, "out of memory for the packet queue%s%s", "", "");
    if (af_table_init(&e->table, cfg->max_flows, cfg->headers_per_flow, cfg->hash_seed) != 0)
        return fail_open(AF_ERR_NOMEM, e, "out of memory for max_flows=%s%s (lower it)", "", "");
    e->frags.seed = cfg->hash_seed * 31 + 7;
    if (cfg->defragment && !(e->defrag = af_defrag_new(cfg, cfg->hash_seed * 37 + 11, &e->stats)))
        return fail_open(AF_ERR_NOMEM, e, "out of memory for the defragmenter%s%s (lower max_fragment_datagrams, "
                         "max_fragments_per_datagram or max_fragment_memory)", "", "");
    if (cfg->reassemble && (!(e->streams = af_streams_new(cfg, &e->stats)) ||
                            !(e->payloads = malloc((size_t)AF_QUEUE * AF_STREAM_MAX_PAYLOAD))))
        return fail_open(AF_ERR_NOMEM, e, "out of memory for reassembly%s%s (lower max_reassembly_memory)", "", "");
    e->stats.link_type = e->dlt;
    e->next_id = 1;
    /* Moving a flow to the tail of its recency list on every packet costs two cache misses (its
     * neighbours). Open flows move at most every min(1 s, idle_timeout/64) of packet time
     * instead: idle expiry and eviction order are then exact to within that resolution, and
     * every record is still exact (a packet for an expired flow ends it before counting). */
    uint64_t g = cfg->idle_timeout_ns / 64;
    e->touch_units = (uint32_t)((g > 1000000000ULL ? 1000000000ULL : g) >> AF_TIME_UNIT_SHIFT);
    e->phase = PHASE_READING;
    return AF_OK;
}

static af_engine *engine_new(const af_config *cfg) {
    af_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->cfg = *cfg;
    pthread_mutex_init(&e->mu, NULL);
    return e;
}

static int check_config(const af_config *cfg) {
    if (cfg->max_flows == 0 || cfg->headers_per_flow > 65535)
        return fail_open(AF_ERR_CONFIG, NULL, "max_flows must be >= 1 and headers <= 65535%s%s", "", "");
    if (cfg->defragment &&
        (cfg->max_fragment_datagrams == 0 || cfg->max_fragment_datagrams > (1u << 24) ||
         cfg->max_fragments_per_datagram == 0 || cfg->max_fragments_per_datagram > 8192 ||
         cfg->max_datagram_size < 68 || cfg->max_datagram_size > 65575 ||
         cfg->max_fragment_memory < AF_DEFRAG_BLOCK))
        return fail_open(AF_ERR_CONFIG, NULL, "defragment bounds out of range%s%s", "", "");
    if (cfg->reassemble && (cfg->max_stream_bytes == 0 || cfg->max_stream_bytes > (1u << 30) ||
                            cfg->max_reassembly_memory < (1u << 20)))
        return fail_open(AF_ERR_CONFIG, NULL, "max_stream_bytes must be 1..2**30 and max_reassembly_memory "
                         ">= 1 MiB%s%s", "", "");
    return AF_OK;
}

int af_open_offline(const char *path, const char *bpf, const af_config *cfg, af_engine **out) {
    *out = NULL;
    open_error[0] = '\0';
    if (check_config(cfg) != AF_OK) return AF_ERR_CONFIG;
    struct stat st;
    if (stat(path, &st) != 0) {
        int code = errno == EACCES ? AF_ERR_PERMISSION : AF_ERR_NOT_FOUND;
        return fail_open(code, NULL, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return fail_open(AF_ERR_FORMAT, NULL, "%s%s: is a directory, not a capture file", path, "");
    FILE *file = fopen(path, "rb");
    if (!file) {
        int code = errno == EACCES ? AF_ERR_PERMISSION : AF_ERR_NOT_FOUND;
        return fail_open(code, NULL, "%s: %s", path, strerror(errno));
    }
    af_engine *e = engine_new(cfg);
    if (!e) {
        fclose(file);
        return fail_open(AF_ERR_NOMEM, NULL, "out of memory%s%s", "", "");
    }
    /* libpcap freads every record header and body from this stream: with stdio's default
     * st_blksize buffer that is a read() per 4 KiB; a large buffer makes it one per MiB. */
    e->read_buffer = malloc(AF_READ_BUFFER);
    if (e->read_buffer) setvbuf(file, e->read_buffer, _IOFBF, AF_READ_BUFFER);
    posix_fadvise(fileno(file), 0, 0, POSIX_FADV_SEQUENTIAL);
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    e->pcap = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (!e->pcap) {
        fclose(file);   /* libpcap leaves the stream to the caller when it fails */
        return fail_open(AF_ERR_FORMAT, e, "%s: %s", path, errbuf);
    }
    if (bpf && bpf[0]) {
        if (pcap_compile(e->pcap, &e->filter, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0)
            return fail_open(AF_ERR_FILTER, e, "%s: %s", bpf, pcap_geterr(e->pcap));
        e->has_filter = 1;
    }
    int code = finish_open(e, cfg);
    if (code != AF_OK) return code;
    e->stats.file_size = (uint64_t)st.st_size;
    *out = e;
    return AF_OK;
}

/* The interfaces libpcap can capture on, comma-separated, for error messages. */
static void list_interfaces(char *buf, size_t size) {
    pcap_if_t *all = NULL;
    char errbuf[PCAP_ERRBUF_SIZE];
    buf[0] = '\0';
    if (pcap_findalldevs(&all, errbuf) != 0) return;
    size_t used = 0;
    for (pcap_if_t *d = all; d && used + 2 < size; d = d->next) {
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", d->name);
        if (n < 0) break;
        used += (size_t)n;
    }
    pcap_freealldevs(all);
}

int af_open_live(const char *device, const char *bpf, const af_config *cfg, int promiscuous,
                 int32_t buffer_bytes, af_engine **out) {
    *out = NULL;
    open_error[0] = '\0';
    if (check_config(cfg) != AF_OK) return AF_ERR_CONFIG;
    af_engine *e = engine_new(cfg);
    if (!e) return fail_open(AF_ERR_NOMEM, NULL, "out of memory%s%s", "", "");
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    e->pcap = pcap_create(device, errbuf);
    if (!e->pcap) return fail_open(AF_ERR_SOURCE, e, "%s: %s", device, errbuf);
    e->live = 1;
    pcap_set_snaplen(e->pcap, cfg->snaplen);
    pcap_set_promisc(e->pcap, promiscuous);
    /* Not immediate mode: it wakes the loop for every few packets and (TPACKET_V2) sizes each
     * ring slot by the snaplen, so a flood overflows it. A block timeout instead batches
     * packets for at most AF_LIVE_LATENCY_MS, far below any flow timeout. */
    pcap_set_timeout(e->pcap, AF_LIVE_LATENCY_MS);
    if (buffer_bytes > 0) pcap_set_buffer_size(e->pcap, buffer_bytes);
    pcap_set_tstamp_precision(e->pcap, PCAP_TSTAMP_PRECISION_NANO);   /* else micro: fine */
    int rc = pcap_activate(e->pcap);
    if (rc < 0) {
        char names[1024];
        switch (rc) {
        case PCAP_ERROR_NO_SUCH_DEVICE:
            list_interfaces(names, sizeof names);
            return fail_open(AF_ERR_NOT_FOUND, e, "no interface %s to capture on; interfaces here: %s", device,
                             names[0] ? names : "(none visible: are you allowed to list them?)");
        case PCAP_ERROR_PERM_DENIED:
        case PCAP_ERROR_PROMISC_PERM_DENIED:
            return fail_open(AF_ERR_PERMISSION, e,
                             "%s: %s: capturing needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous "
                             "mode): run as root, or `setcap cap_net_raw,cap_net_admin=eip` on the Python "
                             "executable", device, pcap_geterr(e->pcap));
        case PCAP_ERROR_IFACE_NOT_UP:
            return fail_open(AF_ERR_SOURCE, e, "%s is down%s: bring it up (ip link set dev IFACE up)", device, "");
        default:
            return fail_open(AF_ERR_SOURCE, e, "%s: %s", device, pcap_geterr(e->pcap));
        }
    }
    if (pcap_setnonblock(e->pcap, 1, errbuf) != 0) return fail_open(AF_ERR_SOURCE, e, "%s: %s", device, errbuf);
    if (bpf && bpf[0]) {   /* live: the kernel filters, so rejected packets are never seen here */
        struct bpf_program prog;
        if (pcap_compile(e->pcap, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0)
            return fail_open(AF_ERR_FILTER, e, "%s: %s", bpf, pcap_geterr(e->pcap));
        int set = pcap_setfilter(e->pcap, &prog);
        pcap_freecode(&prog);
        if (set != 0) return fail_open(AF_ERR_FILTER, e, "%s: %s", bpf, pcap_geterr(e->pcap));
    }
    int code = finish_open(e, cfg);
    if (code != AF_OK) return code;
    *out = e;
    return AF_OK;
}

void af_close(af_engine *e) {
    if (!e) return;
    af_streams_stop_prefault(e->streams);   /* it may be populating the producer's buffers */
    af_producer_free(e->producer);   /* joins the thread before the engine goes away */
    ahead_free(e->ahead);
    free(e->queue);
    free(e->frag_payload);
    if (e->has_filter) pcap_freecode(&e->filter);
    if (e->pcap) pcap_close(e->pcap);
    free(e->read_buffer);
    af_table_free(&e->table);
    af_defrag_free(e->defrag);
    af_streams_free(e->streams);
    free(e->payloads);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

int af_stop(af_engine *e) {
    atomic_store(&e->stop_requested, 1);
    return AF_OK;
}

void af_engine_fill_record(const af_table *t, uint32_t slot, af_record *r) {
    const af_flow *f = af_table_flow(t, slot);
    const af_flow_cold *c = af_table_cold(t, slot);
    int s = f->src_idx, d = 1 - s;
    memset(r, 0, sizeof *r);
    r->id = c->id;
    r->first_ns = af_flow_first(f, c);
    r->last_ns = af_flow_last(f);
    r->src2dst_first_ns = c->first_ns[s];
    r->src2dst_last_ns = f->last_ns[s];
    r->dst2src_first_ns = c->first_ns[d];
    r->dst2src_last_ns = f->last_ns[d];
    r->src2dst_packets = f->packets[s];
    r->dst2src_packets = f->packets[d];
    r->src2dst_bytes = f->bytes[s];
    r->dst2src_bytes = f->bytes[d];
    r->src2dst_captured_bytes = f->captured_bytes[s];
    r->dst2src_captured_bytes = f->captured_bytes[d];
    for (int b = 0; b < 8; b++) {
        uint8_t at = af_rare_slot[b];
        if (at == 0xff) continue;
        r->src2dst_flag_counts[b] = c->rare_flags[s][at];
        r->dst2src_flag_counts[b] = c->rare_flags[d][at];
    }
    r->src2dst_flag_counts[3] = c->psh_packets[s];
    r->dst2src_flag_counts[3] = c->psh_packets[d];
    r->src2dst_flag_counts[4] = f->ack_packets[s];
    r->dst2src_flag_counts[4] = f->ack_packets[d];
    memcpy(r->src_ip, f->key.ip[s], 16);
    memcpy(r->dst_ip, f->key.ip[d], 16);
    r->src_port = f->key.port[s];
    r->dst_port = f->key.port[d];
    r->vlan_id = f->key.vlan;
    r->ip_version = f->key.ver;
    r->protocol = f->key.proto;
    r->src2dst_tcp_flags = f->flags[s];
    r->dst2src_tcp_flags = f->flags[d];
    r->src2dst_min_ttl = f->ttl_min[s];
    r->src2dst_max_ttl = f->ttl_max[s];
    r->dst2src_min_ttl = f->ttl_min[d];
    r->dst2src_max_ttl = f->ttl_max[d];
}

static void count_active(af_engine *e, uint8_t proto, int delta) {
    uint64_t *c = proto == 6 ? &e->stats.active_tcp
                : proto == 17 ? &e->stats.active_udp : &e->stats.active_other;
    *c += (uint64_t)(int64_t)delta;
}

/* Writes the flow's record (and kept headers) into the batch. The caller made room. */
static void emit_record(af_engine *e, uint32_t slot, uint8_t reason) {
    af_batch *b = e->out;
    af_table *t = &e->table;
    if (e->streams) af_streams_emit(e->streams, t, slot, b, b->count, reason != AF_END_ACTIVE);
    af_record *r = &b->records[b->count++];
    af_engine_fill_record(t, slot, r);
    r->end_reason = reason;
    if (t->headers_per_flow) {
        const af_header_count *hc = af_table_header_count(t, slot);
        r->header_offset = b->header_count;
        r->header_count = hc->kept;
        r->headers_dropped = hc->dropped;
        memcpy(&b->headers[b->header_count], af_table_headers(t, slot), (size_t)hc->kept * sizeof(af_header));
        b->header_count += hc->kept;
    }
    e->stats.flows_ended++;
    e->stats.ended_by[reason]++;
}

static void end_flow(af_engine *e, uint32_t slot, uint8_t reason) {
    emit_record(e, slot, reason);
    count_active(e, af_table_flow(&e->table, slot)->key.proto, -1);
    af_table_remove(&e->table, slot);
}

static uint8_t closing_reason(const af_flow *f) {
    return (f->state & AF_ST_RST) ? AF_END_RST : AF_END_FIN;
}

static inline uint32_t room(const af_engine *e) {
    uint32_t r = e->out->capacity - e->out->count;
    if (e->streams) {   /* stream data and chunks need batch room too */
        uint32_t s = af_streams_room(e->streams, e->out);
        if (s < r) r = s;
    }
    return r;
}

static inline int expired(uint64_t now, uint64_t last, uint64_t timeout) {
    return now > last && now - last >= timeout;
}

/* Ends flows whose idle or FIN/RST deadline passed, oldest first, while more than `keep` records
 * of room remain. Returns 1 when expired flows are still waiting for room. */
static int reap(af_engine *e, uint32_t keep) {
    af_table *t = &e->table;
    uint64_t started = 0;
    int waiting = 0;
    static const uint8_t list_of[2] = {AF_LIST_CLOSING, AF_LIST_OPEN};
    for (int i = 0; i < 2; i++) {
        int l = list_of[i];
        uint64_t timeout = l == AF_LIST_CLOSING ? e->cfg.fin_timeout_ns : e->cfg.idle_timeout_ns;
        uint32_t s;
        while ((s = t->lists[l].head) != AF_NIL) {
            af_flow *f = af_table_flow(t, s);
            if (!expired(e->now_ns, af_flow_last(f), timeout)) break;
            if (room(e) <= keep) { waiting = 1; break; }
            if (!started) started = wall_ns();
            end_flow(e, s, l == AF_LIST_CLOSING ? closing_reason(f) : AF_END_IDLE);
        }
    }
    if (started) e->stats.reap_ns += wall_ns() - started;
    return waiting;
}

static uint32_t least_recent(const af_table *t) {
    uint32_t a = t->lists[AF_LIST_OPEN].head, b = t->lists[AF_LIST_CLOSING].head;
    if (a == AF_NIL) return b;
    if (b == AF_NIL) return a;
    return af_flow_last(af_table_flow(t, a)) <= af_flow_last(af_table_flow(t, b)) ? a : b;
}

static void keep_header(af_engine *e, uint32_t slot, const af_queued *q, int dir) {
    af_table *t = &e->table;
    af_header_count *hc = af_table_header_count(t, slot);
    if (hc->kept >= t->headers_per_flow) {
        hc->dropped++;
        e->stats.headers_dropped++;
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

static void reset_counters(af_engine *e, uint32_t slot) {
    af_table *t = &e->table;
    af_flow *f = af_table_flow(t, slot);
    size_t from = offsetof(af_flow, last_ns);
    memset((char *)f + from, 0, sizeof *f - from);
    memset(f->flags, 0, sizeof f->flags);
    memset(f->ttl_min, 0, sizeof f->ttl_min);
    memset(f->ttl_max, 0, sizeof f->ttl_max);
    af_flow_cold *c = af_table_cold(t, slot);
    memset(c, 0, sizeof *c);
    c->id = e->next_id++;
    if (t->headers_per_flow) memset(af_table_header_count(t, slot), 0, sizeof(af_header_count));
}

/* Whether counting one more packet with these TCP flags would overflow a counter. */
static int counter_full(const af_table *t, uint32_t slot, int dir, uint8_t tcp_flags) {
    if (af_table_flow(t, slot)->packets[dir] == UINT32_MAX) return 1;
    uint8_t rare = tcp_flags & AF_RARE_FLAGS;
    if (!rare) return 0;
    const af_flow_cold *c = af_table_cold(t, slot);
    for (int b = 0; rare; b++, rare >>= 1)
        if ((rare & 1) && c->rare_flags[dir][af_rare_slot[b]] == UINT16_MAX) return 1;
    return 0;
}

/* Counts one decoded packet into its flow. Needs ROOM_PER_PACKET records of room. */
static void account(af_engine *e, const af_queued *q) {
    af_table *t = &e->table;
    const af_packet *p = &q->p;
    uint64_t ts = q->ts;
    int sender = q->sender;
    uint32_t slot = af_table_find(t, &q->key, q->hash);
    int is_tcp = p->protocol == 6 && p->frag != AF_FRAG_LATER;
    int syn_only = is_tcp && (p->tcp_flags & (AF_TCP_SYN | AF_TCP_ACK)) == AF_TCP_SYN;
    if (slot != AF_NIL) {
        af_flow *f = af_table_flow(t, slot);
        uint64_t last = af_flow_last(f);
        if (f->state & AF_ST_CLOSING) {
            if (expired(ts, last, e->cfg.fin_timeout_ns) || syn_only) {
                end_flow(e, slot, closing_reason(f));
                slot = AF_NIL;
            }
        } else if (expired(ts, last, e->cfg.idle_timeout_ns)) {
            end_flow(e, slot, AF_END_IDLE);
            slot = AF_NIL;
        }
        /* the record's first time sits in the flow's third cache line: read it only when the
         * last list move found the active timeout near */
        if (slot != AF_NIL &&
            (((f->state & AF_ST_ACTIVE_NEAR) &&
              expired(ts, af_flow_first(f, af_table_cold(t, slot)), e->cfg.active_timeout_ns)) ||
             counter_full(t, slot, sender, is_tcp ? p->tcp_flags : 0))) {
            emit_record(e, slot, AF_END_ACTIVE);
            reset_counters(e, slot);
        }
    }
    if (slot == AF_NIL) {
        if (t->count >= t->max_flows) end_flow(e, least_recent(t), AF_END_EVICTED);
        slot = af_table_insert(t, &q->key, q->hash);
        if (slot == AF_NIL) {   /* out of memory below max_flows: counted, never a crash */
            e->stats.aside[AF_ASIDE_NO_MEMORY]++;
            e->stats.packets_read++;
            return;
        }
        af_flow *f = af_table_flow(t, slot);
        af_table_cold(t, slot)->id = e->next_id++;
        if (e->streams) af_streams_reset(e->streams, slot);
        /* a SYN+ACK seen first means its receiver opened the connection */
        int synack = is_tcp && (p->tcp_flags & (AF_TCP_SYN | AF_TCP_ACK)) == (AF_TCP_SYN | AF_TCP_ACK);
        f->src_idx = (uint8_t)(synack ? 1 - sender : sender);
        e->stats.flows_created++;
        if (t->count > e->stats.peak_active_flows) e->stats.peak_active_flows = t->count;
        count_active(e, p->protocol, +1);
    }
    af_flow *f = af_table_flow(t, slot);
    if (f->packets[sender] == 0) af_table_cold(t, slot)->first_ns[sender] = f->last_ns[sender] = ts;
    else if (ts > f->last_ns[sender]) f->last_ns[sender] = ts;
    f->packets[sender]++;
    f->bytes[sender] += p->ip_length;
    f->captured_bytes[sender] += q->caplen;
    if (f->packets[sender] == 1 || p->ttl < f->ttl_min[sender]) f->ttl_min[sender] = p->ttl;
    if (p->ttl > f->ttl_max[sender]) f->ttl_max[sender] = p->ttl;
    enum af_list list = (f->state & AF_ST_CLOSING) ? AF_LIST_CLOSING : AF_LIST_OPEN;
    if (is_tcp) {
        uint8_t fl = p->tcp_flags;
        f->flags[sender] |= fl;
        f->ack_packets[sender] += (fl & AF_TCP_ACK) != 0;
        if (fl & ~AF_TCP_ACK) {   /* an ACK alone (most packets) leaves the cold part alone */
            af_flow_cold *c = af_table_cold(t, slot);
            c->psh_packets[sender] += (fl & AF_TCP_PSH) != 0;
            for (uint8_t rare = fl & AF_RARE_FLAGS, b = 0; rare; b++, rare >>= 1)
                if (rare & 1) c->rare_flags[sender][af_rare_slot[b]]++;
        }
        if (fl & AF_TCP_FIN) f->state |= sender ? AF_ST_FIN1 : AF_ST_FIN0;
        if (fl & AF_TCP_RST) f->state |= AF_ST_RST;
        if ((f->state & AF_ST_RST) || (f->state & (AF_ST_FIN0 | AF_ST_FIN1)) == (AF_ST_FIN0 | AF_ST_FIN1))
            list = AF_LIST_CLOSING;
    }
    uint32_t now_units = (uint32_t)(ts >> AF_TIME_UNIT_SHIFT);
    if (list == AF_LIST_CLOSING || (f->state & AF_ST_CLOSING) || f->packets[0] + f->packets[1] == 1 ||
        now_units - f->moved >= e->touch_units) {
        af_table_touch(t, slot, list);
        f->moved = now_units;
        /* until the next move (less than touch_units later), is an active timeout possible? */
        uint64_t margin = ((uint64_t)e->touch_units + 2) << AF_TIME_UNIT_SHIFT;
        uint64_t horizon = ts > UINT64_MAX - margin ? UINT64_MAX : ts + margin;
        if (expired(horizon, af_flow_first(f, af_table_cold(t, slot)), e->cfg.active_timeout_ns))
            f->state |= AF_ST_ACTIVE_NEAR;
        else f->state &= (uint8_t)~AF_ST_ACTIVE_NEAR;
    }
    if (t->headers_per_flow) keep_header(e, slot, q, sender != f->src_idx);
    if (e->streams)
        af_streams_packet(e->streams, t, slot, sender, p, q->payload,
                          q->payload_len, ts, e->out);
    e->stats.packets_in_flows++;
    e->stats.packets_read++;
}

/* Packet time in ns (libpcap opened the file at ns precision). Times before 1970 read as 0 and
 * times past what 64 bits of ns hold (year 2554) as the largest value, rather than wrapping. */
static uint64_t packet_ns(const struct pcap_pkthdr *h) {
    if (h->ts.tv_sec < 0) return 0;
    uint64_t sec = (uint64_t)h->ts.tv_sec, sub = h->ts.tv_usec < 0 ? 0 : (uint64_t)h->ts.tv_usec;
    if (sec > (UINT64_MAX - sub) / 1000000000ULL) return UINT64_MAX;
    return sec * 1000000000ULL + sub;
}

/* The first half of queueing a packet, the reading thread's part: the BPF filter and the decode,
 * into q. Returns 0 when the packet was counted aside here (st: whose counters). */
static int read_packet(af_engine *e, af_stats *st, const struct pcap_pkthdr *h, const u_char *data, af_queued *q) {
    uint64_t ts = packet_ns(h);
    /* packets_read counts a packet once it is put aside or counted in a flow (or held by the
     * defragmenter), so that packets_read == packets_in_flows + aside (+ defrag_fragments_held)
     * holds at any moment, queue or not */
    st->bytes_read += h->caplen;
    if (st->first_ns == 0 || ts < st->first_ns) st->first_ns = ts;
    if (e->has_filter && pcap_offline_filter(&e->filter, h, data) == 0) {
        st->aside[AF_ASIDE_FILTERED]++;
        st->packets_read++;
        return 0;
    }
    q->ts = ts;
    q->caplen = h->caplen;
    q->decoded = af_decode(e->dlt, data, h->caplen, &q->p);
    q->pending = 0;
    return 1;
}

/* Payload bytes prepare_packet copies for q (reassemble, an unfragmented TCP/UDP packet). */
static uint32_t payload_bytes(const af_engine *e, const af_packet *p) {
    uint32_t n = e->streams && p->frag == AF_FRAG_NONE && p->payload ? p->payload_len : 0;
    return n < AF_STREAM_MAX_PAYLOAD ? n : AF_STREAM_MAX_PAYLOAD;
}

/* The second half: defragmentation and the first-fragment table (both in packet order, so
 * fragments are prepared by the counting thread), then the key and hash, and copies of what
 * libpcap's buffer holds (headers; the payload to payload_to). `data` is the decoded frame.
 * Returns 0 when the packet was counted aside or held by the defragmenter. */
static int prepare_packet(af_engine *e, af_stats *st, af_queued *q, const u_char *data, uint8_t *payload_to) {
    af_packet *p = &q->p;
    int r = q->decoded;
    uint64_t ts = q->ts;
    uint32_t caplen = q->caplen;
    if (e->defrag && p->frag != AF_FRAG_NONE) {   /* held (counted there) until its datagram is whole */
        uint32_t len;
        data = af_defrag_add(e->defrag, p, data + caplen, caplen, ts, &len, &caplen);
        if (!data) return 0;
        uint16_t vlan = p->vlan_id;
        r = af_decode(AF_DEFRAG_DLT_RAW, data, len, p);
        p->vlan_id = vlan;
    }
    if (r == AF_DECODED && p->frag == AF_FRAG_LATER && !af_frag_lookup(&e->frags, p, ts))
        r = AF_ASIDE_FRAGMENT_ORPHAN;
    if (r != AF_DECODED) {
        st->aside[r]++;
        st->packets_read++;
        return 0;
    }
    if (p->frag == AF_FRAG_FIRST) af_frag_remember(&e->frags, p, ts);
    q->caplen = caplen;
    q->sender = af_key_make(&q->key, p->ip_version, p->src, p->sport, p->dst, p->dport,
                            p->protocol, p->vlan_id);
    q->hash = af_key_hash(&e->table, &q->key);
    if (!e->ahead) __builtin_prefetch(&e->table.buckets[q->hash & e->table.mask]);
    if (e->table.headers_per_flow) {
        uint32_t n = p->l3_headers_len < sizeof q->raw ? p->l3_headers_len : (uint32_t)sizeof q->raw;
        memcpy(q->raw, p->l3, n);
    }
    q->payload_len = payload_bytes(e, p);
    q->payload = payload_to;
    if (q->payload_len) memcpy(payload_to, p->payload, q->payload_len);
    p->l3 = NULL;   /* points into libpcap's buffer, which the next read reuses */
    p->payload = NULL;
    return 1;
}

/* Filters and decodes one packet (the counting thread reading for itself: live sources, or no
 * af_start); a flow packet joins the queue with its key and hash. */
static void enqueue(af_engine *e, const struct pcap_pkthdr *h, const u_char *data) {
    uint32_t at = e->queue_head + e->queue_count;
    af_queued *q = &e->queue[at & e->qmask];
    e->pulled++;
    if (!read_packet(e, &e->stats, h, data, q)) return;
    if (e->defrag) af_defrag_expire(e->defrag, q->ts);
    if (prepare_packet(e, &e->stats, q, data, e->payloads + (size_t)(at & (AF_QUEUE - 1)) * AF_STREAM_MAX_PAYLOAD))
        e->queue_count++;
}

/* --- the reading thread (files read by af_start's thread) --- */

/* Publishes what the counting thread is done with; wakes the reading thread if it waits. */
static void ahead_release(af_engine *e) {
    af_readahead *r = e->ahead;
    if (e->queue_head) {   /* the ring bytes of every entry before queue_head are done with too */
        const af_queued *last = &e->queue[(e->queue_head - 1) & e->qmask];
        atomic_store_explicit(&r->consumed, last->ring_end, memory_order_release);
    }
    /* after reading that entry: once head moves on, the reading thread may reuse it */
    atomic_store_explicit(&r->head, e->queue_head, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->reader_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->space);
        pthread_mutex_unlock(&r->mu);
    }
}

static void ahead_wake_counter(af_readahead *r) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&r->counter_waiting)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->data);
        pthread_mutex_unlock(&r->mu);
    }
}

static void ahead_publish_stats(af_engine *e, af_readahead *r) {
    FILE *f = pcap_file(e->pcap);
    long pos = f ? ftell(f) : -1;
    pthread_mutex_lock(&r->mu);
    r->pub = r->st;
    r->pub.file_offset = pos > 0 ? (uint64_t)pos : 0;
    pthread_mutex_unlock(&r->mu);
}

/* Reading thread: waits for an entry and `bytes` of ring. 0 when closing. */
static int ahead_room(af_readahead *r, uint32_t tail, uint64_t from, uint32_t bytes) {
    for (;;) {
        uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        uint64_t consumed = atomic_load_explicit(&r->consumed, memory_order_acquire);
        if (tail - head < AF_RING && from + bytes - consumed <= AF_RING_BYTES) return 1;
        if (atomic_load(&r->closing)) return 0;
        atomic_store(&r->reader_waiting, 1);
        atomic_thread_fence(memory_order_seq_cst);
        pthread_mutex_lock(&r->mu);
        head = atomic_load(&r->head);
        consumed = atomic_load(&r->consumed);
        if (!(tail - head < AF_RING && from + bytes - consumed <= AF_RING_BYTES) && !atomic_load(&r->closing))
            pthread_cond_wait(&r->space, &r->mu);
        pthread_mutex_unlock(&r->mu);
        atomic_store(&r->reader_waiting, 0);
    }
}

static void *ahead_run(void *arg) {
    af_engine *e = arg;
    af_readahead *r = e->ahead;
    uint32_t tail = 0;
    uint64_t n = 0;
    r->flush_reason = AF_END_EOF;
    while (!atomic_load(&r->closing)) {
        if (atomic_load(&e->stop_requested)) {
            r->flush_reason = AF_END_STOP;
            break;
        }
        if (!ahead_room(r, tail, r->written, 0)) break;
        struct pcap_pkthdr *h;
        const u_char *data;
        int status = pcap_next_ex(e->pcap, &h, &data);
        if (status != 1) {
            if (status == PCAP_ERROR) {
                r->st.read_errors++;
                snprintf(r->error, sizeof r->error, "%s", pcap_geterr(e->pcap));
            }
            break;
        }
        af_queued *q = &e->queue[tail & (AF_RING - 1)];
        if (++n % AF_RING_WAKE == 0) {
            ahead_publish_stats(e, r);
            ahead_wake_counter(r);
        }
        if (!read_packet(e, &r->st, h, data, q)) continue;
        /* a fragment goes whole to the counting thread; any other packet is prepared here */
        q->pending = q->p.frag != AF_FRAG_NONE;
        uint32_t bytes = q->pending ? q->caplen : payload_bytes(e, &q->p);
        uint64_t at = r->written;
        if (at % AF_RING_BYTES + bytes > AF_RING_BYTES) at += AF_RING_BYTES - at % AF_RING_BYTES;   /* wrap */
        if (!ahead_room(r, tail, at, bytes)) break;
        uint8_t *to = r->bytes + at % AF_RING_BYTES;
        r->written = q->ring_end = at + bytes;
        if (q->pending) {
            memcpy(to, data, bytes);
            q->payload = to;
        } else if (!prepare_packet(e, &r->st, q, data, to)) {
            r->written = at;   /* counted aside: its ring bytes are not needed */
            continue;
        }
        atomic_store_explicit(&r->tail, ++tail, memory_order_release);
    }
    ahead_publish_stats(e, r);
    atomic_store(&r->done, 1);
    ahead_wake_counter(r);
    return NULL;
}

static void ahead_free(af_readahead *r) {
    if (!r) return;
    if (r->started) {
        atomic_store(&r->closing, 1);
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->space);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->space);
    pthread_cond_destroy(&r->data);
    pthread_mutex_destroy(&r->mu);
    free(r->bytes);
    free(r);
}

static int ahead_start(af_engine *e) {
    af_readahead *r = calloc(1, sizeof *r);
    if (!r) return AF_ERR_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->space, NULL);
    pthread_cond_init(&r->data, NULL);
    r->bytes = malloc(AF_RING_BYTES);
    if (!r->bytes || (e->streams && !e->frag_payload && !(e->frag_payload = malloc(AF_STREAM_MAX_PAYLOAD)))) {
        ahead_free(r);
        return AF_ERR_NOMEM;
    }
    e->ahead = r;
    e->qmask = AF_RING - 1;
    if (pthread_create(&r->thread, NULL, ahead_run, e) != 0) {
        e->ahead = NULL;
        e->qmask = AF_QUEUE - 1;
        ahead_free(r);
        return AF_ERR_NOMEM;
    }
    r->started = 1;
    return AF_OK;
}

/* The counting thread, outside the engine lock: sleeps until enough is read ahead (or all). */
void af_wait_read_ahead(af_engine *e) {
    af_readahead *r = e->ahead;
    if (!r) return;
    atomic_store(&r->counter_waiting, 1);
    atomic_thread_fence(memory_order_seq_cst);
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->done) && atomic_load(&r->tail) - e->queue_head < AF_RING_WAKE &&
           !atomic_load(&e->stop_requested))
        pthread_cond_wait(&r->data, &r->mu);
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->counter_waiting, 0);
}

/* Counts the oldest queued packet, after prefetching the flow record of one further back. */
static void count_queued(af_engine *e) {
    af_table *t = &e->table;
    if (e->ahead && e->queue_count > 2 * AF_PREFETCH_AHEAD) {   /* read on another core: its bucket too */
        if (e->queue_count > 4 * AF_PREFETCH_AHEAD) {   /* and the entry itself, written over there */
            const char *next = (const char *)&e->queue[(e->queue_head + 4 * AF_PREFETCH_AHEAD) & e->qmask];
            size_t lines = e->table.headers_per_flow ? sizeof(af_queued) : offsetof(af_queued, raw);
            for (size_t at = 0; at < lines; at += 64) __builtin_prefetch(next + at);
        }
        const af_queued *far = &e->queue[(e->queue_head + 2 * AF_PREFETCH_AHEAD) & e->qmask];
        if (!far->pending) __builtin_prefetch(&t->buckets[far->hash & t->mask]);
    }
    if (e->queue_count > AF_PREFETCH_AHEAD) {
        const af_queued *ahead = &e->queue[(e->queue_head + AF_PREFETCH_AHEAD) & e->qmask];
        uint32_t s = ahead->pending ? AF_NIL : t->buckets[ahead->hash & t->mask];
        if (s != AF_NIL) {   /* the hot part's two lines; the cold part if flags will touch it */
            const char *f = (const char *)af_table_flow(t, s);
            __builtin_prefetch(f);
            __builtin_prefetch(f + 64);
            if (ahead->p.tcp_flags & ~AF_TCP_ACK) __builtin_prefetch(af_table_cold(t, s));
            if (e->streams) af_streams_prefetch(e->streams, s, ahead->sender, 0);
        }
        if (e->streams) {   /* halfway: the stream state is in cache now, prefetch what it points to */
            const af_queued *half = &e->queue[(e->queue_head + AF_PREFETCH_AHEAD / 2) & e->qmask];
            uint32_t h = half->pending ? AF_NIL : t->buckets[half->hash & t->mask];
            if (h != AF_NIL) af_streams_prefetch(e->streams, h, half->sender, 1);
        }
    }
    const af_queued *q = &e->queue[e->queue_head & e->qmask];
    e->queue_head++;
    e->queue_count--;
    account(e, q);
}

/* Ends every flow with the flush reason, as room allows. Returns 1 when the table is empty. */
static int flush(af_engine *e) {
    uint32_t s;
    while ((s = least_recent(&e->table)) != AF_NIL) {
        if (room(e) == 0) return 0;
        end_flow(e, s, e->flush_reason);
    }
    return 1;
}

/* With a reading thread: what it read becomes the queue; the packet at the head is prepared if
 * it is a fragment (in packet order). Returns 1 to go on counting (a packet at the head, or none
 * left at all: the phase moved on), 0 to end this pump with *status: AF_OK when nothing is read
 * ahead yet (wait with af_wait_read_ahead, outside the lock), AF_MORE after max_packets. */
static int take_read_ahead(af_engine *e, uint32_t *n, uint32_t max_packets, int *status) {
    af_readahead *r = e->ahead;
    for (;;) {
        if (e->queue_count == 0) {
            ahead_release(e);
            int done = atomic_load(&r->done);   /* before tail: all it published is then seen */
            e->queue_count = atomic_load_explicit(&r->tail, memory_order_acquire) - e->queue_head;
            if (e->queue_count == 0) {
                if (!done) {
                    *status = AF_OK;
                    return 0;
                }
                if (e->phase == PHASE_READING) {
                    e->phase = PHASE_DRAINING;
                    if (!atomic_load(&e->stop_requested)) e->flush_reason = r->flush_reason;
                    if (r->error[0]) snprintf(e->error, sizeof e->error, "%s", r->error);
                }
                return 1;
            }
        }
        if (*n >= max_packets) {
            *status = AF_MORE;
            return 0;
        }
        af_queued *q = &e->queue[e->queue_head & e->qmask];
        if (e->defrag) af_defrag_expire(e->defrag, q->ts);
        if (q->pending) {   /* a fragment: prepared here, in packet order */
            q->pending = 0;
            q->decoded = af_decode(e->dlt, q->payload, q->caplen, &q->p);
            if (!prepare_packet(e, &e->stats, q, q->payload, e->frag_payload)) {
                e->queue_head++;
                e->queue_count--;
                continue;
            }
        }
        ++*n;
        return 1;
    }
}

/* Appends to out what up to max_packets more packets end. Called with the engine locked. */
static int pump_locked(af_engine *e, uint32_t max_packets, af_batch *out) {
    if (out->capacity < ROOM_PER_PACKET + 1 ||
        (uint64_t)out->header_capacity < (uint64_t)out->capacity * e->cfg.headers_per_flow) {
        snprintf(e->error, sizeof e->error, "batch too small for headers_per_flow");
        return AF_ERR_CONFIG;
    }
    if (e->streams && (!out->streams || !out->chunks || !out->stream_data)) {
        snprintf(e->error, sizeof e->error, "batch without room for stream data (af_batch_stream_sizes)");
        return AF_ERR_CONFIG;
    }
    e->out = out;
    if (atomic_load(&e->stop_requested) && e->phase == PHASE_READING) {
        e->phase = PHASE_DRAINING;   /* queued packets were read, so they are still counted */
        e->flush_reason = AF_END_STOP;
    }
    uint32_t n = 0;
    int drained = 0;                 /* live: the interface had nothing more; do not ask again */
    for (;;) {
        int status;
        if (e->ahead && (e->phase == PHASE_READING || e->phase == PHASE_DRAINING) &&
            !take_read_ahead(e, &n, max_packets, &status))
            return status;
        /* keep the queue full while reading, so each packet waits a few before it is counted */
        while (!e->ahead && e->phase == PHASE_READING && !drained && e->queue_count < AF_QUEUE && n < max_packets) {
            struct pcap_pkthdr *h;
            const u_char *data;
            int r = pcap_next_ex(e->pcap, &h, &data);
            if (r == 1) {
                n++;
                enqueue(e, h, data);
            } else if (r == 0) {
                drained = 1;        /* live source: nothing to read right now */
            } else {
                if (r == PCAP_ERROR) {
                    e->stats.read_errors++;
                    snprintf(e->error, sizeof e->error, "%s", pcap_geterr(e->pcap));
                }
                e->phase = PHASE_DRAINING;
                e->flush_reason = AF_END_EOF;
            }
        }
        if (e->queue_count == 0) {
            if (e->phase == PHASE_READING) return drained ? AF_OK : AF_MORE;
            if (e->phase == PHASE_DRAINING) {
                e->phase = PHASE_FLUSHING;
                if (e->defrag) af_defrag_flush(e->defrag);   /* incomplete datagrams: given up */
            }
            if (e->phase == PHASE_FLUSHING) {
                if (!flush(e)) return AF_MORE;
                e->phase = PHASE_DONE;
            }
            return AF_DONE;
        }
        uint64_t ts = e->queue[e->queue_head & e->qmask].ts;
        if (ts > e->now_ns) e->now_ns = ts;
        if (reap(e, ROOM_PER_PACKET) || room(e) <= ROOM_PER_PACKET) return AF_MORE;
        count_queued(e);
    }
}

int af_pump_append(af_engine *e, uint32_t max_packets, af_batch *out) {
    pthread_mutex_lock(&e->mu);
    int status = pump_locked(e, max_packets, out);
    if (e->ahead) ahead_release(e);
    pthread_mutex_unlock(&e->mu);
    return status;
}

uint32_t af_pump_room(af_engine *e, af_batch *out) {
    pthread_mutex_lock(&e->mu);
    af_batch *was = e->out;
    e->out = out;
    uint32_t r = room(e);
    e->out = was;
    pthread_mutex_unlock(&e->mu);
    return r;
}

void af_pump_finish(af_engine *e, af_batch *out) {
    if (!e->streams) return;
    pthread_mutex_lock(&e->mu);
    af_streams_finish_batch(e->streams, &e->table, out);
    pthread_mutex_unlock(&e->mu);
}

void af_pump_prefault(af_engine *e, void *base, size_t bytes) { af_streams_prefault(e->streams, base, bytes); }

void af_batch_stream_sizes(af_engine *e, uint32_t capacity, uint32_t *chunks, uint64_t *data) {
    af_streams_batch_sizes(&e->cfg, capacity, chunks, data);
}

int af_batch_streams_alloc(af_engine *e, af_batch *b, uint32_t capacity) {
    uint32_t chunks;
    uint64_t data;
    af_streams_batch_sizes(&e->cfg, capacity, &chunks, &data);
    return chunks ? af_streams_batch_alloc(b, capacity, chunks, data) : AF_OK;
}

void af_batch_streams_free(af_batch *b) { af_streams_batch_free(b); }

void af_enable_chunks(af_engine *e) {
    if (!e->streams) return;
    pthread_mutex_lock(&e->mu);
    af_streams_enable_chunks(e->streams, e->table.hwm);
    pthread_mutex_unlock(&e->mu);
}

int af_check_stream_patterns(const char *const *client, uint32_t client_count, const char *const *server,
                             uint32_t server_count, uint32_t flags, char *error, uint32_t error_length) {
    const char *const *patterns[2] = {client, server};
    const uint32_t counts[2] = {client_count, server_count};
    int unsupported = 0;
    af_matcher *m = af_matcher_new(1, patterns, counts, flags, error, error_length, &unsupported);
    int status = m ? AF_OK : unsupported ? AF_ERR_UNSUPPORTED : AF_ERR_NOMEM;
    af_matcher_free(m);
    return status;
}

int af_set_stream_patterns(af_engine *e, const char *const *client, uint32_t client_count,
                           const char *const *server, uint32_t server_count, uint32_t flags, char *error,
                           uint32_t error_length) {
    if (!e->streams || e->producer || e->stats.packets_read) {
        snprintf(error, error_length, "stream patterns need reassemble=True and are set before reading starts");
        return AF_ERR_CONFIG;
    }
    const char *const *patterns[2] = {client, server};
    const uint32_t counts[2] = {client_count, server_count};
    int unsupported = 0;
    af_matcher *m = af_matcher_new(e->cfg.max_flows, patterns, counts, flags, error, error_length, &unsupported);
    if (!m) return unsupported ? AF_ERR_UNSUPPORTED : AF_ERR_NOMEM;
    pthread_mutex_lock(&e->mu);
    af_streams_set_matcher(e->streams, m, &e->table);
    pthread_mutex_unlock(&e->mu);
    return AF_OK;
}

static void batch_clear(af_batch *out) {
    out->count = 0;
    out->header_count = 0;
    out->chunk_count = 0;
    out->stream_data_used = 0;
}

int af_start(af_engine *e, uint32_t batch_capacity, uint32_t slots, int read_ahead) {
    if (e->producer) return AF_ERR_CONFIG;
    /* a file gets a reading thread too, unless reading already began (the queue is this thread's) */
    if (read_ahead && !e->live && e->queue_count == 0 && e->phase == PHASE_READING) {
        int code = ahead_start(e);
        if (code != AF_OK) return code;
    }
    return af_producer_start(&e->producer, e, batch_capacity, e->cfg.headers_per_flow, slots);
}

int af_notify_fd(af_engine *e) { return e->producer ? af_producer_fd(e->producer) : -1; }

int af_ready(af_engine *e, af_batch **batch) {
    return e->producer ? af_producer_ready(e->producer, batch) : AF_ERR_CONFIG;
}

void af_release(af_engine *e) {
    if (e->producer) af_producer_release(e->producer);
}

void af_get_stats(af_engine *e, af_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->last_ns = e->now_ns;
    out->active_flows = e->table.count;
    out->fragments_tracked = e->frags.tracked;
    out->fragment_table_evictions = e->frags.evictions;
    struct pcap_stat ps;
    if (e->live && pcap_stats(e->pcap, &ps) == 0) {
        out->kernel_received = ps.ps_recv;
        out->kernel_dropped = ps.ps_drop;
        out->interface_dropped = ps.ps_ifdrop;
    }
    FILE *f = e->pcap && !e->live && !e->ahead && e->phase == PHASE_READING ? pcap_file(e->pcap) : NULL;
    long pos = f ? ftell(f) : -1;   /* progress */
    out->file_offset = e->phase != PHASE_READING ? out->file_size : pos > 0 ? (uint64_t)pos : 0;
    if (e->ahead) {   /* what the reading thread counted (it publishes every AF_RING_WAKE packets) */
        af_readahead *r = e->ahead;
        pthread_mutex_lock(&r->mu);
        out->packets_read += r->pub.packets_read;
        out->bytes_read += r->pub.bytes_read;
        out->read_errors += r->pub.read_errors;
        for (int i = 0; i < AF_ASIDE_COUNT; i++) out->aside[i] += r->pub.aside[i];
        if (r->pub.first_ns && (!out->first_ns || r->pub.first_ns < out->first_ns)) out->first_ns = r->pub.first_ns;
        if (e->phase == PHASE_READING) out->file_offset = r->pub.file_offset;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&e->mu);
}

int af_lookup(af_engine *e, int ver, const uint8_t *ip_a, uint16_t port_a, const uint8_t *ip_b,
              uint16_t port_b, uint8_t proto, uint16_t vlan, af_record *out) {
    af_key key;
    af_key_make(&key, ver, ip_a, port_a, ip_b, port_b, proto, vlan);
    pthread_mutex_lock(&e->mu);
    uint32_t s = af_table_find(&e->table, &key, af_key_hash(&e->table, &key));
    if (s != AF_NIL) af_engine_fill_record(&e->table, s, out);
    pthread_mutex_unlock(&e->mu);
    return s != AF_NIL;
}

uint32_t af_snapshot(af_engine *e, uint32_t *cursor, af_record *out, uint32_t capacity) {
    uint32_t n = 0;
    af_table *t = &e->table;
    pthread_mutex_lock(&e->mu);
    while (n < capacity && *cursor < t->hwm) {
        uint32_t slot = ++*cursor;
        af_flow *f = af_table_flow(t, slot);
        if (f->state & AF_ST_LIVE) af_engine_fill_record(t, slot, &out[n++]);
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* Live sources: the event loop pumps when the capture fd is readable and expires idle flows on
 * wall-clock time between packets. */
int af_selectable_fd(af_engine *e) { return e->live ? pcap_get_selectable_fd(e->pcap) : -1; }

int af_expire(af_engine *e, uint64_t now_ns, af_batch *out) {
    batch_clear(out);
    pthread_mutex_lock(&e->mu);
    e->out = out;
    if (now_ns > e->now_ns) e->now_ns = now_ns;
    int waiting = e->phase == PHASE_READING ? reap(e, 0) : 0;
    if (e->defrag && e->phase == PHASE_READING) af_defrag_expire(e->defrag, e->now_ns);
    if (e->streams) af_streams_finish_batch(e->streams, &e->table, out);
    pthread_mutex_unlock(&e->mu);
    return waiting ? AF_MORE : AF_OK;
}

uint64_t af_next_deadline(af_engine *e) {
    pthread_mutex_lock(&e->mu);
    uint64_t best = 0;
    const af_table *t = &e->table;
    for (int l = 0; l < 2; l++) {
        uint32_t s = t->lists[l].head;
        if (s == AF_NIL) continue;
        uint64_t timeout = l == AF_LIST_CLOSING ? e->cfg.fin_timeout_ns : e->cfg.idle_timeout_ns;
        uint64_t last = af_flow_last(af_table_flow(t, s));
        uint64_t due = last > UINT64_MAX - timeout ? UINT64_MAX : last + timeout;
        if (best == 0 || due < best) best = due;
    }
    pthread_mutex_unlock(&e->mu);
    return best;
}

int af_pump_some(af_engine *e, uint32_t max_packets, af_batch *out) {
    batch_clear(out);
    pthread_mutex_lock(&e->mu);
    uint64_t pulled = e->pulled, bytes = e->stats.bytes_read;
    int status = pump_locked(e, max_packets, out);
    /* what the call read tells the live reader how fast the capture ring fills */
    out->packets = (uint32_t)(e->pulled - pulled);
    out->bytes = e->stats.bytes_read - bytes;
    pthread_mutex_unlock(&e->mu);
    af_pump_finish(e, out);
    return status;
}
