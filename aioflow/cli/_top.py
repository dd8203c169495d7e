"""``aioflow top IFACE``: an interface's active flows, fastest first, redrawn in the terminal (rich)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio

import aioflow

from .._flow import protocol_name
from . import _signals
from ._common import EXIT_USAGE, add_flow_options, damage_exit, endpoint, parser_options, positive_float

TOP_EXTRA_HINT = "aioflow top needs the rich package: pip install rich (the 'top' extra)"
PORTED = {6, 17, 132}  # TCP, UDP, SCTP
TOP_CHROME_LINES = 7  # title, table borders, header, caption: the rows get the rest of the screen


def human_rate(value: float) -> str:
    """Bytes per second as "12 B/s", "1.5 KB/s", ... (powers of 1000)."""
    for unit in ("B/s", "KB/s", "MB/s"):
        if value < 999.5:
            return f"{value:.0f} {unit}" if unit == "B/s" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB/s"


def human_age(seconds: float) -> str:
    """Seconds as "4.2s", "3m05s" or "1h02m"."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclasses.dataclass(frozen=True, slots=True)
class TopRow:
    """One row of the view: a flow and its rates each way over the last interval."""
    flow: aioflow.Flow
    up: float  # bytes/s source -> destination
    down: float  # bytes/s destination -> source


class Rates:
    """Each flow's rate each way over the last refresh interval: the difference of its byte counters
    between two snapshots (matched by flow id), divided by the time between the snapshots."""

    def __init__(self) -> None:
        self._previous: dict[int, tuple[int, int]] = {}
        self._when: float | None = None

    def update(self, flows: Sequence[aioflow.Flow], now: float) -> list[TopRow]:
        """Rows for this snapshot (flows, at monotonic time `now`, seconds), fastest first."""
        elapsed = now - self._when if self._when is not None else 0.0
        rows: list[TopRow] = []
        current: dict[int, tuple[int, int]] = {}
        for flow in flows:
            up, down = current[flow.id] = (flow.src2dst_bytes, flow.dst2src_bytes)
            before = self._previous.get(flow.id)
            if elapsed > 0 and before is not None:
                rows.append(TopRow(flow, (up - before[0]) / elapsed, (down - before[1]) / elapsed))
            elif elapsed > 0:
                # Not in the previous snapshot: new since then (or re-counted after an active timeout,
                # under a new id), so all its bytes crossed within this interval.
                rows.append(TopRow(flow, up / elapsed, down / elapsed))
            else:
                # First screen: no interval yet, so the flow's average since it began.
                share = flow.bytes_per_second / flow.bytes if flow.bytes else 0.0
                rows.append(TopRow(flow, up * share, down * share))
        self._previous, self._when = current, now
        rows.sort(key=lambda row: (row.up + row.down, row.flow.bytes), reverse=True)
        return rows


def top_table(rows: Sequence[TopRow], info: aioflow.ParserInfo, iface: str, height: int, now: float) -> Any:
    """The rich Table of the rows that fit in `height` lines; `now` is epoch seconds (for ages)."""
    from rich.table import Table
    from rich.text import Text

    shown = rows[: max(height - TOP_CHROME_LINES, 1)]
    more = f", {len(rows) - len(shown)} not shown" if len(rows) > len(shown) else ""
    # No borders and one space each side of a cell: an IPv4 row fits in 80 columns. The numbers
    # keep their widths; on a narrower terminal the endpoints give way (with an ellipsis).
    table = Table(
        title=Text(f"aioflow top {iface}: {len(rows)} active flows{more}"),
        caption=Text(f"{info.packets} packets, {info.kernel_dropped} dropped by the kernel    q quits"),
        title_justify="left", caption_justify="left", box=None, pad_edge=False, header_style="bold reverse",
    )  # fmt: skip
    table.add_column("SOURCE", overflow="ellipsis")  # wrappable: rich narrows these first
    table.add_column("DESTINATION", overflow="ellipsis")
    table.add_column("PROTO", no_wrap=True, min_width=5)
    table.add_column("RATE >", justify="right", no_wrap=True, min_width=10)
    table.add_column("RATE <", justify="right", no_wrap=True, min_width=10)
    table.add_column("PKTS", justify="right", no_wrap=True, min_width=4)
    table.add_column("AGE", justify="right", no_wrap=True, min_width=6)
    for row in shown:
        f = row.flow
        # ICMP has no ports (the engine keeps the echo id, or type and code, there): addresses alone
        src, dst = (
            (endpoint(f.src_ip, f.src_port), endpoint(f.dst_ip, f.dst_port))
            if f.protocol in PORTED
            else (f.src_ip, f.dst_ip)
        )
        cells = (
            src,
            dst,
            protocol_name(f.protocol),
            human_rate(row.up),
            human_rate(row.down),
            str(f.packets),
            human_age(now - f.first_seen),
        )
        # Text, not str: rich would read "[2001:db8::1]" as markup and ":1234:" as an emoji code
        table.add_row(*(Text(cell) for cell in cells))
    return table


