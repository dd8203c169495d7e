"""``aioflow export SOURCE --to HOST:PORT --format ipfix|v9|v5`` and ``--write FILE``: a capture's
(or an interface's) flows sent to a NetFlow/IPFIX collector and/or written to an IPFIX or Parquet file."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any, TextIO

import aioflow

from . import _signals
from ._common import (
    EXIT_USAGE,
    CommandError,
    add_flow_options,
    add_flowtools_options,
    add_follow,
    address,
    damage_exit,
    endpoint,
    flowtools_rotation,
    int_at_least,
    parser_options,
    positive_float,
    socket_opened,
    summary,
)

if TYPE_CHECKING:
    from ..netflow.export import ExportStats

# aioflow.netflow.export (numpy) is imported only when the subcommand runs: `aioflow flows` starts faster.
DEFAULT_PORTS = {"ipfix": 4739, "v9": 2055, "v5": 2055}


def add_parser(commands: Any) -> None:
    """Adds ``export`` to the subcommands."""
    export = commands.add_parser(
        "export", help="send flows to a NetFlow/IPFIX collector, or write them to an IPFIX or Parquet file",
        description="Read a capture (or an interface) and export each flow as it ends: --to sends NetFlow v5, "
        "v9 or IPFIX over UDP; --write writes an IPFIX file (RFC 5655), or Parquet when FILE ends in .parquet. "
        "v5 and v9 records are unidirectional (one per direction of a flow); v5 cannot carry IPv6 (counted, not "
        "sent). A summary goes to stderr.",
    )  # fmt: skip
    export.add_argument("source", metavar="SOURCE", help="pcap or pcapng file, or an interface")
    export.add_argument("--to", type=address, metavar="HOST:PORT",
                        help="collector address (port default: 4739 for ipfix, 2055 for v9/v5)")
    export.add_argument("--format", choices=sorted(DEFAULT_PORTS), default="ipfix",
                        help="export protocol (default ipfix)")
    export.add_argument("--write", metavar="FILE", help="also write an IPFIX file (.parquet: a Parquet file, with "
                        "--dissect's columns too)")
    export.add_argument("--mtu", type=int_at_least(256), default=1400, metavar="BYTES",
                        help="largest UDP payload (default 1400)")
    export.add_argument("--max-rate", type=positive_float, metavar="N",
                        help="send at most N datagrams per second (default: unpaced)")
    export.add_argument("--uniflow", action="store_true",
                        help="IPFIX: one record per direction instead of RFC 5103 biflows")
    export.add_argument("--nanoseconds", action="store_true",
                        help="IPFIX: flowStart/EndNanoseconds instead of milliseconds")
    export.add_argument("--domain", type=int_at_least(0), default=0, metavar="ID",
                        help="IPFIX observation domain / v9 source id / v5 engine id (default 0)")
    export.add_argument("--dissect", action="store_true", default=None,
                        help="IPFIX: detect applications (nDPI) and add applicationId, applicationName, "
                        "applicationCategoryName and the server name (ntop's FLOW_SERVER_NAME) to the "
                        "records")  # fmt: skip
    add_flowtools_options(export)
    add_flow_options(export, "--filter", "--idle-timeout", "--active-timeout", "--fin-timeout", "--max-flows")
    add_follow(export)


def _exporter(args: argparse.Namespace) -> Any:
    from ..netflow.export import EXPORTERS

    host, port = args.to
    options: dict[str, Any] = {"mtu": args.mtu, "max_rate": args.max_rate}
    if args.format == "ipfix":
        options.update(observation_domain=args.domain, biflow=not args.uniflow, nanoseconds=args.nanoseconds,
                       applications=bool(args.dissect))  # fmt: skip
    elif args.format == "v9":
        options.update(source_id=args.domain)
    else:
        options.update(engine_id=args.domain)
    return EXPORTERS[args.format]((host, port or DEFAULT_PORTS[args.format]), **options)


def _writer(args: argparse.Namespace) -> Any:
    from ..netflow.export import IPFIXFileWriter, ParquetWriter

    if args.write.endswith(".parquet"):
        try:
            return ParquetWriter(args.write)
        except ImportError as exc:
            raise CommandError(f"--write {args.write}: {exc}; or write an IPFIX file (any other name)") from None
    return IPFIXFileWriter(args.write, biflow=not args.uniflow, nanoseconds=args.nanoseconds,
                           observation_domain=args.domain, applications=bool(args.dissect))  # fmt: skip


def _report(where: str, s: ExportStats) -> str:
    line = f"aioflow: {where}: {s.flows} flows, {s.records} records in {s.messages} messages ({s.octets} bytes)"
    if s.skipped_ipv6:
        line += f"; {s.skipped_ipv6} IPv6 flows not sent (v5 is IPv4 only)"
    if s.send_errors:
        line += f"; {s.send_errors} datagrams refused ({s.last_error})"
    return line + "\n"


async def _export(stopper: _signals.Stopper, args: argparse.Namespace, err: TextIO) -> int:
    from ..netflow._ftsink import FlowToolsWriter
    from ..netflow.export import ParquetWriter

    exporter = writer = archive = None
    if args.dissect and ((args.to is not None and args.format != "ipfix") or args.flow_tools is not None):
        raise CommandError("--dissect: only IPFIX and Parquet carry the application (--format ipfix, --write FILE, "
                           "--write FILE.parquet)")  # fmt: skip
    rotation = flowtools_rotation(args)
    async with contextlib.AsyncExitStack() as stack:
        parser = await stack.enter_async_context(aioflow.FlowParser(args.source, **parser_options(args)))
        if args.to is not None:
            option = f"--to {endpoint(*args.to) if args.to[1] else args.to[0]}"
            exporter = await stack.enter_async_context(socket_opened(_exporter(args), option))
        if args.write is not None:
            writer = await stack.enter_async_context(_writer(args))
        if args.flow_tools is not None:
            archive = await stack.enter_async_context(FlowToolsWriter(engine_id=args.domain & 0xFF, **rotation))
        # a signal ends the parse: the active flows end as "stop" and still go out below
        stopper.on_signal(parser.stop)
        if parser.live:
            _signals.capturing(err, args.source)
        sinks = [sink for sink in (exporter, writer, archive) if sink is not None]
        if len(sinks) == 1:
            await sinks[0].run(parser)  # whole batches, no Python work per flow
        else:  # one subscription feeds both: a second one could miss the flows ended before it
            async for flow in parser.terminated():
                for sink in sinks:
                    await sink.send(flow)
    err.write(summary(parser.info()) + "\n")
    if exporter is not None:
        err.write(_report(f"{args.format} to {exporter.address[0]}:{exporter.address[1]}", exporter.stats))
    if isinstance(writer, ParquetWriter):
        err.write(f"aioflow: {args.write}: {writer.rows} flows written\n")
    elif writer is not None:
        err.write(_report(args.write, writer.stats))
    if archive is not None:
        err.write(_report(f"{args.flow_tools}: {archive.files_written} flow-tools files", archive.stats))
    return damage_exit(parser, parser.info(), err)


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow export``: exit 2 without --to, --write or --flow-tools; the library's errors go up to main()."""
    if args.to is None and args.write is None and args.flow_tools is None:
        sys.stderr.write("aioflow: error: export: give --to HOST:PORT, --write FILE and/or --flow-tools DIR\n")
        return EXIT_USAGE
    return _signals.run(_export, args, sys.stderr)
