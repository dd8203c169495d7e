"""aioflow against the independent dpkt reference (tests/reference.py), capture by capture.

All protocols, not only TCP/UDP: for every capture libpcap can open, each flow's orientation
(src/dst), packets, IP bytes and captured bytes per direction must match the reference's flow with
the same key (IP version, protocol, VLAN id, unordered endpoints); flows split by port reuse are
matched as a multiset. Also: aioflow reads as many records as the reference reader, conserves
packets (read = in flows + aside), and every capture yields flows or raises a typed exception.
"""

from __future__ import annotations

import ipaddress
import os
from collections import defaultdict
from pathlib import Path

import pytest
import reference

import aioflow

CORPUS = Path(os.environ.get("AIOFLOW_PCAPS") or Path(__file__).resolve().parents[2] / "shared" / "pcaps")
ABSENT = f"capture corpus absent: {CORPUS} not found (set AIOFLOW_PCAPS to the shared pcaps folder)"
NO_TIMEOUTS = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}

# Files libpcap refuses to open, with the exception aioflow must raise for each.
REFUSED: dict[str, type[aioflow.AioflowError]] = {
    "malformed/libpcap_pcap-invalid-version-1.pcap": aioflow.CaptureFormatError,  # pcap 1.4
    "malformed/libpcap_pcapng-invalid-vers-1.pcapng": aioflow.CaptureFormatError,  # SHB 0.1
    "malformed/libpcap_shb-option-too-long.pcapng": aioflow.CaptureFormatError,  # damaged SHB
}
# libpcap 1.10 opens this one (no packets); later libpcap versions check the reserved bits.
EITHER = {"malformed/libpcap_linktype-reserved-field-not-zero.pcap": aioflow.CaptureFormatError}


def _rel(p: Path) -> str:
    return p.relative_to(CORPUS).as_posix()


ALL = list(reference.iter_corpus(CORPUS)) if CORPUS.is_dir() else []
OPENABLE = [p for p in ALL if _rel(p) not in REFUSED]


def _params(paths: list[Path]) -> list[object]:
    return [pytest.param(p, id=_rel(p)) for p in paths] or [pytest.param(None, id="corpus-absent")]


Group = tuple[int, int, int, frozenset[tuple[object, int]]]
Summary = tuple[object, ...]


def _group(version: int, proto: int, vlan: int, a: tuple[str, int], b: tuple[str, int]) -> Group:
    ends = frozenset({(ipaddress.ip_address(a[0]), a[1]), (ipaddress.ip_address(b[0]), b[1])})
    return (version, proto, vlan, ends)


def _summary(f: aioflow.Flow | reference.RefFlow) -> Summary:
    return (
        str(ipaddress.ip_address(f.src_ip)), f.src_port, str(ipaddress.ip_address(f.dst_ip)), f.dst_port,
        f.src2dst_packets, f.src2dst_bytes, f.src2dst_captured_bytes,
        f.dst2src_packets, f.dst2src_bytes, f.dst2src_captured_bytes,
    )


