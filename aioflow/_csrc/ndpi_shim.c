/* Every nDPI call of aioflow (ndpi_shim.h says why). Written for nDPI 4.2: another release fails
 * the build here, and a library at run time whose flow state differs from these headers' is refused
 * (af_ndpi_unavailable), as nfstream checks it. */
#define _DEFAULT_SOURCE   /* nDPI's headers use the BSD u_int*_t types */
#include "ndpi_shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef AF_HAVE_NDPI
#include <ndpi_api.h>

#if NDPI_MAJOR != 4 || NDPI_MINOR != 2
#error "aioflow's nDPI shim (ndpi_shim.c) is written for nDPI 4.2: build with AIOFLOW_NO_NDPI=1, or port the shim"
#endif

struct af_ndpi {
    struct ndpi_detection_module_struct *mod;
};

/* One flow's dissection: nDPI's state and the protocol its last packet gave. */
typedef struct {
    ndpi_protocol proto;
    struct ndpi_flow_struct flow;
} shim_state;

const char *af_ndpi_unavailable(void) {
    static _Thread_local char why[200];
    uint32_t size = ndpi_detection_get_sizeof_ndpi_flow_struct();
    if (size != sizeof(struct ndpi_flow_struct)) {
        snprintf(why, sizeof why, "the nDPI library's flow state is %u bytes, its headers' %zu: rebuild aioflow "
                 "against the installed libndpi-dev", (unsigned)size, sizeof(struct ndpi_flow_struct));
        return why;
    }
    if (ndpi_get_api_version() != NDPI_API_VERSION) {
        snprintf(why, sizeof why, "the nDPI library's API version is %u, its headers' %u: rebuild aioflow "
                 "against the installed libndpi-dev", (unsigned)ndpi_get_api_version(), (unsigned)NDPI_API_VERSION);
        return why;
    }
    return "";
}

af_ndpi *af_ndpi_open(void) {
    af_ndpi *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    if (!(n->mod = ndpi_init_detection_module(ndpi_no_prefs))) {
        free(n);
        return NULL;
    }
    NDPI_PROTOCOL_BITMASK all;
    NDPI_BITMASK_SET_ALL(all);
    ndpi_set_protocol_detection_bitmask2(n->mod, &all);
    ndpi_finalize_initialization(n->mod);
    return n;
}

void af_ndpi_close(af_ndpi *n) {
    if (!n) return;
    ndpi_exit_detection_module(n->mod);
    free(n);
}

uint32_t af_ndpi_state_size(void) { return (uint32_t)sizeof(shim_state); }

static int is_proto(ndpi_protocol p, uint16_t id) { return p.master_protocol == id || p.app_protocol == id; }

int af_ndpi_packet(af_ndpi *n, void *state, const uint8_t *ip, uint32_t len, uint64_t ts_ms) {
    shim_state *s = state;
    struct ndpi_flow_struct *f = &s->flow;
    /* Every packet, with payload or not, even once the protocol is known: nDPI follows TCP
     * sequence numbers through the ACKs, and one it missed makes it take the next segment for a
     * retransmission and skip it (an HTTP response's Content-Type is lost so). */
    s->proto = ndpi_detection_process_packet(n->mod, f, ip, (unsigned short)(len < 65535 ? len : 65535), ts_ms);
    if (s->proto.app_protocol == NDPI_PROTOCOL_UNKNOWN) return 0;
    /* Over once the application is known and no later packet adds to it: as ndpiReader, when
     * ndpi_extra_dissection_possible says so. For TLS over TCP also as soon as nDPI's TLS
     * dissector stops looking at later packets (no extra dissector left, or it has seen its
     * max_extra_packets_to_check): ndpi_extra_dissection_possible waits for a certificate, which
     * TLS 1.3 encrypts, long after nDPI gave up on it. (Not for the other protocols: their later
     * packets still reach nDPI's main dissectors, e.g. an HTTP response's Content-Type.) */
    if (!ndpi_extra_dissection_possible(n->mod, f)) return 1;
    return f->l4_proto == IPPROTO_TCP && is_proto(s->proto, NDPI_PROTOCOL_TLS) &&
           (!f->check_extra_packets || !f->extra_packets_func);
}

int af_ndpi_tls_may_follow(const void *state) {
    static const uint16_t later[] = {NDPI_PROTOCOL_SOCKS, NDPI_PROTOCOL_HTTP_CONNECT, NDPI_PROTOCOL_HTTP_PROXY,
                                     NDPI_PROTOCOL_MAIL_SMTP, NDPI_PROTOCOL_MAIL_IMAP, NDPI_PROTOCOL_MAIL_POP,
                                     NDPI_PROTOCOL_FTP_CONTROL, NDPI_PROTOCOL_JABBER, NDPI_PROTOCOL_LDAP};
    ndpi_protocol p = ((const shim_state *)state)->proto;
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        if (is_proto(p, later[i])) return 1;
    return 0;
}

