"""The async API while a large capture is being read: responsiveness, lookups, stop, callbacks,
and the same results under trio as under asyncio."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import aioflow

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
NO_TIMEOUTS = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}
LARGE_PACKETS = 800_000
LARGE_FLOWS = 60_000


@pytest.fixture(scope="module")
def large_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred thousand packets from the benchmark generator (deterministic by seed)."""
    out = tmp_path_factory.mktemp("large") / "large.pcap"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_capture.py"), str(out),
         "--packets", str(LARGE_PACKETS), "--flows", str(LARGE_FLOWS), "--seed", "7"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def tcpdump_count(path: Path, bpf: str) -> int:
    proc = subprocess.run(["tcpdump", "-nn", "-r", str(path), bpf], capture_output=True, text=True, check=True)
    return len(proc.stdout.splitlines())


async def consume(path: Path, **options: object) -> tuple[list[aioflow.Flow], aioflow.ParserInfo]:
    async with aioflow.FlowParser(path, **options) as parser:  # type: ignore[arg-type]
        flows = [flow async for flow in parser.terminated()]
    return flows, parser.info()


@pytest.mark.anyio
async def test_event_loop_stays_responsive(large_capture: Path) -> None:
    busy: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        # What the loop thread worked between two ticks, as its CPU time (the ticker's own sleep
        # costs none): a loaded machine stretches wall time, not the work done on the loop.
        while not done.is_set():
            before = time.thread_time()
            await anyio.sleep(0.005)
            busy.append(time.thread_time() - before)

    flows = packets = 0
    # A full collection of the test session's heap (thousands of tests' objects) costs the loop
    # tens of ms whoever triggers it; freezing what exists leaves only aioflow's own objects to
    # the collector, so this measures aioflow's work on the loop, not pytest's.
    gc.collect()
    gc.freeze()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            # a service's consumer: looks at each flow and lets it go
            async with aioflow.FlowParser(large_capture) as parser:
                async for flow in parser.terminated():
                    flows += 1
                    packets += flow.packets
            done.set()
    finally:
        gc.unfreeze()
    info = parser.info()
    assert info.packets == LARGE_PACKETS
    assert flows == info.flows_ended >= 60_000
    assert packets == info.packets_in_flows
    assert len(busy) > 10, "the ticker should have run many times during the parse"
    # at most the 5 ms tick plus one stretch of flows between the consumer's checkpoints
    assert max(busy) <= 0.025, f"the event loop worked {max(busy) * 1000:.1f} ms without a tick"


async def wait_until_paused(parser: aioflow.FlowParser) -> None:
    """Until the reader stops for want of a consumer (its buffers are full)."""
    seen = -1
    with anyio.fail_after(60):
        while parser.info().packets != seen or seen <= 0:
            seen = parser.info().packets
            await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_find_flow_and_snapshot_while_reading(large_capture: Path) -> None:
    async with aioflow.FlowParser(large_capture, buffer_batches=1) as parser:
        # nobody consumes yet: the file source pauses mid-way (it never drops)
        await wait_until_paused(parser)
        info = parser.info()
        assert 0 < info.progress < 1.0 and not info.finished
        active = await parser.snapshot()
        assert len(active) == info.active_flows > 0
        assert all(f.end_reason == "" for f in active)
        assert sum(1 for _ in [f async for f in parser.flows()]) == len(active)
        mid = {}
        for flow in active:  # each direction of the key, and through the other endpoint order
            found = await parser.find_flow(flow.dst_ip, flow.dst_port, flow.src_ip, flow.src_port,
                                           protocol=flow.protocol, vlan_id=flow.vlan_id)
            assert found is not None and found.id == flow.id and found.key == flow.key
            assert found.packets == flow.packets and found.bytes == flow.bytes
            mid[flow.id] = flow
        final = {flow.id: flow async for flow in parser.terminated()}
    for flow_id, flow in mid.items():  # the records that end later continue what was seen
        end = final[flow_id]
        assert end.key == flow.key and end.first_seen_ns == flow.first_seen_ns
        assert end.packets >= flow.packets
    assert parser.info().finished


