"""aioflow's own capture-file reader (capfile.c, capread.c) against libpcap's, and what libpcap
cannot read.

The libpcap path stays reachable for this (AIOFLOW_FILE_READER=libpcap): on every capture both
can read, the two give the same records byte for byte (flows, counters, end reasons, times) and
the same counters. Formats libpcap reads but the corpus lacks are written here with editcap
(Wireshark's writer) or byte by byte from the pcap specification; compressed captures with gzip
and zstd; multi-link-type pcapngs with mergecap and checked against tshark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import shutil
import struct
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import reference
from support.compare import aioflow_conversations
from support.corpus import ABSENT, CORPUS, DATA, params
from support.tools import TOOL_ENV
from support.tshark import TShark

import aioflow

ALL = list(reference.iter_corpus(CORPUS)) if CORPUS.is_dir() else []
BUNDLED = sorted(DATA.glob("*.pcap*"))
ETHERNET = DATA / "ndpi_syslog.pcap"  # link type 1, 94 packets
SLL2 = DATA / "zeek_linux_dlt_sll2.pcap"  # link type 276
RAW = DATA / "ndpi_ocs.pcap"  # link type 101 (DLT_RAW)
# what differs by nature between two runs, not by reader
VOLATILE = {"packets_per_second", "reap_seconds", "read_error"}


@dataclasses.dataclass
class Run:
    records: bytes  # every ended flow's C record, in order
    info: aioflow.ParserInfo


@contextlib.contextmanager
def _reader(libpcap: bool) -> Iterator[None]:
    """libpcap=True: engines opened meanwhile read files with libpcap (the internal switch)."""
    old = os.environ.pop("AIOFLOW_FILE_READER", None)
    if libpcap:
        os.environ["AIOFLOW_FILE_READER"] = "libpcap"
    try:
        yield
    finally:
        os.environ.pop("AIOFLOW_FILE_READER", None)
        if old is not None:
            os.environ["AIOFLOW_FILE_READER"] = old


async def _run(path: Path, libpcap: bool = False, **options: Any) -> Run:
    """One parse, by aioflow's reader or (libpcap=True) libpcap's; a fixed hash seed so the two
    give the same bytes."""
    raw = []
    with _reader(libpcap):
        async with aioflow.FlowParser(path, hash_seed=7, **options) as p:
            async for batch in p.batches():
                raw.append(bytes(batch.raw_records()))
    return Run(b"".join(raw), p.info())


def _counters(info: aioflow.ParserInfo) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(info).items() if k not in VOLATILE}


def _flows(path: Path, **options: Any) -> Counter[tuple[Any, ...]]:
    """Flows as (key, packets, bytes per direction): what a union of captures must keep."""
    return Counter(
        (
            f.ip_version,
            f.protocol,
            f.src_ip,
            f.dst_ip,
            f.src_port,
            f.dst_port,
            f.vlan_id,
            f.src2dst_packets,
            f.dst2src_packets,
            f.src2dst_bytes,
            f.dst2src_bytes,
        )
        for f in aioflow.read(path, idle_timeout=1e9, active_timeout=1e9, fin_timeout=1e9, **options)
    )


@pytest.mark.corpus
@pytest.mark.anyio
@pytest.mark.parametrize("path", [*params(ALL), *(pytest.param(p, id=f"bundled/{p.name}") for p in BUNDLED)])
async def test_same_records_and_counters_as_libpcap(path: Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    try:
        theirs = await _run(path, libpcap=True)
    except aioflow.CaptureFormatError:
        with pytest.raises(aioflow.CaptureFormatError):  # a header neither can read
            await _run(path)
        return
    ours = await _run(path)
    if theirs.info.read_errors and "different from the" in theirs.info.read_error:
        # libpcap's one limit this reader lifts: every interface of a pcapng with its own link type
        assert ours.info.packets > theirs.info.packets and not ours.info.read_errors
        return
    assert ours.records == theirs.records
    assert _counters(ours.info) == _counters(theirs.info)
    if theirs.info.read_errors:  # damage: ours says where
        assert "at byte" in ours.info.read_error, ours.info.read_error


@pytest.mark.anyio
async def test_read_ahead_gives_the_same_records() -> None:
    ours, ahead = await _run(ETHERNET, read_ahead=False), await _run(ETHERNET, read_ahead=True)
    assert ours.records == ahead.records and _counters(ours.info) == _counters(ahead.info)


def _tool(*args: str | Path) -> str:
    """A Wireshark tool's output (a sync helper: async tests call it between awaits)."""
    if shutil.which(str(args[0])) is None:
        pytest.skip(f"{args[0]} (wireshark-common / zstd) not installed")
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True, env=TOOL_ENV).stdout


