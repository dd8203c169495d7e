"""flow-tools files from the command line (`aioflow flows --format flow-tools -o FILE`, `aioflow
export/collect --flow-tools DIR`) and flow-capture-style rotation, counted in packet time."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import aioflow
from aioflow.netflow import FlowPDU, FlowSet
from aioflow.netflow._ftsink import FlowToolsRotator, capture_name
from aioflow.netflow.collect import Decoder

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"  # IPv4 and IPv6


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioflow", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def _directions(capture: Path) -> list[tuple[str, int, str, int, int, int, int]]:
    """aioflow's own flows, one row per IPv4 direction that saw packets (what v5 can carry)."""
    rows = []
    for f in aioflow.read(capture):
        if f.ip_version != 4:
            continue
        if f.src2dst_packets:
            rows.append((f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.src2dst_packets, f.src2dst_bytes))
        if f.dst2src_packets:
            rows.append((f.dst_ip, f.dst_port, f.src_ip, f.src_port, f.protocol, f.dst2src_packets, f.dst2src_bytes))
    return sorted(rows)


def _ported(row: tuple[str, int, str, int, int, int, int]) -> tuple[str, int, str, int, int, int, int]:
    ported = row[4] in (6, 17, 132, 33)
    return (row[0], row[1] if ported else 0, row[2], row[3] if ported else 0, *row[4:])


def test_flows_format_flow_tools(tmp_path: Path) -> None:
    out = tmp_path / "flows.ft"
    proc = _cli("flows", CAPTURE, "--format", "flow-tools", "-o", out)
    assert proc.returncode == 0, proc.stderr
    fs = FlowSet(out)
    assert (fs.export_version, fs.compressed, fs.flags & 1) == (5, True, 1)
    records = list(fs)
    got = sorted((r.srcaddr, r.srcport, r.dstaddr, r.dstport, r.prot, r.dPkts, r.dOctets) for r in records)
    want = sorted(_ported(row) for row in _directions(CAPTURE))
    assert got == want and fs.flow_count == len(want) > 10
    assert f"{len(want)} flow-tools v5 records" in proc.stderr and "IPv6 flows not written" in proc.stderr
    # times: the flows' own, to the ms (flow-tools' arithmetic on the uptime)
    first = min(f.first_seen_ns for f in aioflow.read(CAPTURE) if f.ip_version == 4)
    assert min(r.first for r in records) == pytest.approx(first // 1_000_000 / 1000, abs=1e-6)


def test_flows_flow_tools_needs_output(tmp_path: Path) -> None:
    proc = _cli("flows", CAPTURE, "--format", "flow-tools")
    assert proc.returncode == 2 and "give -o FILE" in proc.stderr


def test_export_and_collect_write_rotating_flow_capture_files(tmp_path: Path) -> None:
    export_dir, collect_dir = tmp_path / "export", tmp_path / "collect"
    ipfix = tmp_path / "flows.ipfix"
    proc = _cli("export", CAPTURE, "--flow-tools", export_dir, "--rotate-records", "20", "--write", ipfix,
                "--uniflow")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = sorted(export_dir.iterdir())
    assert files and all(p.name.startswith("ft-v05.") for p in files)  # no tmp-* left
    counts = [FlowSet(p).flow_count for p in files]
    assert sum(counts) == len(_directions(CAPTURE)) and all(c is not None and c >= 20 for c in counts[:-1])
    # collect reads the IPFIX file of the same flows (IPv6 too: those are skipped by v5 only in export)
    proc = _cli("collect", "--read", ipfix, "--flow-tools", collect_dir, "--rotate-seconds", "3600")
    assert proc.returncode == 0, proc.stderr
    collected = [r for p in sorted(collect_dir.iterdir()) for r in FlowSet(p)]
    assert len(collected) == sum(counts)  # the IPv6 records are not written (v5 cannot carry them)
    assert sorted((r.srcaddr, r.srcport, r.dstaddr, r.dstport, r.dPkts, r.dOctets) for r in collected) == sorted(
        (r.srcaddr, r.srcport, r.dstaddr, r.dstport, r.dPkts, r.dOctets) for p in files for r in FlowSet(p))
    assert _cli("collect", "--read", ipfix, "--rotate-records", "5").returncode == 2


def _pdu(seq: int, secs: int, count: int) -> FlowPDU:
    header = struct.pack("!HHIIIIBBH", 5, count, 100_000, secs, 0, seq, 0, 0, 0)
    rec = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes(4), 1, 2, 1,
                      60, 99_000, 99_500, 1, 2, 0, 0, 17, 0, 0, 0, 0, 0, 0)  # fmt: skip
    return FlowPDU("192.0.2.1", header + rec * count, decoder=Decoder())


