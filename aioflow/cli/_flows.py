"""``aioflow flows SOURCE``: a capture's flows printed as they end (table, CSV or JSON lines)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio

import aioflow

from .. import _zeek
from .._extras import meter_column_names
from .._flow import SCALAR_FIELDS, protocol_name
from .._parser import meters_on
from . import _signals
from ._common import CommandError, add_flow_options, add_follow, damage_exit, endpoint, parser_options, summary

# The same columns as Flow.to_dict() and read_frame(), so the three outputs line up.
CSV_FIELDS: tuple[str, ...] = SCALAR_FIELDS


class _Writer(Protocol):
    def header(self) -> None: ...
    def row(self, flow: aioflow.Flow) -> None: ...
    def footer(self) -> None: ...


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

    DISSECT_COLUMNS = (("APP", 22, "<"), ("SERVER NAME", 30, "<"))

    def __init__(self, out: TextIO, dissect: bool = False) -> None:
        self.out = out
        self.dissect = dissect
        self.columns = self.COLUMNS + (self.DISSECT_COLUMNS if dissect else ())

    def _line(self, cells: Sequence[str]) -> None:
        # Two spaces between columns even when a long IPv6 endpoint overflows its width.
        columns = zip(cells, self.columns, strict=True)
        parts = [f"{cell:{align}{width}}" for cell, (_, width, align) in columns]
        self.out.write("  ".join(parts).rstrip() + "\n")

    def header(self) -> None:
        self._line([name for name, _, _ in self.columns])

    def footer(self) -> None:
        pass

    def row(self, flow: aioflow.Flow) -> None:
        start = dt.datetime.fromtimestamp(flow.first_seen_ns // 1_000_000_000, dt.UTC)
        millis = flow.first_seen_ns // 1_000_000 % 1000
        app = flow.meter("dissect") if self.dissect else {}
        extra = [str(app.get("application_name", "")), str(app.get("requested_server_name", ""))] if app else []
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
                *extra,
            ]
        )


class _CsvWriter:
    """CSV_FIELDS, then the enabled meters' columns (read_frame's names; a splt list as JSON)."""

    def __init__(self, out: TextIO, meter_columns: Sequence[str]) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.meter_columns = tuple(meter_columns)

    def header(self) -> None:
        self.writer.writerow(CSV_FIELDS + self.meter_columns)

    def footer(self) -> None:
        pass

    def row(self, flow: aioflow.Flow) -> None:
        extra = flow.meter_columns() if self.meter_columns else {}
        values = [json.dumps(v) if isinstance(v, list) else v for v in (extra[c] for c in self.meter_columns)]
        self.writer.writerow([getattr(flow, name) for name in CSV_FIELDS] + values)


class _JsonWriter:
    def __init__(self, out: TextIO, with_headers: bool) -> None:
        self.out = out
        self.with_headers = with_headers

    def header(self) -> None:
        pass

    def footer(self) -> None:
        pass

    def row(self, flow: aioflow.Flow) -> None:
        record = flow.to_dict() | flow.meter_columns()
        if self.with_headers:
            # to_dict() leaves the kept headers out; hex keeps their raw bytes plain text.
            record["headers"] = [{**dataclasses.asdict(h), "raw": h.raw.hex()} for h in flow.headers]
        self.out.write(json.dumps(record) + "\n")


class _ZeekWriter:
    """Zeek's conn.log: its ASCII (TSV) writer's header, rows and #close, or its JSON lines."""

    def __init__(self, out: TextIO, as_json: bool, local_nets: Sequence[str]) -> None:
        self.out = out
        self.as_json = as_json
        self.nets = _zeek.local_networks(local_nets)
        lines = _zeek.tsv_lines((), community_id=True)
        self.head = [line for line in lines if not line.startswith("#close")]

    def header(self) -> None:
        if not self.as_json:
            self.out.write("\n".join(self.head) + "\n")

    def row(self, flow: aioflow.Flow) -> None:
        record = _zeek.conn_record(flow, self.nets, community_id=True)
        if self.as_json:
            self.out.write(next(_zeek.json_lines([record])) + "\n")
        else:
            self.out.write(_zeek.tsv_row(record, community_id=True) + "\n")

    def footer(self) -> None:
        if not self.as_json:
            self.out.write(_zeek.close_line() + "\n")


FORMATS = ("table", "csv", "json", "zeek", "zeek-json", "flow-tools", "parquet")


def _writer(args: argparse.Namespace, out: TextIO, meters: Sequence[str]) -> _Writer:
    """The writer of args.format; `meters`: the meters the parser turns on (csv's extra columns)."""
    if args.format in ("zeek", "zeek-json"):
        nets = _zeek.ZEEK_LOCAL_NETS if args.local_nets is None else args.local_nets
        return _ZeekWriter(out, args.format == "zeek-json", nets)
    if args.format == "csv":
        return _CsvWriter(out, meter_column_names(meters))
    if args.format == "json":
        return _JsonWriter(out, with_headers=bool(args.headers))
    return _TableWriter(out, "dissect" in meters)


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