async def _quit_on_key(fd: int, quit: Callable[[], None]) -> None:
    while True:
        await anyio.wait_readable(fd)
        try:
            keys = os.read(fd, 64)
        except OSError:  # the terminal went away: only a signal can end the view now
            return
        if not keys:
            return
        if b"q" in keys.lower():
            quit()
            return


async def _top(stopper: _signals.Stopper, args: argparse.Namespace, keys_fd: int | None) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    async with aioflow.FlowParser(args.source, **parser_options(args)) as parser:
        rates = Rates()
        # screen=True: the alternate screen, left as it was on exit (as top and iftop do)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            async with anyio.create_task_group() as tasks:
                quit = tasks.cancel_scope.cancel
                # q quits (exit 0); a signal too, with the exit code of every command (130, 143)
                stopper.on_signal(quit)
                if keys_fd is not None:
                    tasks.start_soon(_quit_on_key, keys_fd, quit)
                while True:
                    flows = await parser.snapshot()
                    rows = rates.update(flows, time.monotonic())
                    info = parser.info()
                    if info.read_errors:  # the capture failed: say so below the view, exit 1
                        quit()
                        break
                    table = top_table(rows, info, args.source, console.size.height, time.time())
                    live.update(table, refresh=True)
                    await anyio.sleep(args.interval)
    return damage_exit(parser, parser.info(), sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow top``: exit 2 without rich or a terminal."""
    try:
        import rich  # noqa: F401 (an optional dependency: checked here, used in _top)
    except ImportError:
        sys.stderr.write(f"aioflow: error: {TOP_EXTRA_HINT}\n")
        return EXIT_USAGE
    if not sys.stdout.isatty():
        sys.stderr.write(
            "aioflow: error: aioflow top draws on a terminal; to record flows use "
            f"'aioflow flows {args.source} --format json'\n"
        )
        return EXIT_USAGE
    keys_fd: int | None = None
    saved: list[Any] | None = None
    if sys.stdin.isatty():
        import termios
        import tty

        # cbreak: single keys arrive at once without echo, and Ctrl-C still sends SIGINT
        keys_fd = sys.stdin.fileno()
        saved = termios.tcgetattr(keys_fd)
        tty.setcbreak(keys_fd)
    try:
        return _signals.run(_top, args, keys_fd)
    finally:
        if keys_fd is not None and saved is not None:
            termios.tcsetattr(keys_fd, termios.TCSADRAIN, saved)


def add_parser(commands: Any) -> None:
    """Adds ``top`` to the subcommands."""
    top = commands.add_parser(
        "top",
        help="live view of an interface's active flows, fastest first",
        description="Capture on an interface and show its active flows sorted by rate, refreshed every "
        "interval (like iftop). q or Ctrl-C quits. Needs rich: pip install rich (the 'top' extra).",
    )
    top.add_argument("source", metavar="IFACE", help="network interface (capturing needs root or CAP_NET_RAW)")
    top.add_argument(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes; rates are over this interval (default 1)",
    )
    add_flow_options(top, "--filter", "--idle-timeout",
                     idle_timeout="drop a flow from the view after S seconds without packets (default 120)")
