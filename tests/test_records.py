"""Record contents beyond counts: kept packet headers against dpkt, the bulk DataFrame path
against the per-flow path, and counters at their bounds."""

from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pytest

import aioflow

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
NO_TIMEOUTS = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}


def dpkt_tcp_packets(path: Path) -> dict[frozenset[tuple[str, int]], list[tuple[int, dpkt.Packet, bytes]]]:
    """TCP packets (time ns, IP packet, IP+TCP header bytes) per unordered endpoint pair, by dpkt."""
    out: dict[frozenset[tuple[str, int]], list[tuple[int, dpkt.Packet, bytes]]] = {}
    with path.open("rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
            tcp = ip.data
            a = (socket.inet_ntop(family, ip.src), tcp.sport)
            b = (socket.inet_ntop(family, ip.dst), tcp.dport)
            ip_header_len = ip.hl * 4 if family == socket.AF_INET else len(bytes(ip)) - len(bytes(tcp))
            raw = bytes(ip)[: ip_header_len + tcp.off * 4]
            out.setdefault(frozenset((a, b)), []).append((round(float(ts) * 1e9), ip, raw))
    return out


def test_kept_headers_match_dpkt() -> None:
    keep = 4
    flows = [f for f in aioflow.read(BUNDLED, headers=keep, **NO_TIMEOUTS) if f.protocol == 6]
    reference = dpkt_tcp_packets(BUNDLED)
    assert flows
    for flow in flows:
        packets = reference[frozenset(((flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port)))]
        assert len(flow.headers) == min(keep, flow.packets)
        assert flow.headers_dropped == flow.packets - len(flow.headers)
        for header, (ts_ns, ip, raw) in zip(flow.headers, packets, strict=False):
            tcp = ip.data
            assert abs(header.ts_ns - ts_ns) < 1000  # dpkt gives float seconds
            assert header.tcp_seq == tcp.seq and header.tcp_ack == tcp.ack
            assert header.tcp_flags == tcp.flags and header.tcp_window == tcp.win
            assert header.ttl == (ip.ttl if isinstance(ip, dpkt.ip.IP) else ip.hlim)
            assert header.raw == raw
            sender = (socket.inet_ntop(socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6, ip.src),
                      tcp.sport)  # fmt: skip
            assert header.direction == (0 if sender == (flow.src_ip, flow.src_port) else 1)


def test_dataframe_matches_per_flow_objects() -> None:
    frame = aioflow.read_frame(BUNDLED, **NO_TIMEOUTS)
    flows = list(aioflow.read(BUNDLED, **NO_TIMEOUTS))
    assert len(frame) == len(flows) > 0
    by_id = {f.id: f.to_dict() for f in flows}
    for row in frame.to_dict("records"):
        expected = by_id[row["id"]]
        for column, value in row.items():
            assert column in expected, column
            if isinstance(value, float):
                assert value == pytest.approx(expected[column]), column
            else:
                assert value == expected[column], column
    # every scalar attribute of a Flow is a column, in the same order
    assert list(by_id[flows[0].id]) == list(frame.columns)


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path


def tcp_frame(flags: int, sport: int = 40000, dport: int = 80) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=1)
    ip = dpkt.ip.IP(src=socket.inet_aton("192.0.2.1"), dst=socket.inet_aton("192.0.2.2"), p=6, data=tcp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def test_a_full_rare_flag_counter_splits_the_record_exactly(tmp_path: Path) -> None:
    # 70 000 SYNs of one 5-tuple (a SYN flood): SYN counts are 16-bit, so the record is emitted
    # at 65 535 and counting goes on in a new one; nothing is lost.
    n = 70_000
    frame = tcp_frame(dpkt.tcp.TH_SYN)
    capture = write_pcap(tmp_path / "synflood.pcap", [(1_700_000_000 + i * 1e-5, frame) for i in range(n)])
    flows = list(aioflow.read(capture, **NO_TIMEOUTS))
    assert [(f.src2dst_packets, f.src2dst_syn_packets, f.end_reason) for f in flows] == [
        (65_535, 65_535, "active"),
        (n - 65_535, n - 65_535, "eof"),
    ]
    assert flows[0].id != flows[1].id
    assert sum(f.bytes for f in flows) == n * (len(frame) - 14)
