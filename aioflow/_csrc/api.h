/* aioflow's C API as the Python side sees it.
 *
 * This file is read twice: by the C compiler (through aioflow.h, which adds include guards and
 * <stdint.h>) and verbatim by cffi's cdef in _build_pcap.py. So it must stay plain declarations:
 * no preprocessor lines, no libpcap types, only fixed-width integers. */

/* Why a flow record was emitted. */
enum af_end_reason {
    AF_END_NONE = 0,      /* still active (snapshot / lookup) */
    AF_END_IDLE = 1,      /* no packet for idle_timeout */
    AF_END_ACTIVE = 2,    /* older than active_timeout: emitted, counting goes on in a new record */
    AF_END_FIN = 3,       /* fin_timeout after FINs from both sides */
    AF_END_RST = 4,       /* fin_timeout after a RST */
    AF_END_EOF = 5,       /* the source ended */
    AF_END_EVICTED = 6,   /* table full (max_flows): least recently seen flow made room */
    AF_END_STOP = 7,      /* the parser was stopped */
    AF_END_CUSTOM = 8,    /* a slicing rule: max_packets or max_bytes reached (nfstream's FlowSlicer) */
    AF_END_COUNT = 9
};

/* Status codes of af_* calls. Errors are negative; af_error_message() has the details. */
enum af_status {
    AF_OK = 0,
    AF_MORE = 1,          /* af_ready: a batch is ready (internally: the pump stopped, call again) */
    AF_DONE = 2,          /* the source finished and every flow was flushed (and, for af_ready, taken) */
    AF_ERR_NOT_FOUND = -1,
    AF_ERR_PERMISSION = -2,
    AF_ERR_FORMAT = -3,   /* not a capture file, or a damaged header */
    AF_ERR_FILTER = -4,   /* BPF did not compile */
    AF_ERR_CONFIG = -5,   /* a parameter out of range */
    AF_ERR_NOMEM = -6,
    AF_ERR_SOURCE = -7,   /* any other libpcap failure opening the source */
    AF_ERR_UNSUPPORTED = -8   /* valid, but not something this build can do (stream patterns) */
};

/* Live sources: libpcap hands captured packets over after at most this long (its block timeout). */
enum { AF_LIVE_LATENCY_MS = 50 };

/* What an af_chunk carries. */
enum af_chunk_kind {
    AF_CHUNK_DATA = 0,    /* new in-order data (stream_chunks) */
    AF_CHUNK_MATCH = 1    /* a stream pattern matched (af_set_stream_patterns) */
};

/* af_set_stream_patterns flags. */
enum af_match_flag {
    AF_MATCH_CASELESS = 1
};

/* Packets not counted in any flow, by reason (indexes of af_stats.aside). */
enum af_aside_reason {
    AF_ASIDE_NON_IP = 0,          /* ARP, STP, LLDP, ... */
    AF_ASIDE_TRUNCATED = 1,       /* captured too short for the headers it announces */
    AF_ASIDE_BAD_HEADER = 2,      /* impossible version / header length / total length */
    AF_ASIDE_UNSUPPORTED_LINK = 3,/* link type aioflow does not decode */
    AF_ASIDE_FRAGMENT_ORPHAN = 4, /* non-first IP fragment whose first fragment was not seen */
    AF_ASIDE_FILTERED = 5,        /* rejected by the BPF filter */
    AF_ASIDE_NO_MEMORY = 6,       /* a new flow could not be allocated */
    AF_ASIDE_FRAGMENT_MERGED = 7, /* defragment: fragments absorbed into a reassembled datagram
                                     (all but the one completing it, counted as the datagram) */
    AF_ASIDE_FRAGMENT_DROPPED = 8,/* defragment: fragments of datagrams given up, duplicates */
    AF_ASIDE_COUNT = 9
};

/* decode_tunnels: the outermost tunnel a flow's packets came through (af_record has none: the
 * `tunnel` meter reports it). */