def _tcp_ttl(f: aioflow.Flow | reference.RefFlow) -> tuple[object, ...]:
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
            g = _group(f.ip_version, f.protocol, f.vlan_id or 0, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
            groups[g].append(_summary(f))
            times[g].append((f.first_seen_ns, f.last_seen_ns, _tcp_ttl(f)))
            total += f.packets
        info = parser.info()
    return groups, total, info, times


def _ref_groups(ref: reference.RefResult) -> dict[Group, list[Summary]]:
    groups: dict[Group, list[Summary]] = defaultdict(list)
    for f in ref.flows:
        groups[_group(f.ip_version, f.protocol, f.vlan_id, (f.src_ip, f.src_port),
                      (f.dst_ip, f.dst_port))].append(_summary(f))
    return groups


_FIELDS = ("src_ip", "src_port", "dst_ip", "dst_port", "s2d_pkts", "s2d_bytes", "s2d_cap",
           "d2s_pkts", "d2s_bytes", "d2s_cap")


def _explain(got: dict[Group, list[Summary]], want: dict[Group, list[Summary]]) -> str:
    lines = []
    for g in sorted(set(got) | set(want), key=str):
        a, b = sorted(got.get(g, [])), sorted(want.get(g, []))
        if a != b:
            ends = " <-> ".join(sorted(f"{ip}:{port}" for ip, port in g[3]))
            lines.append(f"  v{g[0]} proto {g[1]} vlan {g[2]} {ends}:\n    aioflow   {a}\n    reference {b}")
    head = f"{len(lines)} flow key(s) differ (fields: {', '.join(_FIELDS)}):\n"
    return head + "\n".join(lines[:12])


@pytest.mark.corpus
@pytest.mark.asyncio
@pytest.mark.parametrize("path", _params(OPENABLE))
async def test_flows_match_reference(path: Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    rel = _rel(path)
    ref = reference.reference_flows(path)
    groups, in_flows, info, times = await run_parser_times(path)

    assert info.packets == ref.records, f"{rel}: aioflow read {info.packets} packets, dpkt {ref.records} records"
    assert info.packets == info.packets_in_flows + sum(info.aside.values()), (
        f"{rel}: conservation broken: read {info.packets}, in flows {info.packets_in_flows}, aside {info.aside}")
    assert in_flows == info.packets_in_flows, f"{rel}: flows carry {in_flows}, info says {info.packets_in_flows}"
    assert bool(info.read_errors) == bool(ref.read_error), (
        f"{rel}: read errors {info.read_errors} ({info.read_error!r}), reference: {ref.read_error!r}")
    want = _ref_groups(ref)
    assert {k: sorted(v) for k, v in groups.items()} == {k: sorted(v) for k, v in want.items()}, (
        f"{rel}: " + _explain(groups, want))
    assert sum(info.aside.values()) == sum(ref.aside.values()), (
        f"{rel}: aside aioflow {info.aside}, reference {dict(ref.aside)}")
    # First and last packet times (ns), for flows alone on their key whose packets are in time
    # order in the file (otherwise "last" could mean the latest or the last read) and have
    # meaningful timestamps.
    # Also per direction: OR of TCP flags, SYN/FIN/RST counts, TTL range.
    wrong, wrong_tcp = [], []
    for f in ref.flows:
        g = _group(f.ip_version, f.protocol, f.vlan_id, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
        if len(times[g]) != 1 or len(want[g]) != 1:
            continue
        first, last, extra = times[g][0]
        if f.times_comparable and (first, last) != (f.first_seen_ns, f.last_seen_ns):
            wrong.append(f"{f.key}: aioflow {(first, last)}, reference {(f.first_seen_ns, f.last_seen_ns)}")
        if extra != _tcp_ttl(f):
            wrong_tcp.append(f"{f.key}: aioflow {extra}, reference {_tcp_ttl(f)}")
    assert not wrong, f"{rel}: first/last seen (ns) differ for {len(wrong)} flow(s):\n  " + "\n  ".join(wrong[:10])
    assert not wrong_tcp, (f"{rel}: (TCP flags, SYN/FIN/RST counts, TTL ranges) per direction differ for "
                           f"{len(wrong_tcp)} flow(s):\n  " + "\n  ".join(wrong_tcp[:10]))


@pytest.mark.corpus
@pytest.mark.parametrize("path", _params(ALL))
def test_capture_yields_flows_or_typed_error(path: Path | None) -> None:
    """Every capture, malformed ones included, either reads or raises aioflow's typed exception."""
    if path is None:
        pytest.skip(ABSENT)
    rel = _rel(path)
    expected = REFUSED.get(rel)
    try:
        reference.read_capture(path)
        ref_refuses = False
    except reference.CaptureRefused:
        ref_refuses = True
    assert ref_refuses == (expected is not None), f"{rel}: REFUSED list and the reference reader disagree"
    if expected is not None:
        with pytest.raises(expected) as err:
            list(aioflow.read(path, **NO_TIMEOUTS))
        assert isinstance(err.value, ValueError)  # CaptureFormatError is also a ValueError
        assert str(path.name) in str(err.value), f"the message should name the file: {err.value}"
        return
    try:
        flows = list(aioflow.read(path, **NO_TIMEOUTS))
    except aioflow.AioflowError as exc:
        if rel in EITHER and isinstance(exc, EITHER[rel]):
            return
        raise AssertionError(f"{rel}: libpcap opens this capture but aioflow raised {exc!r}") from exc
    # Nobody stops the parser and the table is far from full: those reasons cannot appear.
    # ("idle" can: some captures jump from 1970 to today, a gap over any timeout.)
    reasons = {f.end_reason for f in flows}
    assert reasons <= {"idle", "active", "fin", "rst", "eof"}, f"{rel}: unexpected end reasons {reasons}"


@pytest.mark.corpus
def test_corpus_is_not_trivial() -> None:
    """Guard against vacuous passes: the corpus gives the comparison real work."""
    if not ALL:
        pytest.skip(ABSENT)
    assert len(OPENABLE) >= 100
    protos: set[int] = set()
    vlans: set[int] = set()
    for p in OPENABLE:
        if p.stat().st_size < 1_000_000:
            flows = reference.reference_flows(p).flows
            protos |= {f.protocol for f in flows}
            vlans |= {f.vlan_id for f in flows}
    # ICMP, TCP, UDP, ICMPv6, SCTP, GRE, 6in4 flows; tagged and untagged traffic.
    assert {1, 6, 17, 58, 132, 47, 41} <= protos, protos
    assert len(vlans) > 3, vlans
