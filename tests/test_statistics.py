"""The statistics and splt meters against nfstream itself (its PyPI wheel, in its own venv) and
against the values nfstream's own tests publish (shared/nfstream/README.md).

nfstream runs with statistics on, no dissection, no tunnel decoding, aioflow's timeouts, each
accounting mode; every field it defines is compared flow by flow. What nfstream is known to do
differently is excluded by rule (EXCLUDED: a predicate on the capture or the flow, with its
reason), never by naming captures or flows."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pytest
from support.corpus import ABSENT, CORPUS, DATA, ROOT
from support.tshark import TShark

import aioflow

GOOGLE_SSL = DATA / "nfstream_google_ssl.pcap"
NFSTREAM_VENV = ROOT / "build" / "nfstream-venv"
NFSTREAM_SPEC = "nfstream==6.6.0"
DUMP = ROOT / "tests" / "support" / "nfstream_dump.py"
IDLE, ACTIVE = 120, 1800
SPLT = 8
SETS = ("bidirectional", "src2dst", "dst2src")
# nfstream's link types (lib_engine.c packet_datalink_checker) and their header lengths (0: varies)
NFSTREAM_LINKS = {0: 4, 1: 14, 9: 0, 12: 0, 50: 4, 104: 4, 113: 16, 127: 0, 228: 0, 229: 0}


def aioflow_frame(path: Path, mode: int) -> Any:
    return aioflow.read_frame(path, statistics=True, accounting_mode=mode, splt=SPLT, idle_timeout=IDLE,
                              active_timeout=ACTIVE, fin_timeout=ACTIVE)  # fmt: skip


# --- nfstream's published values (tests.py test_statistical, test_splt) ---------------------


def test_published_statistics_google_ssl() -> None:
    row = aioflow_frame(GOOGLE_SSL, 1).iloc[0]
    exact = {
        "bidirectional_first_seen_ms": 1434443394683, "bidirectional_last_seen_ms": 1434443401353,
        "bidirectional_duration_ms": 6670, "bidirectional_packets": 28, "bidirectional_bytes": 8696,
        "src2dst_duration_ms": 6670, "dst2src_first_seen_ms": 1434443394717, "dst2src_duration_ms": 6591,
        "bidirectional_min_ps": 40, "bidirectional_max_ps": 1470, "src2dst_max_ps": 354, "dst2src_max_ps": 1470,
        "bidirectional_min_piat_ms": 0, "bidirectional_max_piat_ms": 995, "src2dst_min_piat_ms": 76,
        "src2dst_max_piat_ms": 1185, "dst2src_min_piat_ms": 66, "dst2src_max_piat_ms": 1213,
        "bidirectional_syn_packets": 2, "bidirectional_ack_packets": 27, "bidirectional_psh_packets": 8,
        "bidirectional_fin_packets": 2, "bidirectional_rst_packets": 0, "src2dst_ack_packets": 15,
        "dst2src_ack_packets": 12,
    }  # fmt: skip
    for name, value in exact.items():
        assert row[name] == value, name
    rounded = {
        "bidirectional_mean_ps": 310.571, "bidirectional_stddev_ps": 500.546, "src2dst_stddev_ps": 89.555,
        "dst2src_mean_ps": 617.333, "dst2src_stddev_ps": 651.452, "bidirectional_mean_piat_ms": 247.037,
        "bidirectional_stddev_piat_ms": 324.046, "src2dst_mean_piat_ms": 444.667,
        "src2dst_stddev_piat_ms": 397.603, "dst2src_mean_piat_ms": 599.182, "dst2src_stddev_piat_ms": 384.785,
    }  # fmt: skip
    for name, value in rounded.items():
        assert abs(row[name] - value) <= 0.0011, name
    assert row["src2dst_mean_ps"] == 1288 / 16


def test_published_splt_google_ssl() -> None:
    frame = aioflow.read_frame(GOOGLE_SSL, splt=5, accounting_mode=0)
    assert [list(frame[c].iloc[0]) for c in ("splt_direction", "splt_ps", "splt_piat_ms")] == [
        [0, 1, 0, 0, 1], [58, 60, 54, 180, 60], [0, 34, 134, 144, 35]]  # fmt: skip
    # the exact gaps truncate to the ms ones only where no ms boundary lies between (not asserted)
    ns = list(frame["splt_piat_ns"].iloc[0])
    assert ns[0] == 0 and all(g > 0 for g in ns[1:])
    assert sum(ns) == frame["last_seen_ns"].iloc[0] - frame["first_seen_ns"].iloc[0] or len(ns) < 28


@pytest.mark.parametrize("n", [1, 3, 10, 31])
def test_splt_state_sized_by_n_keeps_each_flows_own_places(n: int) -> None:
    """splt=N keeps N places a flow (12N bytes, the meter's state_size_for), the flows'
    states side by side: each flow's first N places are those splt=32 gives it, flow by flow."""
    for path in (DATA / "tcpreplay_test.pcap", ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"):
        small, full = aioflow.read_frame(path, splt=n), aioflow.read_frame(path, splt=32)
        assert len(small) == len(full) > 20 and (full["packets"] > n).any()
        for column in ("splt_direction", "splt_ps", "splt_piat_ms", "splt_piat_ns"):
            assert [list(v) for v in small[column]] == [list(v[:n]) for v in full[column]]


def test_splt_pads_with_minus_one_and_modes_differ() -> None:
    pings = DATA / "zeek_icmp_5-pings.pcap"
    frame = aioflow.read_frame(pings, splt=12, statistics=True)
    for _, row in frame.iterrows():
        n = row["packets"]
        assert list(row["splt_ps"][n:]) == [-1] * (12 - n) and min(row["splt_ps"][:n]) > 0
        assert list(row["splt_direction"][n:]) == [-1] * (12 - n)
    sizes = {mode: aioflow.read_frame(pings, statistics=True, accounting_mode=mode)["bidirectional_bytes"].sum()
             for mode in range(4)}  # fmt: skip
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3] > 0
    frame1 = aioflow.read_frame(pings, statistics=True, accounting_mode=1)
    assert (frame1["bidirectional_bytes"] == frame1["bytes"]).all()   # mode 1 is today's bytes
    assert (frame1["bidirectional_raw_bytes"] == sizes[0]).sum() == 0 or len(frame1) == 1


def test_raw_bytes_of_reassembled_datagrams_are_their_frames(tshark: TShark) -> None:
    """accounting_mode 0 counts frames on the wire: a datagram reassembled from fragments counts
    every fragment's frame (tshark's frame.len), not only the one that completed it."""
    path = DATA / "nfstream_dns_fragmented.pcap"
    frames = [int(n) for n in tshark.output(path, "-T", "fields", "-e", "frame.len").split()]
    for defragment in (True, False):
        flows = list(aioflow.read(path, statistics=True, defragment=defragment))
        raw = [f.meter("statistics")["bidirectional_raw_bytes"] for f in flows]
        assert sum(raw) == sum(frames), defragment
        assert all(r >= f.captured_bytes for r, f in zip(raw, flows, strict=True))  # this capture is not cut
        # with defragment, datagrams were merged (fewer packets than frames): the path is exercised
        assert (sum(f.packets for f in flows) < len(frames)) == defragment


def test_statistics_config_errors() -> None:
    with pytest.raises(aioflow.ConfigError, match="accounting_mode"):
        aioflow.FlowParser(GOOGLE_SSL, statistics=True, accounting_mode=4)
    with pytest.raises(aioflow.ConfigError, match="splt"):
        aioflow.FlowParser(GOOGLE_SSL, splt=33)


def test_flow_meter_view_matches_frame() -> None:
    frame = aioflow.read_frame(GOOGLE_SSL, statistics=True, splt=4)
    flow = next(iter(aioflow.read(GOOGLE_SSL, statistics=True, splt=4)))
    stats, splt = flow.meter("statistics"), flow.meter("splt")
    assert stats["bidirectional_stddev_ps"] == frame["bidirectional_stddev_ps"].iloc[0]
    assert splt["splt_ps"] == list(frame["splt_ps"].iloc[0])


# --- nfstream itself --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nfstream_python() -> Path:
    """nfstream's venv (build/nfstream-venv, made once; `make test` makes it too)."""
    py = NFSTREAM_VENV / "bin" / "python"
    probe = [str(py), "-c", "import nfstream"]
    if not (py.exists() and subprocess.run(probe, capture_output=True).returncode == 0):
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(NFSTREAM_VENV)], check=True)
        pip = subprocess.run([str(py), "-m", "pip", "install", "-q", NFSTREAM_SPEC], capture_output=True, text=True)
        if pip.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
            pytest.skip(f"nfstream could not be installed into {NFSTREAM_VENV}: {pip.stderr[-300:]}")
    return py


