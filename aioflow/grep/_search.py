"""`aioflow grep`: flowgrep on aioflow's reassembled streams. Client patterns search what the
client sent, server patterns what the server sent; a stream matches once, as soon as the data
that completes a match arrives (it may span segments); matched (or, inverted, unmatched) flows
are printed, logged to files when they end, and on a live interface can be reset."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._flow import Flow, protocol_name
from .._parser import FlowParser
from .._stream import StreamMatch, StreamPatterns
from ._match import DistanceMatcher, Match, Matcher, StreamScanner, search_datagrams
from ._tcp_kill import TcpKiller

# Distance matching (-E) of a chunk past this size runs in a worker thread (~15 ms of work).
THREAD_CHUNK_BYTES = 64 * 1024
CLIENT, SERVER = "client", "server"


@dataclass
class GrepConfig:
    """What to search and what to do with matched flows (the grep command's options)."""
    client: Sequence[Matcher]  # what the client sent is searched with these (-c, -f, -a, -e)
    server: Sequence[Matcher]  # what the server sent (-s, -F, -a, -e)
    native: StreamPatterns | None = None  # the same regexes, searched by the C engine instead
    invert: bool = False  # -v: report the flows that did not match
    log_dir: Path | None = None  # -l: write matched streams there when their flow ends
    print_files: bool = False  # -x: print the logged file names (for xargs)
    kill: bool = False  # -k: reset matched TCP streams (live interfaces)
    output: str = "text"  # text or json lines


@dataclass
class GrepSummary:
    """A finished grep: flows searched, matched and reported (printed), the files logged (-l), TCP
    resets sent (-k)."""
    flows: int = 0
    matched: int = 0
    reported: int = 0
    files: list[Path] = field(default_factory=list)
    resets_sent: int = 0


@dataclass
class _FlowState:
    scanners: dict[str, StreamScanner]
    match: tuple[str, Match] | None = None
    killed: bool = False


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _describe(flow: Flow) -> dict[str, Any]:
    return {
        "flow_id": flow.id,
        "protocol": protocol_name(flow.protocol),
        "src_ip": flow.src_ip,
        "src_port": flow.src_port,
        "dst_ip": flow.dst_ip,
        "dst_port": flow.dst_port,
    }


class Grep:
    """Consumes a parser's stream events; one instance per run."""

    def __init__(self, config: GrepConfig, out: TextIO, killer: TcpKiller | None = None) -> None:
        self.config = config
        self.out = out
        self.killer = killer
        self.summary = GrepSummary()
        self._flows: dict[int, _FlowState] = {}
        self._slow = any(isinstance(m, DistanceMatcher) for m in (*config.client, *config.server))

    async def run(self, parser: FlowParser) -> GrepSummary:
        """parser: made with reassemble=True, and stream_patterns=config.native when that is set."""
        if self.config.native is not None and self.config.log_dir is None and not self.config.invert:
            # only matches matter: no Python work per ended flow
            async for match in parser.matches():  # C reports a flow's match once: no state to keep
                self._matched(match.flow, _FlowState({}), match.direction, _native_found(match), match)
            self.summary.flows = parser.info().flows_ended
            return self.summary
        async for event in parser.stream_events(chunks=self.config.native is None):
            if isinstance(event, Flow):
                self._ended(event)
            elif isinstance(event, StreamMatch):
                self._native_match(event)
            elif self._slow and len(event.data) > THREAD_CHUNK_BYTES:
                # distance matching a big chunk takes long: off the event loop, in order all the same
                await anyio.to_thread.run_sync(self._chunk, event)
            else:
                self._chunk(event)
        return self.summary

    def _state(self, flow: Flow) -> _FlowState:
        state = self._flows.get(flow.id)
        if state is None:
            scanners = {}
            if self.config.native is None:  # the C engine searches otherwise
                if self.config.client:
                    scanners[CLIENT] = StreamScanner(self.config.client)
                if self.config.server:
                    scanners[SERVER] = StreamScanner(self.config.server)
            state = self._flows[flow.id] = _FlowState(scanners)
        return state

    def _native_match(self, event: StreamMatch) -> None:
        state = self._state(event.flow)
        if state.match is None:
            self._matched(event.flow, state, event.direction, _native_found(event), event)
    def _chunk(self, chunk: Any) -> None:
        state = self._state(chunk.flow)
        if state.match is not None:
            return
        scanner = state.scanners.get(chunk.direction)
        if scanner is None:
            return
        if chunk.datagram_lengths is not None:
            found = search_datagrams(scanner.matchers, chunk.data, chunk.datagram_lengths, chunk.offset)
        else:
            found = scanner.feed(chunk.offset, chunk.data)
        if found is not None:
            self._matched(chunk.flow, state, chunk.direction, found, chunk)
        elif self.config.invert and self.config.kill:
            self._kill(state, chunk)  # flowgrep -v -k: any data that does not match is reset

    def _matched(self, flow: Flow, state: _FlowState, side: str, found: Match, chunk: Any | None) -> None:
        state.match = (side, found)
        self.summary.matched += 1
        if not self.config.invert:
            if self.config.kill and chunk is not None:
                self._kill(state, chunk)
            if self.config.log_dir is None:
                self._report(flow, side, found)

    def _kill(self, state: _FlowState, chunk: Any) -> None:
        """RSTs to both ends: to the receiver of this data at the sequence number after it, to its
        sender at the one this direction last acknowledged."""
        flow = chunk.flow
        if self.killer is None or state.killed or flow.protocol != 6 or chunk.next_seq is None:
            return
        state.killed = True
        sender, receiver = (flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port)
        if chunk.direction == SERVER:
            sender, receiver = receiver, sender
        self.killer.reset(*sender, *receiver, chunk.next_seq)
        if chunk.last_ack is not None:
            self.killer.reset(*receiver, *sender, chunk.last_ack)
        self.summary.resets_sent = self.killer.sent

    def _ended(self, flow: Flow) -> None:
        self.summary.flows += 1
        state = self._flows.pop(flow.id, None)
        if state is not None and state.match is None:
            for side, scanner in state.scanners.items():
                found = scanner.finish()
                if found is not None:
                    self._matched(flow, state, side, found, None)
                    break
        matched = state is not None and state.match is not None
        if matched == self.config.invert:
            return
        if self.config.log_dir is not None:
            self._log(flow)
        elif self.config.invert:
            self._report(flow, None, None)

    def _report(self, flow: Flow, side: str | None, found: Match | None) -> None:
        self.summary.reported += 1
        if self.config.output == "json":
            record = _describe(flow)
            if found is not None:
                record.update(side=side, offset=found.start, pattern=found.pattern,
                              match=found.data.decode("latin-1"))  # fmt: skip
                if found.partial:
                    record["match_partial"] = True
            self.out.write(json.dumps(record) + "\n")
            return
        line = (f"{flow.first_seen:.6f} {protocol_name(flow.protocol)} "
                f"{_endpoint(flow.src_ip, flow.src_port)} -> {_endpoint(flow.dst_ip, flow.dst_port)}")  # fmt: skip
        if found is not None:
            line += f" {side}@{found.start} {found.data[:80]!r}" + (" (partial)" if found.partial else "")
        else:
            line += " (no match)"
        self.out.write(line + "\n")

    def _log(self, flow: Flow) -> None:
        """flowgrep's file names, one file per direction named from its sender: TCP/UDP
        `time-src-sport-dst-dport-tcp|udp`, other IP `time-src-dst-protoN` (time: the flow's
        first second; other IP: its datagrams' payloads one after another)."""
        assert self.config.log_dir is not None
        stamp = int(flow.first_seen)
        client, server = (flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port)
        files = [
            (_log_name(stamp, flow.protocol, client, server), flow.client_stream),
            (_log_name(stamp, flow.protocol, server, client), flow.server_stream),
        ]
        for name, data in files:
            path = _unique(self.config.log_dir / name.replace(":", "_"))
            path.write_bytes(data or b"")
            self.summary.files.append(path)
            if self.config.print_files:
                self.out.write(f"{path}\n")


def _log_name(stamp: int, protocol: int, sender: tuple[str, int], receiver: tuple[str, int]) -> str:
    """flowgrep's name for one direction's file: TCP/UDP `time-src-sport-dst-dport-tcp|udp`,
    other IP `time-src-dst-protoN` (no ports)."""
    if protocol in (6, 17):
        return f"{stamp}-{sender[0]}-{sender[1]}-{receiver[0]}-{receiver[1]}-{protocol_name(protocol)}"
    return f"{stamp}-{sender[0]}-{receiver[0]}-proto{protocol}"


def _native_found(event: StreamMatch) -> Match:
    return Match(event.start, event.end, event.data, event.pattern.decode("utf-8", "backslashreplace"), event.partial)


def _unique(path: Path) -> Path:
    """Two flows of the same endpoints in one second must not overwrite each other's files."""
    candidate, n = path, 1
    while True:
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}.{n}")
