/* capgen.c - deterministic generator of large synthetic Ethernet pcap captures.
 *
 * Built and driven by make_capture.py (cc -O2 capgen.c -o capgen -lm). Written in C because
 * 10M+ packets through a per-packet Python loop take far too long; here it is seconds.
 *
 * Model: F flows over a span of S seconds; each flow gets a kind (TCP with FIN teardown, TCP
 * ended by RST, TCP left open, TCP refused (SYN, RST), UDP request/response), a start time drawn
 * uniformly over the span, a packet count (a fixed minimum per kind plus a heavy-tailed share of
 * the rest, so the total is exactly P), and packet times. All packet events (time, flow) are
 * sorted, then every packet is built from its flow's running state (sequence numbers, request/
 * response phase) and written. Same arguments, same bytes: every random draw comes from
 * splitmix64/xoshiro streams seeded by (seed, flow, purpose), never from the emission order.
 *
 * Output: the pcap file, and on stdout one JSON object with counts and the flow concurrency
 * that a meter with idle timeout 120 s and FIN/RST timeout 10 s (aioflow's defaults) would see.
 *
 * Optional 9th argument, a payload-script file (_payloads.py writes it): each flow that is not
 * refused then gets a script, drawn by weight among those of its protocol from a stream of its
 * own (so the kinds, sizes and times of the flows do not change), which sets its server port and
 * the direction and bytes of its first data packets; later ones carry random bytes as before.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_FIN, K_RST, K_OPEN, K_REFUSED, K_UDP };

typedef struct {
    uint64_t rng;      /* per-flow content stream, advanced as packets are emitted */
    uint32_t npk;      /* packets of the flow */
    uint32_t sent;     /* packets emitted so far */
    uint32_t host;     /* client host number */
    uint32_t server;   /* server number */
    uint32_t seq_c, seq_s;
    uint32_t resp_left;/* server segments left in the current response */
    uint16_t cport, sport;
    uint16_t ipid_c, ipid_s;
    uint32_t flabel_c, flabel_s;
    uint8_t kind, v6, seg_since_ack, fin_by_server, rst_by_server, ttl_c, ttl_s, pad;
    int32_t script;    /* payload script (-1: none) */
    uint32_t script_at;/* its packets emitted so far */
} flow_t;

/* Payload scripts (see the header comment and _payloads.py's FORMAT). */
typedef struct { uint8_t dir; uint16_t len; const uint8_t *data; } spkt_t;
typedef struct { uint8_t proto; uint8_t n; uint16_t port; double weight; spkt_t *pk; } script_t;
static script_t *scripts;
static uint32_t nscripts;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t seed_for(uint64_t seed, uint64_t flow, uint64_t purpose) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ (flow << 8) ^ purpose;
    splitmix(&s);
    return s;
}
static double unif(uint64_t *s) { return (splitmix(s) >> 11) * (1.0 / 9007199254740992.0); }
static uint32_t below(uint64_t *s, uint32_t n) { return (uint32_t)((splitmix(s) >> 32) * n >> 32); }
static double normal(uint64_t *s) {
    double u1 = unif(s), u2 = unif(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static double expo(uint64_t *s) { return -log(1.0 - unif(s)); }

/* ---- sizes and templates ---- */
#define ETH 14
#define MSS4 1460
#define MSS6 1440
static uint8_t junk[1 << 16]; /* payload bytes are slices of this, content is irrelevant */

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n) {
    uint64_t s = sum;
    while (n >= 4) { uint32_t w; memcpy(&w, p, 4); s += w; p += 4; n -= 4; }
    if (n >= 2) { uint16_t w; memcpy(&w, p, 2); s += w; p += 2; n -= 2; }
    if (n) { uint16_t w = 0; memcpy(&w, p, 1); s += w; }
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint32_t)s;
}
static uint16_t csum_fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}
/* the sum above runs on native-order words, so its result is stored in native order too */
static void put_csum(uint8_t *p, uint16_t c) { memcpy(p, &c, 2); }
static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

