"""aioflow's results side by side with the references': flows grouped by key and summarised per
direction (for the dpkt reference), and TCP/UDP conversations (for tshark's table), with the
diff each assertion prints."""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from pathlib import Path

import aioflow
from support import reference

NO_TIMEOUTS = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}
Convs = dict[tuple[str, frozenset[str]], int]


Group = tuple[int, int, int, frozenset[tuple[object, int]]]
Summary = tuple[object, ...]


def group(version: int, proto: int, vlan: int, a: tuple[str, int], b: tuple[str, int]) -> Group:
    ends = frozenset({(ipaddress.ip_address(a[0]), a[1]), (ipaddress.ip_address(b[0]), b[1])})
    return (version, proto, vlan, ends)


def summary(f: aioflow.Flow | reference.RefFlow) -> Summary:
    return (
        str(ipaddress.ip_address(f.src_ip)), f.src_port, str(ipaddress.ip_address(f.dst_ip)), f.dst_port,
        f.src2dst_packets, f.src2dst_bytes, f.src2dst_captured_bytes,
        f.dst2src_packets, f.dst2src_bytes, f.dst2src_captured_bytes,
    )


def tcp_ttl(f: aioflow.Flow | reference.RefFlow) -> tuple[object, ...]:
    """Per direction: OR of TCP flags, SYN/FIN/RST packet counts, (min, max) TTL or hop limit."""
    if isinstance(f, reference.RefFlow):
        ttl = [r or (0, 0) for r in f.ttl_range]
        return (tuple(f.tcp_flags), tuple(map(tuple, f.syn_fin_rst)), tuple(ttl))
    return (
        (f.src2dst_tcp_flags, f.dst2src_tcp_flags),
        ((f.src2dst_syn_packets, f.src2dst_fin_packets, f.src2dst_rst_packets),
         (f.dst2src_syn_packets, f.dst2src_fin_packets, f.dst2src_rst_packets)),
        ((f.src2dst_min_ttl, f.src2dst_max_ttl), (f.dst2src_min_ttl, f.dst2src_max_ttl)),
    )


Times = dict[Group, list[tuple[object, ...]]]


async def run_parser(path: Path) -> tuple[dict[Group, list[Summary]], int, aioflow.ParserInfo]:
    """aioflow's flows of a file (timeouts out of the way), grouped by key, and its info()."""
    groups, total, info, _ = await run_parser_times(path)
    return groups, total, info


async def run_parser_times(path: Path) -> tuple[dict[Group, list[Summary]], int, aioflow.ParserInfo, Times]:
    """run_parser, plus (first_seen_ns, last_seen_ns, TCP flags and TTLs) per flow, grouped alike."""
    groups: dict[Group, list[Summary]] = defaultdict(list)
    times: Times = defaultdict(list)
    total = 0
    async with aioflow.FlowParser(path, **NO_TIMEOUTS) as parser:
        async for f in parser.terminated():
            assert f.packets == f.src2dst_packets + f.dst2src_packets, f"{f.key}: packets != sum of directions"
            assert f.bytes == f.src2dst_bytes + f.dst2src_bytes, f"{f.key}: bytes != sum of directions"
            g = group(f.ip_version, f.protocol, f.vlan_id or 0, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
            groups[g].append(summary(f))
            times[g].append((f.first_seen_ns, f.last_seen_ns, tcp_ttl(f)))
            total += f.packets
        info = parser.info()
    return groups, total, info, times


def ref_groups(ref: reference.RefResult) -> dict[Group, list[Summary]]:
    groups: dict[Group, list[Summary]] = defaultdict(list)
    for f in ref.flows:
        groups[group(f.ip_version, f.protocol, f.vlan_id, (f.src_ip, f.src_port),
                      (f.dst_ip, f.dst_port))].append(summary(f))
    return groups


_FIELDS = ("src_ip", "src_port", "dst_ip", "dst_port", "s2d_pkts", "s2d_bytes", "s2d_cap",
           "d2s_pkts", "d2s_bytes", "d2s_cap")


def explain(got: dict[Group, list[Summary]], want: dict[Group, list[Summary]]) -> str:
    lines = []
    for g in sorted(set(got) | set(want), key=str):
        a, b = sorted(got.get(g, [])), sorted(want.get(g, []))
        if a != b:
            ends = " <-> ".join(sorted(f"{ip}:{port}" for ip, port in g[3]))
            lines.append(f"  v{g[0]} proto {g[1]} vlan {g[2]} {ends}:\n    aioflow   {a}\n    reference {b}")
    head = f"{len(lines)} flow key(s) differ (fields: {', '.join(_FIELDS)}):\n"
    return head + "\n".join(lines[:12])


def aioflow_conversations(path: Path) -> Convs:
    convs: Counter[tuple[str, frozenset[str]]] = Counter()
    for f in aioflow.read(path, idle_timeout=1e9, active_timeout=1e9, fin_timeout=1e9):
        if f.protocol in (6, 17):
            ends = frozenset({f"{ipaddress.ip_address(f.src_ip)}:{f.src_port}",
                              f"{ipaddress.ip_address(f.dst_ip)}:{f.dst_port}"})
            convs[("tcp" if f.protocol == 6 else "udp", ends)] += f.packets
    return dict(convs)


def diff(got: Convs, want: Convs, got_name: str) -> str:
    lines = []
    for k in sorted(set(got) | set(want), key=lambda k: (k[0], sorted(k[1]))):
        if got.get(k) != want.get(k):
            lines.append(f"  {k[0]} {' <-> '.join(sorted(k[1]))}: {got_name} {got.get(k)}, tshark {want.get(k)}")
    return f"{len(lines)} conversation(s) differ:\n" + "\n".join(lines[:20])
