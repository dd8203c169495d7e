"""``aioflow collect --listen :2055 | --read FILE [--write FILE]``: receive NetFlow v5/v9 and IPFIX over UDP
(or replay an IPFIX file through the same decoder), print each record (a table line or JSON), optionally
archive the IPFIX messages to a file (RFC 5655)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import anyio
import anyio.lowlevel

from .._flow import protocol_name
from . import _signals
from ._common import (
    EXIT_DAMAGED,
    EXIT_USAGE,
    add_flowtools_options,
    address,
    endpoint,
    flowtools_rotation,
    int_at_least,
    socket_opened,
)

if TYPE_CHECKING:
    from ..netflow.collect import DecodeStats, FlowRecord, Message

SUMMARY_FIELDS = ("datagrams", "records", "options_records", "sets_without_template", "sequence_gaps",
                  "sequence_lost", "template_withdrawals", "templates_expired")  # fmt: skip


def listen_address(text: str) -> tuple[str, int | None]:
    """As export's HOST:PORT, except that ':PORT' is every address (a collector hears routers, not
    only itself); export reads ':PORT' as localhost."""
    host, port = address(text)
    return ("0.0.0.0" if text.startswith(":") else host), port


def add_parser(commands: Any) -> None:
    """Adds ``collect`` to the subcommands."""
    collect = commands.add_parser(
        "collect", help="receive NetFlow v5/v9 and IPFIX over UDP (or read an IPFIX file) and print the records",
        description="Listen for NetFlow v5, v9 and IPFIX datagrams and print every flow record as it arrives "
        "(a table line, or JSON lines with --json). --read FILE replays an IPFIX file (RFC 5655) through the "
        "same decoder instead, and exits 1 if the file is damaged (the records before the damage are printed). "
        "--write FILE archives the IPFIX messages received (or read), as they came, in an IPFIX file that "
        "--read and `aioflow.read_ipfix_file` read back; v5/v9 datagrams are not IPFIX and are counted, "
        "not written. Malformed datagrams are counted and skipped. A summary goes to stderr at the end (Ctrl-C, "
        "--count records, or the end of the --read file).",
    )  # fmt: skip
    source = collect.add_mutually_exclusive_group()
    source.add_argument("--listen", type=listen_address, default=("0.0.0.0", 2055), metavar="[HOST]:PORT",
                        help="address to listen on (default 0.0.0.0:2055; ':4739' is all addresses)")  # fmt: skip
    source.add_argument("--read", metavar="FILE", help="read an IPFIX file (RFC 5655) instead of listening")
    collect.add_argument("--write", metavar="FILE", help="append the IPFIX messages received (or read) to FILE")
    collect.add_argument("--json", action="store_true", help="JSON lines: every field of each record")
    collect.add_argument("--options", action="store_true", help="print options records too")
    collect.add_argument("--count", type=int_at_least(1), metavar="N", help="stop after N records")
    add_flowtools_options(collect)


def _json_value(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _line(record: FlowRecord, as_json: bool) -> str:
    if as_json:
        doc = {"exporter": list(record.exporter) if isinstance(record.exporter, tuple) else str(record.exporter),
               "version": record.version, "observation_domain": record.observation_domain,
               "template_id": record.template_id, "start_ns": record.start_ns, "end_ns": record.end_ns}  # fmt: skip
        doc.update({k: _json_value(v) for k, v in record.to_dict().items()})
        return json.dumps(doc)
    proto = protocol_name(record.protocol) if record.protocol is not None else "-"
    source = endpoint(str(record.src_ip), record.src_port or 0)
    destination = endpoint(str(record.dst_ip), record.dst_port or 0)
    exporter = record.exporter[0] if isinstance(record.exporter, tuple) else record.exporter
    kind = "options" if record.is_options else f"{record.packets} pkts {record.bytes} bytes"
    return f"v{record.version} {exporter} {proto} {source} -> {destination} {kind}"


class _Printer:
    """Prints the records of each decoded message (a datagram or a file's message) and archives the
    IPFIX ones with --write: one path for listening and for reading a file."""

    def __init__(self, args: argparse.Namespace, out: TextIO, archive: BinaryIO | None) -> None:
        self.args, self.out, self.archive = args, out, archive
        self.printed = self.not_ipfix = 0
        self.flowtools = None  # --flow-tools: every decoded datagram's records, rotating files
        if args.flow_tools is not None:
            from ..netflow._ftsink import FlowToolsRotator

            self.flowtools = FlowToolsRotator(**flowtools_rotation(args))

    @property
    def done(self) -> bool:
        return self.args.count is not None and self.printed >= self.args.count

    def message(self, message: Message, payload: bytes) -> None:
        from ..netflow.collect import message_records

        if self.archive is not None and message.error is None:
            if message.version == 10:
                self.archive.write(payload)
            else:
                self.not_ipfix += 1
        if self.flowtools is not None and message.error is None:
            from ..netflow.collect import PDU

            self.flowtools.write_pdu(PDU(message, payload))
        left = None if self.args.count is None else self.args.count - self.printed
        for record in itertools.islice(message_records(message, self.args.options), left):
            self.out.write(_line(record, self.args.json) + "\n")
            self.printed += 1
        self.out.flush()

    def summary(self, stats: DecodeStats, err: TextIO) -> None:
        if self.flowtools is not None:
            self.flowtools.close()
            err.write(f"aioflow: {self.args.flow_tools}: {self.flowtools.files_written} flow-tools files written\n")
        summary = ", ".join(f"{name} {getattr(stats, name)}" for name in SUMMARY_FIELDS)
        malformed = sum(stats.malformed.values())
        err.write(f"aioflow: {summary}, malformed {malformed} {dict(stats.malformed) or ''}\n")
        if self.not_ipfix:
            not_written = f"NetFlow v5/v9 datagrams not written to {self.args.write}"
            err.write(f"aioflow: {self.not_ipfix} {not_written} (not IPFIX)\n")


async def _collect(
    stopper: _signals.Stopper, args: argparse.Namespace, out: TextIO, err: TextIO, archive: BinaryIO | None
) -> int:
    from ..netflow.collect import Collector

    host, port = args.listen
    printer = _Printer(args, out, archive)
    listen = (host, 2055 if port is None else port)
    collector = Collector(listen, options=args.options)
    async with socket_opened(collector, f"--listen {endpoint(*listen)}"):
        try:
            # a signal ends the wait for the next datagram (one read is always printed and archived whole)
            with anyio.CancelScope() as receiving:
                stopper.on_signal(receiving.cancel)
                err.write(f"aioflow: collecting on {collector.address[0]}:{collector.address[1]}\n")
                err.flush()
                while not printer.done:
                    printer.message(*await collector.receive())
            # stopped by a signal: the datagrams that reached the socket before it are printed too
            for message in collector.queued():
                if printer.done:
                    break
                printer.message(*message)
        finally:
            printer.summary(collector.stats, err)
    return 0


async def _replay(
    stopper: _signals.Stopper, args: argparse.Namespace, file: BinaryIO, out: TextIO, err: TextIO,
    archive: BinaryIO | None,
) -> int:
    """--read: the file's messages through the collector's decoder, one at a time; a signal stops
    after the current one. A damaged file still prints what came before the damage, then exits 1."""
    from ..netflow.collect import Decoder

    decoder = Decoder(template_timeout=None)  # a file has no clock to expire templates by
    printer = _Printer(args, out, archive)
    offset = 0
    stopped = anyio.Event()
    stopper.on_signal(stopped.set)
    try:
        for message, payload in decoder.parse_file(f"file:{args.read}", file):
            printer.message(message, payload)
            offset += len(payload)
            if printer.done or stopped.is_set():
                break
            await anyio.lowlevel.checkpoint()  # where a signal is seen
    finally:
        printer.summary(decoder.stats, err)
    if decoder.stats.malformed:
        reasons = ", ".join(f"{k} {v}" for k, v in decoder.stats.malformed.items())
        read = f"{decoder.stats.datagrams} whole messages read ({offset} bytes)"
        err.write(f"aioflow: error: {args.read}: damaged ({reasons}); {read}, the intact ones' records printed\n")
        return EXIT_DAMAGED
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs ``aioflow collect``: exit 1 for a damaged --read file, 2 for usage; the library's errors
    (FlowFile*Error for --read) go up to main()."""
    from ..netflow.collect import open_ipfix_file

    flowtools_rotation(args)  # a usage error before anything is opened

    # Opened here, before the event loop: small appends of whole messages, no reads. The file to read
    # first, so a missing one leaves no empty archive behind (and raises its typed error).
    with open_ipfix_file(args.read) if args.read else contextlib.nullcontext() as file:
        if file is not None and args.write and os.path.exists(args.write) and \
                os.path.samestat(os.fstat(file.fileno()), os.stat(args.write)):  # fmt: skip
            sys.stderr.write("aioflow: error: collect: --write must not be the --read file\n")
            return EXIT_USAGE
        with open(args.write, "ab") if args.write else contextlib.nullcontext() as archive:
            if file is not None:
                return _signals.run(_replay, args, file, sys.stdout, sys.stderr, archive)
            return _signals.run(_collect, args, sys.stdout, sys.stderr, archive)
