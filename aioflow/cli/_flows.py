"""``aioflow flows SOURCE``: a capture's flows printed as they end (table, CSV or JSON lines)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import anyio

import aioflow

from .. import _zeek
from .._extras import meter_column_names
from .._flow import SCALAR_FIELDS, protocol_name
from .._parser import meters_on
from .._plugins import wants_packets
from . import _signals
from ._common import CommandError, add_flow_options, add_follow, damage_exit, endpoint, parser_options, summary

# The same columns as Flow.to_dict() and read_frame(), so the three outputs line up.
CSV_FIELDS: tuple[str, ...] = SCALAR_FIELDS


class _Writer(Protocol):
    def header(self) -> None: ...
    def row(self, flow: aioflow.Flow) -> None: ...
    def footer(self) -> None: ...


Cell = Callable[[aioflow.Flow, Mapping[str, Any]], list[str]]
# Each feature option's table columns (title, width, alignment) and how to fill them from the
# flow and its meter_columns(): a chosen few, readable in a terminal; csv/json have every column.
_FEATURE_COLUMNS: dict[str, tuple[tuple[tuple[str, int, str], ...], Cell]] = {
    "dissect": ((("APP", 22, "<"), ("SERVER NAME", 30, "<")),
                lambda f, m: [str(m.get("application_name", "")), str(m.get("requested_server_name", ""))]),
    "tunnel": ((("TUNNEL", 7, "<"),), lambda f, m: [str(m["tunnel_type"])]),
    "mac": ((("SRC MAC", 17, "<"), ("DST MAC", 17, "<")), lambda f, m: [str(m["src_mac"]), str(m["dst_mac"])]),
    "statistics": ((("MIN PS", 6, ">"), ("MEAN PS", 8, ">"), ("MAX PS", 6, ">"), ("STDDEV PS", 9, ">"),
                    ("MEAN PIAT", 10, ">")),
                   lambda f, m: [str(m["bidirectional_min_ps"]), f"{m['bidirectional_mean_ps']:.1f}",
                                 str(m["bidirectional_max_ps"]), f"{m['bidirectional_stddev_ps']:.1f}",
                                 f"{m['bidirectional_mean_piat_ms']:.1f}ms"]),
    # last: its width varies with N (a long cell only runs past the end of the line)
    "splt": ((("SPLT", 0, "<"),), lambda f, m: [signed_sizes(m["splt_direction"], m["splt_ps"])]),
}  # fmt: skip


def signed_sizes(directions: Sequence[int], sizes: Sequence[int]) -> str:
    """The table's SPLT cell: each early packet's size, + from source to destination, - back
    ("+74 -74 +66"); the -1 places past the flow's packets left out."""
    return " ".join(f"{'-' if d else '+'}{ps}" for d, ps in zip(directions, sizes, strict=True) if d >= 0)


def cell_text(value: Any) -> str:
    """A plugin field in a table cell ("" for None; floats with 3 decimals)."""
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


