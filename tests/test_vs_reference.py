"""aioflow against the independent dpkt reference (tests/support/reference.py), capture by capture.

All protocols, not only TCP/UDP: for every capture libpcap can open, each flow's orientation
(src/dst), packets, IP bytes and captured bytes per direction must match the reference's flow with
the same key (IP version, protocol, VLAN id, unordered endpoints); flows split by port reuse are
matched as a multiset. Also: aioflow reads as many records as the reference reader, conserves
packets (read = in flows + aside), and every capture yields flows or raises a typed exception.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from support import reference
from support.compare import NO_TIMEOUTS, explain, group, ref_groups, run_parser_times, tcp_ttl
from support.corpus import ABSENT, CORPUS, name_of, params
from support.reference import ReferenceFlows

import aioflow

# Files libpcap refuses to open, with the exception aioflow must raise for each.
REFUSED: dict[str, type[aioflow.AioflowError]] = {
    "malformed/libpcap_pcap-invalid-version-1.pcap": aioflow.CaptureFormatError,  # pcap 1.4
    "malformed/libpcap_pcapng-invalid-vers-1.pcapng": aioflow.CaptureFormatError,  # SHB 0.1
    "malformed/libpcap_shb-option-too-long.pcapng": aioflow.CaptureFormatError,  # damaged SHB
}
# libpcap 1.10 opens this one (no packets); later libpcap versions check the reserved bits.
EITHER = {"malformed/libpcap_linktype-reserved-field-not-zero.pcap": aioflow.CaptureFormatError}


ALL = list(reference.iter_corpus(CORPUS)) if CORPUS.is_dir() else []
OPENABLE = [p for p in ALL if name_of(p) not in REFUSED]


@pytest.mark.corpus
@pytest.mark.anyio
@pytest.mark.parametrize("path", params(OPENABLE))
async def test_flows_match_reference(path: Path | None, reference_flows: ReferenceFlows) -> None:
    if path is None:
        pytest.skip(ABSENT)
    rel = name_of(path)
    ref = reference_flows(path)
    groups, in_flows, info, times = await run_parser_times(path)

    assert info.packets == ref.records, f"{rel}: aioflow read {info.packets} packets, dpkt {ref.records} records"
    assert info.packets == info.packets_in_flows + sum(info.aside.values()), (
        f"{rel}: conservation broken: read {info.packets}, in flows {info.packets_in_flows}, aside {info.aside}")
    assert in_flows == info.packets_in_flows, f"{rel}: flows carry {in_flows}, info says {info.packets_in_flows}"
    assert bool(info.read_errors) == bool(ref.read_error), (
        f"{rel}: read errors {info.read_errors} ({info.read_error!r}), reference: {ref.read_error!r}")
    want = ref_groups(ref)
    assert {k: sorted(v) for k, v in groups.items()} == {k: sorted(v) for k, v in want.items()}, (
        f"{rel}: " + explain(groups, want))
    assert sum(info.aside.values()) == sum(ref.aside.values()), (
        f"{rel}: aside aioflow {info.aside}, reference {dict(ref.aside)}")
    # First and last packet times (ns), for flows alone on their key whose packets are in time
    # order in the file (otherwise "last" could mean the latest or the last read) and have
    # meaningful timestamps.
    # Also per direction: OR of TCP flags, SYN/FIN/RST counts, TTL range.
    wrong, wrong_tcp = [], []
    for f in ref.flows:
        g = group(f.ip_version, f.protocol, f.vlan_id, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))
        if len(times[g]) != 1 or len(want[g]) != 1:
            continue
        first, last, extra = times[g][0]
        if f.times_comparable and (first, last) != (f.first_seen_ns, f.last_seen_ns):
            wrong.append(f"{f.key}: aioflow {(first, last)}, reference {(f.first_seen_ns, f.last_seen_ns)}")
        if extra != tcp_ttl(f):
            wrong_tcp.append(f"{f.key}: aioflow {extra}, reference {tcp_ttl(f)}")
    assert not wrong, f"{rel}: first/last seen (ns) differ for {len(wrong)} flow(s):\n  " + "\n  ".join(wrong[:10])
    assert not wrong_tcp, (f"{rel}: (TCP flags, SYN/FIN/RST counts, TTL ranges) per direction differ for "
                           f"{len(wrong_tcp)} flow(s):\n  " + "\n  ".join(wrong_tcp[:10]))


@pytest.mark.corpus
@pytest.mark.parametrize("path", params(ALL))
def test_capture_yields_flows_or_typed_error(path: Path | None) -> None:
    """Every capture, malformed ones included, either reads or raises aioflow's typed exception."""
    if path is None:
        pytest.skip(ABSENT)
    rel = name_of(path)
    expected = REFUSED.get(rel)
    read_error = ""
    try:
        read_error = reference.read_capture(path).read_error
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            flows = list(aioflow.read(path, **NO_TIMEOUTS))
    except aioflow.AioflowError as exc:
        if rel in EITHER and isinstance(exc, EITHER[rel]):
            return
        raise AssertionError(f"{rel}: libpcap opens this capture but aioflow raised {exc!r}") from exc
    # a damaged capture says so (CaptureDamagedWarning) exactly when the reference reader stops early
    damaged = [w for w in caught if issubclass(w.category, aioflow.CaptureDamagedWarning)]
    assert len(damaged) == bool(read_error), f"{rel}: {[str(w.message) for w in damaged]}, reference: {read_error!r}"
    # Nobody stops the parser and the table is far from full: those reasons cannot appear.
    # ("idle" can: some captures jump from 1970 to today, a gap over any timeout.)
    reasons = {f.end_reason for f in flows}
    assert reasons <= {"idle", "active", "fin", "rst", "eof"}, f"{rel}: unexpected end reasons {reasons}"


@pytest.mark.corpus
def test_corpus_is_not_trivial(reference_flows: ReferenceFlows) -> None:
    """Guard against vacuous passes: the corpus gives the comparison real work."""
    if not ALL:
        pytest.skip(ABSENT)
    assert len(OPENABLE) >= 100
    protos: set[int] = set()
    vlans: set[int] = set()
    for p in OPENABLE:
        if p.stat().st_size < 1_000_000:
            flows = reference_flows(p).flows
            protos |= {f.protocol for f in flows}
            vlans |= {f.vlan_id for f in flows}
    # ICMP, TCP, UDP, ICMPv6, SCTP, GRE, 6in4 flows; tagged and untagged traffic.
    assert {1, 6, 17, 58, 132, 47, 41} <= protos, protos
    assert len(vlans) > 3, vlans
