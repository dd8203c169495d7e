"""Damage is never silent (issue 13, 3): real bundled captures cut short at several places (inside a
record's or a block's header, inside a packet's data, one byte before a block's end). aioflow reads
exactly the packets tcpdump and tshark read before the damage, delivers the same conversations as
tshark, and says where reading stopped and why: the commands exit 1 with one line (tcpdump exits 1,
tshark 2), read() and read_frame() warn CaptureDamagedWarning with the same text. A cut at a record
boundary is no damage: nothing is said, exit 0."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
from support.tools import TOOL_ENV

import aioflow

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = ["ndpi_smtp-starttls.pcap", "tcpflow_test4.pcap", "ndpi_ocs.pcap", "ndpi_mysql.pcapng",
            "zeek_pcapng-multi-interface.pcapng"]  # fmt: skip
PACKET_BLOCKS = {2, 3, 6}  # pcapng: obsolete Packet Block, Simple and Enhanced Packet Blocks

needs_tools = pytest.mark.skipif(shutil.which("tshark") is None or shutil.which("tcpdump") is None,
                                 reason="needs tshark and tcpdump (apt install tshark tcpdump)")  # fmt: skip


def packet_records(data: bytes) -> list[tuple[int, int, int]]:
    """(start, header length, end) of each packet record, from the file format alone: pcap's 16-byte
    record headers, or pcapng's packet blocks (type, total length)."""
    records = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        at = 0
        while at + 8 <= len(data):
            kind, length = struct.unpack_from(order + "II", data, at)
            if kind in PACKET_BLOCKS:
                records.append((at, {6: 28, 3: 12, 2: 28}[kind], at + length))
            at += length
        return records
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    at = 24
    while at + 16 <= len(data):
        caplen = struct.unpack_from(order + "I", data, at + 8)[0]
        records.append((at, 16, at + 16 + caplen))
        at += 16 + caplen
    return records


