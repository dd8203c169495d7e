"""Collecting NetFlow v5/v9 and IPFIX: an async UDP collector, pyflowtools-style PDU parsing and
IPFIX (RFC 5655) file reading.

    async for record in aioflow.collect(("0.0.0.0", 2055)):
        print(record.src_ip, record.dst_ip, record.packets, record.bytes)

    pdu = parse_pdu(("192.0.2.1", 2055), payload)      # one datagram; templates remembered
    for record in pdu: ...

    for record in read_ipfix_file("flows.ipfix"): ...

Records are thin views over a batch decoded with numpy; ``RecordSet.array`` / ``column()`` give the
whole batch without one Python object per record (``Collector.receive_batch()``). The record and
datagram types (FlowRecord, PDU, FlowPDU, parse_pdu) live in ``_records``, re-exported here.
"""

from __future__ import annotations

import io
import os
import socket
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from os import PathLike
from typing import Any, BinaryIO, cast

import anyio
import anyio.lowlevel

from .._errors import FlowFileFormatError, open_flow_file
from ._decode import IPFIX_HEADER, Decoder, DecodeStats, Message, RecordSet
from ._records import PDU, FlowPDU, FlowRecord, message_records, parse_pdu

__all__ = [
    "PDU",
    "Collector",
    "DecodeStats",
    "Decoder",
    "FlowPDU",
    "FlowRecord",
    "Message",
    "RecordSet",
    "collect",
    "message_records",
    "open_ipfix_file",
    "parse_pdu",
    "read_ipfix_file",
]


def open_ipfix_file(path: str | PathLike[str]) -> BinaryIO:
    """``path`` opened for reading once its first bytes look like an IPFIX message header. Raises
    FlowFileNotFoundError, FlowFilePermissionError or FlowFileFormatError (not an IPFIX file); an
    empty file is a valid one with no message. Damage further in is found (and counted) while reading."""
    name = os.fspath(path)
    file = cast(io.BufferedReader, open_flow_file(name, "r", "IPFIX"))
    head = file.peek(4)[:4]
    length = int.from_bytes(head[2:4]) if len(head) == 4 else IPFIX_HEADER.size
    # A file cut inside its first header still starts like IPFIX: that is a truncation, counted later.
    if head and not (b"\x00\x0a".startswith(head[:2]) and length >= IPFIX_HEADER.size):
        file.close()
        raise FlowFileFormatError(
            f"{name}: not an IPFIX file (RFC 5655): it starts with {head.hex()}, not an IPFIX version 10 "
            "header; read files written by `aioflow collect --write` or `aioflow export --write`"
        )
    return file


def read_ipfix_file(
    path: str | PathLike[str], *, options: bool = False, decoder: Decoder | None = None
) -> Iterator[FlowRecord]:
    """The flow records of an IPFIX file (RFC 5655: IPFIX messages back to back), read one message
    at a time. Raises FlowFileNotFoundError, FlowFilePermissionError or FlowFileFormatError (see
    open_ipfix_file) when iteration starts. Damaged messages are counted in ``decoder.stats`` and
    skipped; reading stops where the framing is lost (``file_framing``, ``file_truncated``)."""
    decoder = decoder or Decoder(template_timeout=None)  # a file has no clock to expire templates by
    with open_ipfix_file(path) as file:
        for message, _ in decoder.parse_file(f"file:{os.fspath(path)}", file):
            yield from message_records(message, options)