async def _until(condition: Callable[[], bool]) -> None:
    """Waits for a counted event (no fixed sleep decides anything), at most 30 s."""
    with anyio.fail_after(30):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


def _mergecap(tmp_path: Path, *parts: Path) -> Path:
    out = tmp_path / "merged.pcapng"
    _tool("mergecap", "-a", "-w", out, *parts)
    return out


@pytest.mark.parametrize("bpf", [None, "tcp", "udp port 514"])
def test_a_merged_capture_of_three_link_types_gives_the_union_of_its_parts(tmp_path: Path, bpf: str | None) -> None:
    merged = _mergecap(tmp_path, ETHERNET, SLL2, RAW)
    assert {lt for lt, _, _ in reference.read_capture(merged).records} == {1, 276, 101}
    parts = _flows(ETHERNET, filter=bpf) + _flows(SLL2, filter=bpf) + _flows(RAW, filter=bpf)
    assert parts and _flows(merged, filter=bpf) == parts


def test_a_merged_capture_of_three_link_types_matches_tshark(tmp_path: Path, tshark: TShark) -> None:
    # not ndpi_syslog.pcap: tshark counts the IPv6 inside its 6in4 tunnel as a conversation
    merged = _mergecap(tmp_path, DATA / "ndpi_smtp-starttls.pcap", SLL2, RAW)
    want = tshark.conversations(merged)
    assert len(want) > 10 and aioflow_conversations(merged) == want


def test_libpcap_reads_none_of_a_multi_link_type_capture(tmp_path: Path) -> None:
    """Why this reader exists: libpcap stops at the second interface."""
    merged = _mergecap(tmp_path, ETHERNET, SLL2)
    with _reader(libpcap=True):
        info = anyio.run(_info, merged)
    assert info.packets == 0 and "different from the type of the first interface" in info.read_error
    assert anyio.run(_info, merged).packets == 94 + 6


async def _info(path: Path, **options: Any) -> aioflow.ParserInfo:
    async with aioflow.FlowParser(path, **options) as p:
        async for _ in p.terminated():
            pass
    return p.info()


@pytest.mark.corpus
def test_ldap_modify_request_matches_tshark(corpus: Path, tshark: TShark) -> None:
    """126 interfaces with different snapshot lengths (Zeek's test capture): tshark reads them all."""
    path = corpus / "zeek_ldap_modify-request.pcapng"
    if not path.is_file():
        pytest.skip(f"{path} not in the corpus")
    want = tshark.conversations(path)
    assert want and aioflow_conversations(path) == want


# --- formats written here: each must read as the original does ---


