"""The ``aioflow`` command line: ``aioflow flows SOURCE`` prints flows as they end."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio

import aioflow
from aioflow._flow import SCALAR_FIELDS

# Exit codes: 2 like argparse for anything the user can fix, 130 = 128 + SIGINT as shells expect.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `... | head` would give a C tool

PROTOCOL_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmp6",
                  132: "sctp"}

# The same columns as Flow.to_dict() and read_frame(), so the three outputs line up.
CSV_FIELDS: tuple[str, ...] = SCALAR_FIELDS


class _Writer(Protocol):
    def header(self) -> None: ...
    def row(self, flow: aioflow.Flow) -> None: ...


def protocol_name(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


def endpoint(ip: str, port: int) -> str:
    # Brackets keep an IPv6 address apart from its port, as in URLs.
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class _TableWriter:
    """Aligned columns, printed as flows end (widths are fixed: rows cannot wait for the widest)."""

    COLUMNS = (("START (UTC)", 23, "<"), ("PROTO", 5, "<"), ("SOURCE", 21, "<"), ("DESTINATION", 21, "<"),
               ("PKTS>", 7, ">"), ("BYTES>", 10, ">"), ("<PKTS", 7, ">"), ("<BYTES", 10, ">"),
               ("DURATION", 10, ">"), ("END", 7, "<"))

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
        self._line([
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
        ])


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
        prog="aioflow", description="Bidirectional IP flows from pcap/pcapng captures.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    flows = commands.add_parser(
        "flows", help="print flows as they end",
        description="Read a capture and print each flow when it ends (every flow ends at the end of a file). "
        "A summary goes to stderr.",
    )
    flows.add_argument("source", metavar="SOURCE", help="pcap or pcapng file")
    flows.add_argument("--filter", metavar="BPF", help="BPF filter, as for tcpdump (e.g. 'tcp port 443')")
    flows.add_argument("--format", choices=FORMATS, default="table",
                       help="table (default), csv (one row per flow) or json (JSON lines)")
    flows.add_argument("--idle-timeout", type=_positive_float, metavar="S",
                       help="end a flow after S seconds without packets (default 120)")
    flows.add_argument("--active-timeout", type=_positive_float, metavar="S",
                       help="emit a record of a flow older than S seconds and keep counting (default 1800)")
    flows.add_argument("--fin-timeout", type=_positive_float, metavar="S",
                       help="end a TCP flow S seconds after FINs from both sides or a RST (default 10)")
    flows.add_argument("--max-flows", type=_int_at_least(1), metavar="N",
                       help="flow table bound; the least recently seen flow is evicted past it")
    flows.add_argument("--headers", type=_int_at_least(0), metavar="N",
                       help="keep the headers of the first N packets of each flow (json output shows them)")
    flows.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    # Only what was given: the library's own defaults stay the single source of truth.
    names = ("filter", "idle_timeout", "active_timeout", "fin_timeout", "max_flows", "headers")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _summary(info: aioflow.ParserInfo) -> str:
    aside = sum(info.aside.values())
    ended = ", ".join(f"{reason} {count}" for reason, count in sorted(info.ended_by.items()) if count)
    text = f"aioflow: {info.packets} packets, {info.flows_ended} flows ({ended or 'none'})"
    details = ", ".join(f"{reason} {count}" for reason, count in sorted(info.aside.items()) if count)
    text += f"; {aside} packets counted aside" + (f" ({details})" if details else "")
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
        return f"aioflow: error: {detail or 'an option is out of range'} (see 'aioflow flows --help')"
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
    # A bar only makes sense where someone watches it and where there is an end to measure against.
    show_progress = not args.no_progress and sys.stderr.isatty() and Path(args.source).is_file()
    try:
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
        raise
