"""The `aioflow grep` command: flowgrep's options on aioflow's reassembled streams."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from .._errors import ConfigError
from .._parser import FlowParser
from ..grep import (
    DEFAULT_SPAN,
    DistanceMatcher,
    Grep,
    GrepConfig,
    GrepSummary,
    Matcher,
    RegexMatcher,
    TcpKiller,
    compile_patterns,
    native_patterns,
    read_pattern_file,
)
from . import _signals
from ._common import add_follow, damage_exit

DESCRIPTION = """\
Grep reassembled TCP streams and UDP payloads (flowgrep). Client patterns search what the client
(the side that opened the flow) sent, server patterns what the server sent. A match may span
segments; it is found as soon as the data completing it arrives. Each matched flow is printed once,
or with -l its streams are written to files when the flow ends. Patterns are Python regular
expressions over bytes (MULTILINE). The C engine searches them (Vectorscan) when it can with the
same meaning; otherwise (backreferences, lookarounds, -E, -v with -k) Python does, slower (see
--search). A trailing FILTER is a BPF expression, as for tcpdump."""


def add_parser(commands: Any, version: str) -> None:
    """Adds ``grep`` to the subcommands."""
    grep = commands.add_parser("grep", help="grep reassembled streams (flowgrep)", description=DESCRIPTION)
    grep.add_argument("-a", dest="any", action="append", default=[], metavar="PATTERN",
                      help="match either stream with PATTERN")
    grep.add_argument("-c", dest="client", action="append", default=[], metavar="PATTERN",
                      help="match the client stream (what the client sent) with PATTERN")
    grep.add_argument("-s", dest="server", action="append", default=[], metavar="PATTERN",
                      help="match the server stream (what the server sent) with PATTERN")
    grep.add_argument("-f", dest="client_file", action="append", default=[], metavar="FILE",
                      help="client patterns from FILE, one per line")
    grep.add_argument("-F", dest="server_file", action="append", default=[], metavar="FILE",
                      help="server patterns from FILE, one per line")
    grep.add_argument("-i", dest="ignore_case", action="store_true", help="case-insensitive patterns")
    grep.add_argument("-v", dest="invert", action="store_true", help="select the flows that do not match")
    grep.add_argument("-E", dest="algorithm", metavar="ALGO",
                      help="string distance for -e: levenshtein, damerau, hamming or jaccard")
    grep.add_argument("-e", dest="strings", action="append", default=[], metavar="STRING",
                      help="match either stream where some window is within -D of STRING (needs -E)")
    grep.add_argument("-D", dest="score", type=float, default=0.0, metavar="SCORE",
                      help="largest distance that still matches (default 0: exact; jaccard: 0..1)")
    grep.add_argument("-l", dest="log_dir", metavar="DIR", type=Path,
                      help="write each matched flow's streams to DIR when it ends: time-src-sport-dst-dport-tcp "
                      "(one file per direction, named from its sender), ...-udp, time-src-dst-protoN")
    grep.add_argument("-x", dest="print_files", action="store_true", help="print the logged file names (with -l)")
    grep.add_argument("-k", dest="kill", action="store_true",
                      help="reset matched TCP streams (live interfaces only; needs root or CAP_NET_RAW)")
    grep.add_argument("-u", dest="user", metavar="USER", help="drop privileges to USER once the capture is open")
    source = grep.add_mutually_exclusive_group(required=True)
    source.add_argument("-r", dest="file", metavar="FILE", help="read a pcap/pcapng file")
    source.add_argument("-d", dest="device", metavar="DEVICE", help="capture on a network interface")
    grep.add_argument("-V", action="version", version=f"aioflow grep {version}")
    grep.add_argument("--format", choices=("text", "json"), default="text",
                      help="text (default) or json (one JSON line per reported flow)")
    grep.add_argument("--span", type=int, default=DEFAULT_SPAN, metavar="BYTES",
                      help=f"bytes an unbounded pattern (a.*b) may span across segments (default {DEFAULT_SPAN})")
    grep.add_argument("--search", choices=("auto", "native", "python"), default="auto",
                      help="where regexes run: in the C engine (native, Vectorscan: reports the match that ends "
                      "first), in Python (python: the leftmost match, as re.search), or native when it can (auto)")
    grep.add_argument("--max-stream-bytes", type=int, metavar="BYTES",
                      help="bytes kept per stream direction for -l (default: FlowParser's)")
    add_follow(grep)
    grep.add_argument("filter_words", nargs="*", metavar="FILTER", help="BPF filter expression")


def grep_config(args: argparse.Namespace) -> GrepConfig:
    """Sorts flowgrep's options into client-side and server-side matchers (-a and -e go to both)."""
    client_patterns = [*args.any, *args.client, *(p for f in args.client_file for p in read_pattern_file(f))]
    server_patterns = [*args.any, *args.server, *(p for f in args.server_file for p in read_pattern_file(f))]
    if args.span < 1:
        raise ConfigError(f"--span {args.span}: must be at least 1 byte")
    client: list[Matcher] = []
    server: list[Matcher] = []
    if client_patterns:
        client.append(RegexMatcher(compile_patterns(client_patterns, args.ignore_case), args.span))
    if server_patterns:
        server.append(RegexMatcher(compile_patterns(server_patterns, args.ignore_case), args.span))
    if args.strings or args.algorithm:
        if not args.algorithm:
            raise ConfigError("-e STRING needs -E ALGO (levenshtein, damerau, hamming or jaccard)")
        distance = DistanceMatcher(args.algorithm, args.strings, args.score)
        client.append(distance)
        server.append(distance)
    if not client and not server:
        raise ConfigError("nothing to match: give a pattern with -a, -c, -s, -f, -F or -E/-e")
    native = None
    if args.search != "python":
        if args.strings or args.algorithm:
            why = "distance matching (-E) runs in Python"
        elif args.invert and args.kill:
            why = "-v with -k resets on every chunk that does not match, in Python"
        else:
            native, why = native_patterns(client_patterns, server_patterns, args.ignore_case)
        if native is None and args.search == "native":
            raise ConfigError(f"--search native: {why}")
    if args.kill and args.device is None:
        raise ConfigError("-k resets live connections: it needs an interface (-d DEVICE), not a file")
    if args.print_files and args.log_dir is None:
        raise ConfigError("-x prints the names of logged files: it needs -l DIR")
    if args.log_dir is not None and not args.log_dir.is_dir():
        raise ConfigError(f"-l {args.log_dir}: no such directory (create it first)")
    return GrepConfig(client=client, server=server, native=native, invert=args.invert, log_dir=args.log_dir,
                      print_files=args.print_files, kill=args.kill, output=args.format)  # fmt: skip


