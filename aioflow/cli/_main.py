"""The ``aioflow`` command line: one subcommand per module of this package (flows, top, export,
collect, grep); this one builds the argument parser, dispatches, and turns errors into exit codes."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Sequence

import aioflow

from . import _apps, _collect, _export, _flows, _grep, _report, _signals, _top
from ._common import EXIT_BROKEN_PIPE, EXIT_USAGE, CommandError, version

# an output that cannot take more: the disk (or quota, or file size limit) is full, or read-only
_FULL = {errno.ENOSPC: "free some space or write elsewhere", errno.EDQUOT: "the disk quota is used up",
         errno.EFBIG: "the file is too large for its file system", errno.EROFS: "write elsewhere"}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``aioflow`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="aioflow",
        description="Bidirectional IP flows from pcap/pcapng captures.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _flows.add_parser(commands)
    _top.add_parser(commands)
    _export.add_parser(commands)
    _collect.add_parser(commands)
    _grep.add_parser(commands, version())
    _report.add_parser(commands)
    _apps.add_parser(commands)
    return parser


def _error_message(exc: aioflow.AioflowError, args: argparse.Namespace) -> str:
    """One line: the library's message (already says what to do), tied to the option at fault."""
    source = getattr(args, "source", "")  # a list with --dask: the library's message names the capture
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
    if isinstance(source, str) and source not in detail:
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


def _output_error(error: OSError, args: argparse.Namespace) -> str:
    """One line for an output that could not be written: which one (the file named, else the
    command's output file, else standard output) and what to do."""
    where = error.filename or getattr(args, "write", None) or getattr(args, "log_dir", None) or "standard output"
    try:
        sys.stdout.flush()
    except OSError:  # silenced, or Python's exit would report it again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return f"aioflow: error: {where}: {os.strerror(error.errno or 0)} ({_FULL[error.errno or 0]})"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``aioflow`` command with these arguments (default: sys.argv); returns the exit code
    (0, 1 for a damaged capture or --read file, 2 for usage, everyday mistakes (CommandError, a
    full disk) and the library's errors, 130/143 after SIGINT/SIGTERM (cli/_signals.py), 141
    broken pipe). Unexpected exceptions go up."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        run = {"top": _top.run, "grep": _grep.run, "export": _export.run, "collect": _collect.run,
               "report": _report.run, "apps": _apps.run}
        return run.get(args.command, _flows.run)(args)
    except BaseException as exc:
        if _find(exc, KeyboardInterrupt) is not None:
            sys.stderr.write("\naioflow: interrupted\n")
            return _signals.exit_code(signal.SIGINT)
        error = _find(exc, aioflow.AioflowError)
        if isinstance(error, aioflow.AioflowError):
            sys.stderr.write(_error_message(error, args) + "\n")
            return EXIT_USAGE
        mistake = _find(exc, CommandError)
        if mistake is not None:
            sys.stderr.write(f"aioflow: error: {mistake}\n")
            return EXIT_USAGE
        if _find(exc, BrokenPipeError) is not None:
            # The reader went away (`| head`): silence the final flush of stdout as well.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        os_error = _find(exc, OSError)
        if isinstance(os_error, OSError) and os_error.errno in _FULL:
            sys.stderr.write(_output_error(os_error, args) + "\n")
            return EXIT_USAGE
        if isinstance(os_error, OSError) and os_error.filename is not None:
            # a file the command line names cannot be opened (an output that is a directory, no permission)
            sys.stderr.write(f"aioflow: error: {os_error.filename}: {os_error.strerror} (check the path)\n")
            return EXIT_USAGE
        raise