def cuts(name: str) -> list[tuple[str, int, int]]:
    """(what, offset, packets before it) for a capture: inside the header and inside the data of its
    first, middle and last records, one byte before the middle record's end, and on a boundary."""
    records = packet_records((DATA / name).read_bytes())
    out = []
    for k in sorted({0, len(records) // 2, len(records) - 1}):
        start, header, _ = records[k]
        out += [("record header", start + header // 2, k), ("packet data", start + header + 3, k)]
    k = len(records) // 2
    out += [("last byte", records[k][2] - 1, k), ("boundary", records[k][2], k + 1)]
    return out


CASES = [(name, what, offset, before) for name in CAPTURES for what, offset, before in cuts(name)]


def cut(tmp_path: Path, name: str, offset: int) -> Path:
    path = tmp_path / f"cut{offset}-{name}"
    path.write_bytes((DATA / name).read_bytes()[:offset])
    return path


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def tshark_view(path: Path) -> tuple[int, int, Counter[tuple[int, frozenset[tuple[str, int]]]], str]:
    """tshark on the file: its exit code, frames read, packets per TCP/UDP conversation (protocol,
    endpoints; packets quoted in ICMP errors left out, as in tshark's conversation table), stderr."""
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]
    proc = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f",
                           *[a for f in ["frame.number", *fields] for a in ("-e", f)]],
                          capture_output=True, text=True, env=TOOL_ENV, check=False)  # fmt: skip
    conversations: Counter[tuple[int, frozenset[tuple[str, int]]]] = Counter()
    lines = proc.stdout.splitlines()
    for line in lines:
        _, src4, src6, dst4, dst6, tsport, tdport, usport, udport = line.split("\t")
        if (tsport or usport) and (src4 or src6):
            proto, sport, dport = (6, tsport, tdport) if tsport else (17, usport, udport)
            conversations[(proto, frozenset({(_ip(src4 or src6), int(sport)), (_ip(dst4 or dst6), int(dport))}))] += 1
    return proc.returncode, len(lines), conversations, proc.stderr


def tcpdump_view(path: Path) -> tuple[int, int]:
    """tcpdump's exit code and packets printed (one line per packet, each starting with its time)."""
    proc = subprocess.run(["tcpdump", "-n", "-tt", "-r", str(path)], capture_output=True, text=True,
                          env=TOOL_ENV, check=False)  # fmt: skip
    return proc.returncode, sum(bool(re.match(r"\d+\.\d+ ", line)) for line in proc.stdout.splitlines())


def read_with_warnings(path: Path) -> tuple[list[aioflow.Flow], list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flows = list(aioflow.read(path))
    return flows, caught


def conversations_of(flows: list[aioflow.Flow]) -> Counter[tuple[int, frozenset[tuple[str, int]]]]:
    got: Counter[tuple[int, frozenset[tuple[str, int]]]] = Counter()
    for f in flows:
        if f.protocol in (6, 17):
            got[(f.protocol, frozenset({(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)}))] += f.packets
    return got


def packets_read(path: Path) -> aioflow.ParserInfo:
    import anyio

    async def run() -> aioflow.ParserInfo:
        async with aioflow.FlowParser(path) as parser:
            async for _ in parser.terminated():
                pass
        return parser.info()

    return anyio.run(run)


@needs_tools
@pytest.mark.parametrize(("name", "what", "offset", "before"), CASES,
                         ids=[f"{n}-{w.replace(' ', '_')}-{o}" for n, w, o, _ in CASES])  # fmt: skip
def test_a_cut_capture_gives_what_tshark_and_tcpdump_read(
    tmp_path: Path, name: str, what: str, offset: int, before: int
) -> None:
    path = cut(tmp_path, name, offset)
    damaged = what != "boundary"
    tshark_code, tshark_frames, tshark_conversations, tshark_err = tshark_view(path)
    tcpdump_code, tcpdump_packets = tcpdump_view(path)
    assert (tshark_code, tcpdump_code) == ((2, 1) if damaged else (0, 0)), tshark_err
    assert tshark_frames == tcpdump_packets == before

    flows, caught = read_with_warnings(path)
    info = packets_read(path)
    assert info.packets == before
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert sum(f.packets for f in flows) == info.packets_in_flows
    assert conversations_of(flows) == tshark_conversations
    assert bool(info.read_errors) == damaged
    damage = [w for w in caught if issubclass(w.category, aioflow.CaptureDamagedWarning)]
    if not damaged:
        assert not damage and not info.read_error
        return
    assert len(damage) == 1 and issubclass(damage[0].category, UserWarning)
    text = str(damage[0].message)
    where = f"after packet {before}" if before else "before the first packet"
    assert text.startswith(f"{path}: damaged capture: reading stopped {where}: ")
    assert info.read_error and " ".join(info.read_error.split()) in text
    assert damage[0].filename == __file__  # attributed to the caller's line, not aioflow's


def aioflow_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioflow", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def damaged_cases() -> list[tuple[str, int, int]]:
    return [(name, offset, before) for name, what, offset, before in CASES if what == "packet data" and before > 1]


@pytest.mark.parametrize(("name", "offset", "before"), damaged_cases()[:3])
def test_commands_exit_1_saying_where_reading_stopped(tmp_path: Path, name: str, offset: int, before: int) -> None:
    path = cut(tmp_path, name, offset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = aioflow.read_frame(path)
    (warning,) = [w for w in caught if issubclass(w.category, aioflow.CaptureDamagedWarning)]
    assert warning.filename == __file__
    message = f"aioflow: error: {warning.message}"
    flows, caught = read_with_warnings(path)
    assert [str(w.message) for w in caught] == [str(warning.message)]

    proc = aioflow_cli("flows", path, "--format", "json", "--no-progress")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == message
    assert "Traceback" not in proc.stderr
    # the flows read before the damage are all printed, the same as the library delivers
    assert sorted(json.loads(line)["id"] for line in proc.stdout.splitlines()) == sorted(f.id for f in flows)
    assert len(frame) == len(flows) > 0

    proc = aioflow_cli("export", path, "--write", tmp_path / "flows.ipfix")
    assert (proc.returncode, proc.stderr.splitlines()[-1]) == (1, message)
    assert f"{len(flows)} flows" in proc.stderr

    # grep says it too, whether or not something matched (1: nothing selected, or damaged)
    for pattern in (".", "no such text anywhere"):
        proc = aioflow_cli("grep", "-a", pattern, "-r", path)
        assert (proc.returncode, proc.stderr.splitlines()[-1]) == (1, message)


def test_a_whole_capture_is_not_damaged(tmp_path: Path) -> None:
    proc = aioflow_cli("flows", DATA / CAPTURES[0], "--no-progress")
    assert proc.returncode == 0 and "error" not in proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(aioflow.read(DATA / CAPTURES[0]))


def test_a_cut_inside_the_file_header_is_not_a_capture(tmp_path: Path) -> None:
    path = cut(tmp_path, CAPTURES[0], 10)
    with pytest.raises(aioflow.CaptureFormatError):
        list(aioflow.read(path))
    proc = aioflow_cli("flows", path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


def test_top_exits_1_saying_where_reading_stopped(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    name, offset, before = damaged_cases()[0]
    path = cut(tmp_path, name, offset)
    terminal, screen = os.openpty()  # top draws on a terminal; stderr stays a pipe to read the message
    try:
        command = [sys.executable, "-m", "aioflow", "top", str(path), "--interval", "0.05"]
        proc = subprocess.Popen(command, stdin=screen, stdout=screen, stderr=subprocess.PIPE, start_new_session=True)
        os.close(screen)
        deadline = time.monotonic() + 60  # a safety net only: a top that never ends fails, not hangs
        while proc.poll() is None and time.monotonic() < deadline:  # drain the screen: top never blocks on it
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    os.read(terminal, 65536)
                except OSError:
                    break
        err = proc.communicate(timeout=60)[1].decode()  # closes the pipe
        assert proc.returncode == 1
    finally:
        os.close(terminal)
    _, caught = read_with_warnings(path)
    assert [f"aioflow: error: {w.message}" for w in caught] == [err.strip()]
    assert f"after packet {before}: " in err
