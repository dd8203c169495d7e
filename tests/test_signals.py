"""SIGINT and SIGTERM to every command, mid-traffic: the command stops its source and every flow
still active ends as "stop" through its usual outputs (rows and summary, exported records, grep's
files, collect's archive); the exit code is 130 or 143. The live tests capture on the test
namespace's veth (the `net` fixture) with tcpdump beside aioflow: every connection tcpdump saw
is in aioflow's output with the same packets. Each command is signalled once it says it is
capturing (or collecting), after the traffic is on the wire (the server acknowledged every
byte): no sleep decides anything."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import dpkt
import pytest
from support import reference
from support.corpus import DATA
from support.livenet import Net, held_connections, pcap_records, tcpdump_capture, udp_exchange
from support.nfdump_peer import free_udp_port

import aioflow
from aioflow.netflow.export import IPFIXExporter

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
HELD = 4  # TCP connections open (and quiet) when the signal comes
Key = tuple[int, frozenset[tuple[str, int]]]


def key_of(proto: int, a: tuple[str, int], b: tuple[str, int]) -> Key:
    return proto, frozenset((a, b))


def aioflow_cli(*args: str, unbuffered: bool = False) -> subprocess.Popen[str]:
    """`python -m aioflow ...`; unbuffered (-u): each output line as it is written (-u's raw stdout
    may drop the rest of a write that a signal cut short: only where no signal comes mid-write)."""
    return subprocess.Popen([sys.executable, *(["-u"] if unbuffered else []), "-m", "aioflow", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for_line(proc: subprocess.Popen[str], start: str) -> None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith(start), line + (proc.communicate()[1] if proc.poll() is not None else "")


def rest_of(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The rest of its stdout and stderr, through the file objects (communicate() reads the pipes
    directly, losing what a readline() before it buffered); stderr is a few lines at most."""
    assert proc.stdout is not None and proc.stderr is not None
    with proc.stdout, proc.stderr:
        out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=60)
    return out, err


