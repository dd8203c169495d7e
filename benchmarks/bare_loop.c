/* bare_loop.c - the floor any pcap-file flow meter stands on: libpcap reading every packet of a
 * file and doing nothing with it (pcap_open_offline + pcap_next_ex until the end).
 *
 * Build: cc -O2 bare_loop.c -o bare_loop -lpcap      Run: bare_loop FILE
 * Prints one JSON object: packets, bytes (captured), wire_bytes, seconds (the read loop only),
 * peak_rss_kb (VmHWM of this process).
 */
#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) { sscanf(line + 6, "%ld", &kb); break; }
    fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pcap_t *p = pcap_open_offline(argv[1], err);
    if (!p) {
        fprintf(stderr, "bare_loop: %s\n", err);
        return 1;
    }
    struct pcap_pkthdr *h;
    const unsigned char *data;
    unsigned long long packets = 0, bytes = 0, wire = 0;
    /* touch the first byte so the loop cannot be said to skip the data entirely */
    unsigned sink = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
        packets++;
        bytes += h->caplen;
        wire += h->len;
        sink += data[0];
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == PCAP_ERROR) {
        fprintf(stderr, "bare_loop: %s\n", pcap_geterr(p));
        pcap_close(p);
        return 1;
    }
    pcap_close(p);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"packets\": %llu, \"bytes\": %llu, \"wire_bytes\": %llu, \"seconds\": %.6f, "
           "\"peak_rss_kb\": %ld, \"sink\": %u}\n",
           packets, bytes, wire, secs, vm_hwm_kb(), sink);
    return 0;
}
