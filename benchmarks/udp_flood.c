/* udp_flood.c - sends small UDP datagrams on one interface as fast as it can (or at a set rate).
 *
 * Built and driven by live.py (cc -O2 udp_flood.c). It writes whole Ethernet frames on an
 * AF_PACKET socket with PACKET_QDISC_BYPASS and sendmmsg, so no IP stack, ARP or socket per flow
 * stands between it and the wire: on a veth pair that is the most packets a process can push.
 *
 *   udp_flood IFACE DST_MAC SECONDS RATE FLOWS CHURN PAYLOAD
 *
 * RATE packets/s (0: as fast as possible). FLOWS distinct source ports (over several source
 * addresses past 60,000), visited round-robin so every flow stays active. CHURN seconds (0: never):
 * every CHURN seconds the source addresses move on, so the previous flows go idle and a meter
 * with a short idle timeout ends them while the run goes on. PAYLOAD bytes of UDP data.
 * Prints one JSON object: packets sent, seconds, send errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 64           /* frames per sendmmsg: amortises the system call */
#define PORTS_PER_IP 60000u
#define MAX_PAYLOAD 1400

static volatile sig_atomic_t stop_now;
static void on_signal(int sig) { (void)sig; stop_now = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_mac(const char *s, uint8_t mac[6]) {
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return 0;
}

static uint16_t ip_checksum(const void *hdr, size_t len) {
    const uint16_t *p = hdr;
    uint32_t sum = 0;
    for (size_t i = 0; i < len / 2; i++) sum += p[i];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s IFACE DST_MAC SECONDS RATE FLOWS CHURN PAYLOAD\n", argv[0]);
        return 2;
    }
    const char *ifname = argv[1];
    uint8_t dst_mac[6];
    if (parse_mac(argv[2], dst_mac) != 0) {
        fprintf(stderr, "bad MAC %s\n", argv[2]);
        return 2;
    }
    double seconds = atof(argv[3]), rate = atof(argv[4]), churn = atof(argv[6]);
    uint32_t flows = (uint32_t)strtoul(argv[5], NULL, 10);
    size_t payload = (size_t)strtoul(argv[7], NULL, 10);
    if (flows == 0 || payload > MAX_PAYLOAD || seconds <= 0) {
        fprintf(stderr, "flows must be > 0, payload <= %d, seconds > 0\n", MAX_PAYLOAD);
        return 2;
    }

    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd < 0) { perror("socket(AF_PACKET)"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) { perror(ifname); return 1; }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) { perror("SIOCGIFHWADDR"); return 1; }
    uint8_t src_mac[6];
    memcpy(src_mac, ifr.ifr_hwaddr.sa_data, 6);
    int one = 1;   /* straight to the driver: no qdisc lock per frame */
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex,
                             .sll_halen = 6};
    memcpy(to.sll_addr, dst_mac, 6);

    /* one frame buffer per burst slot; only addresses, ports and checksum change per packet */
    size_t frame_len = sizeof(struct ether_header) + sizeof(struct iphdr) + sizeof(struct udphdr) + payload;
    static uint8_t frames[BURST][14 + 20 + 8 + MAX_PAYLOAD];
    struct mmsghdr msgs[BURST];
    struct iovec iov[BURST];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BURST; i++) {
        uint8_t *f = frames[i];
        struct ether_header *eth = (struct ether_header *)f;
        memcpy(eth->ether_dhost, dst_mac, 6);
        memcpy(eth->ether_shost, src_mac, 6);
        eth->ether_type = htons(ETHERTYPE_IP);
        struct iphdr *ip = (struct iphdr *)(f + 14);
        ip->version = 4;
        ip->ihl = 5;
        ip->tot_len = htons((uint16_t)(20 + 8 + payload));
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->daddr = htonl(0x0A4E0002u);   /* 10.78.0.2: not local to the capture side, dropped there quietly */
        struct udphdr *udp = (struct udphdr *)(f + 34);
        udp->dest = htons(9);             /* discard */
        udp->len = htons((uint16_t)(8 + payload));
        udp->check = 0;                   /* optional over IPv4 */
        memset(f + 42, 'x', payload);
        iov[i].iov_base = f;
        iov[i].iov_len = frame_len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    uint64_t sent = 0, errors = 0, next_flow = 0;
    uint16_t ipid = 0;
    double start = now_s(), end = start + seconds, t = start;
    while (!stop_now && t < end) {
        if (rate > 0) {   /* pace by bursts: sleep until this burst is due */
            double due = start + (double)sent / rate;
            if (due > t) {
                double wait = due - t;
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        uint32_t epoch = churn > 0 ? (uint32_t)((t - start) / churn) : 0;
        for (int i = 0; i < BURST; i++) {
            uint32_t k = (uint32_t)(next_flow++ % flows);
            struct iphdr *ip = (struct iphdr *)(frames[i] + 14);
            struct udphdr *udp = (struct udphdr *)(frames[i] + 34);
            /* 10.77.0.0/16 + (epoch, flow) -> source address; port 1024 + flow % 60000 */
            uint32_t host = epoch * (flows / PORTS_PER_IP + 1) + k / PORTS_PER_IP;
            ip->saddr = htonl(0x0A4D0000u + 1 + (host % 65000u));
            udp->source = htons((uint16_t)(1024 + k % PORTS_PER_IP));
            ip->id = htons(ipid++);
            ip->check = 0;
            ip->check = ip_checksum(ip, 20);
        }
        int n = sendmmsg(fd, msgs, BURST, 0);
        if (n < 0) {
            if (errno != EINTR) errors++;
            next_flow -= BURST;   /* those flows' packets were not sent: send them next time */
            if (errno == ENOBUFS || errno == EAGAIN) sched_yield();
        } else {
            sent += (uint64_t)n;
            next_flow -= (uint64_t)(BURST - n);
        }
        t = now_s();
    }
    printf("{\"sent\": %llu, \"seconds\": %.6f, \"send_errors\": %llu, \"frame_bytes\": %zu}\n",
           (unsigned long long)sent, now_s() - start, (unsigned long long)errors, frame_len);
    return 0;
}
