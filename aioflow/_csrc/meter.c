/* The meter registry, meters loaded from shared libraries, and the dispatch to enabled meters
 * (meter.h). */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS under -std=c11 */
#include "meter.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../include/aioflow_meter.h"

#define AF_METER(name) extern const af_meter af_meter_##name;
#include "meters.h"
#undef AF_METER

#define AF_METER(name) &af_meter_##name,
static const af_meter *const registry[] = {
#include "meters.h"
};
#undef AF_METER

enum { REGISTRY_COUNT = sizeof registry / sizeof registry[0] };
_Static_assert(REGISTRY_COUNT <= AF_METERS_MAX, "af_config.meters has one bit per meter");

uint32_t af_meter_registry_count(void) { return REGISTRY_COUNT; }
const af_meter *af_meter_registry(uint32_t i) { return i < REGISTRY_COUNT ? registry[i] : NULL; }
const af_meter_info *af_meter_info_of(uint32_t i) { return i < REGISTRY_COUNT ? &registry[i]->info : NULL; }

/* max_flows blocks of `size` bytes, reserved; pages are backed as flows first use them. NULL: no memory. */
static uint8_t *reserve(const af_config *cfg, uint32_t size) {
    void *p = mmap(NULL, (size_t)cfg->max_flows * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Where m is among the enabled meters (s->count when it is off). */
static uint32_t enabled_at(const af_meter_set *s, const af_meter *m) {
    uint32_t k = 0;
    while (k < s->count && s->m[k] != m) k++;
    return k;
}

/* Meter k's hooks join the per-packet, prefetch and room lists. */
static void gather_hooks(af_meter_set *s, uint32_t k) {
    const af_meter *m = s->m[k];
    s->needs_payload |= m->needs_payload | m->needs_l3;
    s->needs_l3 |= m->needs_l3;
    s->decode_flags |= m->decode_flags;
    if (m->on_packet) s->packet[s->n_packet++] = (af_packet_hook){m->on_packet, s->ctx[k], s->state[k], s->state_size[k]};
    if (m->on_packet_brief)
        s->brief[s->n_brief++] = (af_brief_hook){m->on_packet_brief, s->state[k], s->cold[k], s->state_size[k], s->cold_size[k]};
    if (m->packet_by_name) s->statistics_ctx = s->ctx[k], s->statistics_state = s->state[k], s->statistics_size = s->state_size[k];
    s->n_per_packet = s->n_packet + s->n_brief + (s->statistics_state != NULL);
    if (s->state[k] && !m->no_prefetch && (m->on_packet || m->on_packet_brief || m->packet_by_name)) {
        uint32_t size = s->state_size[k];   /* the lines: af_hot_state */
        s->hot[s->n_hot++] = (af_hot_state){s->state[k], size, size % 64 ? size / 64 + 2 : size / 64};
    }
    if (m->prefetch) s->prefetch[s->n_prefetch++] = (af_prefetch_hook){m->prefetch, s->ctx[k]};
    if (m->prefetch_deep) s->deep[s->n_deep++] = (af_prefetch_hook){m->prefetch_deep, s->ctx[k]};
    if (m->batch_room) s->room[s->n_room++] = (af_room_hook){m->batch_room, s->ctx[k]};
}

/* A meter loaded from a shared library: the af_meter the set calls, whose hooks pass the calls on
 * to the library's aioflow_meter (ctx) in the public ABI's terms. */
typedef struct af_loaded_meter {
    af_meter meter;
    const aioflow_meter *lib;
    void *handle;
    af_meter_field *fields;
} af_loaded_meter;

static void loaded_on_packet(void *ctx, void *state, const af_meter_packet *mp) {
    const af_loaded_meter *lm = ctx;
    const af_packet *p = mp->p;
    aioflow_packet pk = {mp->ts, p->ip_length, p->payload_len, (uint8_t)mp->direction, p->protocol, p->ttl,
                         p->tcp_flags, p->ip_version, {0, 0, 0}};
    lm->lib->on_packet(state, &pk);
}

static void loaded_on_end(void *ctx, void *state, const af_meter_end *me) {
    const af_loaded_meter *lm = ctx;
    if (lm->lib->on_end) lm->lib->on_end(state, me->block, me->ending);
    if (state) memset(state, 0, lm->meter.state_size);   /* the next record starts from zero */
}

static void loaded_free(af_loaded_meter *lm) {
    if (lm->handle) dlclose(lm->handle);
    free(lm->fields);
    free(lm);
}

/* Whether the library's field list fits its record block and the types Python reads. */
static int fields_valid(const aioflow_meter *d) {
    static const char *const types[][2] = {{"uint64_t", "8"}, {"int64_t", "8"}, {"double", "8"}, {"uint32_t", "4"},
                                           {"uint16_t", "2"}, {"uint8_t", "1"}};
    if (d->field_count && !d->fields) return 0;
    for (uint32_t f = 0; f < d->field_count; f++) {
        const aioflow_meter_field *x = &d->fields[f];
        uint32_t size = 0;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            if (x->ctype && !strcmp(x->ctype, types[t][0])) size = (uint32_t)(types[t][1][0] - '0');
        if (!x->name || !x->unit || !size || x->offset % size || x->offset + size > d->record_size) return 0;
    }
    return 1;
}

/* Loads the meter of the library at path: NULL with the reason in error when it cannot. */
static af_loaded_meter *load_meter(const char *path, char *error, size_t n) {
    af_loaded_meter *lm = calloc(1, sizeof *lm);
    if (!lm) {
        snprintf(error, n, "out of memory loading the meter %s", path);
        return NULL;
    }
    if (!(lm->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(error, n, "cannot load the meter library %s: %s", path, dlerror());
        loaded_free(lm);
        return NULL;
    }
    const aioflow_meter *(*entry)(void);
    *(void **)&entry = dlsym(lm->handle, "aioflow_meter_entry");
    const aioflow_meter *d = entry ? entry() : NULL;
    const char *why = !entry ? "it exports no aioflow_meter_entry()"
                      : !d   ? "its aioflow_meter_entry() returned NULL"
                      : d->abi_version != AIOFLOW_METER_ABI_VERSION ? "meter ABI version mismatch"
                      : !d->name || !d->name[0] || !d->on_packet ? "its descriptor lacks a name or on_packet"
                      : !fields_valid(d) ? "a field has an unknown type or lies outside record_size" : NULL;
    if (why) {
        if (d && d->abi_version != AIOFLOW_METER_ABI_VERSION)
            snprintf(error, n, "meter library %s: %s: built for ABI %u, this aioflow has ABI %u (rebuild it "
                     "against aioflow.meter_include_dir())", path, why, d->abi_version, AIOFLOW_METER_ABI_VERSION);
        else snprintf(error, n, "meter library %s: %s (see aioflow_meter.h)", path, why);
        loaded_free(lm);
        return NULL;
    }
    if (d->field_count && !(lm->fields = calloc(d->field_count, sizeof *lm->fields))) {
        snprintf(error, n, "out of memory loading the meter %s", path);
        loaded_free(lm);
        return NULL;
    }
    for (uint32_t f = 0; f < d->field_count; f++)
        lm->fields[f] = (af_meter_field){d->fields[f].name, d->fields[f].ctype, d->fields[f].unit, d->fields[f].offset, 0};
    lm->lib = d;
    lm->meter = (af_meter){.info = {d->name, d->doc ? d->doc : "", NULL, lm->fields, d->field_count, d->record_size},
                           .state_size = d->state_size, .on_packet = loaded_on_packet, .on_end = loaded_on_end};
    return lm;
}

/* Turns on meter m (registry index i, or registry count + j for the j-th loaded one) with context
 * ctx when it has no open hook: its state array, record block and hooks. */
static int add_meter(af_meter_set *s, const af_meter *m, uint32_t i, void *ctx, char *error, size_t error_length) {
    uint32_t k = s->count++;
    s->m[k] = m;
    s->index[k] = i;
    s->ctx[k] = ctx;
    if (m->open && !(s->ctx[k] = m->open(s->cfg, s->stats))) {
        snprintf(error, error_length, "out of memory for the %s meter", m->info.name);
        s->count--;
        return AF_ERR_NOMEM;
    }
    s->state_size[k] = m->state_size_for ? m->state_size_for(s->cfg) : m->state_size;
    s->cold_size[k] = m->cold_size;
    if ((s->state_size[k] && !(s->state[k] = reserve(s->cfg, s->state_size[k]))) ||
        (s->cold_size[k] && !(s->cold[k] = reserve(s->cfg, s->cold_size[k])))) {
        snprintf(error, error_length, "out of memory for the %s meter's flow states", m->info.name);
        return AF_ERR_NOMEM;
    }
    if (m->info.record_size) {   /* 8-aligned blocks, so every field is naturally aligned */
        s->offset[i] = (int32_t)s->stride;
        s->stride += (m->info.record_size + 7u) & ~7u;
    }
    gather_hooks(s, k);
    return AF_OK;
}

/* The meters of cfg->meter_libraries, after the built-in ones. */
static int load_meters(af_meter_set *s, char *error, size_t error_length) {
    const af_config *cfg = s->cfg;
    if (REGISTRY_COUNT + cfg->meter_library_count > AF_METERS_MAX) {
        snprintf(error, error_length, "too many meter libraries: at most %u", (unsigned)(AF_METERS_MAX - REGISTRY_COUNT));
        return AF_ERR_CONFIG;
    }
    for (uint32_t j = 0; j < cfg->meter_library_count; j++) {
        af_loaded_meter *lm = load_meter(cfg->meter_libraries[j], error, error_length);
        if (!lm) return AF_ERR_CONFIG;
        for (uint32_t i = 0; i < REGISTRY_COUNT + s->loaded_count; i++)
            if (!strcmp(i < REGISTRY_COUNT ? registry[i]->info.name : s->loaded[i - REGISTRY_COUNT]->meter.info.name,
                        lm->meter.info.name)) {
                snprintf(error, error_length, "meter library %s: a meter named %s is already there",
                         cfg->meter_libraries[j], lm->meter.info.name);
                loaded_free(lm);
                return AF_ERR_CONFIG;
            }
        s->loaded[s->loaded_count++] = lm;
        int code = add_meter(s, &lm->meter, REGISTRY_COUNT + j, lm, error, error_length);
        if (code != AF_OK) return code;
    }
    return AF_OK;
}

const af_meter_info *af_meters_loaded_info(const af_meter_set *s, uint32_t j) {
    return j < s->loaded_count ? &s->loaded[j]->meter.info : NULL;
}

int af_meters_open(af_meter_set *s, const af_config *cfg, af_stats *stats, char *error, size_t error_length) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->stats = stats;
    for (uint32_t i = 0; i <= AF_METERS_MAX; i++) s->offset[i] = -1;
    if (cfg->meters >> REGISTRY_COUNT) {
        snprintf(error, error_length, "unknown meter bit in 0x%x (this build has %u meters)", cfg->meters,
                 (unsigned)REGISTRY_COUNT);
        return AF_ERR_CONFIG;
    }
    int code = AF_OK;
    for (uint32_t i = 0; i < REGISTRY_COUNT && code == AF_OK; i++) {
        const af_meter *m = registry[i];
        if (m->wanted ? m->wanted(cfg) : (int)((cfg->meters >> i) & 1)) code = add_meter(s, m, i, NULL, error, error_length);
    }
    if (code == AF_OK) code = load_meters(s, error, error_length);
    if (code != AF_OK) af_meters_close(s);
    return code;
}

int af_meters_enable(af_meter_set *s, const af_meter *m, char *error, size_t error_length) {
    if (enabled_at(s, m) < s->count) return AF_OK;   /* on already (its ctx may be NULL: no open hook) */
    uint32_t i = 0;
    while (i < REGISTRY_COUNT && registry[i] != m) i++;
    /* batches, flow states and payload copies were sized at open: a late meter needs none */
    if (i == REGISTRY_COUNT || s->count == AF_METERS_MAX || m->info.record_size || m->state_size ||
        m->state_size_for || m->cold_size || m->needs_payload || m->needs_l3 || m->decode_flags || m->batch_alloc || m->batch_room) {
        snprintf(error, error_length, "the %s meter cannot be turned on after open", m->info.name);
        return AF_ERR_CONFIG;
    }
    void *ctx = NULL;
    if (m->open && !(ctx = m->open(s->cfg, s->stats))) {
        snprintf(error, error_length, "out of memory for the %s meter", m->info.name);
        return AF_ERR_NOMEM;
    }
    uint32_t k = s->count++;
    s->m[k] = m;
    s->ctx[k] = ctx;
    s->state[k] = s->cold[k] = NULL;
    s->state_size[k] = s->cold_size[k] = 0;
    s->index[k] = i;
    gather_hooks(s, k);
    return AF_OK;
}

void af_meters_close(af_meter_set *s) {
    for (uint32_t k = 0; k < s->count; k++) {
        if (s->m[k]->close) s->m[k]->close(s->ctx[k]);
        if (s->state[k]) munmap(s->state[k], (size_t)s->cfg->max_flows * s->state_size[k]);
        if (s->cold[k]) munmap(s->cold[k], (size_t)s->cfg->max_flows * s->cold_size[k]);
    }
    s->count = 0;
    for (uint32_t j = 0; j < s->loaded_count; j++) loaded_free(s->loaded[j]);
    s->loaded_count = 0;
}

void *af_meters_ctx(const af_meter_set *s, const af_meter *m) {
    uint32_t k = enabled_at(s, m);
    return k < s->count ? s->ctx[k] : NULL;
}

static inline void *state_of(const af_meter_set *s, uint32_t k, uint32_t slot) {
    return s->state[k] ? s->state[k] + (size_t)(slot - 1) * s->state_size[k] : NULL;
}

static inline void *cold_of(const af_meter_set *s, uint32_t k, uint32_t slot) {
    return s->cold[k] ? s->cold[k] + (size_t)(slot - 1) * s->cold_size[k] : NULL;
}

void af_meters_new(af_meter_set *s, uint32_t slot, const af_packet *first, int sender) {
    for (uint32_t k = 0; k < s->count; k++) {
        void *st = state_of(s, k, slot);
        if (st) memset(st, 0, s->state_size[k]);
        if (s->cold[k]) memset(cold_of(s, k, slot), 0, s->cold_size[k]);
        if (s->m[k]->on_new) s->m[k]->on_new(s->ctx[k], st, slot, first, sender);
    }
}

void af_meters_end(af_meter_set *s, const af_table *t, uint32_t slot, int ending, af_batch *out, uint32_t record) {
    af_meter_end me = {t, slot, ending, out, record, NULL, NULL};
    for (uint32_t k = 0; k < s->count; k++) {
        const af_meter *m = s->m[k];
        int32_t at = s->offset[s->index[k]];
        me.block = at >= 0 ? out->meter_data + (size_t)record * out->meter_stride + (uint32_t)at : NULL;
        if (me.block) memset(me.block, 0, m->info.record_size);
        me.cold = cold_of(s, k, slot);
        if (m->on_end) m->on_end(s->ctx[k], state_of(s, k, slot), &me);
    }
}

void af_meters_finish_batch(af_meter_set *s, const af_table *t, af_batch *b) {
    for (uint32_t k = 0; k < s->count; k++)
        if (s->m[k]->batch_finish) s->m[k]->batch_finish(s->ctx[k], t, b);
}

int af_meters_batch_alloc(const af_meter_set *s, const af_config *cfg, af_batch *b, uint32_t capacity) {
    b->meter_stride = s->stride;
    if (s->stride && !(b->meter_data = calloc(capacity, s->stride))) return AF_ERR_NOMEM;
    for (uint32_t k = 0; k < s->count; k++)
        if (s->m[k]->batch_alloc && s->m[k]->batch_alloc(cfg, b, capacity) != AF_OK) {
            af_meters_batch_free(b);
            return AF_ERR_NOMEM;
        }
    return AF_OK;
}

void af_meters_batch_free(af_batch *b) {
    for (uint32_t i = 0; i < REGISTRY_COUNT; i++)
        if (registry[i]->batch_free) registry[i]->batch_free(b);
    free(b->meter_data);
    b->meter_data = NULL;
}

int af_meters_batch_ready(const af_meter_set *s, const af_batch *b) {
    if (s->stride && (!b->meter_data || b->meter_stride != s->stride)) return 0;
    for (uint32_t k = 0; k < s->count; k++)
        if (s->m[k]->batch_ready && !s->m[k]->batch_ready(b)) return 0;
    return 1;
}

void af_meters_prefault(af_meter_set *s, af_batch *b, uint64_t usual) {
    for (uint32_t k = 0; k < s->count; k++)
        if (s->m[k]->prefault) s->m[k]->prefault(s->ctx[k], b, usual);
}

void af_meters_stop(af_meter_set *s) {
    for (uint32_t k = 0; k < s->count; k++)
        if (s->m[k]->stop) s->m[k]->stop(s->ctx[k]);
}
