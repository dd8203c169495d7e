"""The live tests' own network: a namespace joined to this one by a veth pair, the servers that run
in it (HTTP + UDP echo; a slow TCP streamer + UDP sink) and the traffic the tests send through it.
The fixtures `net` and `streamer` (tests/conftest.py) are built on these context managers."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .tools import TOOL_ENV

SERVER = r"""
import socket, sys, threading
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8080)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 9999))
def echo_udp():
    while True:
        data, peer = udp.recvfrom(2048); udp.sendto(data, peer)
def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk: return
            data += chunk
        body = b"x" * 3000
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
threading.Thread(target=echo_udp, daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept(); threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@dataclass
class Net:
    ns: str
    host_if: str
    host_ip: str
    peer_ip: str


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextmanager
def namespace() -> Iterator[Net]:
    """A namespace joined to this one by a veth pair, with SERVER running in it (needs root: the
    caller checks and skips)."""
    tag = str(os.getpid() % 100000)
    n = Net(ns=f"afns{tag}", host_if=f"afh{tag}", host_ip="10.213.0.1", peer_ip="10.213.0.2")
    peer_if = f"afp{tag}"
    sh("ip", "netns", "add", n.ns)
    try:
        sh("ip", "link", "add", n.host_if, "type", "veth", "peer", "name", peer_if)
        sh("ip", "link", "set", peer_if, "netns", n.ns)
        # no IPv6 autoconfiguration chatter: every packet on the wire is the test's own
        sh("sysctl", "-qw", f"net.ipv6.conf.{n.host_if}.disable_ipv6=1")
        sh("ip", "netns", "exec", n.ns, "sysctl", "-qw", f"net.ipv6.conf.{peer_if}.disable_ipv6=1")
        sh("ip", "addr", "add", f"{n.host_ip}/24", "dev", n.host_if)
        sh("ip", "link", "set", n.host_if, "up")
        sh("ip", "netns", "exec", n.ns, "ip", "addr", "add", f"{n.peer_ip}/24", "dev", peer_if)
        sh("ip", "netns", "exec", n.ns, "ip", "link", "set", peer_if, "up")
        sh("ip", "netns", "exec", n.ns, "ip", "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", n.ns, sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        # one exchange before any test, so ARP is resolved and never part of a measured window
        http_get(n.peer_ip)
        yield n
    finally:
        if "server" in locals():
            server.kill()
            server.wait()
            assert server.stdout is not None
            server.stdout.close()
        subprocess.run(["ip", "link", "del", n.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", n.ns], capture_output=True)


def http_get(host: str) -> None:
    with socket.create_connection((host, 8080), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while c.recv(4096):
            pass


def udp_exchange(host: str, count: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for i in range(count):
            s.sendto(b"ping %d" % i + b"." * 200, (host, 9999))
            s.recvfrom(2048)
        return int(s.getsockname()[1])


# A second server in the namespace: TCP 8081 streams 2000 bytes every 50 ms (~40 KB/s) until the
# client closes; UDP 9998 is a sink that never answers (so a slow sender stays slow).
STREAMER = r"""
import socket, threading, time
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8081)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 9998))
def sink():
    while True: udp.recv(2048)
def stream(conn):
    with conn:
        try:
            while True:
                conn.sendall(b"y" * 2000); time.sleep(0.05)
        except OSError:
            pass
threading.Thread(target=sink, daemon=True).start()
print("ready", flush=True)
while True:
    conn, _ = tcp.accept(); threading.Thread(target=stream, args=(conn,), daemon=True).start()
"""
STREAM_PORT = 8081
SINK_PORT = 9998


@contextmanager
def streamer_running(net: Net) -> Iterator[None]:
    """STREAMER running in the namespace until the block ends."""
    proc = subprocess.Popen(["ip", "netns", "exec", net.ns, sys.executable, "-c", STREAMER],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def download(host: str, seconds: float, ports: list[int]) -> int:
    """Reads the streamer for `seconds` over one connection; returns the bytes read."""
    got = 0
    with socket.create_connection((host, STREAM_PORT), timeout=5) as c:
        ports.append(c.getsockname()[1])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got += len(c.recv(65536))
    return got


@contextmanager
def in_threads(*jobs: Callable[[], object]) -> Iterator[None]:
    threads = [threading.Thread(target=job) for job in jobs]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for t in threads:
            t.join(timeout=30)


def pcap_records(path: Path) -> int:
    """Complete records in a classic pcap file that tcpdump may still be writing."""
    data = path.read_bytes() if path.exists() else b""
    count, offset = 0, 24
    while offset + 16 <= len(data):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        if offset <= len(data):
            count += 1
    return count


@contextmanager
def tcpdump_capture(interface: str, pcap: Path) -> Iterator[subprocess.Popen[str]]:
    """tcpdump writing every packet of `interface` to `pcap` (each at once: -U), from the moment it
    says it is listening until the block ends (SIGINT, as Ctrl-C)."""
    tcpdump = subprocess.Popen(["tcpdump", "-i", interface, "-U", "-w", str(pcap), "-s", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=TOOL_ENV)  # fmt: skip
    assert tcpdump.stderr is not None
    try:
        line = tcpdump.stderr.readline()
        assert "listening on" in line, line
        yield tcpdump
    finally:
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(timeout=10)
        tcpdump.stderr.close()


def held_connections(host: str, count: int) -> list[socket.socket]:
    """`count` connections to SERVER, each with a request line but no blank line after it (the
    server waits for more, so they stay open), returned once the server acknowledged every byte:
    from then on none of them puts a packet on the wire until it is closed."""
    held = []
    for i in range(count):
        c = socket.create_connection((host, 8080), timeout=5)
        c.sendall(b"GET /held-%d HTTP/1.0\r\n" % i)
        held.append(c)
    deadline = time.monotonic() + 10  # a bound for a failure only
    for c in held:
        # struct tcp_info: 8 one-byte fields, then rto, ato, snd_mss, rcv_mss, unacked (segments in flight)
        while struct.unpack_from("8B5I", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))[12]:
            assert time.monotonic() < deadline, "the server did not acknowledge the request line"
            time.sleep(0.005)
    return held
