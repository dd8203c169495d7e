"""Meters: the low_ttl example meter checked against tshark, and what a meter costs when off."""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import pytest
from support.tshark import TShark

import aioflow
from aioflow import ConfigError
from aioflow._engine import NAMED_METERS, Engine, EngineConfig
from aioflow._read import read, read_frame

DATA = Path(__file__).parent / "data"
# Captures and how many packets have an outer TTL / hop limit below 10: an MPLS traceroute (IPv4
# over PPP: the probes count; the ICMP replies quote them but carry TTLs of their own), PPPoE
# sessions (IPv6 MLD reports, hop limit 1), and ICMPv6 errors whose quoted headers have hop
# limit 1 while their own do not (none may count).
LOW_TTL_CAPTURES = {"tcpdump_mpls-traceroute.pcap": 9, "zeek_pppoe.pcap": 8, "zeek_communityid_icmp6.pcap": 0}
TRACEROUTE = "tcpdump_mpls-traceroute.pcap"
LOW = 10

DirectedKey = tuple[str, str, str, int, int]  # transport, sender, receiver, their ports (0 unless TCP/UDP)


def _key(transport: str, a: str, b: str, pa: int, pb: int) -> DirectedKey:
    a, b = str(ipaddress.ip_address(a)), str(ipaddress.ip_address(b))
    return (transport, a, b, pa, pb) if transport in ("tcp", "udp") else (transport, a, b, 0, 0)


def _transport(protocol: int) -> str:
    return {6: "tcp", 17: "udp"}.get(protocol, "other")