class Collector:
    """An async UDP collector. ``async with Collector(("0.0.0.0", 2055)) as c: async for r in c``.

    ``listen`` is the (host, port) to bind (port 0 picks a free one; ``address`` says which);
    ``template_timeout`` seconds (None: never) and ``max_templates`` bound the templates kept,
    ``max_datagram`` bytes the largest datagram read. ``stats`` are the decoder's counters.
    Malformed datagrams are counted and skipped; nothing escapes but socket errors (OSError, e.g.
    the port is taken, on entering)."""

    def __init__(
        self,
        listen: tuple[str, int] = ("0.0.0.0", 2055),
        *,
        options: bool = False,
        template_timeout: float | None = 1800.0,
        max_templates: int = 65536,
        decoder: Decoder | None = None,
        max_datagram: int = 65535,
    ) -> None:
        self.listen = listen
        self.options = options
        self.decoder = decoder or Decoder(template_timeout=template_timeout, max_templates=max_templates)
        self.max_datagram = max_datagram
        self._socket: socket.socket | None = None
        self._batches: deque[RecordSet] = deque()
        self._current: RecordSet | None = None
        self._index = 0

    @property
    def stats(self) -> DecodeStats:
        """The decoder's counters: datagrams, records, malformed by reason, sequence gaps, ..."""
        return self.decoder.stats

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the collector is bound to. Raises RuntimeError outside ``async with``."""
        if self._socket is None:
            raise RuntimeError("the collector is not open (use `async with`)")
        local = self._socket.getsockname()  # an IP socket: (host, port, ...)
        return local[0], local[1]

    async def __aenter__(self) -> Collector:
        # A plain non-blocking socket, not anyio's UDP socket: that one queues at most 100 datagrams
        # in user space and silently drops the oldest beyond; here the kernel's receive buffer is the
        # only queue, and datagrams arriving while one is decoded wait in it.
        host, port = self.listen
        family, target = socket.AF_INET, ("0.0.0.0", port)
        if host:
            flags = socket.AI_PASSIVE | socket.AI_ADDRCONFIG
            family, *_, target = (await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=flags))[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(target)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def receive(self) -> tuple[Message, bytes]:
        """The next datagram, decoded (``message.error`` set when it could not be), with its payload."""
        if self._socket is None:
            raise RuntimeError("the collector is not open (use `async with`)")
        await anyio.lowlevel.checkpoint()  # cancelled before a datagram is read, never after
        while True:
            try:
                payload, sender = self._socket.recvfrom(self.max_datagram)
                break
            except BlockingIOError:
                await anyio.wait_readable(self._socket)
        return self.decoder.parse((sender[0], sender[1]), payload), payload

    def queued(self) -> Iterator[tuple[Message, bytes]]:
        """The datagrams already waiting in the socket, decoded (as receive() gives them), read
        without waiting: what a collector told to stop still holds. Ends when the socket is empty,
        or after the receive buffer's size in payload bytes (all it can have held when this
        started, so a sender that keeps sending cannot keep the drain going)."""
        if self._socket is None:
            raise RuntimeError("the collector is not open (use `async with`)")
        left = self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        while left > 0:
            try:
                payload, sender = self._socket.recvfrom(self.max_datagram)
            except BlockingIOError:
                return
            left -= max(len(payload), 1)
            yield self.decoder.parse((sender[0], sender[1]), payload), payload

    async def receive_batch(self) -> RecordSet:
        """The next decoded data set: the bulk path (``rs.array``, ``rs.column(name)``)."""
        while not self._batches:
            message, _ = await self.receive()
            self._batches.extend(rs for rs in message.sets if self.options or not rs.template.is_options)
        return self._batches.popleft()

    # A plain async iterator, not an async generator: leaving the loop early leaves nothing to finalise.
    def __aiter__(self) -> Collector:
        return self

    async def __anext__(self) -> FlowRecord:
        while self._current is None or self._index >= len(self._current):
            self._current, self._index = await self.receive_batch(), 0
        self._index += 1
        return FlowRecord(self._current, self._index - 1)


async def collect(listen: tuple[str, int] = ("0.0.0.0", 2055), **options: Any) -> AsyncGenerator[FlowRecord]:
    """``async for record in aioflow.collect(("0.0.0.0", 2055))``: every flow record received on that
    UDP (host, port), as it arrives. Keyword options are Collector's; raises what Collector does
    (OSError when the address cannot be bound). Leaving the loop early under trio: wrap it in
    ``contextlib.aclosing`` (or use ``async with Collector(...)``, a plain async iterator)."""
    async with Collector(listen, **options) as collector:
        async for record in collector:
            yield record