enum af_tunnel_type {
    AF_TUNNEL_NONE = 0,
    AF_TUNNEL_GRE = 1,            /* GRE (RFC 2784/2890), PPTP's enhanced GRE (RFC 2637) */
    AF_TUNNEL_ERSPAN = 2,         /* ERSPAN type I, II, III (in GRE) */
    AF_TUNNEL_IPIP = 3,           /* IPv4 or IPv6 directly in IPv4 or IPv6 (4in4, 6in4, 4in6, 6in6) */
    AF_TUNNEL_VXLAN = 4,          /* UDP 4789 */
    AF_TUNNEL_GENEVE = 5,         /* UDP 6081 */
    AF_TUNNEL_GTP = 6,            /* GTP-U G-PDUs, UDP 2152 */
    AF_TUNNEL_TEREDO = 7,         /* UDP 3544 */
    AF_TUNNEL_MPLS = 8,           /* Ethernet over an MPLS pseudowire (RFC 4448) */
    AF_TUNNEL_TYPE_COUNT = 9
};

/* Decode events (indexes of af_stats.decode_events), as Suricata's decoder events: damage or oddities
 * that do not stop a packet from counting in its flow, and what became of later fragments held for
 * their first (without defragment). */
enum af_decode_event {
    AF_EVENT_TCP_BAD_DATA_OFFSET = 0, /* TCP data offset under 20 bytes (ports kept, the rest ignored)
                                         or past the segment's end */
    AF_EVENT_FIRST_FRAGMENT_SHORT = 1,/* a first fragment too short for its transport header: ports kept */
    AF_EVENT_IPV6_IN_IPV4 = 2,        /* an IPv6 packet where the link said IPv4: decoded as IPv6 */
    AF_EVENT_FRAGMENT_EARLY = 3,      /* a later fragment before its first: held (max_fragment_datagrams
                                         fragments at once, fragment_timeout) */
    AF_EVENT_FRAGMENT_EARLY_TIMEOUT = 4,  /* held, no first fragment within fragment_timeout: fragment_orphan */
    AF_EVENT_FRAGMENT_EARLY_FULL = 5, /* held at the bound: the oldest held became fragment_orphan */
    AF_EVENT_FRAGMENT_EARLY_UNFINISHED = 6, /* still held when the source ended: fragment_orphan */
    AF_EVENT_TUNNEL_MALFORMED = 7,    /* decode_tunnels: a tunnel header cut or impossible: the packet
                                         counts in its carrier's flow */
    AF_EVENT_TUNNEL_TOO_DEEP = 8,     /* decode_tunnels: tunnels nested deeper than AF_MAX_TUNNELS: the
                                         packet counts in the deepest carrier's flow */
    AF_EVENT_FRAGMENT_UNMERGED = 9,   /* defragment: a fragment of a datagram given up as overlap,
                                         inconsistent, truncated or too big, counted in its flow as
                                         without defragment */
    AF_EVENT_BAD_CHECKSUM = 10,       /* check_checksums: a wrong IPv4 header, TCP, UDP, ICMP or ICMPv6
                                         checksum (an outer tunnel's too): counted in its flow */
    AF_DECODE_EVENT_COUNT = 11
};

/* Why the defragmenter gave a datagram up (indexes of af_stats.defrag_gave_up). */
enum af_defrag_reason {
    AF_DEFRAG_TIMEOUT = 0,        /* incomplete fragment_timeout after its first fragment */
    AF_DEFRAG_TABLE_FULL = 1,     /* max_fragment_datagrams in progress: the oldest made room */
    AF_DEFRAG_MEMORY_FULL = 2,    /* max_fragment_memory in use: the oldest made room */
    AF_DEFRAG_TOO_MANY_FRAGMENTS = 3, /* more than max_fragments_per_datagram */
    AF_DEFRAG_TOO_BIG = 4,        /* past max_datagram_size or the IP length limit */
    AF_DEFRAG_OVERLAP = 5,        /* fragments overlap (exact duplicates are only ignored) */
    AF_DEFRAG_INCONSISTENT = 6,   /* two ends, data past the end, empty or unaligned fragment */
    AF_DEFRAG_TRUNCATED = 7,      /* a fragment cut by the snaplen: its data is not all there */
    AF_DEFRAG_UNFINISHED = 8,     /* still incomplete when the source ended or was stopped */
    AF_DEFRAG_REASON_COUNT = 9
};

/* TCP flag bit order of the per-flag counters: FIN SYN RST PSH ACK URG ECE CWR (as in the header). */
enum { AF_TCP_FLAG_COUNT = 8 };