def add_parser(commands: Any) -> None:
    """Adds ``flows`` to the subcommands."""
    flows = commands.add_parser(
        "flows",
        help="print flows as they end",
        description="Read a capture and print each flow when it ends (every flow ends at the end of a file). "
        "A summary goes to stderr.",
    )
    flows.add_argument("source", metavar="SOURCE", nargs="+",
                       help="pcap or pcapng file; with --dask, several files or quoted globs ('captures/*.pcap')")
    add_flow_options(flows, "--filter")
    flows.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), csv (one row per flow), json (JSON lines), zeek (Zeek's conn.log), zeek-json "
        "(conn.log as Zeek's JSON lines; the zeek formats use Zeek's timeouts unless given) or flow-tools (a "
        "flow-tools v5 file, one record per direction, to -o FILE) or parquet (with --dask: a Parquet dataset, "
        "to -o DIRECTORY)",
    )
    flows.add_argument("-o", "--output", metavar="FILE",
                       help="--format flow-tools: the file to write; --format parquet: the dataset's directory")
    flows.add_argument("--dask", metavar="ADDRESS",
                       help="read the captures on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:8786), "
                       "one task per capture, or on a new cluster of this machine's cores with 'local'; "
                       "writes --format parquet to -o DIRECTORY (needs the 'dask' extra)")
    flows.add_argument("--partition-on", nargs="+", metavar="COLUMN", default=[],
                       help="--dask: the columns whose values name the dataset's directories (protocol=6/...)")
    flows.add_argument("--local-nets", nargs="*", metavar="CIDR", default=None,
                       help="zeek formats: Site::local_nets for local_orig/local_resp "
                       "(default: Zeek's private address space)")
    flows.add_argument("--community-id-seed", type=int, default=0, metavar="N",
                       help="zeek formats: the Community ID seed (0..65535, default 0)")
    add_flow_options(flows, "--idle-timeout", "--active-timeout", "--fin-timeout", "--max-flows", "--headers")
    flows.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_follow(flows, "-f")
    flows.add_argument("--defragment", action="store_true", default=None,
                       help="reassemble IP fragments: a flow counts datagrams, not fragments")
    flows.add_argument("--dissect", action="store_true", default=None,
                       help="application detection with nDPI: APP and SERVER NAME columns (CSV/JSON: every "
                       "dissect field, nfstream's names)")
    flows.add_argument("--statistics", action="store_true", default=None,
                       help="csv/json: add nfstream's statistical features (README, Features for analytics)")
    flows.add_argument("--splt", type=int, metavar="N", default=None,
                       help="csv/json: add the sizes, gaps and directions of each flow's first N packets (N <= 32)")
    flows.add_argument("--accounting-mode", type=int, choices=range(4), metavar="{0,1,2,3}", default=None,
                       help="packet size for --statistics/--splt: 0 frame (default), 1 IP, 2 transport, 3 payload")


async def run_flows(
    stopper: _signals.Stopper, args: argparse.Namespace, out: TextIO, err: TextIO, show_progress: bool
) -> int:
    """Prints the flows of args.source to `out` as they end, the summary to `err`; returns 0, or
    EXIT_DAMAGED when reading stopped at damage (the flows before it were printed). A signal stops
    the parser: the active flows are printed (ending as "stop"), then the summary."""
    if args.format == "flow-tools":
        return await _run_flowtools(stopper, args, err)
    options = parser_options(args)
    if args.format in ("zeek", "zeek-json"):
        options = {**_zeek.ZEEK_OPTIONS, **options, "meters": _zeek.METERS,
                   "community_id_seed": args.community_id_seed}  # fmt: skip
    parser = aioflow.FlowParser(args.source, **options)  # checks the options; opens the source on entering
    writer = _writer(args, out, meters_on(parser))
    progress = _Progress(err, clear_before_rows=out.isatty()) if show_progress else None
    async with parser:
        stopper.on_signal(parser.stop)
        if parser.live:
            _signals.capturing(err, args.source)
        async with anyio.create_task_group() as tasks:
            if progress is not None:
                tasks.start_soon(progress.run, parser)
            writer.header()
            async for flow in parser.terminated():
                if progress is not None:
                    progress.before_rows()
                writer.row(flow)
            tasks.cancel_scope.cancel()
            writer.footer()
        info = parser.info()
    out.flush()
    if progress is not None:
        progress.draw(info)
        err.write("\n")
    err.write(summary(info) + "\n")
    return damage_exit(parser, info, err)


async def _run_flowtools(stopper: _signals.Stopper, args: argparse.Namespace, err: TextIO) -> int:
    """--format flow-tools: the flows, as NetFlow v5 records, into a flow-tools file (batches, no
    Python work per flow); the summary and what was written to `err`."""
    from ..netflow._ftsink import FlowToolsWriter

    async with aioflow.FlowParser(args.source, **parser_options(args)) as parser:
        stopper.on_signal(parser.stop)
        if parser.live:
            _signals.capturing(err, args.source)
        async with FlowToolsWriter(args.output) as writer:
            await writer.run(parser)
        info = parser.info()
    err.write(summary(info) + "\n")
    s = writer.stats
    ipv6 = f"; {s.skipped_ipv6} IPv6 flows not written (v5 is IPv4 only)" if s.skipped_ipv6 else ""
    err.write(f"aioflow: {args.output}: {s.records} flow-tools v5 records from {s.flows} flows{ipv6}\n")
    return damage_exit(parser, info, err)


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow flows``; the library's errors go up to main()."""
    if args.dask is not None:
        from . import _dask

        return _dask.run(args, sys.stderr)
    if args.format == "parquet" or args.partition_on:
        raise CommandError("--format parquet and --partition-on write a dataset through Dask: add --dask ADDRESS "
                           "(a scheduler's) or --dask local")  # fmt: skip
    if len(args.source) > 1:
        raise CommandError(f"one SOURCE at a time ({len(args.source)} given); several captures: --dask local "
                           "--format parquet -o DIRECTORY")  # fmt: skip
    args.source = args.source[0]
    if (args.format == "flow-tools") != (args.output is not None):
        raise CommandError("--format flow-tools writes a file: give -o FILE (and -o only with it)")
    # A bar only makes sense where someone watches it and where there is an end to measure against.
    show_progress = not (args.no_progress or args.follow) and sys.stderr.isatty() and Path(args.source).is_file()
    return _signals.run(run_flows, args, sys.stdout, sys.stderr, show_progress)
