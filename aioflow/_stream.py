"""StreamChunk (new in-order stream data) and the engine-ordered events of a batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._engine import Batch, ffi
from ._flow import Flow, unframe

DIRECTIONS = ("client", "server")


class StreamChunk:
    """New in-order bytes of one flow direction (at most one chunk per direction per batch).

    `flow` is a snapshot of the flow (end_reason ""), src = client. `offset` is the stream offset
    of data[0]; a hole inside the chunk is left out, not zero-filled (the ended flow's holes say
    where). TCP: `next_seq` is the sequence number just after the data and `last_ack` the last
    ACK number this direction's packets carried (None before one). UDP: `data` is the datagrams
    concatenated, `datagram_lengths` their lengths, `offset` the payload bytes before them."""

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


def _chunk(batch: Batch, j: int) -> StreamChunk:
    c: Any = batch.chunks[j]
    raw = batch.stream_data[c.data_at : c.data_at + c.length]
    # the snapshot's view keeps the batch's chunk array (which holds its record) alive
    flow = Flow(Batch(ffi.addressof(batch.chunks[j], "flow"), 1, chunks=batch.chunks), 0)
    direction = DIRECTIONS[c.direction]
    if c.protocol == 17:
        grams = unframe(raw)
        return StreamChunk(flow, direction, c.offset, b"".join(grams), c.ts_ns,
                           datagram_lengths=tuple(len(g) for g in grams))  # fmt: skip
    return StreamChunk(
        flow, direction, c.offset, raw, c.ts_ns, next_seq=c.next_seq, last_ack=c.last_ack if c.has_ack else None
    )


def batch_events(batch: Batch, chunks_only: bool) -> Iterator[StreamChunk | Flow]:
    """The batch's chunks and ended flows in engine order (a flow's chunks before the flow)."""
    j = 0
    for i in range(batch.count):
        while j < batch.chunk_count and batch.chunks[j].before_record <= i:
            yield _chunk(batch, j)
            j += 1
        if not chunks_only:
            yield Flow(batch, i)
    for k in range(j, batch.chunk_count):
        yield _chunk(batch, k)