@pytest.mark.anyio
async def test_find_flow_absent_and_bad_input() -> None:
    async with aioflow.FlowParser(BUNDLED) as parser:
        assert await parser.find_flow("192.0.2.1", 1, "192.0.2.2", 2, "udp") is None
        assert await parser.find_flow("2001:db8::1", 1, "2001:db8::2", 2) is None
        with pytest.raises(aioflow.ConfigError):
            await parser.find_flow("192.0.2.1", 1, "2001:db8::2", 2)
        with pytest.raises(ValueError):
            await parser.find_flow("not-an-ip", 1, "192.0.2.2", 2)
        await parser.wait()


@pytest.fixture
def engine_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The threads FlowParser opens ("open") and frees ("free") its engine in, as they happen."""
    from aioflow import _parser

    threads: dict[str, int] = {}

    class Recording(_parser.Engine):
        def __init__(self, *args: object) -> None:
            threads["open"] = threading.get_ident()
            super().__init__(*args)  # type: ignore[arg-type]

        def detach(self) -> Callable[[], None]:
            free = super().detach()

            def recorded() -> None:
                threads["free"] = threading.get_ident()
                free()

            return recorded

    monkeypatch.setattr(_parser, "Engine", Recording)
    return threads


@pytest.mark.anyio
async def test_opening_and_freeing_the_engine_run_off_the_event_loop(engine_threads: dict[str, int]) -> None:
    """A live ring of 16 MiB takes ~25-40 ms to set up and ~20 ms to free, and compiling stream
    patterns can take longer: none of it may hold the event loop. Lookups refuse at once on leaving."""
    loop_thread = threading.get_ident()
    async with aioflow.FlowParser(BUNDLED) as parser:
        flows = [flow async for flow in parser.terminated()]
    assert flows and len(flows) == parser.info().flows_ended  # the parse itself went on as ever
    assert engine_threads["open"] != loop_thread and engine_threads["free"] != loop_thread
    with pytest.raises(RuntimeError, match="closed"):
        await parser.find_flow("192.0.2.1", 1, "192.0.2.2", 2)


@pytest.mark.anyio
async def test_a_failed_privilege_drop_frees_the_engine_off_the_event_loop(engine_threads: dict[str, int]) -> None:
    """user= names no account: the error says so, and the engine opened before it is freed, as on
    leaving, in a worker thread."""
    with pytest.raises(aioflow.ConfigError, match="no such user"):
        async with aioflow.FlowParser(BUNDLED, user="aioflow-no-such-user"):
            pytest.fail("entered although the user does not exist")
    assert engine_threads["free"] != threading.get_ident()


@pytest.mark.anyio
async def test_leaving_waits_for_a_snapshot_still_reading_the_engine(
    monkeypatch: pytest.MonkeyPatch, large_capture: Path
) -> None:
    """One task leaves the parser's block while another task's snapshot runs in a worker thread:
    the engine is freed only once that thread is out of it (else it would read freed memory)."""
    from aioflow import _engine, _parser

    order: list[str] = []
    inside = anyio.Event()
    left = threading.Event()  # the owner has begun leaving (detached the engine)
    freed = threading.Event()
    snapshot_all, detach = _engine.Engine.snapshot_all, _engine.Engine.detach

    def slow_snapshot(self: _engine.Engine) -> _engine.Batch:
        # a snapshot that lasts until the owner has left (an event, however slow the machine),
        # then gives a wrong free 0.3 s to come in while it is still inside
        order.append("snapshot in")
        out = snapshot_all(self)
        anyio.from_thread.run_sync(inside.set)
        assert left.wait(30), "the owner never left the parser's block"
        freed.wait(0.3)
        self.stats()  # reads the engine again: freed memory, had it been freed meanwhile
        order.append("snapshot out")
        return out

    def recorded_detach(self: _engine.Engine) -> Callable[[], None]:
        free = detach(self)
        left.set()

        def recorded() -> None:
            order.append("free")
            freed.set()
            free()

        return recorded

    monkeypatch.setattr(_engine.Engine, "snapshot_all", slow_snapshot)
    monkeypatch.setattr(_engine.Engine, "detach", recorded_detach)
    parsers: list[aioflow.FlowParser] = []
    opened = anyio.Event()
    # Nobody consumes, so the file must pause with flows still active however late the snapshot
    # runs (a snapshot after the end is [] by design). Counted, not timed: without a consumer the
    # parser holds at most one buffered batch, the one the reader waits to deliver and the C
    # side's READY_BATCHES, of BATCH_RECORDS flows each; the capture has more flows than that, so
    # the rest stay active until leaving. (The default 8 buffered batches hold all its flows: the
    # file could end, on a loaded machine, before the snapshot started.)
    held = (1 + 1 + _parser.READY_BATCHES) * _parser.BATCH_RECORDS
    assert LARGE_FLOWS > held

    async def owner() -> None:  # e.g. an app's cleanup, leaving the parser's block
        async with aioflow.FlowParser(large_capture, buffer_batches=1, **NO_TIMEOUTS) as parser:  # type: ignore[arg-type]
            parsers.append(parser)
            # counted, not timed: flows are in the table (packets read is not enough: a snapshot
            # between the first packets and their flows would have nothing to read)
            while parser.info().active_flows == 0:  # noqa: ASYNC110 (no event for "flows are open"; slow under ASan)
                await anyio.sleep(0.01)
            opened.set()  # the file pauses with flows active (above): the snapshot has work
            await inside.wait()  # leave now, while the snapshot's thread is inside the engine

    async def handler() -> None:  # e.g. a request handler's snapshot, in a task of its own
        await opened.wait()
        assert len(await parsers[0].snapshot()) > 0

    async with anyio.create_task_group() as tg:
        tg.start_soon(owner)
        tg.start_soon(handler)
    assert order == ["snapshot in", "snapshot out", "free"]


def test_trio_gives_the_same_flows_as_asyncio() -> None:
    results = {}
    for backend in ("asyncio", "trio"):
        flows, info = anyio.run(consume, BUNDLED, backend=backend)
        results[backend] = (sorted((f.key, f.packets, f.bytes, f.end_reason) for f in flows), info.packets)
    assert results["asyncio"] == results["trio"]
    assert results["trio"][1] > 0


@pytest.mark.anyio
@pytest.mark.parametrize("read_ahead", [False, True], ids=["one-thread", "read-ahead"])
async def test_stop_flushes_active_flows_and_conserves_packets(large_capture: Path, read_ahead: bool) -> None:
    flows: list[aioflow.Flow] = []
    async with aioflow.FlowParser(large_capture, read_ahead=read_ahead) as parser:
        async for flow in parser.terminated():
            flows.append(flow)
            if len(flows) == 1000:
                parser.stop()
        info = parser.info()
    reasons = {f.end_reason for f in flows}
    assert "stop" in reasons and "eof" not in reasons
    assert info.packets < LARGE_PACKETS, "stop should end the read early"
    assert sum(f.packets for f in flows) == info.packets_in_flows
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert info.active_flows == 0


@pytest.mark.anyio
async def test_callbacks_see_every_tcp_and_udp_flow() -> None:
    tcp: list[aioflow.Flow] = []
    udp: list[aioflow.Flow] = []
    stopped: list[aioflow.FlowParser] = []

    async def on_udp(flow: aioflow.Flow) -> None:
        udp.append(flow)

    async with aioflow.FlowParser(
        BUNDLED, on_tcp_end=tcp.append, on_udp_end=on_udp, on_stop=stopped.append, **NO_TIMEOUTS
    ) as parser:
        everything = [flow async for flow in parser.terminated()]
    assert stopped == [parser]
    assert sorted(f.id for f in tcp) == sorted(f.id for f in everything if f.protocol == 6)
    assert sorted(f.id for f in udp) == sorted(f.id for f in everything if f.protocol == 17)
    assert tcp and udp


@pytest.mark.anyio
async def test_filter_counts_rejected_packets_like_tcpdump() -> None:
    flows, info = await consume(BUNDLED, filter="tcp", **NO_TIMEOUTS)
    assert {f.protocol for f in flows} == {6}
    assert info.aside["filtered"] == tcpdump_count(BUNDLED, "not tcp")
    assert info.packets_in_flows == tcpdump_count(BUNDLED, "tcp")


@pytest.mark.anyio
@pytest.mark.parametrize("read_ahead", [False, True], ids=["one-thread", "read-ahead"])
async def test_leaving_early_closes_cleanly(large_capture: Path, read_ahead: bool) -> None:
    async with aioflow.FlowParser(large_capture, read_ahead=read_ahead) as parser:  # mid-file: both threads busy
        async for _flow in parser.terminated():
            break
    assert parser.info().finished
    # the engine is freed: queries say so instead of reading freed memory
    with pytest.raises(RuntimeError, match="closed"):
        await parser.find_flow("10.0.0.1", 1, "10.0.0.2", 2)
    with pytest.raises(RuntimeError, match="closed"):
        await parser.snapshot()


@pytest.mark.parametrize(
    ("make", "options", "errors"),
    [
        (lambda d: d / "missing.pcap", {}, (aioflow.CaptureNotFoundError, FileNotFoundError)),
        (lambda d: d, {}, (aioflow.CaptureFormatError, ValueError)),
        (lambda d: (d / "text.pcap").write_text("hello, not a capture\n" * 10) and d / "text.pcap", {},
         (aioflow.CaptureFormatError, ValueError)),
        (lambda d: BUNDLED, {"filter": "tcp port nonsense"}, (aioflow.FilterError, ValueError)),
        (lambda d: BUNDLED, {"max_flows": 0}, (aioflow.ConfigError, ValueError)),
        (lambda d: BUNDLED, {"idle_timeout": -1}, (aioflow.ConfigError, ValueError)),
    ],
    ids=["missing", "directory", "not-a-capture", "bad-bpf", "max-flows", "negative-timeout"],
)
def test_errors_are_typed_and_say_what_to_do(tmp_path: Path, make, options, errors) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    for error in errors:
        with pytest.raises(error) as caught:
            list(aioflow.read(path, **options))
        assert str(caught.value)
    if "filter" in options:
        assert "nonsense" in str(caught.value) and "BPF" in str(caught.value)


def test_unreadable_file_is_a_permission_error(tmp_path: Path) -> None:
    capture = tmp_path / "secret.pcap"
    capture.write_bytes(BUNDLED.read_bytes())
    capture.chmod(0)
    code = (
        "import aioflow, sys\n"
        f"try: list(aioflow.read({str(capture)!r}))\n"
        "except aioflow.CapturePermissionError as e: print('PERM', isinstance(e, PermissionError), e); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads anything: run without the capabilities that allow it
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PERM True")
    assert "secret.pcap" in proc.stdout


@pytest.mark.anyio
async def test_two_subscribers_each_see_every_flow(large_capture: Path) -> None:
    seen: dict[str, list[int]] = {"slow": [], "fast": []}
    async with aioflow.FlowParser(large_capture, buffer_batches=2) as parser:
        streams = {"slow": parser.terminated(), "fast": parser.terminated()}  # both before any flow ends

        async def consume(name: str) -> None:
            async for flow in streams[name]:
                seen[name].append(flow.id)
                if name == "slow" and len(seen[name]) % 5000 == 0:
                    await anyio.sleep(0.01)  # a file source waits for its slowest consumer

        async with anyio.create_task_group() as tg:
            for name in streams:
                tg.start_soon(consume, name)
    info = parser.info()
    assert seen["slow"] == seen["fast"]
    assert len(seen["fast"]) == len(set(seen["fast"])) == info.flows_ended > 0
    assert info.flows_dropped == 0


def test_an_error_in_the_body_comes_out_as_it_is() -> None:
    """Not wrapped in the reader's task group's ExceptionGroup."""

    async def body() -> None:
        async with aioflow.FlowParser(str(BUNDLED)) as parser:
            async for _ in parser.terminated():
                raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        anyio.run(body)


@pytest.mark.anyio
async def test_leaving_while_the_reader_waits_for_room_closes_its_send_stream(large_capture: Path) -> None:
    """Leaving closes the consumers' ends; the reader, waiting for room in a full buffer, is then
    refused (BrokenResourceError) and drops that subscriber: its send end must be closed too, else
    anyio warns "Unclosed MemoryObjectSendStream" whenever the garbage collector gets to it (an
    error in whatever test runs then, under filterwarnings=error)."""
    async with aioflow.FlowParser(large_capture, buffer_batches=1, **NO_TIMEOUTS) as parser:  # type: ignore[arg-type]
        sub = parser._subs._subscribers[0]  # the first subscriber, buffered since entry; nobody consumes
        # counted, not timed: the buffer is full and the reader waits in send() (the capture has
        # more flows than the buffers hold: see the snapshot-while-leaving test)
        while sub.send.statistics().tasks_waiting_send == 0:  # noqa: ASYNC110 (no event for "a sender waits")
            await anyio.sleep(0.01)
    assert parser._subs._subscribers == []  # the reader dropped it when its consumer's end closed
    assert sub.receive.statistics().open_send_streams == 0
