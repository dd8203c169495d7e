/* A meter of your own, in C, loaded by aioflow from a shared library: a per-flow histogram of
 * packet sizes (IP total length), both directions together, in 8 bins:
 *   <64, 64-127, 128-255, 256-511, 512-1023, 1024-1279, 1280-1499, >=1500 bytes.
 *
 * Build and use (README, "Plugins"):
 *   cc -O2 -shared -fPIC -I"$(python -c 'import aioflow; print(aioflow.meter_include_dir())')" \
 *      -o libsize_histogram.so examples/size_histogram_meter.c
 *   aioflow.read_frame("capture.pcap", meters=["./libsize_histogram.so"])
 *       -> columns size_histogram_lt64 ... size_histogram_ge1500 */
#include <stddef.h>

#include "aioflow_meter.h"

#define BINS 8

typedef struct {
    uint32_t counts[BINS];
} histogram_state;

typedef struct {
    uint64_t counts[BINS];
} histogram_record;

static const uint32_t upper[BINS - 1] = {64, 128, 256, 512, 1024, 1280, 1500};

static void on_packet(void *state, const aioflow_packet *packet) {
    histogram_state *s = state;
    uint32_t bin = 0;
    while (bin < BINS - 1 && packet->ip_length >= upper[bin]) bin++;
    s->counts[bin]++;
}

static void on_end(void *state, void *record, int ending) {
    (void)ending;   /* aioflow zeroes the state after this call: a split starts a new histogram */
    const histogram_state *s = state;
    histogram_record *r = record;
    for (int i = 0; i < BINS; i++) r->counts[i] = s->counts[i];
}

#define FIELD(name, i) {name, "uint64_t", "packets", offsetof(histogram_record, counts) + (i) * sizeof(uint64_t), 0}
static const aioflow_meter_field fields[BINS] = {
    FIELD("lt64", 0), FIELD("lt128", 1), FIELD("lt256", 2), FIELD("lt512", 3),
    FIELD("lt1024", 4), FIELD("lt1280", 5), FIELD("lt1500", 6), FIELD("ge1500", 7),
};

static const aioflow_meter meter = {
    .abi_version = AIOFLOW_METER_ABI_VERSION,
    .state_size = sizeof(histogram_state),
    .record_size = sizeof(histogram_record),
    .field_count = BINS,
    .name = "size_histogram",
    .doc = "packets per IP-length bin, both directions",
    .fields = fields,
    .on_packet = on_packet,
    .on_end = on_end,
};

const aioflow_meter *aioflow_meter_entry(void) { return &meter; }
