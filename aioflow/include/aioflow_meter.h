/* aioflow's ABI for meters loaded from a shared library: FlowParser(..., meters=["./libm.so"]).
 *
 * A loaded meter is per-packet work in C, in aioflow's counting thread: it keeps a fixed-size
 * state per flow and writes fixed-size fields into each flow record, which Python reads as
 * flow.meter(name) and as read_frame()/read_arrow() columns <name>_<field>. Build it with
 *     cc -O2 -shared -fPIC -I"$(python -c 'import aioflow; print(aioflow.meter_include_dir())')" \
 *        -o libmymeter.so mymeter.c
 * and export one function, aioflow_meter_entry(), returning a static descriptor. aioflow checks
 * abi_version when it loads the library (ConfigError when it differs: rebuild against this
 * header). Rules, as for aioflow's own meters: no allocation, no locks, no I/O and no calls into
 * Python in the hooks; they run for every packet of every flow. */
#ifndef AIOFLOW_METER_ABI_H
#define AIOFLOW_METER_ABI_H
#include <stdint.h>

#define AIOFLOW_METER_ABI_VERSION 1u

/* One packet counted into a flow. */
typedef struct {
    uint64_t ts_ns;               /* packet time, epoch nanoseconds */
    uint32_t ip_length;           /* IP total length (IPv6: payload length + 40) */
    uint32_t payload_length;      /* transport payload bytes captured */
    uint8_t direction;            /* 0: src->dst (client to server), 1: dst->src */
    uint8_t protocol;             /* IP protocol */
    uint8_t ttl;                  /* IPv4 TTL or IPv6 hop limit */
    uint8_t tcp_flags;            /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80 */
    uint8_t ip_version;
    uint8_t _pad[3];
} aioflow_packet;

/* One field of the meter's record block: a column <meter>_<name>. */
typedef struct {
    const char *name;
    const char *ctype;            /* "uint64_t", "uint32_t", "uint16_t", "uint8_t", "int64_t", "double" */
    const char *unit;             /* "packets", "bytes", "ns", ... */
    uint32_t offset;              /* in the record block, naturally aligned */
    uint32_t _pad;
} aioflow_meter_field;

typedef struct {
    uint32_t abi_version;         /* AIOFLOW_METER_ABI_VERSION */
    uint32_t state_size;          /* per-flow state bytes: zeroed for a new flow and after each on_end */
    uint32_t record_size;         /* bytes of the record block (zeroed before on_end) */
    uint32_t field_count;
    const char *name;             /* [a-z0-9_], not a built-in meter's name */
    const char *doc;
    const aioflow_meter_field *fields;
    /* every packet counted into the flow, in order */
    void (*on_packet)(void *state, const aioflow_packet *packet);
    /* the flow's record is emitted: write the fields into record. ending: 1 the flow ends, 0 an
     * active-timeout split (the flow goes on, its state starts again from zero) */
    void (*on_end)(void *state, void *record, int ending);
} aioflow_meter;

/* The one symbol aioflow looks up in the library. */
const aioflow_meter *aioflow_meter_entry(void);

#endif