class _TableWriter:
    """Aligned columns, printed as flows end (widths are fixed: rows cannot wait for the widest).
    The feature options add a chosen few columns each (_FEATURE_COLUMNS); plugins add one per
    udps field the first flow has (so the header waits for it)."""

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

    def __init__(self, out: TextIO, err: TextIO, meters: Sequence[str], plugins: bool = False) -> None:
        self.out = out
        self.udps = _UdpsColumns(err, "table") if plugins else None
        self.features = [_FEATURE_COLUMNS[m] for m in _FEATURE_COLUMNS if m in meters and m != "splt"]
        self.last = [_FEATURE_COLUMNS["splt"]] if "splt" in meters else []
        self.columns: tuple[tuple[str, int, str], ...] = ()
        self.meters = bool(self.features or self.last)

    def _line(self, cells: Sequence[str]) -> None:
        # Two spaces between columns even when a long IPv6 endpoint overflows its width.
        columns = zip(cells, self.columns, strict=True)
        parts = [f"{cell:{align}{width}}" for cell, (_, width, align) in columns]
        self.out.write("  ".join(parts).rstrip() + "\n")

    def header(self) -> None:
        pass  # with the first row (the plugins' columns are known then) or at the end

    def _header(self, flow: aioflow.Flow | None) -> None:
        udps = self.udps.start(flow) if self.udps is not None else ()
        self.columns = (self.COLUMNS + tuple(c for cols, _ in self.features for c in cols)
                        + tuple((name, max(len(name), 10), ">") for name in udps)
                        + tuple(c for cols, _ in self.last for c in cols))  # fmt: skip
        self._line([name for name, _, _ in self.columns])

    def footer(self) -> None:
        if not self.columns:
            self._header(None)

    def row(self, flow: aioflow.Flow) -> None:
        if not self.columns:
            self._header(flow)
        start = dt.datetime.fromtimestamp(flow.first_seen_ns // 1_000_000_000, dt.UTC)
        millis = flow.first_seen_ns // 1_000_000 % 1000
        extra = flow.meter_columns() if self.meters else {}
        udps = [cell_text(v) for v in self.udps.values(flow)] if self.udps is not None else []
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
                *(cell for _, fill in self.features for cell in fill(flow, extra)),
                *udps,
                *(cell for _, fill in self.last for cell in fill(flow, extra)),
            ]
        )


class _UdpsColumns:
    """The plugins' fields as columns of a format whose header comes before the rows (table,
    csv): the udps fields of the first flow, in the order its plugins set them. A field a later
    flow sets first is left out of those rows, with one warning on stderr per field."""

    def __init__(self, err: TextIO, form: str) -> None:
        self.err = err
        self.form = form
        self.names: tuple[str, ...] = ()
        self.warned: set[str] = set()

    def start(self, flow: aioflow.Flow | None) -> tuple[str, ...]:
        """The columns ("udps.<name>"), from the first flow (None: there was none)."""
        self.names = tuple(vars(flow.udps)) if flow is not None else ()
        return tuple(f"udps.{n}" for n in self.names)

    def values(self, flow: aioflow.Flow) -> list[Any]:
        fields = vars(flow.udps)
        for late in fields.keys() - set(self.names) - self.warned:
            self.warned.add(late)
            self.err.write(f"aioflow: warning: plugin field udps.{late} first set by flow {flow.id}, after the "
                           f"{self.form} header was written: not in the {self.form} (--format json has every "
                           "field; or set it in on_init for every flow)\n")  # fmt: skip
        return [fields.get(n) for n in self.names]


class _CsvWriter:
    """CSV_FIELDS, then the enabled meters' columns (read_frame's names; a splt list as JSON),
    then the plugins' udps fields (_UdpsColumns: the header waits for the first flow)."""

    def __init__(self, out: TextIO, err: TextIO, meter_columns: Sequence[str], plugins: bool = False) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.meter_columns = tuple(meter_columns)
        self.udps = _UdpsColumns(err, "csv") if plugins else None
        self.started = False

    def header(self) -> None:
        pass  # with the first row (the plugins' columns are known then) or at the end

    def _header(self, flow: aioflow.Flow | None) -> None:
        self.started = True
        udps = self.udps.start(flow) if self.udps is not None else ()
        self.writer.writerow(CSV_FIELDS + self.meter_columns + udps)

    def footer(self) -> None:
        if not self.started:
            self._header(None)

    def row(self, flow: aioflow.Flow) -> None:
        if not self.started:
            self._header(flow)
        extra = flow.meter_columns() if self.meter_columns else {}
        values = [extra[c] for c in self.meter_columns]
        if self.udps is not None:
            values += self.udps.values(flow)
        cells = [json.dumps(v, default=plain) if isinstance(v, list | dict) else v for v in values]
        self.writer.writerow([getattr(flow, name) for name in CSV_FIELDS] + cells)