/* Config bounds the engine checks (af_open_* fails with AF_ERR_CONFIG past them). */
enum af_bound {
    AF_MAX_HEADERS_PER_FLOW = 65535,
    AF_MAX_SNAPLEN = 262144,
    AF_MAX_FRAGMENT_DATAGRAMS = 16777216,
    AF_MAX_FRAGMENTS_PER_DATAGRAM = 8192,
    AF_MIN_DATAGRAM_SIZE = 68,
    AF_MAX_DATAGRAM_SIZE = 65575,
    AF_MIN_FRAGMENT_MEMORY = 512,
    AF_MAX_STREAM_BYTES = 1073741824,
    AF_MIN_REASSEMBLY_MEMORY = 1048576,
    AF_MAX_DISSECTIONS = 65535,
    AF_MAX_DISSECTING_FLOWS = 16777216,
    AF_MAX_SPLT = 32,
    AF_MAX_WORKERS = 16,
    AF_MAX_WORKER_FLOWS = 268435455   /* workers > 1: max_flows per worker (snapshot cursors) */
};

/* af_records_text's fixed widths: an address's text (INET6_ADDRSTRLEN is 46), a flow id's */
enum { AF_ADDRESS_TEXT = 48, AF_FLOW_ID_TEXT = 128 };

typedef struct {
    uint64_t id;                  /* unique per record, in order of flow creation */
    uint64_t first_ns, last_ns;   /* epoch nanoseconds */
    uint64_t src2dst_first_ns, src2dst_last_ns;   /* 0 when the direction saw no packet */
    uint64_t dst2src_first_ns, dst2src_last_ns;
    uint64_t src2dst_packets, src2dst_bytes, src2dst_captured_bytes;
    uint64_t dst2src_packets, dst2src_bytes, dst2src_captured_bytes;
    uint32_t src2dst_flag_counts[AF_TCP_FLAG_COUNT];
    uint32_t dst2src_flag_counts[AF_TCP_FLAG_COUNT];
    uint32_t header_offset;       /* first of this flow's headers in the batch's header array */
    uint32_t header_count;
    uint32_t headers_dropped;     /* packets past the headers=N bound */
    uint8_t src_ip[16];           /* IPv4 in the first 4 bytes, network order */
    uint8_t dst_ip[16];
    uint16_t src_port, dst_port;  /* ICMP: see README (type/code or echo identifier) */
    uint16_t vlan_id;             /* innermost 802.1Q id, 0 when untagged */
    uint8_t ip_version, protocol;
    uint8_t src2dst_tcp_flags, dst2src_tcp_flags;  /* OR of flags seen */
    uint8_t src2dst_min_ttl, src2dst_max_ttl, dst2src_min_ttl, dst2src_max_ttl;
    uint8_t end_reason;
    uint8_t _pad[3];
} af_record;

/* reassemble: where an emitted record's kept streams are in the batch's stream_data. Index 0 is
 * the client (the record's src), 1 the server. Datagrams (UDP, and every IP protocol but TCP:
 * ICMP, SCTP...) are framed: [uint32 length][payload] per
 * datagram. Holes are hole_count (offset, length) uint64 pairs, 8-aligned. */
typedef struct {
    uint64_t data_at[2];
    uint64_t holes_at[2];
    uint32_t data_length[2];
    uint32_t hole_count[2];
    uint8_t truncated[2];
    uint8_t kept[2];              /* 1: this direction's stream is reported (with reassembly) */
    uint8_t _pad[4];
} af_stream_info;

/* reassemble: new in-order data of one flow direction (at most one per direction per batch), or
 * (kind AF_CHUNK_MATCH) a flow's first stream-pattern match: offset..match_end is where it lies in
 * the direction's stream, data its text (at most AF_MATCH_TEXT bytes; `partial` when not whole). */
typedef struct {
    af_record flow;               /* snapshot of the flow (end_reason AF_END_NONE) */
    uint64_t data_at;             /* in the batch's stream_data */
    uint64_t offset;              /* stream offset of the first byte (datagrams: payload bytes before) */
    uint64_t ts_ns;               /* newest packet contributing */
    uint32_t length;              /* bytes at data_at (datagrams: framed) */
    uint32_t before_record;       /* records of the batch emitted before this chunk */
    uint32_t next_seq, last_ack;  /* TCP: sequence number after the data; last ACK sent this way */
    uint8_t direction;            /* 0: client (src->dst), 1: server */
    uint8_t has_ack;              /* last_ack is meaningful */
    uint8_t protocol;
    uint8_t kind;                 /* enum af_chunk_kind */
    uint8_t partial;              /* match: data is not the whole match */
    uint8_t _pad[3];
    uint64_t match_end;           /* match: stream offset just after it */
    uint32_t pattern;             /* match: index in its direction's pattern list */
    uint32_t _pad2;
} af_chunk;

