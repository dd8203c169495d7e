"""FlowParser: the async face of the engine (reader task, terminated() stream, lookups)."""

from __future__ import annotations

import inspect
import ipaddress
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._engine import MAX_WORKERS, Batch, Engine, EngineConfig, check_stream_patterns, new_cursor
from ._errors import ConfigError
from ._flow import PROTOCOL_NUMBERS, Flow
from ._live import LIVE_BLOCK_SECONDS, LIVE_BUFFER_BYTES, LivePacer
from ._plugins import FlowPlugin, check_plugins, run_plugins
from ._privileges import drop_privileges
from ._stream import StreamChunk, StreamMatch, StreamPatterns
from ._subscribers import BatchStream, EventStream, FlowStream, Subscribers
from ._timeline import Timeline

FlowCallback = Callable[[Flow], Awaitable[None] | None]
StopCallback = Callable[["FlowParser"], Awaitable[None] | None]

# The reading thread fills batches of up to this many flows, at most READY_BATCHES ahead.
BATCH_RECORDS = 8192
READY_BATCHES = 4
SNAPSHOT_SLICE = 4096
# Live sources: packets read per step before the loop runs other tasks (~3 ms of C); the shortest wait for expiry.
LIVE_PUMP_PACKETS = 16384
REAP_MIN_SECONDS = 0.005
# Stopped or cancelled: the flush of every flow as "stop" may take this long at most (it runs
# shielded from the cancellation, so a consumer callback that hangs cannot hold the close forever).
LIVE_FLUSH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ParserInfo:
    """Parser counters. `packets` = `packets_in_flows` + sum of `aside` + `fragments_held` (conservation;
    fragments_held is 0 once the source ended)."""

    packets: int
    packets_per_second: float  # packets read per wall-clock second since the parser started
    bytes: int  # captured bytes read
    packets_in_flows: int
    aside: dict[str, int]
    # damage or oddities decoding packets still counted in their flow, and what became of later
    # fragments held for their first (README "Decode events"); names from the C enum
    decode_events: dict[str, int]
    active_flows: int
    peak_active_flows: int  # the most flows held at once (what the table's memory follows)
    active_tcp: int
    active_udp: int
    active_other: int
    flows_created: int
    flows_ended: int
    ended_by: dict[str, int]
    headers_dropped: int
    fragments_tracked: int
    fragment_table_evictions: int
    read_errors: int
    read_error: str  # where (byte offset) and why a damaged file stopped reading early
    reap_seconds: float
    progress: float  # 0..1 of the file consumed
    link_type: int
    finished: bool
    kernel_received: int  # live: packets the kernel saw for this capture (pcap_stats)
    kernel_dropped: int  # live: dropped by the kernel (buffer full)
    interface_dropped: int  # live: dropped by the interface or its driver
    flows_dropped: int  # live: ended flows the terminated() consumer had no room for
    # defragment=True (README "IP defragmentation"): packets = packets_in_flows + sum(aside) + fragments_held
    fragments_held: int  # fragments waiting in the defragmenter (or, without it, later ones for their first)
    datagrams_reassembled: int  # each counted as one packet of its flow
    fragments_duplicate: int  # exact duplicate fragments ignored (in aside "fragment_dropped")
    fragment_datagrams: int  # datagrams in progress now (given-up ones kept until their timeout included)
    peak_fragment_datagrams: int  # the most at once (bounded by max_fragment_datagrams)
    fragment_memory: int  # bytes of fragment data held now
    peak_fragment_memory: int  # the most at once (bounded by max_fragment_memory)
    defrag_gave_up: dict[str, int]  # datagrams given up, by reason; their fragments are aside "fragment_dropped"
    # reassemble=True: stream_memory/stream_peak_memory (arena bytes), stream_bytes, stream_datagrams,
    # and what was not kept: stream_bytes_truncated (max_stream_bytes), stream_bytes_dropped and
    # stream_segments_dropped (max_reassembly_memory), stream_holes_dropped; stream_retransmitted_bytes,
    # stream_holes, stream_hole_bytes, stream_forced (holes skipped for out-of-order room), stream_chunks;
    # live: chunks_dropped (chunks a stream_events() consumer had no room for)
    reassembly: dict[str, int]
    # dissect=True (README "Application detection"): dissect_flows (dissections started),
    # dissect_detected / dissect_gave_up (how they ended), dissect_pool_full (flows not dissected:
    # max_dissecting_flows states in use), dissect_in_flight / dissect_peak_in_flight (nDPI states
    # now, most at once), dissect_state_bytes (one state), dissect_truncated (text fields cut);
    # JA4: dissect_ja4_tcp / dissect_ja4_quic (fingerprints), and the ClientHellos without one:
    # dissect_ja4_too_big, dissect_ja4_gap, dissect_ja4_incomplete, dissect_ja4_malformed,
    # dissect_ja4_quic_unopened
    dissection: dict[str, int]
    # per worker (workers=N; one entry with workers=1): packets_in_flows, flows_created, flows_ended,
    # active_flows, peak_active_flows of the flows it counted (their sums are the fields above)
    workers: tuple[dict[str, int], ...] = ()


