"""``aioflow report``: captures (or a live interface for some seconds) to one self-contained HTML
report: facts, traffic over time, top talkers and conversations, size and duration distributions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import anyio

import aioflow

from . import _signals
from ._common import CommandError, add_flow_options, damage_exit, parser_options, positive_float
from ._flows import _Progress


def add_parser(commands: Any) -> None:
    """Adds ``report`` to the subcommands."""
    report = commands.add_parser(
        "report",
        help="write an HTML report of a capture's flows",
        description="Read captures (or an interface for --seconds) and write one HTML file that opens offline: "
        "the capture's facts, traffic over time by protocol, top talkers and conversations (sortable), "
        "flow size and duration distributions, end reasons. Needs plotly: pip install 'aioflow-pcap[report]'.",
    )
    report.add_argument("sources", metavar="SOURCE", nargs="+", help="pcap or pcapng files, or one interface")
    report.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file to write")
    report.add_argument("--title", metavar="TEXT", help="the report's title (default: names the sources)")
    report.add_argument("--seconds", type=positive_float, metavar="S",
                        help="live interface: capture this long (default: until Ctrl-C)")  # fmt: skip
    add_flow_options(report, "--filter", "--idle-timeout", "--active-timeout", "--max-flows")
    report.add_argument("--dissect", action="store_true",
                        help="detect applications with nDPI: traffic by application, top applications")  # fmt: skip
    report.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


async def run_report(stopper: _signals.Stopper, args: argparse.Namespace, err: TextIO, show_progress: bool) -> int:
    """Reads every source, writes the report; 0, or EXIT_DAMAGED when a capture stopped at damage
    (the report still shows what was read before it, and says where)."""
    from aioflow._report._gather import gather
    from aioflow._report._page import render

    parsers: list[aioflow.FlowParser] = []

    async def watch(parser: aioflow.FlowParser) -> None:
        parsers.append(parser)
        stopper.on_signal(parser.stop)
        if parser.live:
            _signals.capturing(err, args.source)
        if show_progress:
            await _Progress(err, clear_before_rows=False).run(parser)

    def on_source(source: str) -> None:
        args.source = source  # the library's errors name the source being opened

    options = parser_options(args)
    if args.dissect:
        options["dissect"] = True
    data = await gather(args.sources, options, args.seconds, watch, on_source)
    if show_progress:
        err.write("\r\x1b[K")
    title = args.title or "aioflow report: " + ", ".join(args.sources)
    # aggregating and drawing takes seconds for a large capture: off the event loop (signals)
    page = await anyio.to_thread.run_sync(render, data, title)
    await anyio.to_thread.run_sync(Path(args.output).write_text, page, "utf-8")
    code = 0
    for parser, facts in zip(parsers, data.sources, strict=True):
        code = max(code, damage_exit(parser, facts.info, err))
    err.write(f"aioflow: {sum(f.info.flows_ended for f in data.sources)} flows; report written to {args.output}\n")
    return code


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow report``; the library's errors go up to main()."""
    try:
        import plotly  # noqa: F401  (checked before a long read, not after it)
    except ImportError:
        raise CommandError("report needs plotly: pip install 'aioflow-pcap[report]' (or pip install plotly)") from None
    output = Path(args.output)
    if not output.parent.is_dir():
        raise CommandError(f"--output {args.output}: no such directory")
    args.source = args.sources[0]
    show_progress = not args.no_progress and sys.stderr.isatty() and all(Path(s).is_file() for s in args.sources)
    return _signals.run(run_report, args, sys.stderr, show_progress)
