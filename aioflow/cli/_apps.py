"""``aioflow apps SOURCE...``: traffic by application and category (nDPI, the dissect meter):
flows, and packets and bytes each way, most bytes first; like ndpiReader's "Detected protocols"
but from aioflow's flows. A table, CSV or JSON lines."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import anyio

import aioflow

from .._apps import ApplicationRow, ApplicationTotals
from .._report._gather import stop_after
from . import _signals
from ._common import add_flow_options, damage_exit, parser_options, positive_float, summary
from ._flows import _Progress

FORMATS = ("table", "csv", "json")
FIELDS = tuple(ApplicationRow.__dataclass_fields__)
NOT_DISSECTED = "(not dissected)"  # a flow that found the dissector's pool full (dissect_pool_full)


def add_parser(commands: Any) -> None:
    """Adds ``apps`` to the subcommands."""
    apps = commands.add_parser(
        "apps",
        help="traffic by application and category (nDPI)",
        description="Read captures (or an interface for --seconds, or until Ctrl-C) with application detection "
        "(nDPI) and print, per application and category, the flows and the packets and IP bytes each way, "
        "most bytes first (> source to destination, < back). CSV and JSON add the captured bytes (whole "
        "frames, as ndpiReader counts them). A summary goes to stderr.",
    )
    apps.add_argument("sources", metavar="SOURCE", nargs="+", help="pcap or pcapng files, or one interface")
    apps.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), csv (one row per application and category) or json (JSON lines)",
    )
    apps.add_argument(
        "--seconds", type=positive_float, metavar="S", help="live interface: capture this long (default: until Ctrl-C)"
    )
    add_flow_options(apps, "--filter", "--idle-timeout", "--active-timeout", "--fin-timeout", "--max-flows")
    apps.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")  # fmt: skip


def write_rows(rows: Sequence[ApplicationRow], form: str, out: TextIO) -> None:
    """The rows in `form` (FORMATS) to `out`."""
    if form == "json":
        for row in rows:
            out.write(json.dumps(row.to_dict()) + "\n")
        return
    if form == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows([getattr(row, name) for name in FIELDS] for row in rows)
        return
    total = sum(row.bytes for row in rows) or 1
    header = ("APPLICATION", "CATEGORY", "FLOWS", "PKTS>", "BYTES>", "<PKTS", "<BYTES", "BYTES%")
    lines = [header] + [
        (row.application_name or NOT_DISSECTED, row.application_category_name, str(row.flows),
         str(row.src2dst_packets), str(row.src2dst_bytes), str(row.dst2src_packets), str(row.dst2src_bytes),
         f"{100 * row.bytes / total:.1f}")
        for row in rows
    ]  # fmt: skip
    # every row is known before printing: each column as wide as its widest cell
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        cells = [f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")


async def run_apps(stopper: _signals.Stopper, args: argparse.Namespace, out: TextIO, err: TextIO,
                   show_progress: bool) -> int:  # fmt: skip
    """Reads every source with dissect=True, adding each batch of ended flows to the totals;
    prints them and the summaries. 0, or EXIT_DAMAGED when a capture stopped at damage (the
    totals still count what was read before it). A signal stops reading; the totals are printed."""
    totals = ApplicationTotals()
    options = {**parser_options(args), "dissect": True}
    code = 0
    for source in args.sources:
        args.source = source  # the library's errors name the source being opened
        async with aioflow.FlowParser(source, **options) as parser:
            stopper.on_signal(parser.stop)
            if parser.live:
                _signals.capturing(err, source)
            async with anyio.create_task_group() as tasks:
                if show_progress:
                    tasks.start_soon(_Progress(err, clear_before_rows=False).run, parser)
                if args.seconds is not None and parser.live:
                    tasks.start_soon(stop_after, parser, args.seconds)
                async for batch in parser.batches():
                    totals.add(batch)
                tasks.cancel_scope.cancel()
            info = parser.info()
        if show_progress:
            err.write("\r\x1b[K")
        d = info.dissection
        err.write(f"{summary(info)}; {d['dissect_flows']} flows dissected: {d['dissect_detected']} detected, "
                  f"{d['dissect_gave_up']} given up, {d['dissect_pool_full']} without room\n")  # fmt: skip
        code = max(code, damage_exit(parser, info, err))
        if stopper.signum is not None:
            break
    write_rows(totals.rows(), args.format, out)
    out.flush()
    return code


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow apps``; the library's errors (DissectUnavailableError without nDPI) go up to main()."""
    show_progress = not args.no_progress and sys.stderr.isatty() and all(Path(s).is_file() for s in args.sources)
    return _signals.run(run_apps, args, sys.stdout, sys.stderr, show_progress)