def plain(value: Any) -> Any:
    """json.dumps' fallback for plugin fields: numpy values and arrays as Python's, else str()."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


class _JsonWriter:
    """One JSON object per flow: the scalar fields, the meters' columns, then the plugins' fields
    (read_frame's order)."""

    def __init__(self, out: TextIO, with_headers: bool) -> None:
        self.out = out
        self.with_headers = with_headers

    def header(self) -> None:
        pass

    def footer(self) -> None:
        pass

    def row(self, flow: aioflow.Flow) -> None:
        record = {name: getattr(flow, name) for name in CSV_FIELDS} | flow.meter_columns()
        record |= {f"udps.{k}": v for k, v in vars(flow.udps).items()}
        if self.with_headers:
            # to_dict() leaves the kept headers out; hex keeps their raw bytes plain text.
            record["headers"] = [{**dataclasses.asdict(h), "raw": h.raw.hex()} for h in flow.headers]
        self.out.write(json.dumps(record, default=plain) + "\n")


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


def _writer(args: argparse.Namespace, out: TextIO, err: TextIO, meters: Sequence[str]) -> _Writer:
    """The writer of args.format; `meters`: the meters the parser turns on (their columns)."""
    if args.format in ("zeek", "zeek-json"):
        nets = _zeek.ZEEK_LOCAL_NETS if args.local_nets is None else args.local_nets
        return _ZeekWriter(out, args.format == "zeek-json", nets)
    if args.format == "csv":
        return _CsvWriter(out, err, meter_column_names(meters), plugins=bool(args.plugin))
    if args.format == "json":
        return _JsonWriter(out, with_headers=bool(args.headers))
    return _TableWriter(out, err, meters, plugins=bool(args.plugin))


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
    flows.add_argument("--shares-per-capture", type=int, default=1, metavar="K",
                       help="--dask: K tasks per capture, each counting 1/K of its flows by flow hash (each reads "
                       "the whole file; worth it for statistics, dissection or huge captures)")
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
    flows.add_argument("--decode-tunnels", action="store_true", default=None,
                       help="key flows on the innermost IP of GRE, IP-in-IP, VXLAN, Geneve, GTP-U, Teredo and "
                       "MPLS tunnels: a TUNNEL column (csv/json: tunnel_id, tunnel_type, tunnel_src_ip, "
                       "tunnel_dst_ip)")
    flows.add_argument("--check-checksums", action="store_true", default=None,
                       help="verify IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums: bad ones are counted "
                       "(bad_checksum in the summary) and marked C/c in the zeek formats' history")
    flows.add_argument("--mac", action="store_true",
                       help="the first packet's Ethernet addresses: SRC MAC and DST MAC columns (csv/json: "
                       "src_mac, dst_mac, src_oui, dst_oui)")
    flows.add_argument("--statistics", action="store_true", default=None,
                       help="nfstream's statistical features: table: MIN PS, MEAN PS, MAX PS, STDDEV PS, MEAN "
                       "PIAT; csv/json: all of them (README, Features for analytics)")
    flows.add_argument("--splt", type=int, metavar="N", default=None,
                       help="the sizes, gaps and directions of each flow's first N packets (N <= 32): table: a "
                       "SPLT column of sizes, + source to destination, - back; csv/json: splt_* lists")
    flows.add_argument("--accounting-mode", type=int, choices=range(4), metavar="{0,1,2,3}", default=None,
                       help="packet size for --statistics/--splt: 0 frame (default), 1 IP, 2 transport, 3 payload")
    flows.add_argument("--plugin", action="append", metavar="MODULE:CLASS", default=[],
                       help="run an aioflow.FlowPlugin subclass on each flow (made with no arguments; MODULE "
                       "an importable module or a path/to/file.py); its udps fields become columns. Repeatable")

# Options that add columns: the zeek and flow-tools formats have fixed ones, so they refuse them.
FEATURE_OPTIONS = ("statistics", "splt", "mac", "plugin")


def check_options(args: argparse.Namespace) -> None:
    """CommandError for an option the format would ignore."""
    if (args.format == "flow-tools") != (args.output is not None):
        raise CommandError("--format flow-tools writes a file: give -o FILE (and -o only with it)")
    given = [f"--{name}" for name in FEATURE_OPTIONS if getattr(args, name)]
    if given and args.format in ("zeek", "zeek-json", "flow-tools"):
        raise CommandError(f"{', '.join(given)}: --format {args.format} has fixed columns; use --format table, "
                           "csv or json for these")  # fmt: skip


def feature_options(args: argparse.Namespace) -> dict[str, Any]:
    """FlowParser options of --mac and --plugin (parser_options() has the others)."""
    options: dict[str, Any] = {}
    if args.mac:
        options["meters"] = ("mac",)
    if args.plugin:
        options["plugins"] = [_plugin(spec) for spec in args.plugin]
        needing = [spec for spec, p in zip(args.plugin, options["plugins"], strict=True) if wants_packets(p)]
        if needing and not args.headers:
            raise CommandError(f"--plugin {needing[0]}: its on_update needs the packets' headers: add --headers N "
                               "(it then sees each flow's first N packets)")  # fmt: skip
    return options


def _plugin(spec: str) -> aioflow.FlowPlugin:
    """The plugin a --plugin MODULE:CLASS names, made with no arguments. MODULE: a module name,
    looked up on sys.path and in the current directory, or a path to a .py file."""
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise CommandError(f"--plugin {spec}: give MODULE:CLASS (e.g. myplugins:PacketSizes or "
                           "./myplugins.py:PacketSizes)")  # fmt: skip
    if where.endswith(".py") or os.sep in where:
        found = importlib.util.spec_from_file_location(Path(where).stem, where)
        if found is None or found.loader is None or not Path(where).is_file():
            raise CommandError(f"--plugin {spec}: no file {where} (check the path)")
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
    else:
        # as `python -m` does: a module beside the user is found without setting PYTHONPATH
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name != where.split(".")[0] and exc.name != where:
                raise  # the plugin's own import failed: its traceback says which
            raise CommandError(f"--plugin {spec}: no module {where} (put it on PYTHONPATH or in the current "
                               "directory, or give its file: path/to/file.py:CLASS)") from None  # fmt: skip
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, aioflow.FlowPlugin)):
        raise CommandError(f"--plugin {spec}: {where} has no aioflow.FlowPlugin subclass {name}")
    try:
        return cls()
    except TypeError as exc:
        raise CommandError(f"--plugin {spec}: {name}() failed ({exc}); the command makes it with no "
                           "arguments: give its parameters defaults") from None  # fmt: skip

