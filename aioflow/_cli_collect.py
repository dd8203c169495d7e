"""``aioflow collect --listen :2055 [--write FILE]``: receive NetFlow v5/v9 and IPFIX over UDP, print each
record (a table line or JSON), optionally archive the IPFIX messages to a file (RFC 5655)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import anyio

from aioflow import _cli
from aioflow._cli_export import address

if TYPE_CHECKING:
    from aioflow.collect import FlowRecord

SUMMARY_FIELDS = ("datagrams", "records", "options_records", "sets_without_template", "sequence_gaps",
                  "sequence_lost", "template_withdrawals", "templates_expired")  # fmt: skip


def add_parser(commands: Any) -> None:
    collect = commands.add_parser(
        "collect", help="receive NetFlow v5/v9 and IPFIX over UDP and print the records",
        description="Listen for NetFlow v5, v9 and IPFIX datagrams and print every flow record as it arrives "
        "(a table line, or JSON lines with --json). --write FILE archives the IPFIX messages received, as "
        "they came, in an IPFIX file (RFC 5655) that `aioflow.collect.read_ipfix_file` reads back; v5/v9 "
        "datagrams are not IPFIX and are counted, not written. Malformed datagrams are counted and skipped. "
        "A summary goes to stderr at the end (Ctrl-C, or --count records).",
    )  # fmt: skip
    collect.add_argument("--listen", type=address, default=("0.0.0.0", 2055), metavar="[HOST]:PORT",
                         help="address to listen on (default 0.0.0.0:2055; ':4739' is all addresses)")  # fmt: skip
    collect.add_argument("--write", metavar="FILE", help="append the IPFIX messages received to FILE")
    collect.add_argument("--json", action="store_true", help="JSON lines: every field of each record")
    collect.add_argument("--options", action="store_true", help="print options records too")
    collect.add_argument("--count", type=_cli._int_at_least(1), metavar="N", help="stop after N records")


def _json_value(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _line(record: FlowRecord, as_json: bool) -> str:
    if as_json:
        doc = {"exporter": list(record.exporter) if isinstance(record.exporter, tuple) else str(record.exporter),
               "version": record.version, "observation_domain": record.observation_domain,
               "template_id": record.template_id, "start_ns": record.start_ns, "end_ns": record.end_ns}  # fmt: skip
        doc.update({k: _json_value(v) for k, v in record.to_dict().items()})
        return json.dumps(doc)
    proto = _cli.protocol_name(record.protocol) if record.protocol is not None else "-"
    source = _cli.endpoint(str(record.src_ip), record.src_port or 0)
    destination = _cli.endpoint(str(record.dst_ip), record.dst_port or 0)
    exporter = record.exporter[0] if isinstance(record.exporter, tuple) else record.exporter
    kind = "options" if record.is_options else f"{record.packets} pkts {record.bytes} bytes"
    return f"v{record.version} {exporter} {proto} {source} -> {destination} {kind}"


async def _collect(args: argparse.Namespace, out: TextIO, err: TextIO, archive: BinaryIO | None) -> int:
    from aioflow.collect import Collector, FlowRecord

    host, port = args.listen
    not_ipfix = printed = 0
    collector = Collector((host, 2055 if port is None else port), options=args.options)
    try:
        async with collector:
            err.write(f"aioflow: collecting on {collector.address[0]}:{collector.address[1]}\n")
            err.flush()
            while args.count is None or printed < args.count:
                message, payload = await collector.receive()
                if archive is not None and message.error is None:
                    if message.version == 10:
                        archive.write(payload)
                    else:
                        not_ipfix += 1
                for rs in message.sets:
                    if rs.template.is_options and not args.options:
                        continue
                    for i in range(len(rs)):
                        if args.count is not None and printed >= args.count:
                            break
                        out.write(_line(FlowRecord(rs, i), args.json) + "\n")
                        printed += 1
                out.flush()
    finally:
        stats = collector.stats
        summary = ", ".join(f"{name} {getattr(stats, name)}" for name in SUMMARY_FIELDS)
        malformed = sum(stats.malformed.values())
        err.write(f"aioflow: {summary}, malformed {malformed} {dict(stats.malformed) or ''}\n")
        if not_ipfix:
            err.write(f"aioflow: {not_ipfix} NetFlow v5/v9 datagrams not written to {args.write} (not IPFIX)\n")
    return 0


def run(args: argparse.Namespace) -> int:
    # Opened here, before the event loop: small appends of whole messages, no reads.
    archive = open(args.write, "ab") if args.write else None
    try:
        return anyio.run(_collect, args, sys.stdout, sys.stderr, archive)
    finally:
        if archive is not None:
            archive.close()