def tshark_low_ttl(tshark: TShark, path: Path) -> Counter[DirectedKey]:
    """Packets with an outer TTL / hop limit below 10, counted per sender -> receiver."""
    fields = ["ip.src", "ip.dst", "ip.ttl", "ip.proto", "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.nxt",
              "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]  # fmt: skip
    args = ["-n", "-Y", f"ip.ttl < {LOW} || ipv6.hlim < {LOW}", "-T", "fields",
            "-E", "occurrence=f", "-E", "separator=\t"]  # fmt: skip
    for f in fields:
        args += ["-e", f]
    out = tshark.output(path, *args)
    counts: Counter[DirectedKey] = Counter()
    for line in out.splitlines():
        v = dict(zip(fields, line.split("\t"), strict=True))
        # the filter matches an ICMP error's quoted header too: the outer header decides
        src, dst, ttl, proto = (v["ip.src"], v["ip.dst"], v["ip.ttl"], v["ip.proto"]) if v["ip.src"] else (
            v["ipv6.src"], v["ipv6.dst"], v["ipv6.hlim"], v["ipv6.nxt"])  # fmt: skip
        if int(ttl) >= LOW:
            continue
        transport = _transport(int(proto))
        sport = int(v["tcp.srcport"] or v["udp.srcport"] or 0)
        dport = int(v["tcp.dstport"] or v["udp.dstport"] or 0)
        counts[_key(transport, src, dst, sport, dport)] += 1
    return counts


@pytest.mark.parametrize("active_timeout", [1800.0, 0.0], ids=["whole", "split-every-packet"])
@pytest.mark.parametrize("name", LOW_TTL_CAPTURES)
def test_low_ttl_counts_match_tshark(tshark: TShark, name: str, active_timeout: float) -> None:
    path = DATA / name
    expected = tshark_low_ttl(tshark, path)
    assert sum(expected.values()) == LOW_TTL_CAPTURES[name]
    got: Counter[DirectedKey] = Counter()
    for flow in read(path, meters=("low_ttl",), active_timeout=active_timeout):
        counts = flow.meter("low_ttl")
        t = _transport(flow.protocol)
        got[_key(t, flow.src_ip, flow.dst_ip, flow.src_port, flow.dst_port)] += int(counts["src2dst_packets"])
        got[_key(t, flow.dst_ip, flow.src_ip, flow.dst_port, flow.src_port)] += int(counts["dst2src_packets"])
        assert counts["src2dst_packets"] <= flow.src2dst_packets
        assert counts["dst2src_packets"] <= flow.dst2src_packets
    assert +got == expected


def test_low_ttl_frame_columns_match_flows_and_tshark(tshark: TShark) -> None:
    path = DATA / TRACEROUTE
    frame = read_frame(path, meters=("low_ttl",))
    flows = list(read(path, meters=("low_ttl",)))
    for d in ("src2dst", "dst2src"):
        assert list(frame[f"low_ttl_{d}_packets"]) == [f.meter("low_ttl")[f"{d}_packets"] for f in flows]
    assert frame["low_ttl_src2dst_packets"].sum() + frame["low_ttl_dst2src_packets"].sum() == 9
    # the columns themselves against tshark, per sender -> receiver (not only against read())
    got: Counter[DirectedKey] = Counter()
    for row in frame.itertuples(index=False):
        t = _transport(int(row.protocol))
        got[_key(t, row.src_ip, row.dst_ip, int(row.src_port), int(row.dst_port))] += int(row.low_ttl_src2dst_packets)
        got[_key(t, row.dst_ip, row.src_ip, int(row.dst_port), int(row.src_port))] += int(row.low_ttl_dst2src_packets)
    assert +got == tshark_low_ttl(tshark, path)


def test_frame_of_a_source_with_no_flow_still_has_the_meter_columns() -> None:
    frame = read_frame(DATA / TRACEROUTE, meters=("low_ttl",), filter="port 1")  # no packet passes
    assert len(frame) == 0
    assert str(frame["low_ttl_src2dst_packets"].dtype) == str(frame["low_ttl_dst2src_packets"].dtype) == "int64"


def test_meters_off_cost_no_record_bytes() -> None:
    path = DATA / TRACEROUTE
    engine = Engine(path, EngineConfig())
    try:
        assert engine.meter_layout.stride == 0
        assert engine.meter_layout.offsets == ()
    finally:
        engine.close()
    on = Engine(path, EngineConfig(meters=("low_ttl",)))
    try:
        assert on.meter_layout.stride == 16  # two uint64 counters
        assert dict(on.meter_layout.offsets) == {"low_ttl": 0}
    finally:
        on.close()
    flows = list(read(path))
    assert flows and all(f.meter("low_ttl") == {} and f.meters == {} for f in flows)
    assert all(f._batch.meter_data == b"" for f in flows)


def test_unknown_meter_is_a_config_error_listing_the_available_ones() -> None:
    assert "low_ttl" in NAMED_METERS
    assert aioflow.available_meters() == NAMED_METERS  # the public name the docstrings point at
    with pytest.raises(ConfigError, match=r"unknown meter 'nope': available meters are .*low_ttl"):
        list(read(DATA / TRACEROUTE, meters=("nope",)))
    with pytest.raises(KeyError):
        next(iter(read(DATA / TRACEROUTE))).meter("nope")


def test_stream_search_is_a_meter_that_stream_patterns_turn_on() -> None:
    """Stream search reads reassembly's streams as its consumer (docs/architecture.md): it has no
    record fields, is not turned on by name, and comes on (again: patterns replaced) when
    stream patterns are set."""
    from aioflow._engine import METERS, stream_patterns_available

    info = METERS["stream_search"]
    assert info.option and info.fields == () and info.record_size == 0
    assert "stream_search" not in NAMED_METERS
    with pytest.raises(ConfigError, match=r"unknown meter 'stream_search'"):
        list(read(DATA / TRACEROUTE, meters=("stream_search",)))
    if not stream_patterns_available():
        pytest.skip("aioflow was built without Vectorscan (libvectorscan-dev): no native stream search to turn on")
    engine = Engine(DATA / TRACEROUTE, EngineConfig(reassemble=True))
    try:
        engine.set_stream_patterns([b"GET"], [], False)
        engine.set_stream_patterns([b"POST"], [b"200 OK"], True)
        assert engine.meter_layout.stride == 0
    finally:
        engine.close()