async def run_grep(stopper: _signals.Stopper, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs the grep on args (FlowParser options from them); returns the exit code
    (0: a flow was reported or logged, 1: none, as grep, or the capture is damaged: it says so). A
    signal stops the parser: the active flows end as "stop" and are still reported (and logged
    with -l)."""
    config = grep_config(args)
    # streams are kept for the records only when -l writes them
    options: dict[str, Any] = {"reassemble": True, "keep_streams": config.log_dir is not None}
    if config.native is not None:
        options["stream_patterns"] = config.native
    if args.filter:
        options["filter"] = args.filter
    if args.user:
        options["user"] = args.user
    if args.max_stream_bytes is not None:
        options["max_stream_bytes"] = args.max_stream_bytes
    if args.follow:
        options["follow"] = True
    # raw sockets before the capture opens: a privilege drop (-u) would forbid them afterwards
    killer = TcpKiller() if config.kill else None
    try:
        async with FlowParser(args.file or args.device, **options) as parser:
            stopper.on_signal(parser.stop)
            if args.device:
                _signals.capturing(err, args.device, "aioflow grep")
            summary = await Grep(config, out, killer).run(parser)
            info = parser.info()
    finally:
        if killer is not None:
            killer.close()
    err.write(_summary_line(summary, info.packets, "native" if config.native else "python") + "\n")
    # grep's convention: 1 when nothing was selected
    return damage_exit(parser, info, err) or (0 if summary.reported or summary.files else 1)


def _summary_line(summary: GrepSummary, packets: int, search: str) -> str:
    text = f"aioflow grep ({search} search): {packets} packets, {summary.flows} flows, {summary.matched} matched"
    if summary.files:
        text += f", {len(summary.files)} files written"
    if summary.resets_sent:
        text += f", {summary.resets_sent} resets sent"
    return text


def run(args: argparse.Namespace) -> int:
    # the names the shared error reporting looks for
    """Runs ``aioflow grep``; the library's errors go up to main()."""
    args.filter = " ".join(args.filter_words) or None
    args.source = args.file or args.device
    return _signals.run(run_grep, args, sys.stdout, sys.stderr)