def signalled(proc: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    """Sends the signal; the command's stdout and stderr once it exited with 128 + signum."""
    proc.send_signal(signum)
    out, err = rest_of(proc)
    assert proc.returncode == 128 + signum, (proc.returncode, err)
    assert "Traceback" not in err, err
    return out, err


def packets_read(err: str) -> int:
    """The packet count of a command's summary line ("aioflow...: N packets, ...")."""
    found = re.search(r"^aioflow.*?: (\d+) packets,", err, re.MULTILINE)
    assert found is not None, err
    return int(found.group(1))


def tcpdump_packets(pcap: Path) -> collections.Counter[Key]:
    """Packets per connection (either direction) in tcpdump's capture, by the dpkt reference."""
    packets: collections.Counter[Key] = collections.Counter()
    for f in reference.reference_flows(pcap).flows:
        packets[key_of(f.protocol, (f.src_ip, f.src_port), (f.dst_ip, f.dst_port))] += f.packets
    return packets


@pytest.fixture
def live_run(net: Net, tmp_path: Path) -> Any:
    """run(args, signum): runs `aioflow ARGS` on the veth beside tcpdump; once it says it is
    capturing, opens HELD connections (left open and quiet) and a finished UDP exchange, then
    signals it. Returns its stdout, its stderr and (the held client ports, the UDP client port,
    tcpdump's packets per connection)."""

    def run(args: list[str], signum: int, ready: str = "aioflow: capturing on") -> tuple[str, str, Any]:
        pcap = tmp_path / "tcpdump.pcap"
        held: list[socket.socket] = []
        try:
            with tcpdump_capture(net.host_if, pcap):
                proc = aioflow_cli(*args)
                try:
                    wait_for_line(proc, ready)
                    held = held_connections(net.peer_ip, HELD)
                    udp_port = udp_exchange(net.peer_ip, 3)  # returns with the last answer: on the wire
                    out, err = signalled(proc, signum)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.communicate()
                # tcpdump's file holds every packet the command read (its summary's count) before it stops
                deadline = time.monotonic() + 30  # a bound for a failure only
                while pcap_records(pcap) < packets_read(err):
                    assert time.monotonic() < deadline, "tcpdump has fewer packets than aioflow read"
                    time.sleep(0.05)
            return out, err, ([c.getsockname()[1] for c in held], udp_port, tcpdump_packets(pcap))
        finally:
            for c in held:  # only now: their FINs are not in the capture
                c.close()

    return run


@pytest.mark.parametrize("signum", SIGNALS)
def test_flows_prints_the_active_flows_and_the_summary(net: Net, live_run: Any, signum: int) -> None:
    out, err, (ports, udp_port, want) = live_run(["flows", net.host_if, "--format", "json"], signum)
    flows = [json.loads(line) for line in out.splitlines()]
    got: collections.Counter[Key] = collections.Counter()
    for f in flows:
        got[key_of(f["protocol"], (f["src_ip"], f["src_port"]), (f["dst_ip"], f["dst_port"]))] += f["packets"]
    assert got == want and want, (err, want)
    held = {f["src_port"]: f for f in flows if f["protocol"] == 6}
    assert sorted(held) == sorted(ports) and all(f["end_reason"] == "stop" for f in held.values())
    udp = [(f["src_port"], f["packets"], f["end_reason"]) for f in flows if f["protocol"] == 17]
    assert udp == [(udp_port, 6, "stop")]
    summary = err.splitlines()[-1]
    assert summary.startswith(f"aioflow: {sum(want.values())} packets, {len(flows)} flows (stop {len(flows)})"), err


@pytest.mark.parametrize("signum", SIGNALS)
def test_grep_writes_the_files_of_the_active_flows(net: Net, live_run: Any, signum: int, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    out, err, (ports, _, want) = live_run(
        ["grep", "-c", "GET /held", "-l", str(logs), "-x", "-d", net.host_if, "tcp", "port", "8080"],
        signum,
        ready="aioflow grep: capturing on",
    )
    assert f"{HELD} matched, {HELD * 2} files written" in err, err
    # each connection's request line, as tcpdump saw it, is its client file; the server sent nothing
    sent: dict[int, bytes] = collections.defaultdict(bytes)
    with open(tmp_path / "tcpdump.pcap", "rb") as capture:
        for _, frame in dpkt.pcap.Reader(capture):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.dport == 8080:
                sent[ip.data.sport] += ip.data.data
    assert sorted(sent) == sorted(ports) and sum(want.values()) > 0
    for port in ports:
        client = [p for p in logs.iterdir() if p.name.split("-")[2] == str(port)]
        server = [p for p in logs.iterdir() if p.name.split("-")[4] == str(port)]
        assert len(client) == len(server) == 1, sorted(p.name for p in logs.iterdir())
        assert client[0].read_bytes() == sent[port] and server[0].read_bytes() == b""
        assert str(client[0]) in out.splitlines()


@pytest.mark.parametrize("signum", SIGNALS)
def test_export_sends_the_active_flows(net: Net, live_run: Any, signum: int, nfdump: Any, tmp_path: Path) -> None:
    folder = tmp_path / "nfcapd"
    folder.mkdir()
    with nfdump.nfcapd_running(folder) as nfcapd:
        _, err, (ports, _, want) = live_run(
            ["export", net.host_if, "--to", f"127.0.0.1:{nfcapd.port}", "--format", "ipfix"], signum
        )
    assert "Sequence Errors: 0," in nfcapd.log and "Bad Packets: 0" in nfcapd.log, nfcapd.log
    got: collections.Counter[Key] = collections.Counter()
    for r in nfdump.nfdump_json(folder):
        a, b = (r["src4_addr"], r.get("src_port", 0)), (r["dst4_addr"], r.get("dst_port", 0))
        got[key_of(r["proto"], a, b)] += r["in_packets"] + r.get("out_packets", 0)
    assert got == want and want, (err, want)
    assert {port for (proto, ends) in got if proto == 6 for (_, port) in ends} >= set(ports) | {8080}
    assert f"ipfix to 127.0.0.1:{nfcapd.port}: {len(want)} flows" in err, err


@contextlib.contextmanager
def collecting(archive: Path, unbuffered: bool = False) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`aioflow collect --json` archiving to `archive`, on a free local port, once it says it is
    collecting: (the process, the port). Killed if the test fails first."""
    port = free_udp_port()
    proc = aioflow_cli("collect", "--listen", f"127.0.0.1:{port}", "--write", str(archive), "--json",
                       unbuffered=unbuffered)  # fmt: skip
    try:
        wait_for_line(proc, "aioflow: collecting on")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def send_ipfix(port: int, flows: list[aioflow.Flow]) -> None:
    async def send() -> None:
        async with IPFIXExporter(("127.0.0.1", port)) as exporter:
            await exporter.send_many(flows)

    anyio.run(send)


@pytest.mark.parametrize("signum", SIGNALS)
def test_collect_prints_and_archives_what_it_received(signum: int, tmp_path: Path) -> None:
    flows = list(aioflow.read(DATA / "ndpi_smtp-starttls.pcap"))
    archive = tmp_path / "archive.ipfix"
    with collecting(archive, unbuffered=True) as (proc, port):
        send_ipfix(port, flows)
        assert proc.stdout is not None
        printed = [json.loads(proc.stdout.readline()) for _ in flows]  # every record arrived
        out, err = signalled(proc, signum)
    assert out == "" and f"records {len(flows)}," in err
    # the archive is complete and readable: the same records as printed
    fields = ("sourceTransportPort", "destinationTransportPort", "packetDeltaCount", "reversePacketDeltaCount",
              "octetDeltaCount", "flowStartMilliseconds")  # fmt: skip
    archived = [tuple(r.to_dict().get(f) for f in fields) for r in aioflow.read_ipfix_file(archive)]
    assert sorted(archived) == sorted(tuple(p.get(f) for f in fields) for p in printed)
    assert len(archived) == len(flows)


@pytest.mark.parametrize("signum", SIGNALS)
def test_collect_drains_the_datagrams_queued_when_signalled(signum: int, tmp_path: Path) -> None:
    """stdout is a pipe read only after the signal: collect blocks writing the first records (their
    JSON is far more than the pipe holds) while the rest of the datagrams wait in its socket
    (sendto on loopback returns once the datagram is queued there). All of them are printed and
    archived after the signal: the ones still in the socket too."""
    flows = list(aioflow.read(many_flows_capture(tmp_path / "many.pcap", 600)))
    archive = tmp_path / "archive.ipfix"
    with collecting(archive) as (proc, port):
        send_ipfix(port, flows)
        out, err = signalled(proc, signum)
    printed = [json.loads(line) for line in out.splitlines()]
    assert f"records {len(flows)}," in err and "malformed 0" in err, err
    assert sorted(p["sourceTransportPort"] for p in printed) == sorted(f.src_port for f in flows)
    assert sum(1 for _ in aioflow.read_ipfix_file(archive)) == len(flows)


# --- a file source, and a second signal ---


def many_flows_capture(path: Path, count: int) -> Path:
    """A LINKTYPE_RAW capture of `count` one-packet UDP flows, 1 ms apart (more flows than the
    parser buffers ahead of a blocked consumer)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for i in range(count):
        udp = struct.pack("!HHHH", 1024 + i % 60000, 53, 9, 0) + b"q"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 29, 0, 0, 64, 17, 0, bytes((10, 9, i >> 16 & 255, i >> 8 & 255)),
                         bytes((10, 8, 0, i & 255))) + udp  # fmt: skip
        out += struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, len(ip), len(ip)) + ip
    path.write_bytes(out)
    return path


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_file_source_stops_and_prints_what_it_read(signum: int, tmp_path: Path) -> None:
    """stdout is a pipe read only after the signal: the command is blocked writing rows when it
    comes, far from the file's end, and once it runs again it stops reading there."""
    capture = many_flows_capture(tmp_path / "many.pcap", 400_000)
    proc = aioflow_cli("flows", str(capture), "--format", "csv", "--idle-timeout", "1", "--no-progress")
    assert proc.stdout is not None
    header = proc.stdout.readline()
    first = proc.stdout.readline()  # reading (its handlers were in place before the parser opened)
    out, err = signalled(proc, signum)
    rows = [dict(zip(header.strip().split(","), line.split(","), strict=True)) for line in [first, *out.splitlines()]]
    summary = err.splitlines()[-1]
    packets = packets_read(summary)
    assert 0 < packets < 400_000, summary  # stopped before the end of the file
    ids = {int(r["id"]) for r in rows}
    assert sum(int(r["packets"]) for r in rows) == packets, (
        len(rows),
        sorted(set(range(1, max(ids) + 1)) - ids)[:9],
    )  # every packet read is in a printed flow
    stopped = sum(r["end_reason"].strip() == "stop" for r in rows)
    assert stopped > 0 and f"stop {stopped})" in summary, summary
    # the flows are the first `packets` packets' flows, by tcpdump's reading of that prefix
    prefix = tmp_path / "prefix.pcap"
    subprocess.run(["tcpdump", "-r", str(capture), "-c", str(packets), "-w", str(prefix)], check=True,
                   capture_output=True)  # fmt: skip
    want = collections.Counter((f.src_port, f.dst_ip, f.packets) for f in reference.reference_flows(prefix).flows)
    assert collections.Counter((int(r["src_port"]), r["dst_ip"], int(r["packets"])) for r in rows) == want


def wait_delivered(pid: int, signum: int) -> None:
    """Until the kernel delivered the signal (its handler ran): no longer pending, per /proc."""
    deadline = time.monotonic() + 30  # a bound for a failure only
    while True:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        pending = [int(line.split()[1], 16) for line in status if line.startswith(("SigPnd:", "ShdPnd:"))]
        if not any(mask >> (signum - 1) & 1 for mask in pending):
            return
        assert time.monotonic() < deadline, "the signal stays pending"
        time.sleep(0.001)


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    capture = many_flows_capture(tmp_path / "many.pcap", 400_000)
    proc = aioflow_cli("flows", str(capture), "--format", "csv", "--no-progress")
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.readline()  # a row: reading
    # both arrive while it is blocked writing rows, one after the other (two pending at once would
    # be delivered lowest number first): the second one is seen during the flush
    proc.send_signal(signal.SIGTERM)
    wait_delivered(proc.pid, signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out, err = rest_of(proc)
    assert proc.returncode == 143, err  # the first signal's code
    assert "SIGINT again: exiting without finishing" in err and "packets," not in err, err
    assert len(out.splitlines()) < 400_000