/* Addresses: clients 10.0.0.0/8 (v4) or 2001:db8:c::/48 (v6) numbered by host; servers
 * 198.18.0.0/15 or 2001:db8:5::/48 numbered by server. */
static void addr4(uint8_t *p, int server, uint32_t n) {
    uint32_t a = server ? (0xC6120000u + 1 + n) : (0x0A000000u + 1 + n);
    put32(p, a);
}
static void addr6(uint8_t *p, int server, uint32_t n) {
    static const uint8_t pfx[2][6] = {{0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0c},
                                      {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x05}};
    memcpy(p, pfx[server], 6);
    memset(p + 6, 0, 6);
    put32(p + 12, n + 1);
}

/* Build one frame into out; returns its length. dir 0 = client->server. */
static size_t build_data(uint8_t *out, flow_t *f, int dir, uint8_t flags, uint32_t payload, int syn_opts,
                         const uint8_t *data) {
    int tcp = f->kind != K_UDP;
    uint8_t *ip = out + ETH;
    size_t iphl = f->v6 ? 40 : 20;
    uint8_t *l4 = ip + iphl;
    size_t l4hl = tcp ? (syn_opts ? 40 : 20) : 8;
    size_t l4len = l4hl + payload;
    /* Ethernet: client MACs 02:00:<host>, the gateway 02:ff:00:00:00:01 */
    uint8_t cmac[6] = {0x02, 0x00, (uint8_t)(f->host >> 24), (uint8_t)(f->host >> 16),
                       (uint8_t)(f->host >> 8), (uint8_t)f->host};
    static const uint8_t gw[6] = {0x02, 0xff, 0, 0, 0, 1};
    memcpy(out, dir ? cmac : gw, 6);
    memcpy(out + 6, dir ? gw : cmac, 6);
    put16(out + 12, f->v6 ? 0x86DD : 0x0800);

    uint8_t *src, *dst;
    if (f->v6) {
        uint32_t fl = dir ? f->flabel_s : f->flabel_c;
        put32(ip, 0x60000000u | fl);
        put16(ip + 4, (uint16_t)l4len);
        ip[6] = tcp ? 6 : 17;
        ip[7] = dir ? f->ttl_s : f->ttl_c;
        src = ip + 8; dst = ip + 24;
        addr6(dir ? dst : src, 0, f->host);
        addr6(dir ? src : dst, 1, f->server);
    } else {
        ip[0] = 0x45; ip[1] = 0;
        put16(ip + 2, (uint16_t)(20 + l4len));
        put16(ip + 4, dir ? f->ipid_s++ : f->ipid_c++);
        put16(ip + 6, 0x4000); /* DF */
        ip[8] = dir ? f->ttl_s : f->ttl_c;
        ip[9] = tcp ? 6 : 17;
        put16(ip + 10, 0);
        src = ip + 12; dst = ip + 16;
        addr4(dir ? dst : src, 0, f->host);
        addr4(dir ? src : dst, 1, f->server);
        put_csum(ip + 10, csum_fold(csum_add(0, ip, 20)));
    }
    uint16_t sp = dir ? f->sport : f->cport, dp = dir ? f->cport : f->sport;
    put16(l4, sp); put16(l4 + 2, dp);
    if (tcp) {
        uint32_t seq = dir ? f->seq_s : f->seq_c, ack = dir ? f->seq_c : f->seq_s;
        put32(l4 + 4, seq);
        put32(l4 + 8, (flags & 0x10) ? ack : 0);
        l4[12] = (uint8_t)((l4hl / 4) << 4);
        l4[13] = flags;
        put16(l4 + 14, dir ? 65160 : 64240);
        put16(l4 + 16, 0); put16(l4 + 18, 0);
        if (syn_opts) {
            /* MSS, SACK permitted, timestamps, NOP, window scale: a Linux SYN */
            uint8_t *o = l4 + 20;
            o[0] = 2; o[1] = 4; put16(o + 2, f->v6 ? MSS6 : MSS4);
            o[4] = 4; o[5] = 2;
            o[6] = 8; o[7] = 10; put32(o + 8, (uint32_t)splitmix(&f->rng)); put32(o + 12, 0);
            o[16] = 1; o[17] = 3; o[18] = 3; o[19] = 7;
        }
        /* SYN and FIN consume one sequence number */
        uint32_t adv = payload + ((flags & 0x02) ? 1 : 0) + ((flags & 0x01) ? 1 : 0);
        if (dir) f->seq_s += adv; else f->seq_c += adv;
    } else {
        put16(l4 + 4, (uint16_t)l4len);
        put16(l4 + 6, 0);
    }
    memcpy(l4 + l4hl, data ? data : junk + (splitmix(&f->rng) & 0x7fff), payload);
    /* L4 checksum over the pseudo-header */
    uint32_t s = 0;
    if (f->v6) {
        s = csum_add(s, src, 16); s = csum_add(s, dst, 16);
        uint8_t ph[8] = {0, 0, (uint8_t)(l4len >> 8), (uint8_t)l4len, 0, 0, 0, (uint8_t)(tcp ? 6 : 17)};
        s = csum_add(s, ph, 8);
    } else {
        s = csum_add(s, src, 4); s = csum_add(s, dst, 4);
        uint8_t ph[4] = {0, (uint8_t)(tcp ? 6 : 17), (uint8_t)(l4len >> 8), (uint8_t)l4len};
        s = csum_add(s, ph, 4);
    }
    s = csum_add(s, l4, l4len);
    uint16_t c = csum_fold(s);
    if (!tcp && c == 0) c = 0xffff;
    put_csum(l4 + (tcp ? 16 : 6), c);
    return ETH + iphl + l4len;
}

