"""What the ``aioflow`` commands share: exit codes, option parsers, the parser options and summary."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import socket
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from typing import Any, TextIO

import aioflow
from aioflow._errors import damage_message

from . import _signals

# Exit codes: 2 like argparse for anything the user can fix; a signal's is _signals.exit_code().
EXIT_USAGE = 2
EXIT_DAMAGED = 1  # the capture is damaged: what came before it was output (tcpdump exits 1 too)
EXIT_BROKEN_PIPE = _signals.exit_code(signal.SIGPIPE)  # 141, what `... | head` would give a C tool


def endpoint(ip: str, port: int) -> str:
    """``ip:port``; brackets keep an IPv6 address apart from its port, as in URLs."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def positive_float(text: str) -> float:
    """argparse type: a number of seconds > 0; raises argparse.ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= minimum; raises argparse.ArgumentTypeError."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return parse


def version() -> str:
    """The installed distribution's version, or "unknown" (running from an uninstalled tree)."""
    try:
        return metadata.version("aioflow-pcap")
    except metadata.PackageNotFoundError:
        return "unknown"


def address(text: str) -> tuple[str, int | None]:
    """HOST:PORT, [IPv6]:PORT, HOST or :PORT (localhost) -> (host, port or None); raises
    argparse.ArgumentTypeError."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise argparse.ArgumentTypeError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise argparse.ArgumentTypeError(f"{text!r}: expected [IPv6]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        number = None if port is None else int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number") from None
    if number is not None and not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1..65535")
    return host or "127.0.0.1", number


# FlowParser's options as the commands spell them: (type, metavar, help), one wording for every command.
FLOW_OPTIONS: dict[str, tuple[Callable[[str], Any] | None, str, str]] = {
    "--filter": (None, "BPF", "BPF filter, as for tcpdump (e.g. 'tcp port 443')"),
    "--idle-timeout": (positive_float, "S", "end a flow after S seconds without packets (default 120)"),
    "--active-timeout": (positive_float, "S",
                         "emit a record of a flow older than S seconds and keep counting (default 1800)"),
    "--fin-timeout": (positive_float, "S", "end a TCP flow S seconds after FINs from both sides or a RST (default 10)"),
    "--max-flows": (int_at_least(1), "N", "flow table bound; the least recently seen flow is evicted past it"),
    "--headers": (int_at_least(0), "N",
                  "keep the headers of the first N packets of each flow (json output shows them)"),
}  # fmt: skip


def add_flow_options(command: argparse.ArgumentParser, *names: str, **help_texts: str) -> None:
    """Adds these FLOW_OPTIONS to a subcommand, in this order; ``idle_timeout="..."`` words one's
    help for this command. parser_options() reads them back."""
    for name in names:
        kind, metavar, text = FLOW_OPTIONS[name]
        text = help_texts.get(name.removeprefix("--").replace("-", "_"), text)
        if kind is None:
            command.add_argument(name, metavar=metavar, help=text)
        else:
            command.add_argument(name, type=kind, metavar=metavar, help=text)


def add_follow(command: argparse.ArgumentParser, *flags: str) -> None:
    """--follow (FlowParser's follow=True): a file still being written is read as it grows."""
    command.add_argument(*flags, "--follow", action="store_true", default=None,
                         help="keep reading the file as it grows, like tail -f, until Ctrl-C or SIGTERM "
                         "(plain, gzip or zstd files; a pipe is read until its writer closes it anyway)")  # fmt: skip


def parser_options(args: argparse.Namespace) -> dict[str, Any]:
    """FlowParser keyword options from the command line: only those given (seconds, counts)."""
    # Only what was given: the library's own defaults stay the single source of truth.
    names = ("filter", "idle_timeout", "active_timeout", "fin_timeout", "max_flows", "headers", "defragment",
             "follow", "dissect", "statistics", "splt", "accounting_mode", "decode_tunnels",
             "check_checksums")  # fmt: skip
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def summary(info: aioflow.ParserInfo) -> str:
    """The one-line stderr summary of a parse: packets, flows by end reason, what was set aside."""
    aside = sum(info.aside.values())
    ended = ", ".join(f"{reason} {count}" for reason, count in sorted(info.ended_by.items()) if count)
    text = f"aioflow: {info.packets} packets, {info.flows_ended} flows ({ended or 'none'})"
    details = ", ".join(f"{reason} {count}" for reason, count in sorted(info.aside.items()) if count)
    text += f"; {aside} packets counted aside" + (f" ({details})" if details else "")
    events = ", ".join(f"{event} {n}" for event, n in sorted(info.decode_events.items()) if n)
    if events:
        text += f"; decode events: {events}"
    if info.datagrams_reassembled or any(info.defrag_gave_up.values()):
        gave_up = ", ".join(f"{reason} {n}" for reason, n in sorted(info.defrag_gave_up.items()) if n)
        text += f"; {info.datagrams_reassembled} datagrams reassembled" + (f", given up: {gave_up}" if gave_up else "")
    if info.read_errors:
        text += f"; {info.read_errors} read errors"  # damage_exit() says where and why
    return text


def damage_exit(parser: aioflow.FlowParser, info: aioflow.ParserInfo, err: TextIO) -> int:
    """0, or EXIT_DAMAGED after a one-line message (where reading stopped and why) when the source
    stopped at damage; the same text as read()'s CaptureDamagedWarning."""
    if not info.read_errors:
        return 0
    err.write(f"aioflow: error: {damage_message(parser.source, info.packets, info.read_error, parser.live)}\n")
    return EXIT_DAMAGED


class CommandError(Exception):
    """An everyday mistake a command reports in one line, exit 2 (main() prints it): the message
    names the option at fault and says what to do."""


# errno -> what to do about a socket that cannot be set up
_SOCKET_HINTS = {
    errno.EADDRINUSE: "the port is in use by another program: stop it or choose another port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address: use one it has, or ':PORT' for all",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    errno.ENETUNREACH: "no route to that network: check the address",
}


@contextlib.asynccontextmanager
async def socket_opened(sink: Any, option: str) -> AsyncIterator[Any]:
    """`async with sink` (an exporter, a collector), where a socket that cannot be resolved, bound or
    connected is a CommandError naming `option` (e.g. "--to HOST:PORT")."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            opened = await stack.enter_async_context(sink)
        except OSError as exc:
            raise socket_error(option, exc) from None
        yield opened


def socket_error(option: str, exc: OSError) -> CommandError:
    """A CommandError for a socket of `option` (e.g. "--to HOST:PORT") that could not be resolved,
    bound or connected."""
    if isinstance(exc, socket.gaierror):
        why = f"the host name does not resolve ({exc.strerror})"
        return CommandError(f"{option}: {why}: check it or give an IP address")
    hint = _SOCKET_HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    return CommandError(f"{option}: {hint}")


def add_flowtools_options(command: argparse.ArgumentParser) -> None:
    """--flow-tools DIR and its rotation: flow-tools files named as flow-capture's (export, collect)."""
    command.add_argument("--flow-tools", metavar="DIR",
                         help="also write flow-tools v5 files (ft-v05.YYYY-MM-DD.HHMMSS+0000, as flow-capture) in DIR")
    command.add_argument("--rotate-records", type=int_at_least(1), metavar="N",
                         help="--flow-tools: start a new file every N records")
    command.add_argument("--rotate-seconds", type=int_at_least(1), metavar="S",
                         help="--flow-tools: start a new file at every S-second boundary of the flows' export time")


def flowtools_rotation(args: argparse.Namespace) -> dict[str, Any]:
    """The FlowToolsWriter/FlowToolsRotator options of --flow-tools (usage error: rotation without it)."""
    if args.flow_tools is None and (args.rotate_records or args.rotate_seconds):
        raise CommandError("--rotate-records/--rotate-seconds need --flow-tools DIR")
    return {"directory": args.flow_tools, "rotate_records": args.rotate_records,
            "rotate_seconds": args.rotate_seconds}  # fmt: skip