async def run_flows(
    stopper: _signals.Stopper, args: argparse.Namespace, out: TextIO, err: TextIO, show_progress: bool
) -> int:
    """Prints the flows of args.source to `out` as they end, the summary to `err`; returns 0, or
    EXIT_DAMAGED when reading stopped at damage (the flows before it were printed). A signal stops
    the parser: the active flows are printed (ending as "stop"), then the summary."""
    if args.format == "flow-tools":
        return await _run_flowtools(stopper, args, err)
    options = parser_options(args) | feature_options(args)
    if args.format in ("zeek", "zeek-json"):
        options = {**_zeek.ZEEK_OPTIONS, **options, "meters": _zeek.METERS,
                   "community_id_seed": args.community_id_seed}  # fmt: skip
    parser = aioflow.FlowParser(args.source, **options)  # checks the options; opens the source on entering
    writer = _writer(args, out, err, meters_on(parser))
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
    if args.format == "parquet" or args.partition_on or args.shares_per_capture != 1:
        raise CommandError("--format parquet, --partition-on and --shares-per-capture write a dataset through Dask: "
                           "add --dask ADDRESS (a scheduler's) or --dask local")  # fmt: skip
    if len(args.source) > 1:
        raise CommandError(f"one SOURCE at a time ({len(args.source)} given); several captures: --dask local "
                           "--format parquet -o DIRECTORY")  # fmt: skip
    args.source = args.source[0]
    check_options(args)
    # A bar only makes sense where someone watches it and where there is an end to measure against.
    show_progress = not (args.no_progress or args.follow) and sys.stderr.isatty() and Path(args.source).is_file()
    return _signals.run(run_flows, args, sys.stdout, sys.stderr, show_progress)