static size_t build(uint8_t *out, flow_t *f, int dir, uint8_t flags, uint32_t payload, int syn_opts) {
    return build_data(out, f, dir, flags, payload, syn_opts, NULL);
}

/* The flow's next scripted payload packet, or NULL when its script (if any) is used up. */
static const spkt_t *script_next(flow_t *f) {
    if (f->script < 0 || f->script_at >= scripts[f->script].n) return NULL;
    return &scripts[f->script].pk[f->script_at++];
}

/* Decide and build packet number f->sent of flow f. */
static size_t next_packet(uint8_t *out, flow_t *f) {
    uint32_t i = f->sent++, n = f->npk;
    uint32_t mss = f->v6 ? MSS6 : MSS4;
    uint64_t *r = &f->rng;
    if (f->kind == K_UDP) {
        const spkt_t *sp = script_next(f);
        if (sp) return build_data(out, f, sp->dir, 0, sp->len, 0, sp->data);
        /* alternate request (client) and response (server); sizes by service */
        int dir = (int)(i & 1);
        uint32_t len;
        switch (f->sport) {
        case 53: len = dir ? 60 + below(r, 400) : 28 + below(r, 40); break;
        case 123: len = 48; break;
        case 443: len = dir ? 1200 + below(r, 50) : (i < 2 ? 1200 + below(r, 50) : 30 + below(r, 200)); break;
        default: len = dir ? 20 + below(r, 1200) : 20 + below(r, 300); break;
        }
        return build(out, f, dir, 0, len, 0);
    }
    if (f->kind == K_REFUSED)
        return i == 0 ? build(out, f, 0, 0x02, 0, 1) : build(out, f, 1, 0x14, 0, 0);
    if (i == 0) return build(out, f, 0, 0x02, 0, 1);           /* SYN */
    if (i == 1) return build(out, f, 1, 0x12, 0, 1);           /* SYN+ACK */
    if (i == 2) return build(out, f, 0, 0x10, 0, 0);           /* ACK */
    uint32_t tail = f->kind == K_FIN ? 4 : f->kind == K_RST ? 1 : 0;
    if (i >= n - tail) {
        uint32_t k = i - (n - tail);
        if (f->kind == K_RST) return build(out, f, f->rst_by_server, 0x14, 0, 0);
        /* FIN+ACK, ACK, FIN+ACK, ACK; the closer goes first */
        int closer = f->fin_by_server, other = !closer;
        switch (k) {
        case 0: return build(out, f, closer, 0x11, 0, 0);
        case 1: return build(out, f, other, 0x10, 0, 0);
        case 2: return build(out, f, other, 0x11, 0, 0);
        default: return build(out, f, closer, 0x10, 0, 0);
        }
    }
    /* data phase: the script's packets first, then client request, server answers in MSS
     * segments, client ACKs every second one */
    const spkt_t *sp = script_next(f);
    if (sp) return build_data(out, f, sp->dir, 0x18, sp->len, 0, sp->data);
    if (f->resp_left == 0) {
        uint32_t g = 1 + (uint32_t)(expo(r) * 6.0);
        f->resp_left = g > 200 ? 200 : g;
        f->seg_since_ack = 0;
        return build(out, f, 0, 0x18, 40 + below(r, 900), 0);
    }
    if (f->seg_since_ack >= 2) {
        f->seg_since_ack = 0;
        return build(out, f, 0, 0x10, 0, 0);
    }
    f->seg_since_ack++;
    if (--f->resp_left == 0) return build(out, f, 1, 0x18, 1 + below(r, mss), 0);
    return build(out, f, 1, 0x10, mss, 0);
}

