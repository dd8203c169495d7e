"""Flow export: NetFlow v5/v9 and IPFIX over UDP, IPFIX files (RFC 5655) and Parquet files.

Every sink here takes aioflow flows one at a time (``await sink.send(flow)``) or a whole parser
(``await sink.run(parser)``), buffers them, and encodes them in bulk (numpy over the C records).

    async with FlowParser("capture.pcap") as parser, IPFIXExporter(("collector", 4739)) as exporter:
        await exporter.run(parser)
    print(exporter.stats)

NetFlow v5 and v9 records are unidirectional: each direction of an aioflow flow that saw packets
becomes its own record. IPFIX sends one biflow record per flow with RFC 5103 reverse elements
(``biflow=False`` sends one record per direction instead). NetFlow v5 cannot carry IPv6: such flows
are counted in ``stats.skipped_ipv6`` and not sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import anyio
import anyio.lowlevel
import numpy as np
from anyio.abc import TaskGroup

from .._errors import ConfigError
from .._frame import RECORD_DTYPE
from ._applications import ipfix_application_columns
from ._encode import (
    FILE_MESSAGE_SIZE,
    MTU_DEFAULT,
    Encoder,
    IPFIXEncoder,
    NetflowV5Encoder,
    NetflowV9Encoder,
    batch_runs,
    gather_records,
)

if TYPE_CHECKING:
    from .._engine import Batch
    from .._flow import Flow
    from .._parser import FlowParser

__all__ = [
    "EXPORTERS",
    "ExportStats",
    "IPFIXExporter",
    "IPFIXFileWriter",
    "NetflowV5Exporter",
    "NetflowV9Exporter",
    "ParquetWriter",
    "TransportOptions",
]

BATCH_FLOWS = 4096  # flows buffered before they are encoded and sent
FLUSH_INTERVAL = 1.0  # send(): a buffered flow goes out at most this long after it came


@dataclass(frozen=True, slots=True)
class ExportStats:
    """A sink's counters (counts; `octets` in bytes). `records` is what went out: one per direction
    for v5/v9."""

    flows: int  # flows given to the sink and encoded
    records: int
    messages: int  # UDP datagrams or IPFIX messages produced
    octets: int  # bytes of those messages
    templates_sent: int  # messages that carried the templates
    skipped_ipv6: int  # v5 only: IPv6 flows, which v5 cannot carry
    clamped: int  # v5 only: directions with more than 2**32-1 packets or bytes (sent as 2**32-1)
    out_of_range: int  # flows ending after 2106 (damaged timestamps): v5/v9 cannot carry their times
    send_errors: int  # datagrams the network refused (e.g. no collector listening)
    last_error: str


class _BufferedSink:
    """Buffers flows and hands them to _emit() in bulk; async context manager."""

    def __init__(self, batch_flows: int, flush_interval: float) -> None:
        if batch_flows < 1:
            raise ConfigError(f"batch_flows={batch_flows!r}: expected >= 1")
        if flush_interval <= 0:
            raise ConfigError(f"flush_interval={flush_interval!r}: expected > 0 seconds")
        self._batch_flows = batch_flows
        self._flush_interval = flush_interval
        self._pending: list[Flow] = []
        self._oldest = 0.0
        self._lock = anyio.Lock()  # one flush at a time keeps messages in sequence order
        self._tasks: TaskGroup | None = None
        self._applications = False  # run() gives the encoder nDPI's application columns

    async def send(self, flow: Flow) -> None:
        """Queues one flow. It goes out with a full batch (batch_flows), at most flush_interval
        seconds later (inside `async with`), with flush(), or when the context is left."""
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(flow)
        if len(self._pending) >= self._batch_flows or time.monotonic() - self._oldest >= self._flush_interval:
            await self.flush()

    async def send_many(self, flows: Iterable[Flow]) -> None:
        """send() for each of these flows, in order."""
        for flow in flows:
            await self.send(flow)

    async def flush(self) -> None:
        """Encodes and sends (or writes) every queued flow now."""
        async with self._lock:
            if not self._pending:
                return
            rec = gather_records(self._pending)
            extra = self._flows_extra(self._pending)
            self._pending = []
            await self._emit(rec, extra)

    async def run(self, parser: FlowParser) -> None:
        """Sends every flow the parser ends, batch by batch as the parser delivers them (no Python
        work per flow, through ``parser.batches()``), until its stream ends. Raises RuntimeError
        outside the parser's or this sink's ``async with``."""
        await self.flush()
        batches = parser.batches()
        try:
            async for batch in batches:
                rec = np.frombuffer(batch.raw_records(), dtype=RECORD_DTYPE)
                async with self._lock:
                    await self._emit(rec, self._batch_extra(batch))
        finally:
            await batches.aclose()

    def _batch_extra(self, batch: Batch) -> dict[str, np.ndarray] | None:
        """The columns _emit gets beside a batch's records: the encoder's application columns."""
        return ipfix_application_columns(batch) if self._applications else None

    def _flows_extra(self, flows: Sequence[Flow]) -> dict[str, np.ndarray] | None:
        """_batch_extra of Flow objects' batches, in the flows' order (send()'s path): None when
        a batch has none; ValueError when their batches' columns differ (other meters)."""
        parts = []
        for batch, run in batch_runs(flows):
            cols = self._batch_extra(batch)
            if cols is None:
                return None
            parts.append({name: column[run] for name, column in cols.items()})
        if not parts:
            return None
        if any(p.keys() != parts[0].keys() for p in parts):
            raise ValueError("these flows come from parsers with other meters: export them separately")
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    async def _emit(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        raise NotImplementedError

    async def _flush_periodically(self) -> None:
        # A live source's flows trickle in: without this, the last few would wait for the next send.
        while True:
            await anyio.sleep(self._flush_interval)
            if self._pending and time.monotonic() - self._oldest >= self._flush_interval:
                with anyio.CancelScope(shield=True):  # a flush cut halfway would lose encoded messages
                    await self.flush()

    async def _open(self) -> None:
        """Subclasses open their socket here."""

    async def aclose(self) -> None:
        await self.flush()

    async def __aenter__(self) -> Self:
        await self._open()
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._flush_periodically, name=f"{type(self).__name__} flusher")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()
                await self._tasks.__aexit__(None, None, None)
                self._tasks = None
        finally:
            with anyio.CancelScope(shield=exc_type is not None):
                await self.aclose()


def _stats(encoder: Encoder, send_errors: int = 0, last_error: str = "") -> ExportStats:
    return ExportStats(**encoder.stats.as_dict(), send_errors=send_errors, last_error=last_error)


class TransportOptions(TypedDict, total=False):
    """Options every UDP exporter takes besides its format's own."""

    batch_flows: int  # flows buffered before encoding (default 4096)
    flush_interval: float  # seconds a flow may wait in the buffer (default 1.0)
    max_rate: float | None  # datagrams per second at most (default None: as fast as the socket takes them)
    local_address: tuple[str, int] | None  # the exporter's own (address, port) (default: the system's choice)


class _UDPExporter(_BufferedSink):
    """An async UDP exporter: `async with Exporter(("host", port)) as exp: await exp.run(parser)`.

    ``mtu`` is the largest UDP payload in bytes; transport options (TransportOptions):
    ``batch_flows`` flows buffered before encoding, ``flush_interval`` seconds a flow may wait,
    ``max_rate`` datagrams per second at most, ``local_address`` (host, port) to send from. Raises
    ConfigError for an option out of range (a port outside 1..65535, an mtu too small for one
    record, ...); OSError on entering when the address cannot be resolved or bound. A datagram the
    network refuses is counted in ``stats.send_errors``, not raised."""

    def __init__(
        self,
        address: tuple[str, int],
        encoder: Encoder,
        *,
        batch_flows: int = BATCH_FLOWS,
        flush_interval: float = FLUSH_INTERVAL,
        max_rate: float | None = None,
        local_address: tuple[str, int] | None = None,
    ) -> None:
        super().__init__(batch_flows, flush_interval)
        self.local_address = local_address
        host, port = address
        if not 0 < port < 65536:
            raise ConfigError(f"port {port!r}: expected 1..65535")
        if max_rate is not None and max_rate <= 0:
            raise ConfigError(f"max_rate={max_rate!r}: expected datagrams per second > 0, or None")
        self.address = (host, port)
        self.encoder = encoder
        self._interval = 1.0 / max_rate if max_rate else 0.0
        self._next_send = 0.0
        self._socket: Any = None
        self._send_errors = 0
        self._last_error = ""

    @property
    def stats(self) -> ExportStats:
        """The counters so far: flows, records, messages, octets, send errors, ..."""
        return _stats(self.encoder, self._send_errors, self._last_error)

    async def _open(self) -> None:
        # A plain non-blocking socket rather than a transport: a refused datagram (ICMP port
        # unreachable) then surfaces on the next send under every backend, and is counted.
        host, port = self.address
        family, kind, proto, _, target = (await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if self.local_address is not None:
                sock.bind(self.local_address)
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    async def aclose(self) -> None:
        try:
            await self.flush()
        finally:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    async def _emit(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        if self._socket is None:
            raise RuntimeError(f"use {type(self).__name__} as `async with {type(self).__name__}(...) as exporter:`")
        for message in self.encoder.encode(rec, extra):
            if self._interval:
                await self._pace()
            while True:
                try:
                    self._socket.send(message)
                except BlockingIOError:  # the socket buffer is full: wait for room, nothing dropped here
                    await anyio.wait_writable(self._socket)
                    continue
                except OSError as exc:  # e.g. refused by the collector's host: count, go on
                    self._send_errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                break
        await anyio.lowlevel.checkpoint()

    async def _pace(self) -> None:
        # Collectors drop bursts their socket buffer cannot hold: spread datagrams at max_rate,
        # sleeping only when more than a millisecond ahead (sleeps are coarse).
        now = time.monotonic()
        self._next_send = max(self._next_send + self._interval, now)
        ahead = self._next_send - now
        if ahead > 0.001:
            await anyio.sleep(ahead)


class IPFIXExporter(_UDPExporter):
    """IPFIX (RFC 7011) over UDP, default port 4739. Biflow records (RFC 5103) unless biflow=False;
    flowStart/EndMilliseconds, plus flowStart/EndNanoseconds with nanoseconds=True. Templates go first and again
    every template_refresh_packets datagrams or template_refresh_seconds. applications=True adds
    nDPI's applicationId (RFC 6759, engine 6 with nDPI's protocol id), applicationName and
    applicationCategoryName, plus the flow's server name (requested_server_name) as ntop's
    enterprise element FLOW_SERVER_NAME (PEN 35632, id 122), from the flows of a
    FlowParser(dissect=True) (run() or send())."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        mtu: int = MTU_DEFAULT,
        observation_domain: int = 0,
        biflow: bool = True,
        nanoseconds: bool = False,
        template_refresh_packets: int | None = 20,
        template_refresh_seconds: float | None = 60.0,
        applications: bool = False,
        **transport: Unpack[TransportOptions],
    ) -> None:
        encoder = _checked(IPFIXEncoder, mtu=mtu, observation_domain=observation_domain, biflow=biflow,
                           nanoseconds=nanoseconds, template_refresh_packets=template_refresh_packets,
                           template_refresh_seconds=template_refresh_seconds, applications=applications)  # fmt: skip
        super().__init__(address, encoder, **transport)
        self._applications = applications


class NetflowV9Exporter(_UDPExporter):
    """NetFlow v9 (RFC 3954) over UDP: one record per direction, IPv4 and IPv6 templates."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        mtu: int = MTU_DEFAULT,
        source_id: int = 0,
        template_refresh_packets: int | None = 20,
        template_refresh_seconds: float | None = 60.0,
        **transport: Unpack[TransportOptions],
    ) -> None:
        encoder = _checked(NetflowV9Encoder, mtu=mtu, source_id=source_id,
                           template_refresh_packets=template_refresh_packets,
                           template_refresh_seconds=template_refresh_seconds)  # fmt: skip
        super().__init__(address, encoder, **transport)


class NetflowV5Exporter(_UDPExporter):
    """NetFlow v5 over UDP: IPv4 only (IPv6 flows are counted in stats.skipped_ipv6), one record
    per direction, at most 30 records per datagram."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        mtu: int = MTU_DEFAULT,
        engine_type: int = 0,
        engine_id: int = 0,
        **transport: Unpack[TransportOptions],
    ) -> None:
        encoder = _checked(NetflowV5Encoder, mtu=mtu, engine_type=engine_type, engine_id=engine_id)
        super().__init__(address, encoder, **transport)


def _checked(kind: type[Encoder], **options: Any) -> Encoder:
    try:
        return kind(**options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


EXPORTERS: dict[str, type[_UDPExporter]] = {"ipfix": IPFIXExporter, "v9": NetflowV9Exporter, "v5": NetflowV5Exporter}


class _FileSink(_BufferedSink):
    """A file sink usable from sync code (`with`, write()) and async code (`async with`, send(),
    run(): the writing runs in a worker thread so the event loop never waits on the disk)."""

    def __init__(self, batch_flows: int, flush_interval: float) -> None:
        super().__init__(batch_flows, flush_interval)
        self.closed = False

    def write(self, flows: Sequence[Flow] | Iterable[Flow]) -> None:
        """Writes these flows now (blocking)."""
        flows = list(flows)
        self.write_records(gather_records(flows), self._flows_extra(flows))

    def write_records(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        raise NotImplementedError

    async def _emit(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        await anyio.to_thread.run_sync(self.write_records, rec, extra)

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        try:
            await self.flush()
        finally:
            await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class IPFIXFileWriter(_FileSink):
    """An IPFIX file (RFC 5655): IPFIX messages one after the other, templates in the first.
    `aioflow collect`'s file reader (and nfdump-free tools such as Wireshark) read it back.
    The file is created (truncated) at once: raises OSError when it cannot be."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        biflow: bool = True,
        nanoseconds: bool = False,
        observation_domain: int = 0,
        batch_flows: int = BATCH_FLOWS,
        flush_interval: float = FLUSH_INTERVAL,
        applications: bool = False,
    ) -> None:
        super().__init__(batch_flows, flush_interval)
        self._applications = applications
        self.path = os.fspath(path)
        # No path MTU in a file: big messages; templates once, at the start (no refresh needed).
        self.encoder = IPFIXEncoder(
            mtu=FILE_MESSAGE_SIZE, observation_domain=observation_domain, biflow=biflow, nanoseconds=nanoseconds,
            template_refresh_packets=None, template_refresh_seconds=None, applications=applications,
        )  # fmt: skip
        self._file = open(self.path, "wb")  # closed by close() and the context managers

    @property
    def stats(self) -> ExportStats:
        """The counters so far: flows, records, messages and octets written."""
        return _stats(self.encoder)

    def write_records(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        """Writes C flow records (an array of RECORD_DTYPE) now, blocking; raises OSError from the
        disk. `extra`: the application columns of applications=True (netflow._applications)."""
        self._file.write(b"".join(self.encoder.encode(rec, extra)))

    def close(self) -> None:
        """Closes the file (idempotent). Flows still buffered by send() are not written: flush() first."""
        if not self.closed:
            self.closed = True
            self._file.close()


class ParquetWriter(_FileSink):
    """A Parquet file with the columns of read_frame()/Flow.to_dict(), the enabled meters' too
    (dissect, statistics, splt as lists, ...), written in row groups as flows arrive. Needs
    pyarrow: pip install pyarrow (the 'parquet' extra) (ImportError without it). The file is
    created (emptied) at once: raises OSError when it cannot be, as IPFIXFileWriter."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compression: str = "zstd",
        batch_flows: int = 65_536,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("ParquetWriter needs pyarrow: pip install pyarrow (the 'parquet' extra)") from exc
        super().__init__(batch_flows, flush_interval)
        self.path = os.fspath(path)
        open(self.path, "wb").close()  # a path that cannot be written fails now, not after the whole capture
        self.compression = compression
        self.rows = 0
        self._writer: Any = None

    def write_records(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        """Writes C flow records (an array of RECORD_DTYPE) as one row group now, blocking, with
        `extra`'s columns (meter_parts' form: the meters' fields of the same records). Every row
        group has the first one's columns: ValueError for records whose meters differ."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .._frame import record_parts
        from .._frame_targets import ArrowColumns

        parts: dict[str, Any] = record_parts(rec)
        for name, column in (extra or {}).items():
            parts.setdefault(name, column)  # a plain-named meter field the record has: the record's
        table = pa.table(ArrowColumns().batch(parts))
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression=self.compression)
        elif table.schema.names != self._writer.schema.names:
            raise ValueError(f"{self.path}: these flows' columns differ from the file's (flows of parsers with "
                             "other meters): write them to another file")  # fmt: skip
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += len(rec)

    def _batch_extra(self, batch: Batch) -> dict[str, np.ndarray]:
        from .._frame import meter_parts

        return meter_parts(batch.meter_data, batch.count, batch.meter_layout)

    def close(self) -> None:
        """Writes the file's footer and closes it (idempotent); no flow at all still makes a valid file."""
        if self.closed:
            return
        self.closed = True
        if self._writer is None:  # no flow at all: still a valid (empty) file with the columns
            self.write_records(np.zeros(0, dtype=RECORD_DTYPE))
        self._writer.close()
