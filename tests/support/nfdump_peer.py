"""nfcapd/nfdump as the reference collector of the NetFlow/IPFIX tests: nfcapd runs on a free
loopback port while a test sends to it, is stopped (which flushes its file), and nfdump lists what
it received as JSON."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NFCAPD, NFDUMP = shutil.which("nfcapd"), shutil.which("nfdump")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Nfcapd:
    port: int
    log: str = ""  # what nfcapd printed (its per-file summary: sequence errors, bad packets), once stopped


def _receive_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:port (None: no such
    socket), from the kernel's table /proc/net/udp."""
    # the address as the kernel prints it: the network-order word read as a native integer
    local = f"{int.from_bytes(socket.inet_aton('127.0.0.1'), sys.byteorder):08X}:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[4].split(":")[1], 16)
    return None


@contextmanager
def nfcapd_running(folder: Path) -> Iterator[Nfcapd]:
    assert NFCAPD is not None
    peer = Nfcapd(free_udp_port())
    # -B: a big socket buffer; -t: no rotation during the run (nfcapd flushes its file on SIGTERM)
    proc = subprocess.Popen(
        [NFCAPD, "-w", str(folder), "-b", "127.0.0.1", "-p", str(peer.port), "-t", "3600", "-B", "8000000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # counted, not timed: nfcapd's socket is there, and at the end its receive queue is empty
        # (nfcapd read every datagram; SIGTERM then makes it write them to its file)
        deadline = time.monotonic() + 30  # a bound for failures only
        while _receive_queue(peer.port) is None:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "nfcapd did not bind its port"
            time.sleep(0.01)
        yield peer
        while _receive_queue(peer.port):
            assert time.monotonic() < deadline + 60, "nfcapd does not read its socket"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        peer.log = proc.communicate(timeout=30)[0]


def nfdump_json(folder: Path) -> list[dict[str, Any]]:
    assert NFDUMP is not None
    dump = subprocess.run([NFDUMP, "-R", str(folder), "-o", "json"], capture_output=True, text=True,
                          env={**os.environ, "TZ": "UTC"}, check=True)  # fmt: skip
    return json.loads(dump.stdout) if dump.stdout.strip() else []