/* One kept packet header (headers=N). */
typedef struct {
    uint64_t ts_ns;
    uint32_t ip_length;           /* IP total length (v6: payload length + 40) */
    uint32_t captured_length;     /* bytes captured of the whole frame */
    uint32_t tcp_seq, tcp_ack;
    uint16_t ip_id;               /* IPv4 id; IPv6: low 16 bits of the flow label */
    uint16_t ip_frag;             /* IPv4 flags+fragment offset field */
    uint16_t tcp_window;
    uint8_t direction;            /* 0 src->dst, 1 dst->src */
    uint8_t ttl;
    uint8_t tcp_flags;
    uint8_t raw_length;           /* bytes used in raw */
    uint8_t _pad[2];
    uint8_t raw[120];             /* network + transport headers as captured */
} af_header;

typedef struct {
    af_record *records;
    uint32_t capacity;            /* room in records */
    uint32_t count;               /* filled by the engine */
    af_header *headers;
    uint32_t header_capacity;     /* must be >= capacity * headers_per_flow */
    uint32_t header_count;
    /* reassemble only (NULL otherwise): sized by af_batch_stream_sizes */
    af_stream_info *streams;      /* one per record */
    af_chunk *chunks;
    uint32_t chunk_capacity, chunk_count;
    uint8_t *stream_data;
    uint64_t stream_data_capacity, stream_data_used;
    /* meters: record i's meter block is meter_stride bytes at meter_data + i * meter_stride
     * (af_meter_offset says where each enabled meter's fields start in it); NULL when stride 0 */
    uint8_t *meter_data;
    uint32_t meter_stride;
    uint32_t packets;             /* af_pump_some: packets that call took from the source */
    uint64_t bytes;               /* af_pump_some: their captured bytes */
} af_batch;

typedef struct {
    uint32_t max_flows;           /* table bound; least recently seen flow evicted past it */
    uint32_t headers_per_flow;    /* 0: keep no headers */
    uint64_t idle_timeout_ns;
    uint64_t active_timeout_ns;
    uint64_t fin_timeout_ns;
    uint64_t hash_seed;
    int32_t snaplen;
    int32_t defragment;           /* 1: reassemble IP fragments (defrag.h); 0: count them per frame */
    uint32_t max_fragment_datagrams;      /* datagrams in progress at once */
    uint32_t max_fragments_per_datagram;
    uint32_t max_datagram_size;   /* reassembled IP length, header included (<= 65575) */
    uint64_t fragment_timeout_ns; /* packet time from a datagram's first fragment seen */
    uint64_t max_fragment_memory; /* bytes of fragment data held at once (preallocated) */
    int32_t reassemble;           /* 1: TCP stream reassembly, other payloads as datagrams (stream.h) */
    int32_t stream_chunks;        /* reassemble: also emit chunks of new in-order data */
    uint32_t max_stream_bytes;    /* kept per flow direction */
    uint64_t max_reassembly_memory;   /* bytes of the stream arena, all flows together */
    int32_t discard_streams;      /* reassemble: keep no stream for the records (chunks and stream
                                     patterns still see every byte; out-of-order data is still
                                     buffered up to max_stream_bytes) */
    uint32_t meters;              /* bit i: turn on meter i (af_meter_info_of(i)) */
    int32_t follow;               /* files: at the end, wait for the file to grow (tail -f) until af_stop */
    int32_t libpcap_files;        /* files: read with libpcap instead of aioflow's reader (tests, benchmarks) */
    int32_t dissect;              /* 1: application detection with nDPI (the dissect meter) */
    uint32_t max_dissections;     /* dissect: packets per flow given to nDPI at most, then it gives up */
    uint32_t max_dissecting_flows;    /* dissect: flows dissected at once (nDPI state pool); past it, counted */
    int32_t statistics;           /* 1: the statistics meter (nfstream's statistical features) */
    int32_t accounting_mode;      /* statistics and splt packet sizes: 0 link layer, 1 IP, 2 transport, 3 payload */
    uint32_t splt;                /* the splt meter: first N packets of each flow (0: off; at most AF_MAX_SPLT) */
    uint16_t community_id_seed;   /* community_id meter: the Community ID seed (0 by default) */
    uint16_t _pad_cid;
    int32_t decode_tunnels;       /* 1: key flows on the innermost IP of GRE, IP-in-IP, VXLAN, Geneve,
                                     GTP-U, Teredo and MPLS pseudowires, plus a tunnel id (tunnels.h) */
    uint64_t max_packets;         /* > 0: a flow ends (AF_END_CUSTOM) with its max_packets-th packet, both ways */
    uint64_t max_bytes;           /* > 0: a flow ends (AF_END_CUSTOM) with the packet that brings its IP bytes,
                                     both ways, to max_bytes or more */
    const char *const *meter_libraries;   /* meters loaded from shared libraries (aioflow/include/
                                             aioflow_meter.h), after the built-in ones; read at open */
    uint32_t meter_library_count;
    uint32_t workers;             /* flow tables counted by this many threads at once (0, 1: one);
                                     files: each worker keeps the flows whose hash picks it; live:
                                     a capture handle each, PACKET_FANOUT (docs/architecture.md,
                                     "Workers") */
    uint32_t worker;              /* set by the engine: this pipeline's index among them */
    uint32_t shares;              /* files, > 1: count only share `share` of `shares` of the flows, by
                                     the flow hash (as worker `share` of `shares` would); the file is
                                     read whole, the others' packets only move the clock. Every share
                                     with the same hash_seed: together, the records of one reader */
    uint32_t share;
    int32_t check_checksums;      /* 1: verify IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums (checksum.h):
                                     AF_EVENT_BAD_CHECKSUM, Zeek's C in the conn_state meter's history */
} af_config;

