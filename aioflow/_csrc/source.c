#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/if_packet.h>

#define AF_READ_BUFFER (1u << 16)     /* stdio buffer of a capture file */

void af_source_close(af_source *s) {
    if (s->own) af_capread_close(&s->file);
    if (s->has_filter) pcap_freecode(&s->filter);
    if (s->pcap) pcap_close(s->pcap);
    free(s->read_buffer);
    memset(s, 0, sizeof *s);
}

static int fail(af_source *s, int code, char *error, size_t n, const char *fmt, const char *a, const char *b) {
    snprintf(error, n, fmt, a, b);
    af_source_close(s);
    return code;
}

int af_source_open_file(af_source *s, const char *path, const char *bpf, int follow, int libpcap, char *error,
                        size_t n) {
    memset(s, 0, sizeof *s);
    if (!libpcap) {
        int code = af_capread_open(&s->file, path, bpf, follow, error, n);
        if (code != AF_OK) return code;
        s->own = 1;
        s->dlt = af_capfile_first_dlt(&s->file.cap);
        s->file_size = s->file.file_size;
        return AF_OK;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(s, errno == EACCES ? AF_ERR_PERMISSION : AF_ERR_NOT_FOUND, error, n, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return fail(s, AF_ERR_FORMAT, error, n, "%s%s: is a directory, not a capture file", path, "");
    FILE *file = fopen(path, "rb");
    if (!file)
        return fail(s, errno == EACCES ? AF_ERR_PERMISSION : AF_ERR_NOT_FOUND, error, n, "%s: %s", path, strerror(errno));
    /* libpcap freads every record header and body from this stream: with stdio's default
     * st_blksize buffer that is a read() per 4 KiB; a large buffer makes it one per MiB. */
    s->read_buffer = malloc(AF_READ_BUFFER);
    if (s->read_buffer) setvbuf(file, s->read_buffer, _IOFBF, AF_READ_BUFFER);
    posix_fadvise(fileno(file), 0, 0, POSIX_FADV_SEQUENTIAL);
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    s->pcap = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf);
    if (!s->pcap) {
        fclose(file);   /* libpcap leaves the stream to the caller when it fails */
        return fail(s, AF_ERR_FORMAT, error, n, "%s: %s", path, errbuf);
    }
    if (bpf && bpf[0]) {
        if (pcap_compile(s->pcap, &s->filter, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0)
            return fail(s, AF_ERR_FILTER, error, n, "%s: %s", bpf, pcap_geterr(s->pcap));
        s->has_filter = 1;
    }
    s->dlt = pcap_datalink(s->pcap);
    s->file_size = (uint64_t)st.st_size;
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
        int k = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", d->name);
        if (k < 0) break;
        used += (size_t)k;
    }
    pcap_freealldevs(all);
}

int af_source_open_live(af_source *s, const char *device, const char *bpf, int32_t snaplen, int promiscuous,
                        int32_t buffer_bytes, char *error, size_t n) {
    memset(s, 0, sizeof *s);
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    s->pcap = pcap_create(device, errbuf);
    if (!s->pcap) return fail(s, AF_ERR_SOURCE, error, n, "%s: %s", device, errbuf);
    s->live = 1;
    pcap_set_snaplen(s->pcap, snaplen);
    pcap_set_promisc(s->pcap, promiscuous);
    /* Not immediate mode: it wakes the loop for every few packets and (TPACKET_V2) sizes each
     * ring slot by the snaplen, so a flood overflows it. A block timeout instead batches
     * packets for at most AF_LIVE_LATENCY_MS, far below any flow timeout. */
    pcap_set_timeout(s->pcap, AF_LIVE_LATENCY_MS);
    if (buffer_bytes > 0) pcap_set_buffer_size(s->pcap, buffer_bytes);
    pcap_set_tstamp_precision(s->pcap, PCAP_TSTAMP_PRECISION_NANO);   /* else micro: fine */
    int rc = pcap_activate(s->pcap);
    if (rc < 0) {
        char names[1024];
        switch (rc) {
        case PCAP_ERROR_NO_SUCH_DEVICE:
            list_interfaces(names, sizeof names);
            return fail(s, AF_ERR_NOT_FOUND, error, n, "no interface %s to capture on; interfaces here: %s", device,
                        names[0] ? names : "(none visible: are you allowed to list them?)");
        case PCAP_ERROR_PERM_DENIED:
        case PCAP_ERROR_PROMISC_PERM_DENIED:
            return fail(s, AF_ERR_PERMISSION, error, n,
                        "%s: %s: capturing needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous "
                        "mode): run as root, or `setcap cap_net_raw,cap_net_admin=eip` on the Python "
                        "executable", device, pcap_geterr(s->pcap));
        case PCAP_ERROR_IFACE_NOT_UP:
            return fail(s, AF_ERR_SOURCE, error, n, "%s is down%s: bring it up (ip link set dev IFACE up)", device, "");
        default:
            return fail(s, AF_ERR_SOURCE, error, n, "%s: %s", device, pcap_geterr(s->pcap));
        }
    }
    if (pcap_setnonblock(s->pcap, 1, errbuf) != 0) return fail(s, AF_ERR_SOURCE, error, n, "%s: %s", device, errbuf);
    if (bpf && bpf[0]) {   /* live: the kernel filters, so rejected packets are never seen here */
        struct bpf_program prog;
        if (pcap_compile(s->pcap, &prog, bpf, 1, PCAP_NETMASK_UNKNOWN) != 0)
            return fail(s, AF_ERR_FILTER, error, n, "%s: %s", bpf, pcap_geterr(s->pcap));
        int set = pcap_setfilter(s->pcap, &prog);
        pcap_freecode(&prog);
        if (set != 0) return fail(s, AF_ERR_FILTER, error, n, "%s: %s", bpf, pcap_geterr(s->pcap));
    }
    s->dlt = pcap_datalink(s->pcap);
    return AF_OK;
}

int af_source_read_error(af_source *s, int r, char *error, size_t n) {
    if (r == PCAP_ERROR) {
        snprintf(error, n, "%s", pcap_geterr(s->pcap));
        return -2;
    }
    return -1;
}

uint64_t af_source_offset(const af_source *s) {
    if (s->own) return af_capread_offset(&s->file);
    FILE *f = s->pcap && !s->live ? pcap_file(s->pcap) : NULL;
    long pos = f ? ftell(f) : -1;
    return pos > 0 ? (uint64_t)pos : 0;
}

void af_source_kernel_stats(const af_source *s, af_stats *out) {
    struct pcap_stat ps;
    if (s->live && pcap_stats(s->pcap, &ps) == 0) {
        out->kernel_received = ps.ps_recv;
        out->kernel_dropped = ps.ps_drop;
        out->interface_dropped = ps.ps_ifdrop;
    }
}

int af_source_fd(const af_source *s) { return s->live ? pcap_get_selectable_fd(s->pcap) : -1; }

int af_source_fanout(af_source *s, uint16_t group) {
    /* on libpcap's packet socket, once activated: the kernel hashes each packet's flow (both
     * directions alike) to one of the group's sockets, fragments reassembled first */
    int arg = group | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16;
    int fd = af_source_fd(s);
    return fd >= 0 && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) == 0 ? 0 : -1;
}
