"""A file read by af_start's thread has a second thread reading ahead (libpcap, filter, decode) of
the one counting flows. That split must change nothing: the records and every counter equal what
one thread reading for itself gives (Engine.pump_some on the same file), and the counters balance
at every moment while both threads run."""

from __future__ import annotations

import select
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.crafted import fragment_flood

from aioflow._engine import RECORD_SIZE, Batch, Engine, EngineConfig, ffi

DATA = Path(__file__).parent / "data"
CASES = [
    ("zeek_ipv4_fragmented-4.pcap", {}),
    ("zeek_ipv4_fragmented-4.pcap", {"defragment": True}),
    ("nfstream_dns_fragmented.pcap", {"reassemble": True}),
    ("zeek_mixed-vlan-mpls.pcap", {"filter": "vlan and tcp"}),
    ("zeek_tcp_reassembly.pcap", {"reassemble": True, "headers": 4}),
    ("tcpflow_test5-lines-randomized.pcap", {"reassemble": True, "stream_chunks": True}),
    ("zeek_pcapng-multi-interface.pcapng", {"headers": 2}),
    ("ndpi_smtp-starttls.pcap", {"filter": "tcp port 25 and tcp[13] & 8 != 0"}),
]
# what a read-ahead run reports differently by design: timing
TIMING = {"reap_ns", "file_offset"}


def _records(batch: Batch) -> list[tuple[bytes, ...]]:
    """Each record's bytes (its batch-relative header offset left out), headers and streams."""
    out = []
    for i in range(batch.count):
        r = batch.records + i
        headers = b"".join(bytes(ffi.buffer(batch.headers + r.header_offset + k, ffi.sizeof("af_header")))
                           for k in range(r.header_count))  # fmt: skip
        r.header_offset = 0
        streams: tuple[bytes, ...] = ()
        if batch.streams is not None:
            info = batch.streams[i]
            streams = tuple(batch.stream_data[info.data_at[d] : info.data_at[d] + info.data_length[d]] for d in (0, 1))
        out.append((bytes(ffi.buffer(r, RECORD_SIZE)), headers, *streams))
    return out


Result = tuple[Counter[tuple[bytes, ...]], dict[str, Any], int]  # records, counters, chunks


def _run(path: Path, config: EngineConfig, step: Callable[[Engine], tuple[str, Batch]]) -> Result:
    engine = Engine(path, config)
    records: Counter[tuple[bytes, ...]] = Counter()
    chunks = 0
    try:
        while True:
            state, batch = step(engine)
            records.update(_records(batch))
            chunks += batch.chunk_count
            if state == "done":
                return records, engine.stats(), chunks
    finally:
        engine.close()


def one_thread(path: Path, config: EngineConfig) -> Result:
    return _run(path, config, lambda engine: engine.pump_some(1 << 12))


def read_ahead(path: Path, config: EngineConfig, check: bool = True) -> Result:
    fds: list[int] = []

    def step(engine: Engine) -> tuple[str, Batch]:
        if not fds:
            fds.append(engine.start(64, 2, read_ahead=True))
        while True:
            if check:  # both threads run: the counters balance all the same
                s = engine.stats()
                assert s["packets_read"] == (s["packets_in_flows"] + sum(s["aside"].values())
                                             + s["defrag_fragments_held"])  # fmt: skip
            state, batch = engine.take_ready()
            if state != "wait":
                return state, batch
            select.select(fds, [], [], 1)

    return _run(path, config, step)


def _config(options: dict[str, Any]) -> EngineConfig:
    fixed = {"hash_seed": 7, "idle_timeout_ns": 30 * 10**9, "active_timeout_ns": 300 * 10**9}
    return EngineConfig(**fixed, **options)


@pytest.mark.parametrize(("name", "options"), CASES, ids=[f"{n}-{'-'.join(o) or 'flows'}" for n, o in CASES])
def test_reading_ahead_changes_nothing(name: str, options: dict[str, Any]) -> None:
    path = DATA / name
    want, want_stats, want_chunks = one_thread(path, _config(options))
    got, got_stats, got_chunks = read_ahead(path, _config(options))
    assert want and got == want
    assert "filter" not in options or want_stats["aside"]["filtered"] > 0  # the reading thread's own counts
    assert {k: v for k, v in got_stats.items() if k not in TIMING} == {
        k: v for k, v in want_stats.items() if k not in TIMING
    }
    assert got_stats["file_offset"] == got_stats["file_size"] and got_chunks == want_chunks


def test_fragments_prepared_in_order_across_a_long_read(tmp_path: Path) -> None:
    """Thousands of fragments among other packets, more than the ring holds: each one prepared by
    the counting thread in its place (the defragmenter's order decides what completes)."""
    path = fragment_flood(tmp_path, 20000)
    config = _config({"defragment": True, "max_fragment_datagrams": 256, "max_fragment_memory": 64 * 1024})
    want, want_stats, _ = one_thread(path, config)
    got, got_stats, _ = read_ahead(path, config, check=False)
    assert got == want and got_stats["defrag_gave_up"] == want_stats["defrag_gave_up"]
    assert got_stats["packets_read"] == want_stats["packets_read"] == 20000 + 2 * (20000 // 100)