typedef struct {
    uint64_t packets_read;        /* every packet libpcap handed over (after BPF) */
    uint64_t packets_in_flows;
    uint64_t aside[AF_ASIDE_COUNT];          /* by enum af_aside_reason */
    uint64_t bytes_read;          /* captured bytes */
    uint64_t flows_created;
    uint64_t flows_ended;         /* records emitted, active-timeout splits included */
    uint64_t ended_by[AF_END_COUNT];       /* by enum af_end_reason */
    uint64_t active_flows;
    uint64_t peak_active_flows;   /* the most flows held at once */
    uint64_t active_tcp, active_udp, active_other;
    uint64_t fragments_tracked;   /* first fragments remembered for later ones */
    uint64_t fragment_table_evictions;
    uint64_t read_errors;         /* pcap read failures (damaged file): reading stopped there */
    uint64_t first_ns, last_ns;   /* packet time span seen */
    uint64_t reap_ns;             /* wall time spent expiring flows */
    uint64_t headers_dropped;
    uint64_t kernel_received;     /* live: pcap_stats' ps_recv, ps_drop, ps_ifdrop */
    uint64_t kernel_dropped;
    uint64_t interface_dropped;
    uint64_t file_offset;         /* bytes of the file consumed so far (files only; for progress) */
    uint64_t file_size;           /* 0 for live sources */
    int32_t link_type;            /* DLT of the source */
    int32_t _pad;
    /* held fragments count in packets_read (packets_read = packets_in_flows + aside
     * + defrag_fragments_held at any moment); without defragment, later fragments held for their
     * first (AF_EVENT_FRAGMENT_EARLY) count there too */
    uint64_t defrag_datagrams;    /* datagrams reassembled (each one packet of its flow) */
    uint64_t defrag_fragments_held;       /* fragments waiting in the table now */
    uint64_t defrag_duplicates;   /* exact duplicate fragments ignored (aside fragment_dropped) */
    uint64_t defrag_in_progress;  /* datagrams in the table now (given-up tombstones included) */
    uint64_t defrag_peak_in_progress;
    uint64_t defrag_memory;       /* bytes of the fragment pool in use now */
    uint64_t defrag_peak_memory;
    uint64_t defrag_gave_up[AF_DEFRAG_REASON_COUNT];   /* datagrams given up, by enum af_defrag_reason */
    uint64_t decode_events[AF_DECODE_EVENT_COUNT];      /* by enum af_decode_event */
    /* reassemble */
    uint64_t stream_memory;       /* arena bytes in use now, and the most at once */
    uint64_t stream_peak_memory;
    uint64_t stream_bytes;        /* in-order TCP payload and datagram bytes reassembled */
    uint64_t stream_datagrams;    /* datagrams (UDP and other IP protocols) seen with reassembly */
    uint64_t stream_bytes_truncated;  /* not kept: past max_stream_bytes, or once keeping stopped
                                         (chunks still carry them) */
    uint64_t stream_bytes_dropped;    /* not stored for lack of arena memory (holes record them) */
    uint64_t stream_segments_dropped; /* out-of-order segments dropped for lack of arena memory */
    uint64_t stream_retransmitted_bytes;  /* received again: ignored (first wins) */
    uint64_t stream_holes;        /* holes recorded, and their bytes */
    uint64_t stream_hole_bytes;
    uint64_t stream_forced;       /* a direction moved past a hole: its out-of-order bytes hit the bound */
    uint64_t stream_chunks;
    uint64_t stream_holes_dropped;    /* holes past AF_STREAM_MAX_HOLES or memory: keeping stopped */
    /* stream patterns */
    uint64_t stream_matches;      /* flow records that matched */
    uint64_t stream_match_memory; /* bytes of open search states now */
    /* dissect (nDPI) */
    uint64_t dissect_flows;       /* flows whose dissection started (took a pool state) */
    uint64_t dissect_detected;    /* ... that ended with the protocol known, nothing more to see */
    uint64_t dissect_gave_up;     /* ... that ended at max_dissections or with the flow: nDPI gave up (guessing) */
    uint64_t dissect_pool_full;   /* flows not dissected: max_dissecting_flows states were in use */
    uint64_t dissect_in_flight;   /* states in use now, and the most at once */
    uint64_t dissect_peak_in_flight;
    uint64_t dissect_state_bytes; /* bytes of one nDPI flow state (pool memory = in flight x this) */
    uint64_t dissect_truncated;   /* text fields cut to their record size (ja4_r: left empty) */
    /* dissect: JA4 (ja4.h) */
    uint64_t dissect_ja4_tcp;     /* ClientHellos fingerprinted: over TCP, in QUIC Initials */
    uint64_t dissect_ja4_quic;
    uint64_t dissect_ja4_too_big; /* ClientHellos larger than the buffer (AF_JA4_HELLO_MAX): no ja4 */
    uint64_t dissect_ja4_gap;     /* TCP: a segment still missing when the dissection ended (others placed) */
    uint64_t dissect_ja4_incomplete;  /* the dissection ended (budget, flow end) before the ClientHello was whole */
    uint64_t dissect_ja4_malformed;   /* ClientHellos (or QUIC frames) whose lengths overrun */
    uint64_t dissect_ja4_quic_unopened;   /* QUIC flows whose client Initial was not opened: cut short, tag
                                             not verified, or no libcrypto in this build */
} af_stats;

