"""The ``aioflow`` command line: ``aioflow flows SOURCE`` prints flows as they end; ``aioflow top
IFACE`` shows the active flows of an interface, fastest first, in the terminal."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio

import aioflow
from aioflow._flow import SCALAR_FIELDS, protocol_name

from ._cli_grep import add_grep_command, main_grep

# Exit codes: 2 like argparse for anything the user can fix, 130 = 128 + SIGINT as shells expect.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `... | head` would give a C tool


# The same columns as Flow.to_dict() and read_frame(), so the three outputs line up.
CSV_FIELDS: tuple[str, ...] = SCALAR_FIELDS


class _Writer(Protocol):
    def header(self) -> None: ...
    def row(self, flow: aioflow.Flow) -> None: ...


def endpoint(ip: str, port: int) -> str:
    # Brackets keep an IPv6 address apart from its port, as in URLs.
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class _TableWriter:
    """Aligned columns, printed as flows end (widths are fixed: rows cannot wait for the widest)."""

    COLUMNS = (
        ("START (UTC)", 23, "<"),
        ("PROTO", 5, "<"),
        ("SOURCE", 21, "<"),
        ("DESTINATION", 21, "<"),
        ("PKTS>", 7, ">"),
        ("BYTES>", 10, ">"),
        ("<PKTS", 7, ">"),
        ("<BYTES", 10, ">"),
        ("DURATION", 10, ">"),
        ("END", 7, "<"),
    )

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _line(self, cells: Sequence[str]) -> None:
        # Two spaces between columns even when a long IPv6 endpoint overflows its width.
        columns = zip(cells, self.COLUMNS, strict=True)
        parts = [f"{cell:{align}{width}}" for cell, (_, width, align) in columns]
        self.out.write("  ".join(parts).rstrip() + "\n")

    def header(self) -> None:
        self._line([name for name, _, _ in self.COLUMNS])

    def row(self, flow: aioflow.Flow) -> None:
        start = dt.datetime.fromtimestamp(flow.first_seen_ns // 1_000_000_000, dt.UTC)
        millis = flow.first_seen_ns // 1_000_000 % 1000
        self._line(
            [
                f"{start:%Y-%m-%d %H:%M:%S}.{millis:03d}",
                protocol_name(flow.protocol),
                endpoint(flow.src_ip, flow.src_port),
                endpoint(flow.dst_ip, flow.dst_port),
                str(flow.src2dst_packets),
                str(flow.src2dst_bytes),
                str(flow.dst2src_packets),
                str(flow.dst2src_bytes),
                f"{flow.duration:.3f}s",
                flow.end_reason,
            ]
        )


class _CsvWriter:
    def __init__(self, out: TextIO) -> None:
        self.writer = csv.writer(out, lineterminator="\n")

    def header(self) -> None:
        self.writer.writerow(CSV_FIELDS)

    def row(self, flow: aioflow.Flow) -> None:
        self.writer.writerow([getattr(flow, name) for name in CSV_FIELDS])


class _JsonWriter:
    def __init__(self, out: TextIO, with_headers: bool) -> None:
        self.out = out
        self.with_headers = with_headers

    def header(self) -> None:
        pass

    def row(self, flow: aioflow.Flow) -> None:
        record = flow.to_dict()
        if self.with_headers:
            # to_dict() leaves the kept headers out; hex keeps their raw bytes plain text.
            record["headers"] = [{**dataclasses.asdict(h), "raw": h.raw.hex()} for h in flow.headers]
        self.out.write(json.dumps(record) + "\n")


FORMATS = ("table", "csv", "json")


def _writer(args: argparse.Namespace, out: TextIO) -> _Writer:
    if args.format == "csv":
        return _CsvWriter(out)
    if args.format == "json":
        return _JsonWriter(out, with_headers=bool(args.headers))
    return _TableWriter(out)


class _Progress:
    """One self-redrawing line on stderr (a terminal): bar, percent, packets, flows."""

    WIDTH = 30

    def __init__(self, err: TextIO, clear_before_rows: bool) -> None:
        self.err = err
        # Only when rows go to the same terminal does the bar have to step aside for them.
        self.clear_before_rows = clear_before_rows
        self.shown = False

    def draw(self, info: aioflow.ParserInfo) -> None:
        fraction = min(max(float(info.progress), 0.0), 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.err.write(f"\r[{bar}] {fraction:4.0%}  {info.packets} packets  {info.flows_ended} flows\x1b[K")
        self.err.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = False

    def before_rows(self) -> None:
        if self.clear_before_rows:
            self.clear()

    async def run(self, parser: aioflow.FlowParser) -> None:
        while True:
            self.draw(parser.info())
            await anyio.sleep(0.1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def _version() -> str:
    try:
        return metadata.version("aioflow-pcap")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioflow",
        description="Bidirectional IP flows from pcap/pcapng captures.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    flows = commands.add_parser(
        "flows",
        help="print flows as they end",
        description="Read a capture and print each flow when it ends (every flow ends at the end of a file). "
        "A summary goes to stderr.",
    )
    flows.add_argument("source", metavar="SOURCE", help="pcap or pcapng file")
    flows.add_argument("--filter", metavar="BPF", help="BPF filter, as for tcpdump (e.g. 'tcp port 443')")
    flows.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), csv (one row per flow) or json (JSON lines)",
    )
    flows.add_argument(
        "--idle-timeout",
        type=_positive_float,
        metavar="S",
        help="end a flow after S seconds without packets (default 120)",
    )
    flows.add_argument(
        "--active-timeout",
        type=_positive_float,
        metavar="S",
        help="emit a record of a flow older than S seconds and keep counting (default 1800)",
    )
    flows.add_argument(
        "--fin-timeout",
        type=_positive_float,
        metavar="S",
        help="end a TCP flow S seconds after FINs from both sides or a RST (default 10)",
    )
    flows.add_argument(
        "--max-flows",
        type=_int_at_least(1),
        metavar="N",
        help="flow table bound; the least recently seen flow is evicted past it",
    )
    flows.add_argument(
        "--headers",
        type=_int_at_least(0),
        metavar="N",
        help="keep the headers of the first N packets of each flow (json output shows them)",
    )
    flows.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    flows.add_argument("--defragment", action="store_true", default=None,
                       help="reassemble IP fragments: a flow counts datagrams, not fragments")
    top = commands.add_parser(
        "top",
        help="live view of an interface's active flows, fastest first",
        description="Capture on an interface and show its active flows sorted by rate, refreshed every "
        "interval (like iftop). q or Ctrl-C quits. Needs rich: pip install 'aioflow-pcap[top]'.",
    )
    top.add_argument("source", metavar="IFACE", help="network interface (capturing needs root or CAP_NET_RAW)")
    top.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes; rates are over this interval (default 1)",
    )
    top.add_argument("--filter", metavar="BPF", help="BPF filter, as for tcpdump (e.g. 'tcp port 443')")
    top.add_argument(
        "--idle-timeout",
        type=_positive_float,
        metavar="S",
        help="drop a flow from the view after S seconds without packets (default 120)",
    )
    from aioflow import _cli_export  # here: it imports this module's helpers

    _cli_export.add_parser(commands)
    from aioflow import _cli_collect

    _cli_collect.add_parser(commands)
    add_grep_command(commands, _version())
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    # Only what was given: the library's own defaults stay the single source of truth.
    names = ("filter", "idle_timeout", "active_timeout", "fin_timeout", "max_flows", "headers", "defragment")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _summary(info: aioflow.ParserInfo) -> str:
    aside = sum(info.aside.values())
    ended = ", ".join(f"{reason} {count}" for reason, count in sorted(info.ended_by.items()) if count)
    text = f"aioflow: {info.packets} packets, {info.flows_ended} flows ({ended or 'none'})"
    details = ", ".join(f"{reason} {count}" for reason, count in sorted(info.aside.items()) if count)
    text += f"; {aside} packets counted aside" + (f" ({details})" if details else "")
    if info.datagrams_reassembled or any(info.defrag_gave_up.values()):
        gave_up = ", ".join(f"{reason} {n}" for reason, n in sorted(info.defrag_gave_up.items()) if n)
        text += f"; {info.datagrams_reassembled} datagrams reassembled" + (f", given up: {gave_up}" if gave_up else "")
    if info.read_errors:
        text += f"; {info.read_errors} read errors (the file is damaged: reading stopped there)"
    return text


async def _flows(args: argparse.Namespace, out: TextIO, err: TextIO, show_progress: bool) -> int:
    writer = _writer(args, out)
    progress = _Progress(err, clear_before_rows=out.isatty()) if show_progress else None
    async with aioflow.FlowParser(args.source, **_options(args)) as parser:
        async with anyio.create_task_group() as tasks:
            if progress is not None:
                tasks.start_soon(progress.run, parser)
            writer.header()
            async for flow in parser.terminated():
                if progress is not None:
                    progress.before_rows()
                writer.row(flow)
            tasks.cancel_scope.cancel()
        info = parser.info()
    out.flush()
    if progress is not None:
        progress.draw(info)
        err.write("\n")
    err.write(_summary(info) + "\n")
    return 0


# --- aioflow top ---

TOP_EXTRA_HINT = "aioflow top needs the rich package: pip install 'aioflow-pcap[top]'"
PORTED = {6, 17, 132}  # TCP, UDP, SCTP
TOP_CHROME_LINES = 7  # title, table borders, header, caption: the rows get the rest of the screen


def human_rate(value: float) -> str:
    for unit in ("B/s", "KB/s", "MB/s"):
        if value < 999.5:
            return f"{value:.0f} {unit}" if unit == "B/s" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB/s"


def human_age(seconds: float) -> str:
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


async def _quit_on_signal(quit: Callable[[], None], *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    # Ctrl-C is the usual way to leave a full-screen view: a quit like q, not an error.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            quit()
            return


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


async def _top(args: argparse.Namespace, keys_fd: int | None) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    async with aioflow.FlowParser(args.source, **_options(args)) as parser:
        rates = Rates()
        # screen=True: the alternate screen, left as it was on exit (as top and iftop do)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            async with anyio.create_task_group() as tasks:
                quit = tasks.cancel_scope.cancel
                await tasks.start(_quit_on_signal, quit)
                if keys_fd is not None:
                    tasks.start_soon(_quit_on_key, keys_fd, quit)
                while True:
                    flows = await parser.snapshot()
                    rows = rates.update(flows, time.monotonic())
                    table = top_table(rows, parser.info(), args.source, console.size.height, time.time())
                    live.update(table, refresh=True)
                    await anyio.sleep(args.interval)
    return 0


def _run_top(args: argparse.Namespace) -> int:
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
        return anyio.run(_top, args, keys_fd)
    finally:
        if keys_fd is not None and saved is not None:
            termios.tcsetattr(keys_fd, termios.TCSADRAIN, saved)


def _error_message(exc: aioflow.AioflowError, args: argparse.Namespace) -> str:
    """One line: the library's message (already says what to do), tied to the option at fault."""
    source = str(getattr(args, "source", ""))
    detail = " ".join(str(exc).split())  # keep it on one line
    if isinstance(exc, aioflow.FilterError):
        if args.filter not in detail:
            detail = f"{args.filter!r}: {detail}"
        hint = "" if "pcap-filter" in detail else " (see 'man pcap-filter')"
        return f"aioflow: error: --filter: {detail or 'not a valid BPF expression'}{hint}"
    if isinstance(exc, aioflow.ConfigError):
        return f"aioflow: error: {detail or 'an option is out of range'} (see 'aioflow {args.command} --help')"
    if not detail:
        detail = {
            aioflow.CaptureNotFoundError: "no such file; check the path",
            aioflow.CapturePermissionError: "not readable by this user; fix its permissions or use sudo",
            aioflow.CaptureFormatError: "not a pcap/pcapng file libpcap can read; check it with capinfos",
        }.get(type(exc), "reading failed")
    if source not in detail:
        detail = f"{source}: {detail}"
    return f"aioflow: error: {detail}"


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The exception itself or the first leaf of that kind in an exception group (task groups wrap)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "top":
            return _run_top(args)
        if args.command == "grep":
            return main_grep(args)
        if args.command == "export":
            from aioflow import _cli_export

            return _cli_export.run(args)
        if args.command == "collect":
            from aioflow import _cli_collect

            return _cli_collect.run(args)
        # A bar only makes sense where someone watches it and where there is an end to measure against.
        show_progress = not args.no_progress and sys.stderr.isatty() and Path(args.source).is_file()
        return anyio.run(_flows, args, sys.stdout, sys.stderr, show_progress)
    except BaseException as exc:
        if _find(exc, KeyboardInterrupt) is not None:
            sys.stderr.write("\naioflow: interrupted\n")
            return EXIT_INTERRUPTED
        error = _find(exc, aioflow.AioflowError)
        if isinstance(error, aioflow.AioflowError):
            sys.stderr.write(_error_message(error, args) + "\n")
            return EXIT_USAGE
        if _find(exc, BrokenPipeError) is not None:
            # The reader went away (`| head`): silence the final flush of stdout as well.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        os_error = _find(exc, OSError)
        if isinstance(os_error, OSError) and os_error.filename is not None:
            # a file the command line names cannot be opened (an output that is a directory, no permission)
            sys.stderr.write(f"aioflow: error: {os_error.filename}: {os_error.strerror} (check the path)\n")
            return EXIT_USAGE
        raise