def _seconds_to_ns(name: str, value: float) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ConfigError(f"{name}={value!r}: expected a number of seconds >= 0")
    return int(min(value * 1e9, 2**63))  # a huge value (or inf) means never, not an OverflowError


def _worker_count(workers: int | str) -> int:
    """workers= as a number: "auto" is the CPUs this process may run on (at most AF_MAX_WORKERS)."""
    if workers == "auto":
        return min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers={workers!r}: expected 1..{MAX_WORKERS} or \"auto\"")
    return workers


def _whole(name: str, value: object, top: int) -> int:
    """A find_flow() number checked to be 0..top (a port, a VLAN id, a protocol number)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ConfigError(f"{name}={value!r}: expected a whole number from 0 to {top}")
    return value


def _protocol_number(protocol: str | int) -> int:
    if isinstance(protocol, int):
        return _whole("protocol", protocol, 255)
    try:
        return PROTOCOL_NUMBERS[protocol.lower()]
    except KeyError:
        raise ConfigError(f"unknown protocol {protocol!r}: use a number or one of {sorted(PROTOCOL_NUMBERS)}") from None


def _packed(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def iter_batch(batch: Batch) -> Iterator[Flow]:
    """A Flow view of each record of the batch, in order."""
    for i in range(batch.count):
        yield Flow(batch, i)


class FlowParser:
    """Turns a pcap/pcapng file into bidirectional flows.

    Use as ``async with FlowParser(path) as parser: async for flow in parser.terminated(): ...``.
    Timeouts are in seconds. Reading starts when the context is entered and pauses (nothing is
    lost) while ended flows wait in the bounded buffer for a consumer.

    ``defragment=True`` reassembles IP fragments in C first, so a flow counts datagrams; the
    ``fragment_timeout`` and ``max_fragment_*``/``max_datagram_size`` options bound that table
    (README, "IP defragmentation").

    Units: timeouts in seconds; ``snaplen``, ``buffer_size``, ``max_datagram_size``,
    ``max_fragment_memory``, ``max_stream_bytes`` and ``max_reassembly_memory`` in bytes;
    ``buffer_batches`` in batches of up to BATCH_RECORDS flows; ``headers`` in packets per flow.
    ``source`` is a capture file, or an interface name (``live=None`` guesses: a bare name that is
    no file). Raises ConfigError for an option out of range (here, or on entering for what the
    engine checks); on entering, the typed errors of aioflow._errors for the source:
    CaptureNotFoundError, CapturePermissionError, CaptureFormatError, InterfaceNotFoundError,
    FilterError (a BPF filter libpcap refuses), PatternUnsupportedError.

    ``follow=True`` (files) keeps reading as the file grows, like ``tail -f``, until ``stop()``.
    Files may be pcap or pcapng (every interface with its own link type), plain, gzip or zstd.

    ``meters=("low_ttl",)`` turns on per-flow meters by name (``aioflow.available_meters()``
    lists this build's); their fields are read with ``flow.meter(name)`` and are columns
    ``<meter>_<field>`` of ``read_frame``. An unknown name raises ConfigError.

    ``statistics=True`` adds nfstream's statistical features (``flow.meter("statistics")``;
    read_frame columns named as nfstream's, e.g. ``bidirectional_stddev_ps``), ``splt=N``
    (at most 32) nfstream's early packet sequence of the first N packets (``splt_ps``, ...);
    ``accounting_mode`` (0 link layer, 1 IP, 2 transport, 3 payload, as nfstream's) says how
    both count a packet's size. README, "Features for analytics".
    ``community_id_seed`` (0..65535) is the seed of the ``community_id`` meter.
    ``decode_tunnels=True`` opens GRE (ERSPAN), IP-in-IP, VXLAN, Geneve, GTP-U, Teredo and MPLS
    pseudowires: flows are keyed on the innermost IP plus ``flow.tunnel_id``; ``tunnel_type``,
    ``tunnel_src_ip`` and ``tunnel_dst_ip`` name the outermost tunnel (README, "Tunnels").
    ``check_checksums=True`` verifies IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums of whole
    packets: a wrong one is a ``bad_checksum`` decode event (the packet still counts in its flow)
    and Zeek's ``C``/``c`` in the conn_state meter's history (README, "Zeek conn.log").

    ``max_packets=N`` / ``max_bytes=N`` (0: off) end a flow in C with its N-th packet, or with the
    packet that brings its IP bytes (both ways) to N or more: end reason ``custom`` (nfstream's
    FlowSlicer); the next packet of the same endpoints starts a new flow.

    ``workers=N`` (files; ``"auto"``: the CPUs this process may run on) counts flows in N flow
    tables on N threads, fed by one reading thread: the same records as one worker but ``id``;
    ``max_flows``, ``max_reassembly_memory`` and ``max_dissecting_flows`` are split among them.
    Live (Linux): one capture handle per worker, joined by PACKET_FANOUT (the kernel hashes each
    flow to one); a kernel that refuses it leaves one (RuntimeWarning). ConfigError with the
    timeline meter. README, "Several cores".

    ``flow_share=(index, count)`` (files) counts only share ``index`` of ``count`` of the flows, by
    the flow hash, as worker ``index`` of ``workers=count`` would: the file is read whole, the other
    shares' packets only move the clock, and ``max_flows`` and the other bounds are split as for
    workers. The shares of one file, each with the same ``hash_seed`` (required), together give
    one reader's records exactly, ``id`` unique among them: several processes or machines over
    one file (aioflow.dask's ``shares_per_capture``). ``info().packets`` counts the share's own
    packets and those set aside (every share sets aside the same ones).

    ``plugins=[MyPlugin()]`` runs aioflow.FlowPlugin hooks on each ended flow as its batch is
    delivered, in the event loop (``plugin_thread=True``: in a worker thread, one batch at a
    time), before callbacks and consumers see it; their fields are ``flow.udps``. Snapshots and
    lookups of active flows do not run them. README, "Plugins".
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        filter: str | None = None,
        snaplen: int = 65535,
        idle_timeout: float = 120.0,
        active_timeout: float = 1800.0,
        fin_timeout: float = 10.0,
        max_flows: int = 1_000_000,
        headers: int = 0,
        on_tcp_end: FlowCallback | None = None,
        on_udp_end: FlowCallback | None = None,
        on_stop: StopCallback | None = None,
        buffer_batches: int = 8,
        hash_seed: int | None = None,
        live: bool | None = None,
        promiscuous: bool = True,
        buffer_size: int = LIVE_BUFFER_BYTES,
        user: str | None = None,
        defragment: bool = False,
        fragment_timeout: float = 30.0,
        max_fragment_datagrams: int = 8192,
        max_fragments_per_datagram: int = 128,
        max_datagram_size: int = 65575,
        max_fragment_memory: int = 16 * 2**20,
        reassemble: bool = False,
        max_stream_bytes: int = 1 << 20,
        max_reassembly_memory: int = 256 << 20,
        keep_streams: bool = True,
        stream_patterns: StreamPatterns | None = None,
        read_ahead: bool | None = None,
        meters: Sequence[str] = (),
        follow: bool = False,
        dissect: bool = False,
        max_dissections: int = 20,
        max_dissecting_flows: int = 65536,
        statistics: bool = False,
        accounting_mode: int = 0,
        splt: int = 0,
        community_id_seed: int = 0,
        decode_tunnels: bool = False,
        check_checksums: bool = False,
        max_packets: int = 0,
        max_bytes: int = 0,
        plugins: Sequence[FlowPlugin] = (),
        plugin_thread: bool = False,
        workers: int | str = 1,
        flow_share: tuple[int, int] | None = None,
    ) -> None:
        self.source = source
        if live is None:
            live = _looks_like_interface(source)
        self.live = live
        self._user = user
        self._config = EngineConfig(
            live=live,
            promiscuous=promiscuous,
            buffer_size=buffer_size,
            filter=filter,
            snaplen=snaplen,
            idle_timeout_ns=_seconds_to_ns("idle_timeout", idle_timeout),
            active_timeout_ns=_seconds_to_ns("active_timeout", active_timeout),
            fin_timeout_ns=_seconds_to_ns("fin_timeout", fin_timeout),
            max_flows=max_flows,
            headers=headers,
            hash_seed=hash_seed,
            defragment=defragment,
            fragment_timeout_ns=_seconds_to_ns("fragment_timeout", fragment_timeout),
            max_fragment_datagrams=max_fragment_datagrams,
            max_fragments_per_datagram=max_fragments_per_datagram,
            max_datagram_size=max_datagram_size,
            max_fragment_memory=max_fragment_memory,
            reassemble=reassemble,
            max_stream_bytes=max_stream_bytes,
            max_reassembly_memory=max_reassembly_memory,
            keep_streams=keep_streams,
            meters=tuple(meters),
            community_id_seed=community_id_seed,
            follow=follow,
            dissect=dissect,
            max_dissections=max_dissections,
            max_dissecting_flows=max_dissecting_flows,
            statistics=statistics,
            accounting_mode=accounting_mode,
            splt=splt,
            decode_tunnels=decode_tunnels,
            check_checksums=check_checksums,
            max_packets=max_packets,
            max_bytes=max_bytes,
            workers=_worker_count(workers),
            flow_share=flow_share,
        )
        self.plugins = check_plugins(plugins, headers)
        self._plugin_thread = plugin_thread
        if buffer_batches < 1:
            raise ConfigError(f"buffer_batches={buffer_batches!r}: expected >= 1")
        if follow and live:
            raise ConfigError(f"follow=True follows a capture file as it grows; {os.fspath(source)!r} is an "
                              "interface, captured until stop() anyway: leave follow out")  # fmt: skip
        if stream_patterns is not None:
            if not reassemble:
                raise ConfigError("stream_patterns search reassembled streams: add reassemble=True")
            check_stream_patterns(stream_patterns.client, stream_patterns.server, stream_patterns.ignore_case)
        self._stream_patterns = stream_patterns
        self._read_ahead = read_ahead
        self._on_tcp_end = on_tcp_end
        self._on_udp_end = on_udp_end
        self._on_stop = on_stop
        self._engine: Engine | None = None
        self._stats: dict[str, Any] = {}
        self._timeline: Timeline | None = None
        self._started = 0.0
        self._finished = False
        self._closing = False
        self._task_group: TaskGroup | None = None
        self._live_wait: anyio.CancelScope | None = None  # stop() cancels a live reader's wait
        self._engine_threads = 0  # worker threads in the engine now (snapshots): it is freed after them
        self._engine_threads_gone: anyio.Event | None = None  # set when the last one leaves, if awaited
        # the consumers (terminated(), batches(), ...), each with its own bounded buffer
        self._subs = Subscribers(buffer_batches, live)

    # --- lifecycle ---
    async def __aenter__(self) -> FlowParser:
        # in a worker thread: setting up a live ring takes ~25-40 ms (16 MiB), compiling patterns more
        self._engine = await anyio.to_thread.run_sync(self._open_engine)
        try:
            if self._user is not None:
                drop_privileges(self._user)
        except BaseException:
            await self._free_engine(self._engine)
            raise
        self._stats = self._engine.stats()
        self._subs.open()
        self._started = time.monotonic()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._read, name=f"aioflow reader {self.source}")
        return self

    def _open_engine(self) -> Engine:
        engine = Engine(self.source, self._config)
        try:
            if self._stream_patterns is not None:
                p = self._stream_patterns
                engine.set_stream_patterns(p.client, p.server, p.ignore_case)
        except BaseException:
            engine.close()
            raise
        return engine

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        # Leaving early: stop reading; flows still open end as "stop" and still reach callbacks,
        # but the stream has no consumer any more, so it stops buffering.
        self._closing = True
        self.stop()
        assert self._task_group is not None
        try:
            self._subs.close_consumers()
            if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                # an error in the body: the reader is stopped; the error itself goes up as it is,
                # not wrapped in the task group's ExceptionGroup
                await self._task_group.__aexit__(None, None, None)
                return None
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            if self._engine is not None:
                self._stats = self._engine.stats()
                self._timeline = self._engine.timeline()
                await self._free_engine(self._engine)

    async def _free_engine(self, engine: Engine) -> None:
        """Closes the engine for lookups now; frees its C side once no snapshot still reads it,
        in a worker thread (freeing a live ring takes ~20 ms: not on the loop)."""
        free = engine.detach()
        with anyio.CancelScope(shield=True):
            if self._engine_threads:  # another task's snapshot still reads the engine
                self._engine_threads_gone = anyio.Event()
                await self._engine_threads_gone.wait()
            await anyio.to_thread.run_sync(free)

    def stop(self) -> None:
        """Ends the parse now: active flows are flushed with end_reason "stop" (idempotent; does
        nothing before entering or after the end). Raises nothing."""
        if self._engine is not None and not self._finished:
            self._engine.stop()
            if self._live_wait is not None:
                self._live_wait.cancel()

    # --- the reader task ---
    async def _read(self) -> None:
        assert self._engine is not None
        try:
            if self.live and self._engine.workers == 1:
                await self._read_live(self._engine)
            else:
                await self._read_file(self._engine)
        finally:
            self._finished = True
            self._subs.end()
        if self._on_stop is not None:
            await _maybe_await(self._on_stop(self))

    async def _read_file(self, engine: Engine) -> None:
        ready_fd = engine.start(BATCH_RECORDS, READY_BATCHES, self._reads_ahead())
        while True:
            # when every consumer takes matches() alone, the records are not even copied
            records = self._on_tcp_end is not None or self._on_udp_end is not None or self._subs.want_records()
            state, batch = engine.take_ready(records)
            if state == "wait":
                await anyio.wait_readable(ready_fd)
                continue
            if batch.count or batch.chunk_count:
                await self._deliver(batch)
            if state == "done":
                return

    def _reads_ahead(self) -> bool:
        """A second native thread reading ahead pays when a core is free for it: with more than two,
        or when the event loop has little to do per batch (stream patterns without kept streams).
        With workers it is the one reader that decodes for all of them (read_ahead=False: each
        worker reads and decodes the file itself)."""
        if self._read_ahead is not None:
            return self._read_ahead
        if self._config.workers > 1:
            return True
        if os.environ.get("AIOFLOW_READ_AHEAD") in ("0", "1"):
            return os.environ["AIOFLOW_READ_AHEAD"] == "1"
        light = self._stream_patterns is not None and not self._config.keep_streams
        return light or len(os.sched_getaffinity(0)) > 2

    async def _read_live(self, engine: Engine) -> None:
        """One task reads and reaps. It reads what the capture ring holds in bounded steps; then,
        while traffic flows, pauses (packets gather in the ring), else waits on the capture fd
        until the engine's next expiry is due: idle flows end on wall-clock time, packets or not,
        and an idle interface costs nothing."""
        fd = engine.selectable_fd()
        # One scope for the whole read, not one per wake (each costs interpreter time): stop()
        # cancels it at the next wait, and what is left is flushed after it.
        try:
            with anyio.CancelScope() as self._live_wait:
                await self._read_live_until_stopped(engine, fd, LivePacer(self._config.buffer_size))
        finally:
            self._live_wait = None
            engine.stop()  # cancelled from outside: the engine was not told yet
            with anyio.move_on_after(LIVE_FLUSH_SECONDS, shield=True):  # the engine flushes every flow as "stop"
                while (state := await self._pump_live(engine)) != "done":
                    if state == "drained":  # the ring's last block, with packets from before the stop, is due
                        with anyio.move_on_after(LIVE_BLOCK_SECONDS):
                            await anyio.wait_readable(fd)
                    await anyio.lowlevel.checkpoint()

    async def _read_live_until_stopped(self, engine: Engine, fd: int, pacer: LivePacer) -> None:
        while True:
            state = await self._pump_live(engine)
            pacer.count(engine.pumped_bytes, engine.pumped_packets)
            if state == "done":
                return
            if state == "more":
                await anyio.lowlevel.checkpoint()
                continue
            # epoch ns when the next flow is due (0: none): an O(1) look, and only this task
            # creates or ends flows, so nothing can be due sooner while it waits
            due = engine.next_deadline()
            if due and time.time_ns() >= due:
                with anyio.CancelScope(shield=True):  # stop() does not cut a delivery short
                    due = await self._reap_live(engine)
                due = due and max(due, time.time_ns() + int(REAP_MIN_SECONDS * 1e9))
            nap = pacer.nap()
            if nap:
                if due:  # cut short when a flow is due: flows end on time, a few at a time
                    nap = max(min(nap, (due - time.time_ns()) / 1e9), 0)
                await anyio.sleep(nap)
            else:
                with anyio.move_on_after((due - time.time_ns()) / 1e9 if due else math.inf):
                    await anyio.wait_readable(fd)

    async def _pump_live(self, engine: Engine) -> str:
        state, batch = engine.pump_some(LIVE_PUMP_PACKETS)
        if batch.count or batch.chunk_count:
            with anyio.CancelScope(shield=True):  # stop() does not cut a delivery short
                await self._deliver(batch)
        return state

    async def _reap_live(self, engine: Engine) -> int:
        """Ends the flows idle (or closed) as of now; returns when the next one is due (epoch ns; 0: no flow)."""
        while True:
            more, batch = engine.expire(time.time_ns())
            if batch.count or batch.chunk_count:
                await self._deliver(batch)
            if not more:
                return engine.next_deadline()

    async def _deliver(self, batch: Batch) -> None:
        if self.plugins and batch.count:
            if self._plugin_thread:
                await anyio.to_thread.run_sync(run_plugins, batch, self.plugins)
            else:
                run_plugins(batch, self.plugins)
        if self._on_tcp_end is not None or self._on_udp_end is not None:
            for flow in iter_batch(batch):
                callback = self._on_tcp_end if flow.protocol == 6 else self._on_udp_end if flow.protocol == 17 else None
                if callback is not None:
                    await _maybe_await(callback(flow))
        if not self._closing:
            await self._subs.deliver(batch)

    # --- consumers ---
    def terminated(self) -> AsyncIterator[Flow]:
        """Every ended flow exactly once, in the order flows ended; ends after the source does.
        The first call gets every flow since entering, later calls what ends from then on (each
        its own subscription). Raises RuntimeError outside ``async with``."""
        return FlowStream(self._subs.take().receive)

    def batches(self) -> BatchStream:
        """Every ended flow exactly once as terminated() gives them, but a whole batch (up to
        BATCH_RECORDS flows) at a time and without a Python object per flow: each item is a Batch,
        ``batch.count`` flows whose C records ``batch.raw_records()`` holds (bytes; a numpy array
        with ``np.frombuffer(raw, aioflow.RECORD_DTYPE)``, as the exporters read them) and
        ``Flow(batch, i)`` views one. Subscribes as terminated() does (a file waits for it, live
        drops are counted); ``await stream.aclose()`` unsubscribes. Raises RuntimeError outside
        ``async with``."""
        return BatchStream(self._subs.take().receive)

    def stream_events(self, chunks: bool = True) -> AsyncIterator[StreamChunk | StreamMatch | Flow]:
        """reassemble=True: in engine order, a StreamChunk for new in-order data of a flow
        direction (at most one per direction per batch), a StreamMatch for a flow's first match of
        stream_patterns, and each ended Flow after its chunks and match. Subscribes as terminated()
        does (a file waits for it; live drops are counted). Chunks start with the first call: make
        it before the first await after entering to get every stream from its start.
        chunks=False: matches and ended flows only (no stream data is copied into chunks). Raises
        ConfigError without reassemble=True, RuntimeError outside ``async with``."""
        self._require_reassembly("stream_events", chunks)
        receive = self._subs.take().receive
        return EventStream(receive, True, chunks, self._stream_patterns)

    def chunks(self) -> AsyncIterator[StreamChunk]:
        """stream_events() without the ended flows (nor matches). Raises ConfigError without
        reassemble=True, RuntimeError outside ``async with``."""
        self._require_reassembly("chunks")
        receive = self._subs.take().receive
        return EventStream(receive, False, True, None)  # type: ignore[return-value]

    def matches(self) -> AsyncIterator[StreamMatch]:
        """stream_patterns: each flow's first match (per record), as found; nothing per ended flow
        (the cheapest way to act on matches: the records are not walked in Python). Raises
        ConfigError without stream_patterns, RuntimeError outside ``async with``."""
        if self._stream_patterns is None:
            raise ConfigError("matches() needs FlowParser(..., reassemble=True, stream_patterns=StreamPatterns(...))")
        sub = self._subs.take()
        sub.records = False
        return EventStream(sub.receive, False, False, self._stream_patterns)  # type: ignore[return-value]

    def _require_reassembly(self, name: str, chunks: bool = True) -> None:
        if not self._config.reassemble:
            raise ConfigError(f"{name}() needs FlowParser(..., reassemble=True)")
        # Chunks cost a copy of every byte: made only from the first such subscriber on. Called
        # before the first await after entering (the usual way), that is before any packet.
        if chunks:
            self._require_engine().enable_chunks()

    async def wait(self) -> None:
        """Consumes the stream to its end (for users of the callbacks only)."""
        async for _ in self.terminated():
            pass

    async def find_flow(
        self,
        src_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
        src_port: int,
        dst_ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
        dst_port: int,
        protocol: str | int = "tcp",
        vlan_id: int = 0,
    ) -> Flow | None:
        """The active flow between the two endpoints (either direction), or None. O(1) in C.
        ``protocol`` is a name ("tcp", "udp", ...) or an IP protocol number. Raises ConfigError for
        a bad address, mixed IP versions, a port over 65535, a VLAN id over 4095 or an unknown
        protocol; RuntimeError outside or after ``async with``."""
        a, b = _packed(src_ip), _packed(dst_ip)
        if a.version != b.version:
            raise ConfigError(f"{src_ip} and {dst_ip} are not of the same IP version")
        src_port, dst_port = _whole("src_port", src_port, 65535), _whole("dst_port", dst_port, 65535)
        vlan_id, protocol = _whole("vlan_id", vlan_id, 4095), _protocol_number(protocol)
        engine = self._require_engine()
        if self._finished:
            return None
        # inline: the engine's lock is held by the reading thread ~1 ms at a time at most
        found = engine.lookup(
            a.version, a.packed.ljust(16, b"\0"), src_port, b.packed.ljust(16, b"\0"), dst_port,
            protocol, vlan_id,
        )  # fmt: skip
        await anyio.lowlevel.checkpoint()
        return None if found is None else Flow(found, 0)

    async def flows(self) -> AsyncIterator[Flow]:
        """Active flows, copied slice by slice while the reader goes on between slices: each flow
        appears at most once, but this is not one instant's picture (snapshot() is). Raises
        RuntimeError outside or after ``async with``."""
        engine = self._require_engine()
        cursor = new_cursor()
        while not self._finished:
            # inline: a slice is ~1 ms of copying under the engine's lock
            batch = engine.snapshot_slice(cursor, SNAPSHOT_SLICE)
            if batch.count == 0:
                return
            for flow in iter_batch(batch):
                yield flow
            await anyio.lowlevel.checkpoint()

    async def snapshot(self) -> list[Flow]:
        """Copies of all active flows at one instant (end_reason ""); the copy runs in a thread.
        Empty once the source ended; raises RuntimeError outside or after ``async with``."""
        engine = self._require_engine()
        if self._finished:
            return []
        self._engine_threads += 1
        try:
            batch = await anyio.to_thread.run_sync(engine.snapshot_all)
        finally:
            self._engine_threads -= 1
            if not self._engine_threads and self._engine_threads_gone is not None:
                self._engine_threads_gone.set()
        return list(iter_batch(batch))

    def timeline(self) -> Timeline | None:
        """Traffic over time: packets and captured bytes per time bucket and protocol class, as
        counted so far (after the parser is left: all of it). Needs ``meters=("timeline",)``;
        None without it."""
        if self._engine is not None and not self._engine.closed:
            self._timeline = self._engine.timeline()
        return self._timeline

    def info(self) -> ParserInfo:
        """The engine's counters now (while open: a ~1 ms lock at most; after: the final ones);
        units in ParserInfo. Raises RuntimeError before the parser was entered."""
        if self._engine is not None and not self._engine.closed:
            self._stats = self._engine.stats()
        s = self._stats
        if not s:
            raise RuntimeError("info() is available once the parser is entered")
        elapsed = time.monotonic() - self._started
        size = s["file_size"]
        return ParserInfo(
            packets=s["packets_read"],
            packets_per_second=s["packets_read"] / elapsed if elapsed > 0 else 0.0,
            bytes=s["bytes_read"],
            packets_in_flows=s["packets_in_flows"],
            aside=s["aside"],
            decode_events=s["decode_events"],
            active_flows=s["active_flows"],
            peak_active_flows=s["peak_active_flows"],
            active_tcp=s["active_tcp"],
            active_udp=s["active_udp"],
            active_other=s["active_other"],
            flows_created=s["flows_created"],
            flows_ended=s["flows_ended"],
            ended_by=s["ended_by"],
            headers_dropped=s["headers_dropped"],
            fragments_tracked=s["fragments_tracked"],
            fragment_table_evictions=s["fragment_table_evictions"],
            read_errors=s["read_errors"],
            read_error=s["error"],
            reap_seconds=s["reap_ns"] / 1e9,
            progress=1.0 if self._finished else (min(s["file_offset"] / size, 1.0) if size else 0.0),
            link_type=s["link_type"],
            finished=self._finished,
            kernel_received=s["kernel_received"],
            kernel_dropped=s["kernel_dropped"],
            interface_dropped=s["interface_dropped"],
            flows_dropped=self._subs.flows_dropped,
            fragments_held=s["defrag_fragments_held"],
            datagrams_reassembled=s["defrag_datagrams"],
            fragments_duplicate=s["defrag_duplicates"],
            fragment_datagrams=s["defrag_in_progress"],
            peak_fragment_datagrams=s["defrag_peak_in_progress"],
            fragment_memory=s["defrag_memory"],
            peak_fragment_memory=s["defrag_peak_memory"],
            defrag_gave_up=s["defrag_gave_up"],
            reassembly={k: v for k, v in s.items() if k.startswith("stream_")}
            | {"chunks_dropped": self._subs.chunks_dropped},
            dissection={k: v for k, v in s.items() if k.startswith("dissect_")},
            workers=s["workers"],
        )

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("use FlowParser as `async with FlowParser(...) as parser:` first")
        if self._engine.closed:  # its C side is freed: a lookup now would read freed memory
            raise RuntimeError("this FlowParser is closed (its `async with` block has ended)")
        return self._engine


def file_engine(source: str | os.PathLike[str], **options: Any) -> tuple[Engine, bool, tuple[FlowPlugin, ...]]:
    """A new engine over a capture file, for the blocking read()/read_frame(): FlowParser's
    options, validated and converted exactly as FlowParser does (raises ConfigError as it does,
    and the engine's typed errors for the file), whether a read-ahead thread pays here, and the
    plugins to run on its batches.
    The caller owns the engine (``engine.close()``)."""
    parser = FlowParser(source, live=False, **options)
    return Engine(source, parser._config), parser._reads_ahead(), parser.plugins


def file_config(source: str | os.PathLike[str], **options: Any) -> EngineConfig:
    """The engine configuration FlowParser makes of these options for a capture file."""
    return FlowParser(source, live=False, **options)._config


def _looks_like_interface(source: str | os.PathLike[str]) -> bool:
    """A file that exists wins; else a bare name (no "/", no capture suffix) is an interface."""
    if not isinstance(source, str) or os.path.exists(source):
        return False
    return "/" not in source and not source.endswith((".pcap", ".pcapng", ".cap", ".dmp"))


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


def meters_on(parser: FlowParser) -> tuple[str, ...]:
    """The meters the parser's options turn on, by name and by their own options (statistics=True,
    splt=N, ...): EngineConfig.meters_on()."""
    return parser._config.meters_on()