/* LSD radix sort of 64-bit keys on bits [lo, hi), 16 bits a pass. Stable, so keys equal on those
 * bits keep their input order. */
static void radix_sort(uint64_t *a, uint64_t *tmp, size_t n, int lo, int hi) {
    size_t *cnt = calloc(65536, sizeof *cnt);
    int passes = 0;
    for (int sh = lo; sh < hi; sh += 16, passes++) {
        memset(cnt, 0, 65536 * sizeof *cnt);
        for (size_t i = 0; i < n; i++) cnt[(a[i] >> sh) & 0xffff]++;
        size_t sum = 0;
        for (size_t d = 0; d < 65536; d++) { size_t c = cnt[d]; cnt[d] = sum; sum += c; }
        for (size_t i = 0; i < n; i++) tmp[cnt[(a[i] >> sh) & 0xffff]++] = a[i];
        uint64_t *t = a; a = tmp; tmp = t;
    }
    /* an odd number of passes leaves the result in the scratch buffer */
    if (passes & 1) memcpy(tmp, a, n * sizeof *a);
    free(cnt);
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Reads the payload-script file into scripts/nscripts; 0 on a malformed file. */
static int load_scripts(const char *path) {
    FILE *in = fopen(path, "rb");
    if (!in) { perror(path); return 0; }
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, in) != (size_t)size) { fclose(in); return 0; }
    fclose(in);
    const uint8_t *p = buf + 12, *end = buf + size;
    if (size < 12 || memcmp(buf, "AFPAYLD1", 8)) return 0;
    memcpy(&nscripts, buf + 8, 4);
    scripts = calloc(nscripts ? nscripts : 1, sizeof *scripts);
    for (uint32_t k = 0; k < nscripts; k++) {
        script_t *s = &scripts[k];
        if (end - p < 12) return 0;
        s->proto = p[0]; s->n = p[1]; memcpy(&s->port, p + 2, 2); memcpy(&s->weight, p + 4, 8);
        p += 12;
        s->pk = calloc(s->n ? s->n : 1, sizeof *s->pk);
        for (uint32_t j = 0; j < s->n; j++) {
            if (end - p < 3) return 0;
            s->pk[j].dir = p[0]; memcpy(&s->pk[j].len, p + 1, 2);
            p += 3;
            if (end - p < s->pk[j].len || s->pk[j].len > MSS4) return 0;
            s->pk[j].data = p;
            p += s->pk[j].len;
        }
    }
    return p == end;   /* buf stays: the scripts point into it */
}

