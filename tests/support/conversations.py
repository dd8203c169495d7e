"""TCP/UDP conversations of a capture decoded by dpkt alone (no aioflow code): the packets' IP
lengths per bidirectional 5-tuple, in file order."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import dpkt

Key = tuple[int, frozenset[tuple[str, int]]]


def ip_packets(path: Path) -> dict[Key, list[int]]:
    """IP lengths of each TCP/UDP conversation's packets, in file order (dpkt decoding)."""
    out: dict[Key, list[int]] = defaultdict(list)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = reader.datalink()
        for _, buf in reader:
            if link == dpkt.pcap.DLT_EN10MB:
                ip = dpkt.ethernet.Ethernet(buf).data
            else:  # raw IP, after BSD loopback's 4-byte family (DLT_NULL)
                buf = buf[4:] if link == dpkt.pcap.DLT_NULL else buf
                ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP | dpkt.udp.UDP):
                continue
            v4 = isinstance(ip, dpkt.ip.IP)
            length = ip.len if v4 else ip.plen + 40
            src = dpkt.utils.inet_to_str(ip.src)
            dst = dpkt.utils.inet_to_str(ip.dst)
            out[(ip.p, frozenset({(src, ip.data.sport), (dst, ip.data.dport)}))].append(length)
    return out