/* Meters (meter.h): per-flow features beyond the flow counters, each adding its fields to the
 * records. A field of a meter's record block: */
typedef struct {
    const char *name;             /* column: <meter>_<name> (af_meter_info.plain_names: <name>) */
    const char *ctype;            /* "uint64_t", "uint32_t", "uint16_t", "uint8_t", "int64_t", "double", or
                                     "char[N]": NUL-terminated text in N bytes (Python: str) */
    const char *unit;             /* "packets", "bytes", "ns", ... */
    uint32_t offset;              /* in the meter's block */
    uint32_t count;               /* an array of count values (0: one value) */
} af_meter_field;

typedef struct {
    const char *name;
    const char *doc;
    const char *option;           /* NULL: turned on by name (af_config.meters); else the option that does */
    const af_meter_field *fields;
    uint32_t field_count;
    uint32_t record_size;         /* bytes of its block in each record (0: no fields) */
    int32_t plain_names;          /* 1: columns are the field names as they are (nfstream's), not <meter>_<name> */
} af_meter_info;

/* Meter i of this build (NULL past the last). */
const af_meter_info *af_meter_info_of(uint32_t index);

/* The timeline meter (meters=("timeline",)): packets and captured bytes of the packets counted
 * into flows, per time bucket and protocol class. Bucket i covers [origin_ns + i * interval_ns,
 * + interval_ns); origin is the first such packet's time. The interval starts at 1 ms and grows
 * (x2, x5 alternately) so the buckets never pass AF_TIMELINE_MAX_BUCKETS. */
