"""StreamChunk (new in-order stream data), StreamPatterns/StreamMatch (native stream search) and
the engine-ordered events of a batch."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._engine import NO_METERS, Batch, ffi, lib
from ._flow import Flow, is_datagrams, unframe

DIRECTIONS = ("client", "server")


class StreamChunk:
    """New in-order bytes of one flow direction (at most one chunk per direction per batch).

    `flow` is a snapshot of the flow (end_reason ""), src = client. `offset` is the stream offset
    of data[0]; a hole inside the chunk is left out, not zero-filled (the ended flow's holes say
    where). TCP: `next_seq` is the sequence number just after the data and `last_ack` the last
    ACK number this direction's packets carried (None before one). UDP and other IP protocols:
    `data` is the datagrams concatenated, `datagram_lengths` their lengths, `offset` the payload
    bytes before them."""

    __slots__ = ("data", "datagram_lengths", "direction", "flow", "last_ack", "next_seq", "offset", "ts_ns")

    def __init__(
        self,
        flow: Flow,
        direction: str,
        offset: int,
        data: bytes,
        ts_ns: int,
        next_seq: int | None = None,
        last_ack: int | None = None,
        datagram_lengths: tuple[int, ...] | None = None,
    ) -> None:
        self.flow = flow
        self.direction = direction
        self.offset = offset
        self.data = data
        self.ts_ns = ts_ns
        self.next_seq = next_seq
        self.last_ack = last_ack
        self.datagram_lengths = datagram_lengths

    @property
    def ts(self) -> float:
        return self.ts_ns / 1e9

    def __repr__(self) -> str:
        f = self.flow
        return (
            f"<StreamChunk {self.direction} {f.src_ip}:{f.src_port} -> {f.dst_ip}:{f.dst_port} "
            f"offset={self.offset} len={len(self.data)}>"
        )


@dataclass(frozen=True, slots=True)
class StreamPatterns:
    """Regexes the C engine runs over every stream as it is reassembled (FlowParser(...,
    reassemble=True, stream_patterns=...)): `client` over what clients send, `server` over what
    servers send; TCP directions as one stream each (a match may span segments and is found by the
    packet that completes it; nothing is searched twice), each datagram (UDP, ICMP...) alone. A flow reports
    its first match (one per record) as a StreamMatch in stream_events().

    The regexes are bytes, in Vectorscan's PCRE syntax, MULTILINE (and case-insensitive with
    ignore_case); backreferences, lookarounds and patterns matching the empty string are not
    supported (PatternUnsupportedError). Needs aioflow built with Vectorscan (libvectorscan-dev)."""

    client: Sequence[bytes] = ()
    server: Sequence[bytes] = ()
    ignore_case: bool = False


@dataclass(slots=True, repr=False)
class StreamMatch:
    """A flow's first match of a StreamPatterns regex: `flow` (snapshot, src = client), `direction`
    ("client": in what the client sent), `start`/`end` (stream offsets; UDP: offsets among the
    direction's payload bytes), `pattern` (the regex) and `pattern_index` (in its side's list).
    `data` is the matched bytes, at most 512 of them: `partial` when they are not the whole
    match (it began more than 224 bytes before the packet that completed it, or is longer).
    TCP: `next_seq` and `last_ack` as in StreamChunk, as of when the match was reported."""

    flow: Flow
    direction: str
    start: int
    end: int
    data: bytes
    partial: bool
    pattern: bytes
    pattern_index: int
    ts_ns: int
    next_seq: int | None
    last_ack: int | None

    def __repr__(self) -> str:
        f = self.flow
        return (
            f"<StreamMatch {self.direction} {f.src_ip}:{f.src_port} -> {f.dst_ip}:{f.dst_port} "
            f"{self.start}..{self.end} {self.data[:40]!r}>"
        )


_STRUCT_CHARS = {"uint64_t": "Q", "uint32_t": "I", "uint16_t": "H", "uint8_t": "B"}


def _chunk_fields() -> tuple[struct.Struct, tuple[str, ...]]:
    """A chunk's fields after its flow snapshot (data_at .. pattern), read with one unpack rather
    than one cffi access each: the format is built from the compiled af_chunk (padding skipped)."""
    start = at = ffi.offsetof("af_chunk", "data_at")
    fmt, names = "=", []
    for name, field in ffi.typeof("af_chunk").fields:
        if field.offset < start or name.startswith("_"):
            continue
        fmt += "x" * (field.offset - at) + _STRUCT_CHARS[field.type.cname]
        at = field.offset + ffi.sizeof(field.type)
        names.append(name)
        if name == "pattern":
            break
    return struct.Struct(fmt), tuple(names)


_FIELDS, _FIELD_NAMES = _chunk_fields()
_FIELDS_AT = ffi.offsetof("af_chunk", "data_at")
_CHUNK_SIZE = ffi.sizeof("af_chunk")
_UNPACK_ORDER = ("data_at", "offset", "ts_ns", "length", "before_record", "next_seq", "last_ack", "direction",
                 "has_ack", "protocol", "kind", "partial", "match_end", "pattern")  # fmt: skip
assert _FIELD_NAMES == _UNPACK_ORDER, "af_chunk changed: update _chunk's unpacking"
_KIND, _BEFORE_RECORD = _FIELD_NAMES.index("kind"), _FIELD_NAMES.index("before_record")


class _ChunkFlows:
    """Batch-like view of a batch's chunk snapshots, so Flow(view, j) reads chunk j's record."""

    __slots__ = ("chunks", "headers", "meter_data", "meter_layout", "spans")

    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks  # keeps the C array alive as long as a snapshot Flow is
        self.headers = None
        self.spans = None
        self.meter_data = b""  # a snapshot carries no meter fields
        self.meter_layout = NO_METERS

    @property
    def records(self) -> _ChunkFlows:
        return self

    def __getitem__(self, j: int) -> Any:
        return self.chunks[j].flow


def _chunk(
    batch: Batch, flows: _ChunkFlows, j: int, fields: tuple[int, ...], patterns: StreamPatterns | None
) -> StreamChunk | StreamMatch:
    data_at, offset, ts_ns, length, _, next_seq, last_ack, direction, has_ack, protocol, kind, partial, end, index = (
        fields
    )
    raw = batch.stream_data[data_at : data_at + length]
    flow = Flow(flows, j)  # type: ignore[arg-type]
    if kind == _MATCH:
        assert patterns is not None  # batch_events yields matches only with them
        regexes = patterns.client if direction == 0 else patterns.server
        tcp = protocol == 6
        return StreamMatch(flow, DIRECTIONS[direction], offset, end, raw, bool(partial), regexes[index], index,
                           ts_ns, next_seq if tcp else None, last_ack if tcp and has_ack else None)  # fmt: skip
    if is_datagrams(protocol):
        grams = unframe(raw)
        return StreamChunk(flow, DIRECTIONS[direction], offset, b"".join(grams), ts_ns,
                           datagram_lengths=tuple(len(g) for g in grams))  # fmt: skip
    return StreamChunk(
        flow, DIRECTIONS[direction], offset, raw, ts_ns, next_seq=next_seq, last_ack=last_ack if has_ack else None
    )


_MATCH = lib.AF_CHUNK_MATCH


def batch_events(
    batch: Batch, flows: bool, data: bool, patterns: StreamPatterns | None
) -> Iterator[StreamChunk | StreamMatch | Flow]:
    """In engine order (a flow's chunks before the flow): the batch's data chunks when `data`, its
    matches when `patterns` (the parser's StreamPatterns, which name what matched), and its ended
    flows when `flows`."""
    n = batch.chunk_count
    raw = ffi.buffer(batch.chunks) if n else b""
    fields = [_FIELDS.unpack_from(raw, j * _CHUNK_SIZE + _FIELDS_AT) for j in range(n)]
    picked = [j for j in range(n) if (patterns is not None if fields[j][_KIND] == _MATCH else data)]
    views = _ChunkFlows(batch.chunks)
    k = 0
    for i in range(batch.count if flows else 0):
        while k < len(picked) and fields[picked[k]][_BEFORE_RECORD] <= i:  # records emitted before the chunk
            yield _chunk(batch, views, picked[k], fields[picked[k]], patterns)
            k += 1
        yield Flow(batch, i)
    for j in picked[k:]:
        yield _chunk(batch, views, j, fields[j], patterns)
