"""The live examples, run as scripts against real traffic in the test namespace (the `net`
fixture): what each prints or serves must name the connections this test made, and only those."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from support.livenet import SINK_PORT, STREAM_PORT, Net, download, http_get, in_threads, udp_exchange

from aioflow._flow import SCALAR_FIELDS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

def trickle(host: str, seconds: float, ports: list[int]) -> None:
    """One 20-byte datagram (48 IP bytes) every 0.25 s to the sink: at most 2 * 48 / 0.25 = 384 B/s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, SINK_PORT))
        ports.append(s.getsockname()[1])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.send(b"t" * 20)
            time.sleep(0.25)


class Child:
    """A script run as a subprocess, its stdout and stderr collected line by line by threads (so a
    test can wait for one line and still get the whole output at the end)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, *args], text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            self.lines[name].append(line)
        stream.close()

    def wait_for(self, pattern: str, name: str = "stderr", timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in list(self.lines[name])):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
            assert time.monotonic() < end, f"no line matching {pattern!r} within {timeout}s: {self.lines}"
            time.sleep(0.05)

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Waits for the exit (killing the child if it does not) and returns (code, stdout, stderr)."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self.readers:
                reader.join(10)
        return self.proc.returncode, "".join(self.lines["stdout"]), "".join(self.lines["stderr"])


# --- fast_flows.py ---

FAST_LINE = re.compile(r"(\d+) (\w+) (\S+) -> (\S+) (\d+) B/s")


def fast_flow_lines(stdout: str) -> list[tuple[int, str, str, str, int]]:
    rows = []
    for line in stdout.splitlines():
        m = FAST_LINE.fullmatch(line)
        assert m, f"not a fast_flows line: {line!r}"
        rows.append((int(m[1]), m[2], m[3], m[4], int(m[5])))
    return rows


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fast_flows_prints_the_fast_download_not_the_trickle(net: Net, streamer: None, backend: str) -> None:
    script = str(EXAMPLES / "fast_flows.py")
    common = ["--period", "0.5", "--count", "8", "--backend", backend]
    fast = Child(script, net.host_if, *common)
    # the same run with no threshold: proof that the trickle was captured and is below 1 KB/s
    every = Child(script, net.host_if, *common, "--min-rate", "0")
    for child in (fast, every):
        child.wait_for(rf"^capturing on {net.host_if}: ")
    download_port: list[int] = []
    trickle_port: list[int] = []
    with in_threads(lambda: download(net.peer_ip, 3.0, download_port), lambda: trickle(net.peer_ip, 3.0, trickle_port)):
        pass
    code, out_fast, err_fast = fast.finish()
    assert code == 0 and len(err_fast.splitlines()) == 1, err_fast
    code, out_every, err_every = every.finish()
    assert code == 0 and len(err_every.splitlines()) == 1, err_every

    download_ends = (f"{net.host_ip}:{download_port[0]}", f"{net.peer_ip}:{STREAM_PORT}")
    trickle_ends = (f"{net.host_ip}:{trickle_port[0]}", f"{net.peer_ip}:{SINK_PORT}")
    rows = fast_flow_lines(out_fast)
    downloads = [r for r in rows if (r[2], r[3]) == download_ends]
    assert len(downloads) >= 3, f"the ~40 KB/s download should be in most reports:\n{out_fast}"
    assert {r[1] for r in downloads} == {"tcp"}
    assert len({r[0] for r in downloads}) == 1, "one connection, one flow id in every report"
    assert all(r[4] > 1000 for r in rows)
    assert not [r for r in rows if trickle_ends[0] in r[2:4]], f"the trickle is slower than 1 KB/s:\n{out_fast}"

    all_rows = fast_flow_lines(out_every)
    trickles = [r for r in all_rows if (r[2], r[3]) == trickle_ends]
    assert len(trickles) >= 3 and all(0 < r[4] < 1000 for r in trickles), out_every
    assert any((r[2], r[3]) == download_ends for r in all_rows)


# --- aiohttp_app.py ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        return json.load(response)


class EventStream:
    """A server-sent events client: each event must be exactly one `data: {json}` line and a blank line."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", "/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.headers["Content-Type"] == "text/event-stream"

    def next_event(self) -> dict[str, Any] | None:
        line = self.response.readline()
        if not line:
            return None  # the server ended the stream
        assert line.startswith(b"data: ") and line.endswith(b"\n"), line
        assert self.response.readline() == b"\n"
        return dict(json.loads(line[len(b"data: ") :]))

    def until(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        end = time.monotonic() + timeout
        while not any(wanted(e) for e in events):
            assert time.monotonic() < end, f"not delivered within {timeout}s; got {events}"
            event = self.next_event()
            assert event is not None, f"the stream ended early; got {events}"
            events.append(event)
        return events

    def close(self) -> None:
        self.conn.close()


def test_aiohttp_app_serves_flows_and_events(net: Net) -> None:
    port = free_port()
    app = Child(str(EXAMPLES / "aiohttp_app.py"), net.host_if, "--port", str(port),
                "--idle-timeout", "0.5", "--fin-timeout", "0.3")  # fmt: skip
    streams: list[EventStream] = []
    conn: socket.socket | None = None
    try:
        app.wait_for(rf"Running on http://127\.0\.0\.1:{port}", "stdout")
        base = f"http://127.0.0.1:{port}"
        # A connection held open mid-request (the server waits for the blank line): an active flow.
        conn = socket.create_connection((net.peer_ip, 8080), timeout=5)
        conn.sendall(b"GET / HTTP/1.0\r\n")
        local_port = conn.getsockname()[1]
        ends = {"src_ip": net.host_ip, "src_port": local_port, "dst_ip": net.peer_ip, "dst_port": 8080, "protocol": 6}
        end = time.monotonic() + 5
        while True:
            flows = get_json(f"{base}/flows")
            mine = [f for f in flows if {k: f[k] for k in ends} == ends]
            if mine and mine[0]["src2dst_packets"] >= 3:  # SYN, ACK, the request line
                break
            assert time.monotonic() < end, f"the open connection is not in /flows: {flows}"
            time.sleep(0.1)
        assert all(set(f) == set(SCALAR_FIELDS) for f in flows)
        assert all(f["end_reason"] == "" for f in flows)
        assert mine[0]["dst2src_packets"] >= 2 and mine[0]["src2dst_syn_packets"] == 1

        # Two clients, each its own subscriber: both get every flow that ends from now on.
        streams = [EventStream(port), EventStream(port)]
        udp_port = udp_exchange(net.peer_ip, 5)
        conn.sendall(b"\r\n")  # the request is complete: the server answers and closes
        while conn.recv(4096):
            pass
        conn.close()

        def is_udp(e: dict[str, Any]) -> bool:
            return e["protocol"] == 17 and e["src_port"] == udp_port and e["dst_port"] == 9999

        def is_tcp(e: dict[str, Any]) -> bool:
            return e["protocol"] == 6 and e["src_port"] == local_port and e["dst_port"] == 8080

        for stream in streams:
            events = stream.until(is_udp)
            events += stream.until(is_tcp) if not any(is_tcp(e) for e in events) else []
            [udp] = [e for e in events if is_udp(e)]
            assert (udp["src_ip"], udp["dst_ip"]) == (net.host_ip, net.peer_ip)
            assert (udp["src2dst_packets"], udp["dst2src_packets"], udp["end_reason"]) == (5, 5, "idle")
            assert udp["src2dst_bytes"] == udp["dst2src_bytes"] == 5 * (20 + 8 + len(b"ping 0") + 200)
            [tcp] = [e for e in events if is_tcp(e)]
            assert tcp["end_reason"] == "fin" and tcp["dst2src_bytes"] > 3000, tcp  # the 3000-byte body
            assert all(e["end_reason"] for e in events)

        # Shutting down ends the open event streams at once (not after aiohttp's 60 s timeout).
        app.proc.send_signal(signal.SIGINT)
        code, _, stderr = app.finish(timeout=10)
        assert code == 0, stderr
        for stream in streams:
            rest = []
            while (event := stream.next_event()) is not None:
                rest.append(event)
            assert all(e["end_reason"] == "stop" for e in rest), rest  # flows still open at the stop
    finally:
        if conn is not None:
            conn.close()
        for stream in streams:
            stream.close()
        app.finish(timeout=10)


# --- two_consumers.py ---

LOG_LINE = re.compile(r"ended (\d+) (\w+) (\S+) -> (\S+) (\d+) packets (\d+) bytes (\w+)")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_two_consumers_log_and_jsonl_hold_the_same_flows(net: Net, tmp_path: Path, backend: str) -> None:
    out = tmp_path / "flows.jsonl"
    child = Child(str(EXAMPLES / "two_consumers.py"), net.host_if, str(out), "--idle-timeout", "0.5",
                  "--backend", backend)  # fmt: skip
    held: list[socket.socket] = []
    stop_typing = threading.Event()

    def type_slowly() -> None:
        # a byte every 0.1 s keeps the held connection from ending idle (idle_timeout is 0.5 s)
        while not stop_typing.wait(0.1):
            held[0].send(b"x")

    try:
        child.wait_for(rf"^capturing on {net.host_if};")
        for _ in range(2):
            http_get(net.peer_ip)
        udp_port = udp_exchange(net.peer_ip, 5)
        held.append(socket.create_connection((net.peer_ip, 8080), timeout=5))  # still open at Ctrl-C
        held_port = held[0].getsockname()[1]
        with in_threads(type_slowly):
            # the UDP flow ends idle meanwhile: its log line is the event
            child.wait_for(rf"^ended \d+ udp {re.escape(net.host_ip)}:{udp_port} -> ", "stdout")
            child.proc.send_signal(signal.SIGINT)
            code, stdout, stderr = child.finish(timeout=15)
            stop_typing.set()
    finally:
        stop_typing.set()
        for conn in held:
            conn.close()
        child.finish(timeout=15)
    assert code == 0, stderr
    assert "SIGINT: stopping" in stderr
    summary = re.search(r"(\d+) flows, \d+ packets, (\d+) dropped", stderr)
    assert summary and summary[2] == "0", stderr

    logged = {}
    for line in stdout.splitlines():
        m = LOG_LINE.fullmatch(line)
        assert m, f"not a log line: {line!r}"
        logged[int(m[1])] = (m[2], m[3], m[4], int(m[5]), int(m[6]), m[7])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    written = {r["id"]: r for r in records}
    assert len(written) == len(records) and len(logged) == len(stdout.splitlines()), "an id twice"
    assert set(logged) == set(written) and len(logged) == int(summary[1]), (sorted(logged), sorted(written))
    for flow_id, (proto, src, dst, packets, nbytes, reason) in logged.items():
        r = written[flow_id]
        assert (src, dst) == (f"{r['src_ip']}:{r['src_port']}", f"{r['dst_ip']}:{r['dst_port']}")
        assert (packets, nbytes, reason) == (r["packets"], r["bytes"], r["end_reason"])
        assert proto == {6: "tcp", 17: "udp", 1: "icmp"}.get(r["protocol"], str(r["protocol"]))

    # ...and they are the traffic this test made. A stall of the loaded machine longer than the
    # idle timeout may split a connection into idle-ended pieces: count pieces per connection
    # rather than depend on the typing thread's timing.
    tcp = connection_pieces(r for r in records if r["protocol"] == 6)
    assert {dst for dst, _ in tcp} == {(net.peer_ip, 8080)} and len(tcp) == 3, tcp
    udp = connection_pieces(r for r in records if r["protocol"] == 17)
    [(udp_dst, udp_src)] = udp
    assert udp_src == udp_port and udp_dst[0] == net.peer_ip
    pieces = udp[(udp_dst, udp_src)]
    assert all(r["end_reason"] == "idle" for r in pieces)
    assert (sum(r["src2dst_packets"] for r in pieces), sum(r["dst2src_packets"] for r in pieces)) == (5, 5)
    held_pieces = tcp[((net.peer_ip, 8080), held_port)]
    assert held_pieces[0]["src2dst_syn_packets"] == 1 and held_pieces[-1]["end_reason"] == "stop"


def connection_pieces(records: Iterable[dict[str, Any]]) -> dict[tuple[tuple[str, int], int], list[dict[str, Any]]]:
    """Records by connection ((dst_ip, dst_port), src_port), in time order; every piece but the
    last must have ended idle (that is the only way one connection becomes two records)."""
    pieces: dict[tuple[tuple[str, int], int], list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["first_seen_ns"]):
        pieces[((r["dst_ip"], r["dst_port"]), r["src_port"])].append(r)
    for connection in pieces.values():
        assert all(r["end_reason"] == "idle" for r in connection[:-1]), connection
    return dict(pieces)


# --- app_breakdown.py and `aioflow apps` on an interface ---


def test_app_breakdown_and_apps_name_the_http_requests(net: Net) -> None:
    """Both, live until SIGINT: the HTTP requests this test makes (nDPI: "HTTP") are counted, with
    all their flows; the example exits 0 after printing, the command 130 (the signal's code)."""
    from aioflow._engine import dissect_unavailable

    if dissect_unavailable():
        pytest.skip(dissect_unavailable() or "")
    example = Child(str(EXAMPLES / "app_breakdown.py"), net.host_if)
    command = Child("-m", "aioflow", "apps", net.host_if, "--format", "json", "--filter", "tcp port 8080")
    example.wait_for(rf"capturing on {net.host_if}")
    command.wait_for(rf"capturing on {net.host_if}")
    requests = 3
    for _ in range(requests):
        http_get(net.peer_ip)
    for child in (example, command):
        child.proc.send_signal(signal.SIGINT)
    code, out, err = example.finish()
    assert code == 0, err
    http = [line for line in out.splitlines()[1:] if line[18:44].strip() == "HTTP"]
    assert http and sum(int(line[44:]) for line in http) > 0, out
    code, out, err = command.finish()
    assert code == 130, err
    rows = {row["application_name"]: row for row in map(json.loads, out.splitlines())}
    assert rows.keys() == {"HTTP"}, rows  # the filter keeps the test's connections only
    assert rows["HTTP"]["flows"] == requests and rows["HTTP"]["dst2src_bytes"] > 0
