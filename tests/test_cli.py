"""The ``aioflow`` command line, checked against tshark's view of the bundled capture."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import aioflow
from aioflow import cli as _cli
from aioflow.cli import _flows

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
PROTOCOLS = {"tcp": 6, "udp": 17}

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

Pair = tuple[str, frozenset[tuple[str, int]]]
Conversations = tuple[int, Counter[Pair]]
Capture = pytest.CaptureFixture[str]


def _ip(text: str) -> str:
    # One spelling for both tools (IPv6 compression, case).
    return str(ipaddress.ip_address(text))


def tshark_conversations(path: Path) -> tuple[int, Counter[Pair]]:
    """tshark's TCP and UDP conversations: how many, and packets per (protocol, endpoint pair).

    Taken from per-packet stream indexes rather than `-z conv`, whose layout changes between tshark
    versions. Packets quoted inside ICMP errors are left out, as tshark's own conversation table does.
    """
    fields = ["ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "tcp.stream", "udp.stream"]
    cmd = ["tshark", "-n", "-r", str(path), "-Y", "(tcp || udp) && !icmp && !icmpv6", "-T", "fields",
           "-E", "occurrence=f"]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    streams: set[tuple[str, str]] = set()
    packets: Counter[Pair] = Counter()
    for line in out.splitlines():
        ip_src, ip_dst, ip6_src, ip6_dst, tsport, tdport, usport, udport, tstream, ustream = line.split("\t")
        proto, sport, dport, stream = ("tcp", tsport, tdport, tstream) if tstream else (
            "udp", usport, udport, ustream)
        streams.add((proto, stream))
        ends = frozenset({(_ip(ip_src or ip6_src), int(sport)), (_ip(ip_dst or ip6_dst), int(dport))})
        packets[(proto, ends)] += 1
    return len(streams), packets


def tshark_frames(path: Path, display_filter: str = "") -> int:
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"]
    if display_filter:
        cmd += ["-Y", display_filter]
    return len(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split())


@pytest.fixture(scope="module")
def conversations() -> Conversations:
    return tshark_conversations(CAPTURE)


def run_cli(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = _cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pair(proto: str, src: str, sport: int, dst: str, dport: int) -> Pair:
    return proto, frozenset({(_ip(src), sport), (_ip(dst), dport)})


def split_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def assert_matches_tshark(rows: list[tuple[str, str, int, str, int, int]],
                          conversations: Conversations) -> None:
    """rows: (proto, src, sport, dst, dport, packets) of every flow."""
    count, expected = conversations
    ours: Counter[Pair] = Counter()
    for proto, src, sport, dst, dport, packets in rows:
        if proto in PROTOCOLS:
            ours[pair(proto, src, sport, dst, dport)] += packets
    assert sum(1 for row in rows if row[0] in PROTOCOLS) == count
    assert ours == expected


@needs_tshark
def test_table_matches_tshark(capsys: Capture, conversations: Conversations) -> None:
    code, out, _ = run_cli(capsys, "flows", str(CAPTURE), "--no-progress")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["START", "(UTC)", "PROTO", "SOURCE"]
    rows = []
    for line in lines:
        # Columns are separated by at least two spaces; the start time has one inside.
        cells = re.split(r"\s{2,}", line)
        start, proto, src, dst, fwd_pkts, fwd_bytes, rev_pkts, rev_bytes, duration, end = cells
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", start)
        assert duration.endswith("s") and float(duration[:-1]) >= 0
        assert end in {"idle", "active", "fin", "rst", "eof", "evicted", "stop", "custom"}
        assert int(fwd_bytes) >= 0 and int(rev_bytes) >= 0
        rows.append((proto, *split_endpoint(src), *split_endpoint(dst), int(fwd_pkts) + int(rev_pkts)))
    assert_matches_tshark(rows, conversations)
    # Columns line up: every row's PROTO column starts where the header's does.
    assert all(line[25:30].strip() in {"tcp", "udp", "icmp", "icmp6"} or line[25:30].strip().isdigit()
               for line in lines)


@needs_tshark
def test_csv_matches_tshark(capsys: Capture, conversations: Conversations) -> None:
    code, out, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "csv")
    assert code == 0
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames or ()) == tuple(next(aioflow.read(CAPTURE)).to_dict())
    records = list(reader)
    names = {6: "tcp", 17: "udp"}
    rows = []
    for rec in records:
        packets = int(rec["packets"])
        assert packets == int(rec["src2dst_packets"]) + int(rec["dst2src_packets"])
        assert int(rec["bytes"]) == int(rec["src2dst_bytes"]) + int(rec["dst2src_bytes"])
        rows.append((names.get(int(rec["protocol"]), rec["protocol"]), rec["src_ip"], int(rec["src_port"]),
                     rec["dst_ip"], int(rec["dst_port"]), packets))
    assert_matches_tshark(rows, conversations)
    assert len({rec["id"] for rec in records}) == len(records)


@needs_tshark
def test_json_matches_tshark(capsys: Capture, conversations: Conversations) -> None:
    code, out, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "json")
    assert code == 0
    names = {6: "tcp", 17: "udp"}
    records = [json.loads(line) for line in out.splitlines()]
    rows = [(names.get(r["protocol"], str(r["protocol"])), r["src_ip"], r["src_port"], r["dst_ip"],
             r["dst_port"], r["packets"]) for r in records]
    assert_matches_tshark(rows, conversations)
    # Every IP packet is in a flow here (the only packets aside are ARP).
    assert sum(r["packets"] for r in records) == tshark_frames(CAPTURE, "ip || ipv6")


def test_formats_agree_with_the_library(capsys: Capture) -> None:
    flows = {(f.key, f.packets, f.bytes, f.end_reason) for f in aioflow.read(CAPTURE)}
    _, out, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "json")
    records = [json.loads(line) for line in out.splitlines()]
    from_json = {((r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"]), r["packets"],
                  r["bytes"], r["end_reason"]) for r in records}
    assert from_json == flows


@needs_tshark
def test_filter(capsys: Capture, conversations: Conversations) -> None:
    code, out, err = run_cli(capsys, "flows", str(CAPTURE), "--filter", "udp", "--format", "csv")
    assert code == 0
    records = list(csv.DictReader(io.StringIO(out)))
    assert records and {r["protocol"] for r in records} == {"17"}
    udp = Counter({k: v for k, v in conversations[1].items() if k[0] == "udp"})
    assert len(records) == len(udp)
    # BPF's `udp` does not look inside ICMP errors, unlike tshark's display filter.
    assert sum(int(r["packets"]) for r in records) == tshark_frames(CAPTURE, "udp && !icmp && !icmpv6")
    assert err.startswith(f"aioflow: {tshark_frames(CAPTURE)} packets, {len(records)} flows")


@needs_tshark
def test_summary_line(capsys: Capture) -> None:
    code, out, err = run_cli(capsys, "flows", str(CAPTURE), "--format", "csv")
    assert code == 0
    flows = len(out.splitlines()) - 1
    summary = err.strip().splitlines()[-1]
    assert summary.startswith(f"aioflow: {tshark_frames(CAPTURE)} packets, {flows} flows (eof ")
    non_ip = tshark_frames(CAPTURE, "!ip && !ipv6")
    assert f"{non_ip} packets counted aside (non_ip {non_ip})" in summary


def test_options_reach_the_parser(capsys: Capture) -> None:
    # A 1 s idle timeout splits this capture's long, bursty flows into more records than the default.
    _, default, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "csv")
    code, short, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "csv", "--idle-timeout", "1",
                             "--active-timeout", "5", "--fin-timeout", "1", "--max-flows", "4")
    assert code == 0
    reasons = Counter(r["end_reason"] for r in csv.DictReader(io.StringIO(short)))
    assert len(short.splitlines()) > len(default.splitlines())
    assert reasons["idle"] and reasons["evicted"]


def test_headers_option(capsys: Capture) -> None:
    code, out, _ = run_cli(capsys, "flows", str(CAPTURE), "--format", "json", "--headers", "2")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert all(len(r["headers"]) == min(2, r["packets"]) for r in records)


def test_missing_file(capsys: Capture, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-capture.pcap"
    code, out, err = run_cli(capsys, "flows", str(missing))
    assert code == 2
    assert out == ""
    assert err.startswith("aioflow: error: ") and str(missing) in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_capture(capsys: Capture, tmp_path: Path) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("this is not a capture\n" * 10)
    code, _, err = run_cli(capsys, "flows", str(text))
    assert code == 2
    assert str(text) in err and "pcap" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_filter(capsys: Capture) -> None:
    code, _, err = run_cli(capsys, "flows", str(CAPTURE), "--filter", "tcp port banana")
    assert code == 2
    assert "--filter" in err and "tcp port banana" in err
    assert len(err.strip().splitlines()) == 1


def test_output_that_cannot_be_written(capsys: Capture, tmp_path: Path) -> None:
    """An output path that is a directory: one line that names it, exit 2, no traceback; for
    export's file and collect's archive (collect reads what export wrote)."""
    archive = tmp_path / "flows.ipfix"
    assert run_cli(capsys, "export", str(CAPTURE), "--write", str(archive))[0] == 0
    for argv in (["export", str(CAPTURE), "--write", str(tmp_path)],
                 ["collect", "--read", str(archive), "--write", str(tmp_path)]):  # fmt: skip
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert err == f"aioflow: error: {tmp_path}: Is a directory (check the path)\n"
        assert out == ""


@pytest.mark.parametrize("option", [["--idle-timeout", "-1"], ["--max-flows", "0"], ["--format", "xml"],
                                    ["--headers", "x"]])
def test_bad_option_values(capsys: Capture, option: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli.main(["flows", str(CAPTURE), *option])
    assert exc.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_no_command(capsys: Capture) -> None:
    code, _, err = run_cli(capsys)
    assert code == 2
    assert "flows" in err


def test_interrupt_exits_130(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_flows, "run_flows", interrupted)
    code, _, err = run_cli(capsys, "flows", str(CAPTURE))
    assert code == 130
    assert "interrupted" in err


def test_python_m_aioflow() -> None:
    proc = subprocess.run([sys.executable, "-m", "aioflow", "flows", str(CAPTURE), "--format", "json"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == sum(1 for _ in aioflow.read(CAPTURE))
    assert proc.stderr.startswith("aioflow: ")  # no progress bar when stderr is not a terminal
    assert "\r" not in proc.stderr


def test_console_script() -> None:
    script = Path(sys.executable).parent / "aioflow"
    if not script.exists():
        pytest.skip("the aioflow script is not installed next to this interpreter")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("aioflow ")


def test_progress_bar_on_a_terminal() -> None:
    main_fd, term_fd = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "aioflow", "flows", str(CAPTURE), "--format", "csv"],
                              stdout=subprocess.PIPE, stderr=term_fd, check=False, timeout=60)
        os.close(term_fd)
        term_fd = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main_fd)
        if term_fd >= 0:
            os.close(term_fd)
    assert proc.returncode == 0
    text = shown.decode()
    assert "\r[" in text and "100%" in text
    assert text.rstrip().splitlines()[-1].startswith("aioflow: ")
    # The rows on stdout stay clean.
    assert b"\r" not in proc.stdout