def _pcap_records(path: Path) -> tuple[bytes, list[tuple[int, int, int, int, bytes]]]:
    """A little-endian µs pcap's header and records (sec, usec, caplen, len, data)."""
    raw = path.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos < len(raw):
        sec, usec, caplen, wire = struct.unpack_from("<IIII", raw, pos)
        out.append((sec, usec, caplen, wire, raw[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    return raw[:24], out


def _write_pcap(
    path: Path,
    header: bytes,
    records: list[tuple[int, int, int, int, bytes]],
    *,
    order: str = "<",
    magic: int = 0xA1B2C3D4,
    minor: int = 4,
    ns: bool = False,
    modified: bool = False,
) -> Path:
    snaplen, linktype = struct.unpack_from("<II", header, 16)
    out = [struct.pack(order + "IHHiIII", magic, 2, minor, 0, 0, snaplen, linktype)]
    for sec, usec, caplen, wire, data in records:
        a, b = (wire, caplen) if minor < 3 else (caplen, wire)
        out.append(struct.pack(order + "IIII", sec, usec * 1000 if ns else usec, a, b))
        if modified:  # ifindex, protocol, pkt_type, pad
            out.append(struct.pack(order + "IHBB", 2, 0x0800, 0, 0))
        out.append(data)
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("variant", ["big-endian", "nanoseconds", "modified", "version-2.2"])
async def test_pcap_variants_read_as_the_original(tmp_path: Path, variant: str) -> None:
    header, records = _pcap_records(ETHERNET)
    kw: dict[str, Any] = {
        "big-endian": {"order": ">"},
        "nanoseconds": {"magic": 0xA1B23C4D, "ns": True},
        "modified": {"magic": 0xA1B2CD34, "modified": True},
        "version-2.2": {"minor": 2},
    }[variant]
    path = _write_pcap(tmp_path / f"{variant}.pcap", header, records, **kw)
    original = await _run(ETHERNET)
    ours, theirs = await _run(path), await _run(path, libpcap=True)
    assert ours.records == original.records == theirs.records
    assert _counters(ours.info)["packets"] == 94 and not ours.info.read_errors


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "modpcap"])
async def test_editcap_formats_read_as_the_original(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    _tool("editcap", "-F", fmt, ETHERNET, path)
    ours, theirs, original = await _run(path), await _run(path, libpcap=True), await _run(ETHERNET)
    assert ours.records == theirs.records == original.records


def _pcapng(order: str, blocks: list[tuple[int, bytes]]) -> bytes:
    out = []
    for btype, body in blocks:
        body += b"\0" * (-len(body) % 4)
        out.append(struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12))
    return b"".join(out)


@pytest.mark.anyio
@pytest.mark.parametrize("order", ["<", ">"])
async def test_pcapng_resolution_offset_and_block_kinds(tmp_path: Path, order: str) -> None:
    """Per interface: if_tsresol (2^-10 and 10^-9), if_tsoffset; EPB, the obsolete PB, SPB, an
    unknown block skipped, and a second section with interfaces of its own."""
    _, records = _pcap_records(ETHERNET)
    shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)

    def idb(snaplen: int, options: bytes) -> tuple[int, bytes]:
        return 1, struct.pack(order + "HHI", 1, 0, snaplen) + options + struct.pack(order + "HH", 0, 0)

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    offset = 1000
    blocks = [
        (0x0A0D0D0A, shb),
        idb(65535, opt(9, bytes([0x8A])) + opt(14, struct.pack(order + "q", -offset))),
        idb(65535, opt(9, bytes([9]))),
    ]
    for i, (sec, usec, caplen, wire, data) in enumerate(records[:40]):
        ticks = ((sec + offset) << 10) + (usec << 10) // 1_000_000  # 2^-10 s, as written by a 1024 Hz clock
        if i % 2:
            blocks.append((6, struct.pack(order + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, caplen, wire) + data))
        else:
            blocks.append(
                (2, struct.pack(order + "HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF, caplen, wire) + data)
            )
    blocks.append((0x80000001, b"custom block"))
    blocks.append((0x0A0D0D0A, shb))  # a new section: its own interfaces
    blocks.append(idb(65535, opt(9, bytes([9]))))
    for sec, usec, caplen, wire, data in records[40:]:
        ticks = sec * 10**9 + usec * 1000
        blocks.append((6, struct.pack(order + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, caplen, wire) + data))
    blocks.append((3, struct.pack(order + "I", records[0][3]) + records[0][4]))  # SPB: no time
    path = tmp_path / "made.pcapng"
    path.write_bytes(_pcapng(order, blocks))

    tshark_times = _tool("tshark", "-r", path, "-T", "fields", "-e", "frame.time_epoch").splitlines()
    info = await _info(path)
    assert info.packets == len(records) + 1 == len(tshark_times)
    flows = [f for f in aioflow.read(path, idle_timeout=1e9, active_timeout=1e9)]
    first = min(f.first_seen_ns for f in flows if f.first_seen_ns)
    want = min(round(float(t) * 1e6) * 1000 for t in tshark_times if t and float(t) > 0)
    assert abs(first - want) < 1_000_000  # tshark prints µs of the 2^-10 s ticks
    assert sum(f.packets for f in flows) + sum(info.aside.values()) == info.packets


# --- compressed ---


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["gzip", "zstd"])
async def test_compressed_captures_read_as_the_original(tmp_path: Path, kind: str) -> None:
    for original in (ETHERNET, DATA / "zeek_pcapng-multi-interface.pcapng"):
        path = tmp_path / (original.name + (".gz" if kind == "gzip" else ".zst"))
        if kind == "gzip":
            path.write_bytes(gzip.compress(original.read_bytes()))
        else:
            _tool("zstd", "-q", "-o", path, original)
        try:
            ours = await _run(path)
        except aioflow.CaptureFormatError as exc:  # a build without libzstd says what to install
            assert kind == "zstd" and "libzstd-dev" in str(exc)
            return
        want = await _run(original)
        assert ours.records == want.records
        assert ours.info.progress == 1.0 and ours.info.packets == want.info.packets


@pytest.mark.anyio
async def test_a_cut_gzip_stream_is_a_read_error_after_the_flows_so_far(tmp_path: Path) -> None:
    data = gzip.compress(ETHERNET.read_bytes() * 1)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    info = await _info(path)
    assert info.read_errors == 1 and 0 < info.packets < 94 and info.read_error
    assert info.packets == info.packets_in_flows + sum(info.aside.values())


# --- damage ---


@pytest.mark.anyio
async def test_a_truncated_pcap_stops_where_libpcap_does_and_says_where(tmp_path: Path) -> None:
    raw = ETHERNET.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[: len(raw) - 30])
    ours, theirs = await _run(path), await _run(path, libpcap=True)
    assert ours.records == theirs.records and _counters(ours.info) == _counters(theirs.info)
    assert ours.info.read_errors == 1 and 0 < ours.info.packets < 94
    _, records = _pcap_records(ETHERNET)
    at = 24 + sum(16 + len(r[4]) for r in records[: ours.info.packets])
    assert ours.info.read_error.startswith(f"truncated at byte {at}:"), ours.info.read_error