def nfstream_flows(py: Path, mode: int, captures: list[Path]) -> dict[str, Any]:
    cmd = [str(py), str(DUMP), str(mode), str(SPLT), str(IDLE * 1000), str(ACTIVE * 1000), *map(str, captures)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
    return {(d := json.loads(line))["capture"]: d for line in out.stdout.splitlines()}


def _classic_records(data: bytes) -> tuple[int, Any] | None:
    """A classic pcap file's link type and its records as (time, fraction ok, original length,
    frame); None for another format. Read here rather than by dpkt, which hides the header's
    original length and an out-of-range fraction."""
    magics = {b"\xd4\xc3\xb2\xa1": ("<", 10**6), b"\xa1\xb2\xc3\xd4": (">", 10**6),
              b"\x4d\x3c\xb2\xa1": ("<", 10**9), b"\xa1\xb2\x3c\x4d": (">", 10**9)}  # fmt: skip
    if data[:4] not in magics or len(data) < 24:
        return None
    order, unit = magics[data[:4]]
    link = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF

    def records() -> Any:
        at = 24
        while at + 16 <= len(data):
            sec, frac, caplen, orig = struct.unpack_from(order + "IIII", data, at)
            yield sec + frac / unit, frac < unit, orig, data[at + 16 : at + 16 + caplen]
            at += 16 + caplen

    return link, records()


def capture_traits(path: Path) -> set[str]:
    """What, in this capture, nfstream is known to read differently (dpkt as the decoder)."""
    traits: set[str] = set()
    data = path.read_bytes()
    classic = _classic_records(data)
    if classic is None:
        try:
            reader: Any = dpkt.pcapng.Reader(io.BytesIO(data))
        except (ValueError, dpkt.UnpackError):
            return {"undecodable"}
        link, records = reader.datalink(), ((ts, True, len(buf), buf) for ts, buf in reader)
    else:
        link, records = classic
    if link not in NFSTREAM_LINKS:
        return {"link"}
    last = 0.0
    for ts, fraction_ok, orig, buf in records:
        if ts < last or not fraction_ok or ts >= 2**64 / 1e9:
            traits.add("time")
        last = max(last, ts)
        if len(buf) < NFSTREAM_LINKS[link] + 28:
            traits.add("short")
        if orig > 65535:
            traits.add("long")
        ip: Any = None
        try:
            if link == 1:
                eth = dpkt.ethernet.Ethernet(buf)
                ip = eth.data if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
            elif link in (12, 228, 229) and buf:
                ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
        except (dpkt.UnpackError, IndexError):
            traits.add("undecodable")
        if isinstance(ip, dpkt.ip.IP):
            if ip.mf or ip.offset:
                traits.add("fragments")
            if ip.p in (4, 41):
                traits.add("ip-in-ip")
        elif isinstance(ip, dpkt.ip6.IP6):
            if 44 in ip.extension_hdrs or ip.nxt == 44:
                traits.add("fragments")
            if ip.nxt in (4, 41):
                traits.add("ip-in-ip")
    return traits


# Captures nfstream reads differently, by rule: trait -> reason.
EXCLUDED_CAPTURES = {
    "link": "a link type nfstream does not decode (lib_engine.c packet_datalink_checker)",
    "time": "packets out of time order (nfstream's unsigned piat, time - last_seen, wraps) or a time whose "
    "fraction is out of range (nfstream and aioflow carry it differently), or past 2^64 ns (year 2554: "
    "aioflow's ns clock saturates, nfstream's ms clock does not)",
    "short": "frames shorter than the link header + 28 bytes: nfstream drops them",
    "long": "frames over 65535 bytes (the record's original length): nfstream's packet sizes are uint16_t",
    "fragments": "IP fragments: nfstream drops non-first fragments",
    "ip-in-ip": "IP-in-IP / 6in4: nfstream decapsulates them even with decode_tunnels=False",
    "undecodable": "frames dpkt cannot decode: the rules above could not be checked",
}


def flow_key(f: dict[str, Any]) -> tuple[Any, ...]:
    ports = f["protocol"] in (6, 17)
    ends = frozenset(((f["src_ip"], f["src_port"] if ports else 0), (f["dst_ip"], f["dst_port"] if ports else 0)))
    return (ends, f["protocol"], f["vlan_id"])


def swapped(row: dict[str, Any]) -> dict[str, Any]:
    """nfstream's src is the first packet's sender; aioflow's the initiator (a SYN+ACK seen first
    names its receiver): the other view of the same flow."""
    out = {}
    for k, v in row.items():
        if k.startswith("src2dst_"):
            out["dst2src_" + k[8:]] = v
        elif k.startswith("dst2src_"):
            out["src2dst_" + k[8:]] = v
        elif k == "splt_direction":
            out[k] = [1 - d if d >= 0 else d for d in v]
        else:
            out[k] = v
    return out


def compare_capture(path: Path, mode: int, nf: dict[str, Any]) -> Counter[str]:
    """Every field nfstream has of every flow both have once (the rule for the others: a key that
    either tool splits into several flows — aioflow ends TCP flows at FIN/RST, nfstream does not;
    aioflow keys ICMP by echo identifier — is compared by neither)."""
    assert "error" not in nf, nf.get("error")
    frame = aioflow_frame(path, mode)
    ours: dict[Any, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        ours.setdefault(flow_key(row), []).append(row)
    theirs: dict[Any, list[dict[str, Any]]] = {}
    for f in nf["flows"]:
        theirs.setdefault(flow_key(f), []).append(f)
    seen: Counter[str] = Counter()
    for key, rows in theirs.items():
        if len(rows) != 1 or len(ours.get(key, [])) != 1:
            seen["split"] += 1
            continue
        them, us = rows[0], ours[key][0]
        if (us["src_ip"], us["src_port"]) != (them["src_ip"], them["src_port"]) and us["protocol"] in (6, 17):
            them = swapped(them)
        for name, value in them.items():
            if name in ("src2dst_bytes", "dst2src_bytes") and mode != 1:
                name = name.replace("_bytes", "_raw_bytes" if mode == 0 else "_bytes")
                if mode != 0:
                    continue
            if name not in us or name in ("id", "src_ip", "dst_ip", "src_port", "dst_port", "expiration_id"):
                continue
            mine = list(us[name]) if name.startswith("splt_") else us[name]
            seen["fields"] += 1
            if isinstance(value, float):
                assert math.isclose(mine, value, rel_tol=1e-9, abs_tol=1e-6), (path.name, key, name, mine, value)
            else:
                assert mine == value, (path.name, key, name, mine, value)
        seen["compared"] += 1
    return seen


def run_against_nfstream(py: Path, captures: list[Path], modes: tuple[int, ...]) -> Counter[str]:
    total: Counter[str] = Counter()
    kept = []
    for path in captures:
        traits = capture_traits(path)
        for t in traits:
            total[f"excluded: {t}"] += 1
        if not traits:
            kept.append(path)
    for mode in modes:
        results = nfstream_flows(py, mode, kept)
        for path in kept:
            total.update(compare_capture(path, mode, results[str(path)]))
    return total


def test_against_nfstream_bundled(nfstream_python: Path) -> None:
    captures = sorted(p for p in DATA.glob("*.pcap*") if p.is_file())
    seen = run_against_nfstream(nfstream_python, captures, (0, 1, 2, 3))
    print(dict(seen))
    assert seen["compared"] >= 40 and seen["fields"] >= 60 * seen["compared"], seen


def _corpus_captures() -> list[Path]:
    roots = [CORPUS, CORPUS.parent / "nfstream" / "pcaps"]
    return sorted(p for r in roots if r.is_dir() for p in r.iterdir() if p.suffix in (".pcap", ".pcapng"))


def test_against_nfstream_corpus(nfstream_python: Path) -> None:
    captures = _corpus_captures()
    if not captures:
        pytest.skip(ABSENT)
    seen = run_against_nfstream(nfstream_python, captures, (0,))
    print(dict(seen))
    assert seen["compared"] >= 500 and seen["fields"] >= 60 * seen["compared"], seen




def test_cli_flows_statistics_csv_matches_read_frame() -> None:
    cmd = [sys.executable, "-m", "aioflow", "flows", "--statistics", "--splt", "4", "--accounting-mode", "1",
           "--format", "csv", str(GOOGLE_SSL)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    frame = aioflow.read_frame(GOOGLE_SSL, statistics=True, splt=4, accounting_mode=1)
    assert len(rows) == 1
    assert float(rows[0]["bidirectional_stddev_ps"]) == pytest.approx(500.546, abs=0.001)
    assert json.loads(rows[0]["splt_ps"]) == list(frame["splt_ps"].iloc[0])
    assert int(rows[0]["bidirectional_bytes"]) == frame["bytes"].iloc[0]


def test_active_timeout_split_starts_fresh_statistics(tmp_path: Path) -> None:
    """Each record of a flow split by the active timeout has statistics of its own packets only."""
    whole = aioflow.read_frame(GOOGLE_SSL, statistics=True, accounting_mode=1, splt=3)
    parts = aioflow.read_frame(GOOGLE_SSL, statistics=True, accounting_mode=1, splt=3, active_timeout=2.0)
    assert len(parts) > 1 and parts["packets"].sum() == whole["packets"].iloc[0]
    assert (parts["bidirectional_packets"] == parts["packets"]).all()
    assert (parts["bidirectional_bytes"] == parts["bytes"]).all()
    assert (parts["bidirectional_min_ps"] <= parts["bidirectional_mean_ps"]).all()
    assert (parts["bidirectional_mean_ps"] <= parts["bidirectional_max_ps"]).all()
    assert parts["bidirectional_raw_bytes"].sum() == whole["bidirectional_raw_bytes"].iloc[0]
    assert all(d[0] in (0, 1) for d in parts["splt_direction"])   # every record starts a sequence
    # a source with no flow still has every column, empty
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    frame = aioflow.read_frame(empty, statistics=True, splt=3)
    assert len(frame) == 0 and {"bidirectional_stddev_ps", "splt_ps", "src2dst_raw_bytes"} <= set(frame.columns)
