"""`aioflow grep -k` on a live interface (the `net` fixture's namespace and HTTP server): the
connection whose client data matches is reset at both ends; another one is left alone."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from support.livenet import Net


def established_ports(net: Net) -> set[int]:
    """Client ports of the server's established connections, as the server's kernel sees them."""
    done = subprocess.run(["ip", "netns", "exec", net.ns, "ss", "-Htn", "state", "established"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    ports = set()
    for line in done.stdout.splitlines():
        peer = line.split()[-1]
        ports.add(int(peer.rpartition(":")[2]))
    return ports


def test_kill_resets_the_matched_connection_at_both_ends(net: Net) -> None:
    grep = subprocess.Popen(
        [sys.executable, "-m", "aioflow", "grep", "-k", "-u", "nobody", "-c", "MATCHME", "-d", net.host_if,
         "tcp", "port", "8080"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert grep.stderr is not None
    try:
        line = grep.stderr.readline()
        assert line.startswith("aioflow grep: capturing on"), line + (grep.stderr.read() if grep.poll() else "")
        matched = socket.create_connection((net.peer_ip, 8080), timeout=5)
        spared = socket.create_connection((net.peer_ip, 8080), timeout=5)
        matched_port, spared_port = matched.getsockname()[1], spared.getsockname()[1]
        # the server answers only after a blank line: both connections stay open until then
        spared.sendall(b"GET /fine HTTP/1.0\r\n")
        matched.sendall(b"GET /MATCHME HTTP/1.0\r\n")
        with pytest.raises(ConnectionResetError):
            matched.recv(4096)  # the client side sees the reset (a timeout here fails the test)
        deadline = time.monotonic() + 5
        while matched_port in established_ports(net) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert matched_port not in established_ports(net), "the server end was not reset"
        assert spared_port in established_ports(net)
        spared.sendall(b"\r\n")
        answer = b""
        while chunk := spared.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(b"x" * 3000)
        matched.close()
        spared.close()
    finally:
        grep.send_signal(signal.SIGINT)
        out, err = grep.communicate(timeout=10)
    assert "MATCHME" in out and str(matched_port) in out and str(spared_port) not in out, (out, err)
