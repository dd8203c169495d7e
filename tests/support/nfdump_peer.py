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
        time.sleep(0.5)  # nfcapd binds its socket
        assert proc.poll() is None, proc.communicate()[0]
        yield peer
        time.sleep(0.5)  # the last datagrams reach nfcapd
    finally:
        proc.send_signal(signal.SIGTERM)
        peer.log = proc.communicate(timeout=30)[0]


def nfdump_json(folder: Path) -> list[dict[str, Any]]:
    assert NFDUMP is not None
    dump = subprocess.run([NFDUMP, "-R", str(folder), "-o", "json"], capture_output=True, text=True,
                          env={**os.environ, "TZ": "UTC"}, check=True)  # fmt: skip
    return json.loads(dump.stdout) if dump.stdout.strip() else []