enum { AF_TIMELINE_MAX_BUCKETS = 2048, AF_TIMELINE_CLASSES = 4 };
enum af_timeline_class { AF_TIMELINE_TCP = 0, AF_TIMELINE_UDP = 1, AF_TIMELINE_ICMP = 2, AF_TIMELINE_OTHER = 3 };
typedef struct {
    uint64_t origin_ns, interval_ns;
    uint32_t count;               /* buckets up to the last packet's */
    uint32_t coarsened;           /* times the interval grew */
    uint64_t before_origin;       /* packets stamped before the first one (counted in bucket 0) */
    uint64_t packets[AF_TIMELINE_MAX_BUCKETS][AF_TIMELINE_CLASSES];
    uint64_t bytes[AF_TIMELINE_MAX_BUCKETS][AF_TIMELINE_CLASSES];
} af_timeline;

/* Names of enum values ("" for a value out of range), so Python copies no list. */
const char *af_end_reason_name(int reason);
const char *af_aside_reason_name(int reason);
const char *af_defrag_reason_name(int reason);
const char *af_decode_event_name(int event);
const char *af_tunnel_type_name(int type);

typedef struct af_engine af_engine;

int af_open_offline(const char *path, const char *bpf, const af_config *config, af_engine **out);
/* An interface: promiscuous (0/1), kernel buffer in bytes (0: libpcap's default), immediate
 * mode, non-blocking; the BPF runs in the kernel. */
int af_open_live(const char *device, const char *bpf, const af_config *config, int promiscuous,
                 int32_t buffer_bytes, af_engine **out);
const char *af_open_error(void);     /* message of the last failed open on this thread */
int af_selectable_fd(af_engine *engine);   /* live: readable when packets wait */
/* Live: reads what is there (up to max_packets) into out: AF_OK when the interface had nothing
 * more, AF_MORE when it stopped first (max_packets or a full batch: call again), AF_DONE once
 * stopped and flushed. */
int af_pump_some(af_engine *engine, uint32_t max_packets, af_batch *out);
/* Live: ends flows whose idle or FIN/RST deadline is before now_ns (epoch ns) into out; AF_MORE
 * when more are due than out could take. */
int af_expire(af_engine *engine, uint64_t now_ns, af_batch *out);
uint64_t af_next_deadline(af_engine *engine);   /* epoch ns of the next expiry; 0: no flows */
int af_stop(af_engine *engine);      /* flows still active end as AF_END_STOP on next pumps */
/* The reading thread: it fills up to `slots` batches of `batch_capacity`
 * records; af_notify_fd becomes readable when one is ready; af_ready gives the oldest (AF_MORE;
 * AF_OK: none yet; AF_DONE: all delivered), af_release hands it back once copied. read_ahead
 * (files): a second thread reads and decodes ahead of it, on another core. */
int af_start(af_engine *engine, uint32_t batch_capacity, uint32_t slots, int read_ahead);
int af_notify_fd(af_engine *engine);
int af_ready(af_engine *engine, af_batch **batch);
void af_release(af_engine *engine);
int af_lookup(af_engine *engine, int ip_version, const uint8_t *ip_a, uint16_t port_a,
              const uint8_t *ip_b, uint16_t port_b, uint8_t protocol, uint16_t vlan_id,
              af_record *out);       /* 1 found, 0 absent */
uint32_t af_snapshot(af_engine *engine, uint32_t *cursor, af_record *out, uint32_t capacity);
void af_get_stats(af_engine *engine, af_stats *out);   /* workers: all of them (workers.h says how) */
/* workers: how many; and worker i's own counters (1), or 0 past the last. */
uint32_t af_workers(af_engine *engine);
int af_get_worker_stats(af_engine *engine, uint32_t index, af_stats *out);
/* The flow table's bytes for one more active flow of IP version 4 or 6, TCP (1) or not, with
 * headers and tunnel ids off and no meter: its slot, its side entries and its hash buckets at
 * their worst (two a flow, just after they doubled). Meters add their state (af_meter_info). */
uint32_t af_flow_table_bytes(int ip_version, int tcp);
/* The per-flow state bytes meter `index` (af_meter_info_of) reserves with this configuration
 * (its accounting mode, splt=N...); 0 for an unknown index or a meter without state. */