def test_rotation_by_record_count(tmp_path: Path) -> None:
    rotator = FlowToolsRotator(directory=tmp_path, rotate_records=5)
    for i in range(4):  # 4 datagrams of 3 records: a datagram is never split
        rotator.write_pdu(_pdu(3 * i, 1_700_000_000 + i, 3))
    rotator.close()
    assert [FlowSet(p).flow_count for p in rotator.recent_files] == [6, 6]
    assert [p.name for p in rotator.recent_files] == [capture_name(1_700_000_000), capture_name(1_700_000_002)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in rotator.recent_files)


def test_rotation_keeps_a_count_and_the_last_paths_only(tmp_path: Path) -> None:
    """A collector rotating for months must not hold every path it ever wrote: a count, and the last few."""
    rotator = FlowToolsRotator(directory=tmp_path, rotate_records=1, keep_paths=3)
    for i in range(10):
        rotator.write_pdu(_pdu(i, 1_700_000_000 + i, 1))
    rotator.close()
    assert rotator.files_written == 10 == len(list(tmp_path.iterdir()))
    assert [p.name for p in rotator.recent_files] == [capture_name(1_700_000_000 + i) for i in (7, 8, 9)]


def test_rotation_by_packet_time(tmp_path: Path) -> None:
    rotator = FlowToolsRotator(directory=tmp_path, rotate_seconds=60)
    for i, secs in enumerate((1000, 1030, 1061, 1079, 1200)):
        rotator.write_pdu(_pdu(i, secs, 1))
    rotator.close()
    names = [p.name for p in rotator.recent_files]
    assert names == ["ft-v05.1970-01-01.001600+0000", "ft-v05.1970-01-01.001700+0000",
                     "ft-v05.1970-01-01.002000+0000"]  # fmt: skip
    sets = [FlowSet(p) for p in rotator.recent_files]
    # files start at 60 s boundaries of the datagrams' export time: [960, 1020), [1020, 1080), [1200, 1260)
    assert [s.flow_count for s in sets] == [1, 3, 1]
    assert [(s.capture_start, s.capture_end) for s in sets] == [(960, 1000), (1020, 1079), (1200, 1200)]
    assert all(not s.streaming and s.hostname for s in sets)


def test_rotation_by_records_waits_for_another_second(tmp_path: Path) -> None:
    """Files are named to the second: a burst of one second stays in one file (two files of one name
    would be one), the next second starts a new one."""
    rotator = FlowToolsRotator(directory=tmp_path, rotate_records=1)
    for i, secs in enumerate((1000, 1000, 1000, 1001, 1001, 999)):
        rotator.write_pdu(_pdu(i, secs, 1))
    rotator.close()
    assert [(p.name, FlowSet(p).flow_count) for p in rotator.recent_files] == [
        (capture_name(1000), 3), (capture_name(1001), 2), (capture_name(999), 1)]  # fmt: skip


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    """A collector restarted within the second (or period) of an earlier run's file."""
    for run in range(3):
        rotator = FlowToolsRotator(directory=tmp_path, rotate_seconds=300)
        rotator.write_pdu(_pdu(0, 1_700_000_100 + run, 1 + run))
        rotator.close()
    name = capture_name(1_700_000_100 - 1_700_000_100 % 300)
    assert {p.name: FlowSet(p).flow_count for p in tmp_path.iterdir()} == {name: 1, name + ".1": 2, name + ".2": 3}


def test_lost_flows_and_sequence_resets_counted_as_flow_capture(tmp_path: Path) -> None:
    """v5 sequence numbers followed per exporter: a gap of fewer than 1000 flows is lost flows in the
    header of the file being written, a larger jump one sequencer reset (flow-capture's FT_SEQ_RESET)."""
    rotator = FlowToolsRotator(directory=tmp_path, rotate_seconds=60)
    # (sequence, export second, records): 3 flows lost before seq 6, a reset at 5000; in the next file a
    # reset at 2^32 - 2 and, past the wrap, 1 flow lost before seq 3
    for seq, secs, count in ((0, 60, 3), (6, 61, 2), (5000, 62, 1), (5001, 63, 1), (2**32 - 2, 120, 4), (3, 121, 1)):
        rotator.write_pdu(_pdu(seq, secs, count))
    rotator.close()
    sets = [FlowSet(p) for p in rotator.recent_files]
    assert [(s.flow_count, s.lost, s.sequence_resets) for s in sets] == [(7, 3, 1), (5, 1, 1)]