@pytest.mark.anyio
async def test_a_damaged_pcapng_block_stops_there_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcapng"
    _tool("editcap", "-F", "pcapng", ETHERNET, path)
    raw = bytearray(path.read_bytes())
    pos = 0  # the 13th block (after the section header, the interface and 10 packets)
    for _ in range(12):
        pos += struct.unpack_from("<I", raw, pos + 4)[0]
    struct.pack_into("<I", raw, pos + 4, 13)  # not a multiple of 4
    path.write_bytes(bytes(raw))
    info = await _info(path)
    assert info.read_errors == 1 and info.packets > 0
    assert info.read_error.startswith(f"damaged at byte {pos}:") and "multiple of 4" in info.read_error
    assert info.packets == info.packets_in_flows + sum(info.aside.values())


# --- follow=True ---


@pytest.mark.anyio
@pytest.mark.parametrize("read_ahead", [False, True])
async def test_follow_reads_a_growing_file_until_stopped(tmp_path: Path, read_ahead: bool) -> None:
    raw = ETHERNET.read_bytes()
    _, records = _pcap_records(ETHERNET)
    cut = 24 + sum(16 + len(r[4]) for r in records[:50])
    path = tmp_path / "growing.pcap"
    path.write_bytes(raw[: cut + 7])  # half the packets, then part of a record header
    no_timeouts = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}
    got: Counter[tuple[Any, ...]] = Counter()
    reasons: Counter[str] = Counter()
    async with aioflow.FlowParser(path, follow=True, read_ahead=read_ahead, **no_timeouts) as p:
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for f in p.terminated():
                    got[(f.src_ip, f.dst_ip, f.src_port, f.dst_port, f.protocol, f.packets)] += 1
                    reasons[f.end_reason] += 1

            tg.start_soon(consume)
            await _until(lambda: p.info().packets >= 50)
            assert not p.info().read_errors  # a record cut short is waited for, not damage
            with path.open("ab") as fh:
                fh.write(raw[cut + 7 :])
            await _until(lambda: p.info().packets >= 94)
            assert not p.info().finished  # still following
            p.stop()
    info = p.info()
    assert info.packets == 94 and not info.read_errors
    flows = list(aioflow.read(ETHERNET, **no_timeouts))
    assert got == Counter((f.src_ip, f.dst_ip, f.src_port, f.dst_port, f.protocol, f.packets) for f in flows)
    # the same end reasons, but what the end of the file ended ends on stop()
    assert reasons == Counter("stop" if f.end_reason == "eof" else f.end_reason for f in flows)
