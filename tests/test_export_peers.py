"""aioflow's NetFlow v5/v9 and IPFIX exports checked by tools nobody here wrote.

- nfcapd (nfdump) collects what aioflow's UDP exporters send for every capture of the corpus (one
  nfcapd per format; each capture exported from its own loopback source address, so nfdump's router
  address tells the captures apart), and `nfdump -o json` must list the same records aioflow ended:
  endpoints, protocol, packets, bytes, times to the millisecond, TCP flags (v5/v9; nfdump folds
  IPFIX's reverse flags into the forward ones), both directions of IPFIX biflows; nfcapd counts no
  sequence error and no bad packet.
- tshark's cflow dissector decodes the same datagrams (written to a pcap) with no expert warning
  and no malformed packet, and finds every record.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import reference
from support.corpus import ABSENT, CORPUS
from support.nfdump_peer import nfcapd_running, nfdump_json

import aioflow
from aioflow.export import EXPORTERS
from aioflow.netflow._encode import PORT_PROTOCOLS, Clock, encoder_for, gather_records

FORMATS = ("v5", "v9", "ipfix")
TSHARK = shutil.which("tshark")
FLAG_LETTERS = "CEUAPRSF"  # nfdump's flag string, most significant bit first

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=ABSENT),
]


def _rel(p: Path) -> str:
    return p.relative_to(CORPUS).as_posix()


def _load() -> tuple[dict[str, list[aioflow.Flow]], dict[str, str]]:
    flows: dict[str, list[aioflow.Flow]] = {}
    unreadable: dict[str, str] = {}
    if CORPUS.is_dir():
        for path in reference.iter_corpus(CORPUS):
            try:
                flows[_rel(path)] = list(aioflow.read(path))
            except aioflow.CaptureFormatError as exc:
                unreadable[_rel(path)] = str(exc)
    return flows, unreadable


FLOWS, UNREADABLE = _load()
CAPTURES = sorted(FLOWS)
# Capture i is exported from 127.0.1.(i+1): nfdump's ip4_router names the capture.
SOURCE = {rel: f"127.0.{1 + i // 250}.{1 + i % 250}" for i, rel in enumerate(CAPTURES)}


def _flags(bits: int) -> str:
    return "".join(letter if bits & (0x80 >> i) else "." for i, letter in enumerate(FLAG_LETTERS))


def _ms_text(ns: int, fmt: str = "ipfix") -> str | None:
    """nfdump's time text; None where the format cannot carry the time (v5/v9 after 2106)."""
    if (fmt != "ipfix" and ns >= Clock.LIMIT_NS) or ns // 1_000_000_000 > 253402300799:  # year 9999: Python's limit
        return None
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ns // 1_000_000 % 1000:03d}"


def expected(fmt: str, flows: list[aioflow.Flow]) -> Counter[tuple[Any, ...]]:
    """The records each format should carry, as nfdump prints them."""
    out: Counter[tuple[Any, ...]] = Counter()
    for f in flows:
        if fmt == "v5" and f.ip_version == 6:
            continue
        ported = f.protocol in PORT_PROTOCOLS
        sides = [(f.src_ip, f.src_port, f.dst_ip, f.dst_port, "src2dst"),
                 (f.dst_ip, f.dst_port, f.src_ip, f.src_port, "dst2src")]  # fmt: skip
        if fmt == "ipfix":
            out[(f.src_ip, f.src_port if ported else 0, f.dst_ip, f.dst_port if ported else 0, f.protocol,
                 f.src2dst_packets, f.src2dst_bytes, f.dst2src_packets, f.dst2src_bytes,
                 _ms_text(f.first_seen_ns), _ms_text(f.last_seen_ns), "-")] += 1  # fmt: skip
            continue
        for sa, sp, da, dp, d in sides:
            packets = getattr(f, f"{d}_packets")
            if packets:
                first, last = getattr(f, f"{d}_first_seen_ns"), getattr(f, f"{d}_last_seen_ns")
                out[(sa, sp if ported else 0, da, dp if ported else 0, f.protocol, packets, getattr(f, f"{d}_bytes"),
                     0, 0, _ms_text(first, fmt), _ms_text(last, fmt),
                     _flags(getattr(f, f"{d}_tcp_flags")) if f.protocol == 6 else "-")] += 1  # fmt: skip
    return out


def nfdump_record(fmt: str, r: dict[str, Any]) -> tuple[Any, ...]:
    proto = r["proto"]
    return (
        r.get("src4_addr") or r.get("src6_addr"), r.get("src_port", 0), r.get("dst4_addr") or r.get("dst6_addr"),
        r.get("dst_port", 0), proto, r["in_packets"], r["in_bytes"], r.get("out_packets", 0), r.get("out_bytes", 0),
        r["first"], r["last"], r["tcp_flags"] if proto == 6 and fmt != "ipfix" else "-",
    )  # fmt: skip