/* Copies text into a field of `size` bytes; 1 when it had to be cut. */
static uint32_t put(char *to, size_t size, const char *from) {
    size_t len = from ? strlen(from) : 0;
    int cut = len >= size;
    if (cut) len = size - 1;
    memcpy(to, from ? from : "", len);
    to[len] = '\0';
    return (uint32_t)cut;
}

#define PUT(field, text) (cut += put(out->field, sizeof out->field, (text)))

/* nDPI keeps TLS details (a union member) for TLS and the protocols that carry it. */
static int is_tls(ndpi_protocol p) {
    static const uint16_t tls[] = {NDPI_PROTOCOL_TLS, NDPI_PROTOCOL_QUIC, NDPI_PROTOCOL_DTLS, NDPI_PROTOCOL_MAIL_SMTPS,
                                   NDPI_PROTOCOL_MAIL_IMAPS, NDPI_PROTOCOL_MAIL_POPS};
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++)
        if (is_proto(p, tls[i])) return 1;
    return 0;
}

static uint32_t put_risks(af_dissect_result *out, ndpi_risk risk) {
    size_t at = 0;
    out->risks[0] = '\0';
    for (int i = 1; i < NDPI_MAX_RISK; i++) {
        if (!(risk & ((ndpi_risk)1 << i))) continue;
        const char *name = ndpi_risk2str((ndpi_risk_enum)i);
        int w = snprintf(out->risks + at, sizeof out->risks - at, "%s%s", at ? "," : "", name);
        if (w < 0 || (size_t)w >= sizeof out->risks - at) {
            out->risks[at] = '\0';   /* whole names only */
            return 1;
        }
        at += (size_t)w;
    }
    return 0;
}

uint32_t af_ndpi_finish(af_ndpi *n, void *state, int over, af_dissect_result *out) {
    shim_state *s = state;
    struct ndpi_flow_struct *f = &s->flow;
    ndpi_protocol p = s->proto;
    uint8_t guessed = 0;
    if (!over) p = ndpi_detection_giveup(n->mod, f, 1, &guessed);
    uint32_t cut = 0;
    char text[128];
    memset(out, 0, sizeof *out);
    out->master_protocol = p.master_protocol;
    out->app_protocol = p.app_protocol;
    out->application_is_guessed = guessed;
    out->application_confidence = (uint8_t)f->confidence;
    out->dns_response_code = -1;
    PUT(application_name, ndpi_protocol2name(n->mod, p, text, sizeof text));
    PUT(application_category_name, ndpi_category_get_name(n->mod, ndpi_get_proto_category(n->mod, p)));
    PUT(requested_server_name, f->host_server_name);
    PUT(user_agent, f->http.user_agent);
    PUT(content_type, f->http.content_type);
    if (is_tls(p)) {
        PUT(client_fingerprint, f->protos.tls_quic.ja3_client);
        PUT(server_fingerprint, f->protos.tls_quic.ja3_server);
        PUT(alpn, f->protos.tls_quic.alpn);
        if (f->protos.tls_quic.ssl_version) {
            uint8_t unknown = 0;
            PUT(tls_version, ndpi_ssl_version2str(text, sizeof text, f->protos.tls_quic.ssl_version, &unknown));
        }
    } else if (is_proto(p, NDPI_PROTOCOL_SSH)) {
        PUT(client_fingerprint, f->protos.ssh.hassh_client);
        PUT(server_fingerprint, f->protos.ssh.hassh_server);
    } else if (is_proto(p, NDPI_PROTOCOL_DHCP)) {
        PUT(client_fingerprint, f->protos.dhcp.fingerprint);
    } else if (is_proto(p, NDPI_PROTOCOL_DNS) && !f->protos.dns.is_query) {
        out->dns_response_code = f->protos.dns.reply_code;
    }
    cut += put_risks(out, f->risk);
    ndpi_free_flow_data(f);
    return cut;
}

void af_ndpi_drop(void *state) { ndpi_free_flow_data(&((shim_state *)state)->flow); }

#else /* built without nDPI */

const char *af_ndpi_unavailable(void) {
    return "this aioflow was built without nDPI: install libndpi-dev (Debian/Ubuntu; nDPI 4.2) and rebuild "
           "(pip install --force-reinstall --no-binary aioflow aioflow, or make dev)";
}
af_ndpi *af_ndpi_open(void) { return NULL; }
void af_ndpi_close(af_ndpi *n) { (void)n; }
uint32_t af_ndpi_state_size(void) { return 0; }
int af_ndpi_tls_may_follow(const void *state) {
    (void)state;
    return 0;
}
int af_ndpi_packet(af_ndpi *n, void *state, const uint8_t *ip, uint32_t len, uint64_t ts_ms) {
    (void)n, (void)state, (void)ip, (void)len, (void)ts_ms;
    return 1;
}
uint32_t af_ndpi_finish(af_ndpi *n, void *state, int over, af_dissect_result *out) {
    (void)n, (void)state, (void)over;
    memset(out, 0, sizeof *out);
    return 0;
}
void af_ndpi_drop(void *state) { (void)state; }

#endif