/* Cumulative weights of one protocol's scripts, for drawing one by binary search. */
typedef struct { uint32_t n; uint32_t *index; double *cum; } picker_t;

static picker_t picker(uint8_t proto) {
    picker_t pk = {0, malloc((nscripts + 1) * sizeof(uint32_t)), malloc((nscripts + 1) * sizeof(double))};
    double total = 0;
    for (uint32_t k = 0; k < nscripts; k++) {
        if (scripts[k].proto != proto || scripts[k].weight <= 0) continue;
        total += scripts[k].weight;
        pk.index[pk.n] = k;
        pk.cum[pk.n++] = total;
    }
    return pk;
}

/* A script drawn by weight, or -1 when the protocol has none. */
static int32_t pick_script(uint64_t *r, const picker_t *pk) {
    if (!pk->n) return -1;
    double u = unif(r) * pk->cum[pk->n - 1];
    uint32_t lo = 0, hi = pk->n - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (pk->cum[mid] > u) hi = mid; else lo = mid + 1;
    }
    return (int32_t)pk->index[lo];
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: capgen OUT PACKETS FLOWS SEED IPV6_SHARE UDP_SHARE SPAN_SECONDS [SCRIPTS]\n");
        return 2;
    }
    const char *out_path = argv[1];
    uint64_t P = strtoull(argv[2], 0, 10), F = strtoull(argv[3], 0, 10), seed = strtoull(argv[4], 0, 10);
    double v6share = atof(argv[5]), udpshare = atof(argv[6]), span = atof(argv[7]);
    if (F == 0 || F > 0xffffffffull || span <= 1 || span > 4000) {
        fprintf(stderr, "capgen: flows must be 1..2^32-1 and span 1..4000 s\n");
        return 2;
    }
    const double idle_to = 120.0, fin_to = 10.0; /* aioflow defaults, for the concurrency figures */
    if (argc > 8 && !load_scripts(argv[8])) {
        fprintf(stderr, "capgen: %s is not a payload-script file\n", argv[8]);
        return 2;
    }
    picker_t pick_tcp = picker(6), pick_udp = picker(17);

    uint64_t js = seed_for(seed, 0xffffffffull, 7);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)splitmix(&js);

    flow_t *fl = calloc(F, sizeof *fl);
    double *w = malloc(F * sizeof *w);
    if (!fl || !w) { fprintf(stderr, "capgen: out of memory\n"); return 1; }

    /* 1. kinds, endpoints and minimum packet counts; weights for the rest */
    static const uint16_t tcp_ports[] = {443, 443, 443, 443, 443, 443, 80, 80, 80, 22, 25, 993, 8080, 3389, 5223, 8443};
    static const uint16_t udp_ports[] = {53, 53, 53, 53, 53, 53, 53, 443, 443, 123, 5353, 1900, 3478, 51820};
    uint64_t minsum = 0;
    uint32_t hosts = (uint32_t)(F / 16 + 1), servers = (uint32_t)(F / 100 + 50);
    for (uint64_t i = 0; i < F; i++) {
        uint64_t r = seed_for(seed, i, 1);
        flow_t *f = &fl[i];
        f->rng = seed_for(seed, i, 2);
        f->v6 = unif(&r) < v6share;
        double u = unif(&r);
        if (u < udpshare) f->kind = K_UDP;
        else {
            double t = unif(&r);
            f->kind = t < 0.80 ? K_FIN : t < 0.90 ? K_RST : t < 0.97 ? K_OPEN : K_REFUSED;
        }
        /* (host, client port) is unique per flow, so no two flows share a key */
        f->host = (uint32_t)(i / 16) % hosts;
        f->cport = (uint16_t)(32768 + (i % 16) * 1900 + below(&r, 1900));
        f->server = (uint32_t)(pow(unif(&r), 2.0) * servers); /* some servers are popular */
        f->sport = f->kind == K_UDP ? udp_ports[below(&r, sizeof udp_ports / 2)]
                                    : tcp_ports[below(&r, sizeof tcp_ports / 2)];
        f->seq_c = (uint32_t)splitmix(&r); f->seq_s = (uint32_t)splitmix(&r);
        f->ipid_c = (uint16_t)splitmix(&r); f->ipid_s = (uint16_t)splitmix(&r);
        f->flabel_c = (uint32_t)splitmix(&r) & 0xfffff; f->flabel_s = (uint32_t)splitmix(&r) & 0xfffff;
        f->ttl_c = (uint8_t)(64 - below(&r, 3)); f->ttl_s = (uint8_t)(64 - 5 - below(&r, 20));
        f->fin_by_server = unif(&r) < 0.3;
        f->rst_by_server = unif(&r) < 0.5;
        f->script = -1;
        if (nscripts && f->kind != K_REFUSED) {
            uint64_t rs = seed_for(seed, i, 4);
            f->script = pick_script(&rs, f->kind == K_UDP ? &pick_udp : &pick_tcp);
            if (f->script >= 0) f->sport = scripts[f->script].port;
        }
        uint32_t mn;
        double pareto = pow(1.0 - unif(&r), -1.0 / 1.2); /* heavy tail: few elephants, many mice */
        if (pareto > 5000) pareto = 5000;
        switch (f->kind) {
        case K_FIN: mn = 7; w[i] = pareto; break;
        case K_RST: mn = 4; w[i] = pareto; break;
        case K_OPEN: mn = 3; w[i] = pareto; break;
        case K_REFUSED: mn = 2; w[i] = 0; break;
        default:
            /* DNS/NTP mostly one exchange; QUIC and the rest longer */
            mn = unif(&r) < 0.05 ? 1 : 2;
            w[i] = (f->sport == 53 || f->sport == 123) ? 0.02 * pareto : 0.5 * pareto;
        }
        f->npk = mn;
        minsum += mn;
    }
    if (minsum > P) {
        fprintf(stderr, "capgen: %llu flows need at least %llu packets; ask for more packets or fewer flows\n",
                (unsigned long long)F, (unsigned long long)minsum);
        return 2;
    }
    {
        /* spread the remaining packets in proportion to the weights; the rounding rest goes to
         * flows in index order, which is as random as any since kinds are drawn per flow */
        double W = 0;
        for (uint64_t i = 0; i < F; i++) W += w[i];
        uint64_t rest = P - minsum, given = 0;
        if (W > 0) {
            for (uint64_t i = 0; i < F; i++) {
                uint64_t k = (uint64_t)floor((double)rest * w[i] / W);
                fl[i].npk += (uint32_t)k;
                given += k;
            }
            for (uint64_t i = 0; given < rest; i = (i + 1) % F)
                if (w[i] > 0) { fl[i].npk++; given++; }
        } else if (rest) {
            fprintf(stderr, "capgen: no flow can take extra packets\n");
            return 2;
        }
    }
    free(w);

    /* 2. times: one 64-bit event per packet, (microsecond offset << 32) | flow */
    uint64_t *ev = malloc(P * sizeof *ev), *tmp = malloc(P * sizeof *tmp);
    /* per-flow [first, last] for the concurrency figures */
    uint64_t *life = malloc(2 * F * sizeof *life);
    if (!ev || !tmp || !life) { fprintf(stderr, "capgen: out of memory\n"); return 1; }
    uint64_t e = 0, idle_splits = 0;
    double *gaps = NULL; size_t gcap = 0;
    for (uint64_t i = 0; i < F; i++) {
        flow_t *f = &fl[i];
        uint64_t r = seed_for(seed, i, 3);
        uint32_t n = f->npk;
        double rtt = exp(log(0.02) + normal(&r)) ; /* median 20 ms */
        if (rtt < 0.0002) rtt = 0.0002;
        if (rtt > 0.6) rtt = 0.6;
        /* how long the flow lasts: short for most, longer with more packets, bounded by the span */
        double dur = exp(log(1.5) + 1.3 * normal(&r)) * (1.0 + n / 300.0);
        if (f->kind == K_UDP && n <= 2) dur = rtt;
        if (f->kind == K_REFUSED) dur = rtt;
        if (dur > 0.6 * span) dur = 0.6 * span * (0.5 + 0.5 * unif(&r));
        if (gcap < n) { gcap = n * 2; gaps = realloc(gaps, gcap * sizeof *gaps); }
        /* gaps: handshake and teardown go at RTT pace, the rest shares the duration */
        double fixed = 0, var = 0;
        uint32_t tail = f->kind == K_FIN ? 4 : f->kind == K_RST ? 1 : 0;
        for (uint32_t k = 0; k < n; k++) {
            int is_fixed = f->kind != K_UDP && (k < 3 || k >= n - tail);
            if (k == 0) gaps[k] = 0;
            else if (is_fixed) { gaps[k] = rtt * (0.5 + 0.1 * unif(&r)); fixed += gaps[k]; }
            else { gaps[k] = -expo(&r); var -= gaps[k]; } /* negative marks "scale me" */
        }
        double scale = var > 0 && dur > fixed ? (dur - fixed) / var : rtt / 2;
        double total = fixed + (var > 0 ? var * scale : 0);
        double start = unif(&r) * (span - total > 0 ? span - total : 0);
        double t = start;
        uint64_t prev_us = 0;
        for (uint32_t k = 0; k < n; k++) {
            t += gaps[k] < 0 ? -gaps[k] * scale : gaps[k];
            uint64_t us = (uint64_t)(t * 1e6);
            if (k && us <= prev_us) us = prev_us + 1; /* strictly increasing inside a flow */
            /* a silence longer than the idle timeout makes a meter end the flow and start anew */
            if (k && us - prev_us > (uint64_t)(idle_to * 1e6)) idle_splits++;
            prev_us = us;
            ev[e++] = (us << 32) | i;
        }
        life[2 * i] = (uint64_t)(start * 1e6);
        life[2 * i + 1] = prev_us;
    }
    free(gaps);
    uint64_t maxus = 0;
    for (uint64_t k = 0; k < P; k++) if ((ev[k] >> 32) > maxus) maxus = ev[k] >> 32;
    int tbits = 0;
    while (tbits < 32 && (maxus >> tbits)) tbits++;
    /* sort on time only: the input is in (flow, packet) order and the sort is stable, so ties
     * between flows fall in flow order and a flow's own packets can never tie */
    radix_sort(ev, tmp, P, 32, 32 + tbits);
    free(tmp);

    /* 3. concurrency with aioflow's default timeouts, and without timeouts (first..last) */
    uint64_t peak_live = 0, peak_meter = 0;
    double sum_meter = 0;
    {
        uint64_t *pts = malloc(2 * F * sizeof *pts);
        uint64_t end_us = maxus; /* the file's end flushes everything */
        for (int pass = 0; pass < 2; pass++) {
            for (uint64_t i = 0; i < F; i++) {
                uint64_t a = life[2 * i], b = life[2 * i + 1];
                if (pass == 1) {
                    double to = (fl[i].kind == K_FIN || fl[i].kind == K_RST || fl[i].kind == K_REFUSED) ? fin_to : idle_to;
                    b += (uint64_t)(to * 1e6);
                    if (b > end_us) b = end_us;
                }
                /* ends sort before starts at the same instant: bit 0 = 1 for a start */
                pts[2 * i] = (a << 1) | 1;
                pts[2 * i + 1] = (b + 1) << 1;
            }
            qsort(pts, 2 * F, sizeof *pts, cmp_u64);
            uint64_t cur = 0, peak = 0, last_t = 0;
            double area = 0;
            for (uint64_t k = 0; k < 2 * F; k++) {
                uint64_t t = pts[k] >> 1;
                if (t > end_us) t = end_us;
                area += (double)cur * (double)(t - last_t);
                last_t = t;
                if (pts[k] & 1) { if (++cur > peak) peak = cur; } else cur--;
            }
            if (pass == 0) peak_live = peak;
            else { peak_meter = peak; sum_meter = end_us ? area / (double)end_us : 0; }
        }
        free(pts);
    }
    free(life);

    /* 4. write */
    FILE *o = fopen(out_path, "wb");
    if (!o) { perror(out_path); return 1; }
    /* records are built straight into one big buffer: one fwrite per 16 MiB, not per packet */
    const size_t bufsz = 16u << 20;
    uint8_t *buf = malloc(bufsz);
    size_t pos = 24;
    uint32_t magic = 0xa1b2c3d4, snap = 65535, link = 1;
    uint16_t vmaj = 2, vmin = 4;
    memset(buf, 0, 24);
    memcpy(buf, &magic, 4); memcpy(buf + 4, &vmaj, 2); memcpy(buf + 6, &vmin, 2);
    memcpy(buf + 16, &snap, 4); memcpy(buf + 20, &link, 4);
    const uint64_t epoch_us = 1700000000ull * 1000000ull;
    uint64_t prev = 0, bytes = 0, v6pk = 0, udppk = 0;
    for (uint64_t k = 0; k < P; k++) {
        uint64_t us = ev[k] >> 32;
        flow_t *f = &fl[(uint32_t)ev[k]];
        if (k && us <= prev) us = prev + 1; /* strictly increasing across the file */
        prev = us;
        if (bufsz - pos < 16 + 2048) {
            if (fwrite(buf, 1, pos, o) != pos) { perror(out_path); return 1; }
            pos = 0;
        }
        uint8_t *rec = buf + pos;
        size_t len = next_packet(rec + 16, f);
        uint64_t ts = epoch_us + us;
        uint32_t hdr[4] = {(uint32_t)(ts / 1000000), (uint32_t)(ts % 1000000), (uint32_t)len, (uint32_t)len};
        memcpy(rec, hdr, 16);
        pos += 16 + len;
        bytes += len;
        v6pk += f->v6;
        udppk += f->kind == K_UDP;
    }
    if (fwrite(buf, 1, pos, o) != pos) { perror(out_path); return 1; }
    free(buf);
    if (fclose(o) != 0) { perror(out_path); return 1; }

    uint64_t kinds[5] = {0}, v6f = 0;
    for (uint64_t i = 0; i < F; i++) { kinds[fl[i].kind]++; v6f += fl[i].v6; }
    printf("{\"packets\": %llu, \"flows\": %llu, \"frame_bytes\": %llu, \"file_bytes\": %llu, "
           "\"span_seconds\": %.6f, \"first_ts\": %.6f, \"ipv6_flows\": %llu, \"ipv6_packets\": %llu, "
           "\"udp_packets\": %llu, \"tcp_fin_flows\": %llu, \"tcp_rst_flows\": %llu, \"tcp_open_flows\": %llu, "
           "\"tcp_refused_flows\": %llu, \"udp_flows\": %llu, \"peak_live_flows\": %llu, "
           "\"peak_active_flows_default_timeouts\": %llu, \"mean_active_flows_default_timeouts\": %.1f, "
           "\"idle_gaps_over_120s\": %llu, \"expected_records_default_timeouts\": %llu}\n",
           (unsigned long long)P, (unsigned long long)F, (unsigned long long)bytes,
           (unsigned long long)(24 + 16 * P + bytes), (double)prev / 1e6, (double)(epoch_us + (ev[0] >> 32)) / 1e6,
           (unsigned long long)v6f, (unsigned long long)v6pk, (unsigned long long)udppk,
           (unsigned long long)kinds[K_FIN], (unsigned long long)kinds[K_RST], (unsigned long long)kinds[K_OPEN],
           (unsigned long long)kinds[K_REFUSED], (unsigned long long)kinds[K_UDP],
           (unsigned long long)peak_live, (unsigned long long)peak_meter, sum_meter,
           (unsigned long long)idle_splits, (unsigned long long)(F + idle_splits));
    free(ev);
    free(fl);
    return 0;
}
