"""`aioflow top`: run in a pseudo-terminal while real traffic crosses the test namespace's veth
(the `net` fixture); the screen must show the test's connections, fastest first, and q or
Ctrl-C must end it at once with the terminal as it was."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from support.livenet import STREAM_PORT, Net, download, in_threads

from aioflow.cli import _top as _cli

ROWS, COLUMNS = 40, 160
LEAVE_ALTERNATE_SCREEN = b"\x1b[?1049l"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """`python -m aioflow top ...` on a pseudo-terminal that is its controlling terminal, so typed
    keys reach its stdin and Ctrl-C (\\x03) becomes SIGINT as in a real shell."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.modes_before = termios.tcgetattr(self.slave)
        self.output = b""
        self._stop = threading.Event()

        def make_controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        # the size comes from the terminal alone (pytest's COLUMNS=80 would otherwise win)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aioflow", "top", *args],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, env=env,
            start_new_session=True, preexec_fn=make_controlling_terminal,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    return

    def frames(self) -> list[str]:
        """Each screen drawn, as text: a refresh starts from the top left (ESC [ H)."""
        text = self.output.decode(errors="replace")
        return [ANSI.sub("", frame) for frame in text.split("\x1b[H")[1:]]

    def wait_for_frame(self, wanted: Callable[[str], bool], timeout: float = 10.0, since: int = 0) -> str:
        """The latest screen that `wanted` accepts, among those drawn after the first `since`."""
        end = time.monotonic() + timeout
        while True:
            for frame in reversed(self.frames()[since:]):
                if wanted(frame):
                    return frame
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.output.decode(errors='replace')}"
            assert time.monotonic() < end, f"no such screen within {timeout}s; last: {self.frames()[-1:]}"
            time.sleep(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        start = time.monotonic()
        code = self.proc.wait(timeout)
        return code, time.monotonic() - start

    def stop_reading(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        elif self.proc.returncode == 0:
            # a clean exit's last output leaves the alternate screen; the pty hands the child's
            # last writes over asynchronously: wait for that output, not for a time
            end = time.monotonic() + 10  # a bound for a failure (assert_restored says which) only
            while not self.output.rstrip().endswith(LEAVE_ALTERNATE_SCREEN) and time.monotonic() < end:
                time.sleep(0.01)
        self._stop.set()
        self._reader.join(5)

    def close(self) -> None:
        self.stop_reading()
        os.close(self.master)
        os.close(self.slave)

    def assert_restored(self) -> None:
        assert termios.tcgetattr(self.slave) == self.modes_before, "terminal modes not restored"
        text = self.output.decode(errors="replace")
        assert "\x1b[?1049h" in text and text.rstrip().endswith(LEAVE_ALTERNATE_SCREEN.decode()), (
            "the alternate screen not left")
        assert "\x1b[?25h" in text, "the cursor is still hidden"


def rows_of(frame: str) -> list[list[str]]:
    """The table's body rows: seven cells apart by two spaces or more (a cell has single spaces only)."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in frame.splitlines()]
    return [row for row in rows if len(row) == 7 and row[0] != "SOURCE"]


def title(iface: str) -> Callable[[str], bool]:
    return lambda frame: f"aioflow top {iface}:" in frame


@pytest.fixture
def terminal(net: Net) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(*args: str) -> Terminal:
        opened.append(Terminal(*args))
        return opened[-1]

    yield open_terminal
    for t in opened:
        t.close()


def rate(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"B/s": 1, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9}[unit]


def test_top_shows_the_test_connections_fastest_first_and_q_quits(
    net: Net, streamer: None, terminal: Callable[..., Terminal]
) -> None:
    top = terminal(net.host_if, "--interval", "0.5")
    top.wait_for_frame(title(net.host_if))
    slow = socket.create_connection((net.peer_ip, 8080), timeout=5)  # held open, mid-request: no bytes flow
    ports: list[int] = []
    try:
        slow.sendall(b"GET / HTTP/1.0\r\n")
        slow_ends = [f"{net.host_ip}:{slow.getsockname()[1]}", f"{net.peer_ip}:8080"]

        def both_shown(frame: str) -> bool:
            ends = [row[:2] for row in rows_of(frame)]
            fast_ends = [f"{net.host_ip}:{ports[0]}", f"{net.peer_ip}:{STREAM_PORT}"] if ports else None
            return slow_ends in ends and fast_ends in ends

        drawn = len(top.frames())
        with in_threads(lambda: download(net.peer_ip, 3.0, ports)):
            # two refreshes into the download (counted screens, not a time): a rate over a whole interval
            frame = top.wait_for_frame(both_shown, since=drawn + 2)
        rows = rows_of(frame)
        fast_row = next(r for r in rows if r[:2] == [f"{net.host_ip}:{ports[0]}", f"{net.peer_ip}:{STREAM_PORT}"])
        slow_row = next(r for r in rows if r[:2] == slow_ends)
        assert rows.index(fast_row) < rows.index(slow_row), f"not sorted by rate:\n{frame}"
        assert fast_row[2] == slow_row[2] == "tcp"
        # ~40 KB/s from the server (RATE <), as the streamer sends it
        assert 10e3 < rate(fast_row[4]) < 200e3 and rate(fast_row[3]) < rate(fast_row[4]), fast_row
        assert rate(slow_row[3]) == rate(slow_row[4]) == 0, slow_row  # nothing moved over the last interval
        assert int(slow_row[5]) >= 4, slow_row  # SYN, SYN-ACK, ACK, the request line (and its ACK)
    finally:
        slow.close()
    top.type(b"q")
    code, took = top.wait_exit(timeout=10)
    assert code == 0 and took < 2.0, (code, took)
    top.stop_reading()
    top.assert_restored()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_quits_cleanly(net: Net, terminal: Callable[..., Terminal], how: str) -> None:
    top = terminal(net.host_if, "--interval", "0.5")
    top.wait_for_frame(title(net.host_if))
    if how == "ctrl-c":
        top.type(b"\x03")  # the terminal turns it into SIGINT: cbreak mode must keep that
    else:
        top.proc.send_signal(signal.SIGTERM)
    code, took = top.wait_exit(timeout=10)
    # every command's codes for a signal: 128 + SIGINT, 128 + SIGTERM (q quits with 0)
    assert code == {"ctrl-c": 130, "sigterm": 143}[how] and took < 2.0, (code, took)
    top.stop_reading()
    top.assert_restored()
    assert "Traceback" not in top.output.decode(errors="replace")


def test_missing_rich_names_the_extra() -> None:
    code = "import sys; sys.modules['rich'] = None\nfrom aioflow.cli import main\nsys.exit(main(['top', 'lo']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "pip install rich (the 'top' extra)" in proc.stderr and proc.stdout == ""


def test_top_needs_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-m", "aioflow", "top", "lo"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "terminal" in proc.stderr and "aioflow flows lo --format json" in proc.stderr


class FakeFlow:
    """The attributes Rates reads, with made-up values."""

    def __init__(self, flow_id: int, up: int, down: int, bytes_per_second: float = 0.0) -> None:
        self.id, self.src2dst_bytes, self.dst2src_bytes = flow_id, up, down
        self.bytes = up + down
        self.bytes_per_second = bytes_per_second


def update(rates: _cli.Rates, flows: list[FakeFlow], now: float) -> dict[int, tuple[float, float]]:
    rows = rates.update(cast(Any, flows), now)
    return {cast(FakeFlow, row.flow).id: (row.up, row.down) for row in rows}


def test_rates_come_from_the_counters_between_refreshes() -> None:
    rates = _cli.Rates()
    # first screen: each flow's own average, split by direction
    assert update(rates, [FakeFlow(1, 300, 100, bytes_per_second=40.0)], now=100.0) == {1: (30.0, 10.0)}
    # then the difference over the interval; a flow new since the last screen: all its bytes in it
    got = rates.update(cast(Any, [FakeFlow(1, 500, 1100), FakeFlow(2, 10, 30)]), 102.0)
    assert [(cast(FakeFlow, r.flow).id, r.up, r.down) for r in got] == [(1, 100.0, 500.0), (2, 5.0, 15.0)]
    # flow 1 ended (gone), flow 2 went quiet, flow 3 is new and faster than 2: sorted by rate
    got = rates.update(cast(Any, [FakeFlow(2, 10, 30), FakeFlow(3, 0, 2)]), 104.0)
    assert [(cast(FakeFlow, r.flow).id, r.up, r.down) for r in got] == [(3, 0.0, 1.0), (2, 0.0, 0.0)]


def test_human_units() -> None:
    assert [_cli.human_rate(v) for v in (0, 999, 1000, 40_500, 2.5e6, 3e9)] == [
        "0 B/s", "999 B/s", "1.0 KB/s", "40.5 KB/s", "2.5 MB/s", "3.0 GB/s"]  # fmt: skip
    assert [_cli.human_age(v) for v in (0.04, 59.9, 61, 3725)] == ["0.0s", "59.9s", "1m01s", "1h02m"]



class FakeInfo:
    packets = 12
    kernel_dropped = 0


def render(width: int, *flows: Any) -> str:
    from rich.console import Console

    console = Console(width=width, force_terminal=False, color_system=None)
    rows = [_cli.TopRow(cast(Any, f), 1500.0, 40_000.0) for f in flows]
    with console.capture() as captured:
        console.print(_cli.top_table(rows, cast(Any, FakeInfo()), "eth0", 25, now=3725.0))
    return captured.get()


class Shown:
    def __init__(self, src: str, sport: int, dst: str, dport: int, protocol: int = 6) -> None:
        self.src_ip, self.src_port, self.dst_ip, self.dst_port, self.protocol = src, sport, dst, dport, protocol
        self.packets, self.first_seen = 123, 0.0


def test_an_ipv4_row_fits_80_columns_and_addresses_are_literal() -> None:
    text = render(80, Shown("10.213.0.1", 40092, "10.213.0.2", 8081), Shown("10.0.0.1", 0, "10.0.0.2", 0, protocol=1))
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert rows_of(text) == [
        ["10.213.0.1:40092", "10.213.0.2:8081", "tcp", "1.5 KB/s", "40.0 KB/s", "123", "1h02m"],
        ["10.0.0.1", "10.0.0.2", "icmp", "1.5 KB/s", "40.0 KB/s", "123", "1h02m"],  # ICMP: no ports
    ]
    # not read as rich markup ([...]) or an emoji code (:1234:)
    text = render(160, Shown("2001:db8::1234:5678", 443, "2001:db8::1", 50000))
    assert rows_of(text)[0][:2] == ["[2001:db8::1234:5678]:443", "[2001:db8::1]:50000"]
