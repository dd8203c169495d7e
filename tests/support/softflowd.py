"""softflowd as a NetFlow peer: every datagram one `softflowd -r CAPTURE` run exports, received raw."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SOFTFLOWD = shutil.which("softflowd")
SOFTFLOWCTL = shutil.which("softflowctl") or "softflowctl"

# softflowd -d ends with "Flows exported: F (R records) in P packets (E failures)": the receiver
# waits for those P datagrams (counted, not timed).
EXPORTED = re.compile(r"Flows exported: \d+ \((\d+) records\) in (\d+) packets \((\d+) failures\)")


def _receive(sock: socket.socket, out: list[bytes], stop: threading.Event) -> None:
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            continue


def run_softflowd(capture: Path, port: int, version: int, extra: tuple[str, ...] = ()) -> tuple[int, int]:
    """One `softflowd -r CAPTURE` run exporting to 127.0.0.1:``port``: (records, datagrams) it says it
    sent (0, 0 when it refused the capture, e.g. an unsupported link type); asserts no send failed."""
    # softflowd 1.1.0 never ends (it blocks in accept() on its control socket) when that socket's path
    # is 13 characters or longer: a short path it is.
    ctl = f"/tmp/s{os.getpid() % 100000:05d}"
    with tempfile.TemporaryDirectory() as folder:
        six = ["-6"] if version != 5 else []
        run = subprocess.Popen(
            [SOFTFLOWD, "-r", str(capture), "-n", f"127.0.0.1:{port}", "-v", str(version), "-d", *six,
             "-p", str(Path(folder) / "pid"), "-c", ctl, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            log = run.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            # Some runs stay in accept() on the control socket after the file: a graceful
            # shutdown exports what is left, as the end of the file would.
            subprocess.run([SOFTFLOWCTL, "-c", ctl, "shutdown"], capture_output=True, timeout=10)
            log = run.communicate(timeout=10)[0]
        finally:
            Path(ctl).unlink(missing_ok=True)
    exported = EXPORTED.search(log)
    assert exported is None or exported[3] == "0", f"softflowd on {capture.name}: {log[-500:]}"
    return (int(exported[1]), int(exported[2])) if exported else (0, 0)


def softflowd_datagrams(capture: Path, version: int, extra: tuple[str, ...] = ()) -> list[bytes]:
    """Every datagram one `softflowd -r` run exports (``extra``: more softflowd options, e.g. -a)."""
    datagrams: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8_000_000)
        sock.bind(("127.0.0.1", 0))
        stop = threading.Event()
        thread = threading.Thread(target=_receive, args=(sock, datagrams, stop))
        thread.start()
        try:
            _, sent = run_softflowd(capture, sock.getsockname()[1], version, extra)
            deadline = time.monotonic() + 30  # a bound for a failure only: the loop ends on the count
            while len(datagrams) < sent and time.monotonic() < deadline:
                time.sleep(0.001)
            assert len(datagrams) == sent, f"softflowd sent {sent} datagrams for {capture.name}, {len(datagrams)} came"
        finally:
            stop.set()
            thread.join()
    return datagrams
