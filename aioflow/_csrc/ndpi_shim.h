/* aioflow's one door to nDPI (application detection): every nDPI call and type stays in
 * ndpi_shim.c, behind this interface, because nDPI's API changes with every release. Built with
 * nDPI only when _build_pcap.py found its headers (AF_HAVE_NDPI, nDPI 4.2 checked there and in
 * ndpi_shim.c); without it af_dissect_unavailable() says so and nothing else is called. */
#ifndef AIOFLOW_NDPI_SHIM_H
#define AIOFLOW_NDPI_SHIM_H
#include <stdint.h>

#include "aioflow.h"

/* What a flow's dissection found: the dissect meter's record block (nfstream's names). Text is
 * NUL-terminated, cut to the array (counted in dissect_truncated); "" when nDPI found none. */
typedef struct {
    uint16_t master_protocol;        /* nDPI protocol ids (0: unknown) */
    uint16_t app_protocol;
    uint8_t application_is_guessed;  /* 1: nDPI gave up and guessed (ports, addresses) */
    uint8_t application_confidence;  /* nDPI's ndpi_confidence_t */
    int16_t dns_response_code;       /* DNS reply code; -1: not DNS or no reply seen */
    char application_name[48];       /* "TLS.YouTube": master.app, or one name */
    char application_category_name[32];
    char requested_server_name[80];  /* TLS/QUIC SNI, HTTP Host, DNS query, DHCP host name */
    char client_fingerprint[48];     /* JA3 (TLS/QUIC), HASSH (SSH), DHCP fingerprint */
    char server_fingerprint[48];     /* JA3S, HASSH server */
    char user_agent[128];            /* HTTP (and QUIC) User-Agent */
    char content_type[64];           /* HTTP response Content-Type */
    char tls_version[16];            /* "TLSv1.3" */
    char alpn[64];                   /* TLS/QUIC ALPN offered, ";"-separated as nDPI keeps it */
    char risks[160];                 /* names of the flow's nDPI risks, ","-separated */
    char ja4[40];                    /* JA4 of the client's ClientHello (aioflow's own, ja4.h, not nDPI's) */
    char ja4_r[512];                 /* JA4 raw: the sorted lists unhashed; "" when it does not fit */
} af_dissect_result;

typedef struct af_ndpi af_ndpi;      /* one detection module (per engine: counting thread only) */

/* "" when nDPI is usable, else the reason (no nDPI in this build, or the library found at run time
 * is not the one built against: its flow state size or API version differs). */
const char *af_ndpi_unavailable(void);
/* A detection module with every protocol on; NULL without memory (or nDPI). */
af_ndpi *af_ndpi_open(void);
void af_ndpi_close(af_ndpi *n);
/* Bytes of one flow's nDPI state (zeroed by the caller before its first packet). */
uint32_t af_ndpi_state_size(void);
/* One IP packet (from its IP header, len bytes) of the flow whose state is `state`. Returns 1 when
 * the dissection is over: the protocol is known and nDPI has nothing more to look for. */
int af_ndpi_packet(af_ndpi *n, void *state, const uint8_t *ip, uint32_t len, uint64_t ts_ms);
/* 1 when the protocol nDPI found for the flow so far may turn into TLS after nDPI has finished:
 * a proxy's (SOCKS, HTTP CONNECT, HTTP proxy) or one with STARTTLS (SMTP, IMAP, POP3, FTP, XMPP,
 * LDAP). The dissect meter then waits for a ClientHello, for JA4. */
int af_ndpi_tls_may_follow(const void *state);
/* Ends a dissection: gives up (guessing) unless it was over (`over`), writes what was found into
 * out and frees what nDPI allocated for the flow (the state itself is the caller's). Returns the
 * number of text fields cut to fit. */
uint32_t af_ndpi_finish(af_ndpi *n, void *state, int over, af_dissect_result *out);
/* Frees what nDPI allocated for a flow dissected no further (the engine closes). */
void af_ndpi_drop(void *state);

#endif