uint32_t af_meter_state_bytes(uint32_t index, const af_config *cfg);
const char *af_error_message(af_engine *engine);
void af_close(af_engine *engine);

/* read_frame's src_ip, dst_ip and bidirectional_id of n records as NUL-padded fixed-width
 * text (record_text.c); a field left empty is Python's to write (an IPv6 address whose first
 * 80 bits are zero, and a flow id with one). */
void af_records_text(const af_record *records, size_t n, char *src, char *dst, char *flow_id);
/* n NUL-padded texts of `width` bytes each (each ends at its first NUL, or after `width`) packed
 * back to back into `out` (room for n * width), offsets[0..n] where each starts and the last
 * ends: an Arrow string array's buffers, for read_frame's and read_arrow's text columns. Returns
 * 1 when every byte is ASCII, 0 when not (Python then decodes, replacing what is not UTF-8). */
int af_pack_text(const char *fixed, size_t n, size_t width, int64_t *offsets, char *out);
/* One numeric field (or array element) of rows that af_gather_columns copies out: its bytes at
 * `at` in each row, of type `kind`, to columns[column][i * step + elem] for row i (a column of
 * n values, step 1; or element `elem` of rows of `step` values). */
enum { AF_GATHER_U8, AF_GATHER_I8, AF_GATHER_U16, AF_GATHER_I16, AF_GATHER_U32, AF_GATHER_I32, AF_GATHER_64 };
typedef struct af_gather_field {
    uint32_t at, kind, column, step, elem;
} af_gather_field;
/* The fields of n rows of `stride` bytes as int64 columns (gather.c), sign- or zero-extended; a
 * 64-bit field's bits as they are (a uint64_t wraps as numpy's astype does, a double is viewed
 * back as one). Each column is written where its own pointer says (read_frame's: in place in
 * the column it grows), so columns need not be one buffer. */
void af_gather_columns(const void *rows, size_t n, size_t stride, const af_gather_field *fields,
                       size_t field_count, int64_t *const *columns);
/* The room enabled meters need in a batch (af_pump_some's) of `capacity` records: meter blocks,
 * and with reassembly stream data and chunks. af_batch_meters_free frees it. */
int af_batch_meters_alloc(af_engine *engine, af_batch *batch, uint32_t capacity);
void af_batch_meters_free(af_batch *batch);
/* Record meter-block bytes of this engine (0: no enabled meter has fields), and where meter
 * `index`'s block starts in it (-1: off). */
uint32_t af_meter_stride(af_engine *engine);
int32_t af_meter_offset(af_engine *engine, uint32_t index);
/* A copy of the timeline meter's counts: 1, or 0 when that meter is off. */
int af_get_timeline(af_engine *engine, af_timeline *out);
/* The j-th meter loaded from a library by this engine (NULL past the last); af_meter_offset's
 * index for it is af_meter_registry_size() + j. */
const af_meter_info *af_loaded_meter_info(af_engine *engine, uint32_t j);
uint32_t af_meter_registry_size(void);
/* reassemble: start emitting chunks (stream_events) with the data that comes next. */
void af_enable_chunks(af_engine *engine);
/* reassemble, before reading starts: search each TCP direction's in-order stream (a match may
 * span segments) and each datagram (UDP, other IP) with regexes (MULTILINE; flags: enum af_match_flag);
 * client patterns what the client sent, server patterns what the server sent. A flow's first
 * match becomes an AF_CHUNK_MATCH chunk (the stream_search meter, which this turns on; called
 * again, the new patterns replace the old). AF_ERR_UNSUPPORTED (message in error): this build or
 * library cannot run one of them (built without Vectorscan, a backreference...). */
int af_set_stream_patterns(af_engine *engine, const char *const *client, uint32_t client_count,
                           const char *const *server, uint32_t server_count, uint32_t flags, char *error,
                           uint32_t error_length);
/* Whether af_set_stream_patterns would accept these (AF_OK, or its error and message). */
int af_check_stream_patterns(const char *const *client, uint32_t client_count, const char *const *server,
                             uint32_t server_count, uint32_t flags, char *error, uint32_t error_length);
int af_stream_patterns_available(void);   /* 0: built without Vectorscan */

/* Application detection (dissect=1): "" when this build has nDPI (the libndpi it runs with checked
 * against the headers it was built with), else why not. */
const char *af_dissect_unavailable(void);