def _untimed(records: Counter[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    out: Counter[tuple[Any, ...]] = Counter()
    for t, n in records.items():
        out[t[:9] + t[11:]] += n
    return out


def _diff(got: Counter[tuple[Any, ...]], want: Counter[tuple[Any, ...]]) -> str:
    return f"missing: {list((want - got).items())[:5]} unexpected: {list((got - want).items())[:5]}"


async def _export_corpus(fmt: str, port: int) -> dict[str, aioflow.export.ExportStats]:
    stats = {}
    for rel in CAPTURES:
        exporter = EXPORTERS[fmt](("127.0.0.1", port), local_address=(SOURCE[rel], 0), max_rate=20_000)
        async with exporter:
            await exporter.send_many(FLOWS[rel])
        stats[rel] = exporter.stats
    return stats


class Collected:
    def __init__(self, stats: dict[str, aioflow.export.ExportStats], records: list[dict[str, Any]], log: str):
        self.stats = stats
        self.log = log
        self.by_source: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            self.by_source.setdefault(r.get("ip4_router", "?"), []).append(r)


@pytest.fixture(scope="module", params=FORMATS)
def collected(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, nfdump: object
) -> Iterator[Collected]:
    fmt = request.param
    folder = tmp_path_factory.mktemp(f"nfcapd-{fmt}")
    with nfcapd_running(folder) as nfcapd:
        stats = anyio.run(_export_corpus, fmt, nfcapd.port)
    yield Collected(stats, nfdump_json(folder), nfcapd.log)


def test_nfcapd_saw_no_sequence_error_or_bad_packet(collected: Collected) -> None:
    summaries = [line for line in collected.log.splitlines() if "Sequence Errors" in line]
    assert summaries, collected.log
    for line in summaries:
        assert "Sequence Errors: 0," in line and "Bad Packets: 0" in line, line
    assert all(s.send_errors == 0 for s in collected.stats.values())


@pytest.mark.parametrize("rel", CAPTURES or [pytest.param(None, marks=pytest.mark.skip("corpus absent"))])
def test_nfdump_shows_the_flows_aioflow_ended(collected: Collected, rel: str, request: pytest.FixtureRequest) -> None:
    fmt = request.node.callspec.params["collected"]
    flows = FLOWS[rel]
    want = expected(fmt, flows)
    got = Counter(nfdump_record(fmt, r) for r in collected.by_source.get(SOURCE[rel], []))
    assert _untimed(got) == _untimed(want), _diff(_untimed(got), _untimed(want))
    # times too, where the format can carry them (not a damaged capture's year-2554 timestamps in v5/v9)
    timed = Counter({t: n for t, n in want.items() if None not in t[9:11]})
    assert not timed - got, _diff(got, timed)
    stats = collected.stats[rel]
    assert stats.flows == len(flows)
    assert stats.records == sum(want.values())
    if fmt == "v5":
        assert stats.skipped_ipv6 == sum(f.ip_version == 6 for f in flows)
        if not want and flows:
            pytest.skip("IPv6 flows only, which NetFlow v5 cannot carry (counted in skipped_ipv6, checked)")


def test_some_captures_are_unreadable_for_a_reason() -> None:
    # the capture files libpcap refuses are the only ones left out, each with libpcap's reason
    assert set(UNREADABLE) <= set(reference.EXCLUDED), UNREADABLE
    assert len(CAPTURES) > 100


# --- tshark's dissector over the same datagrams ---


def _pcap(datagrams: list[tuple[str, bytes]], port: int) -> bytes:
    """A LINKTYPE_RAW pcap: each datagram in an IPv4/UDP packet from its source to port."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for i, (source, payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         socket.inet_aton(source), socket.inet_aton("127.0.0.1")) + udp  # fmt: skip
        out += struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, len(ip), len(ip)) + ip
    return bytes(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_tshark_decodes_every_datagram_cleanly(fmt: str, tmp_path: Path) -> None:
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    datagrams: list[tuple[str, bytes]] = []
    records = 0
    for rel in CAPTURES:
        encoder = encoder_for(fmt)
        datagrams += [(SOURCE[rel], m) for m in encoder.encode(gather_records(FLOWS[rel]))]
        records += encoder.stats.records
    port = 2055
    capture = tmp_path / f"{fmt}.pcap"
    capture.write_bytes(_pcap(datagrams, port))
    fields = subprocess.run(
        [TSHARK, "-n", "-r", str(capture), "-d", f"udp.port=={port},cflow", "-T", "fields", "-E", "occurrence=a",
         "-e", "_ws.expert.severity", "-e", "_ws.malformed", "-e", "cflow.count", "-e", "cflow.flowset_id"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(fields) == len(datagrams)
    problems = [(i, line) for i, line in enumerate(fields) if line.split("\t")[0] or line.split("\t")[1]]
    assert not problems, problems[:5]
    # every record is decoded: tshark's per-record "Flow N" trees, counted by the flow start field
    starts = subprocess.run(
        [TSHARK, "-n", "-r", str(capture), "-d", f"udp.port=={port},cflow", "-T", "fields", "-E", "occurrence=a",
         "-E", "aggregator=;", "-e", "cflow.packets"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    decoded = sum(len(line.split(";")) for line in starts)
    per_record = 2 if fmt == "ipfix" else 1  # IPFIX biflows: packets and reversePackets
    assert decoded == records * per_record
