"""workers=N (docs/architecture.md, "Workers"): several flow tables over one capture file give the
records of one table, exactly. Each capture is read with workers=1 and workers=2, every meter
that supports workers on, and the records compared as sorted sets (every field but `id`, which
is unique per worker: worker + k * workers); then the conservation counters, and that the flows
really were spread over the workers. The corpus part reads every capture of the shared corpus up
to CORPUS_MAX_BYTES (all of today's corpus; the rule keeps a grown corpus quick).

Two documented exceptions (docs/architecture.md, "Workers"), each detected or named here:
- a capture whose time goes back by more than idle_timeout (captures concatenated out of
  order): expiry ends flows from the head of recency lists, so which stale flows end early depends
  on what else is in the table; its records may be cut differently. Only the reading counters are
  compared for it.
- nDPI keeps caches across flows (STUN, Ookla...): one flow's detection may use another's. Each
  worker has its own, so on the captures in NDPI_CACHES the dissect fields are left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import dpkt
import numpy as np
import pytest
from support.corpus import ABSENT, CORPUS, DATA, params

import aioflow
from aioflow import ConfigError, FlowParser
from aioflow._engine import METERS, dissect_unavailable, stream_patterns_available
from aioflow._frame import batches_to_columns
from aioflow._parser import file_config
from aioflow._read import read_batches

CORPUS_MAX_BYTES = 8 << 20
IDLE_TIMEOUT = 120.0  # FlowParser's default
NDPI_CACHES = {"ndpi_telegram_videocall.pcapng": "a STUN flow detected from the STUN cache of another flow's"}
SEEDS = (1, 0x9E3779B97F4A7C15)  # the flow hash picks the worker: two seeds, two different spreads

# every meter that runs per flow (timeline counts one table: refused, tested below)
ALL_METERS: dict[str, Any] = {
    "meters": ("low_ttl", "community_id", "conn_state", "mac"),
    "statistics": True,
    "splt": 8,
    "decode_tunnels": True,
    **({"dissect": True} if not dissect_unavailable() else {}),
}
# counters every worker count must agree on (peak_active_flows is a sum of peaks: an upper bound)
CONSERVED = ("packets_read", "packets_in_flows", "aside", "bytes_read", "flows_created", "flows_ended", "ended_by",
             "decode_events", "defrag_datagrams", "defrag_gave_up", "read_errors", "stream_bytes",
             "stream_datagrams", "dissect_flows", "dissect_detected")  # fmt: skip


def _cell(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    if isinstance(value, float) and value != value:
        return "nan"  # NaN == NaN for the comparison
    return value


def _time_goes_back(path: Path, seconds: float) -> bool:
    """Whether a packet of the capture is stamped `seconds` or more before an earlier one (dpkt)."""
    with path.open("rb") as f:
        try:
            reader: Any = dpkt.pcap.Reader(f)
        except ValueError:
            f.seek(0)
            try:
                reader = dpkt.pcapng.Reader(f)
            except (ValueError, dpkt.UnpackError):  # dpkt cannot read it: compared in full (stricter)
                return False
        newest = 0.0
        for stamp, _ in reader:
            ts = float(stamp)
            if ts <= newest - seconds:
                return True
            newest = max(newest, ts)
    return False


def _run(
    path: Path, workers: int, leave_out: tuple[str, ...] = (), **options: Any
) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """The records (sorted rows of read_frame's columns but id and leave_out) and final counters."""
    stats: dict[str, Any] = {}
    options = {"workers": workers, **options}
    layouts: list[Any] = []
    batches = read_batches(path, stats_out=stats, layouts=layouts, **options)
    columns = batches_to_columns(batches, layouts)
    names = sorted(c for c in columns if c != "id" and c not in leave_out)
    rows = sorted((tuple(_cell(v) for v in row) for row in zip(*(columns[n] for n in names), strict=True)), key=repr)
    return rows, stats


DISSECT_COLUMNS = tuple(METERS["dissect"].column(f) for f in METERS["dissect"].fields)
READING = ("packets_read", "packets_in_flows", "aside", "bytes_read", "decode_events", "read_errors")


def _assert_same(path: Path, **options: Any) -> dict[str, Any]:
    leave_out = DISSECT_COLUMNS if path.name in NDPI_CACHES else ()
    one_rows, one = _run(path, 1, leave_out, **options)
    two_rows, two = _run(path, 2, leave_out, **options)
    if _time_goes_back(path, IDLE_TIMEOUT):
        for name in READING:
            assert two[name] == one[name], f"{path.name}: {name} {two[name]} with 2 workers, {one[name]} with 1"
        return two
    assert len(two_rows) == len(one_rows), f"{path.name}: {len(two_rows)} records with 2 workers, {len(one_rows)}"
    missing = [r for r in one_rows if r not in set(two_rows)][:3]
    assert two_rows == one_rows, f"{path.name}: records differ, e.g. {missing}"
    for name in CONSERVED:
        if leave_out and name.startswith("dissect_"):
            continue
        assert two[name] == one[name], f"{path.name}: {name} {two[name]} with 2 workers, {one[name]} with 1"
    held = two["defrag_fragments_held"]
    assert two["packets_read"] == two["packets_in_flows"] + sum(two["aside"].values()) + held
    assert [w["flows_created"] for w in one["workers"]] == [one["flows_created"]]
    assert sum(w["flows_created"] for w in two["workers"]) == two["flows_created"]
    assert sum(w["packets_in_flows"] for w in two["workers"]) == two["packets_in_flows"]
    return two


BUNDLED = sorted(p for p in DATA.glob("*.pcap*") if p.is_file())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_two_workers_give_the_records_of_one(path: Path, seed: int) -> None:
    _assert_same(path, hash_seed=seed, **ALL_METERS)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_two_workers_defragmenting_give_the_records_of_one(path: Path) -> None:
    _assert_same(path, hash_seed=SEEDS[0], defragment=True, max_packets=5, headers=2)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_two_workers_each_reading_the_file_give_the_records_of_one(path: Path) -> None:
    """read_ahead=False: no shared reading thread, each worker reads and decodes the file itself."""
    _assert_same(path, hash_seed=SEEDS[1], read_ahead=False, **ALL_METERS)


def _corpus() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*.pcap*") if p.is_file() and p.stat().st_size <= CORPUS_MAX_BYTES)


@pytest.mark.parametrize("path", params(_corpus()))
def test_corpus_two_workers_give_the_records_of_one(path: Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    try:
        _assert_same(path, hash_seed=SEEDS[0], **ALL_METERS)
    except aioflow.CaptureFormatError:
        pytest.skip("not a capture aioflow opens (the corpus keeps damaged headers on purpose)")


def test_reassembled_streams_are_those_of_one_worker() -> None:
    """Streams (and the stream search) run per worker on its own flows: the same bytes come out."""
    path = DATA / "zeek_tcp_reassembly.pcap"

    def streams(workers: int) -> list[tuple[Any, ...]]:
        flows = aioflow.read(path, workers=workers, reassemble=True, hash_seed=SEEDS[1])
        return sorted((f.key, f.client_stream, f.server_stream, f.packets) for f in flows)

    one = streams(1)
    assert one and any(s[1] for s in one)
    assert streams(2) == one


def test_flows_are_spread_over_the_workers() -> None:
    path = DATA / "tcpreplay_test.pcap"
    _, stats = _run(path, 2, hash_seed=SEEDS[0])
    per_worker = [w["flows_created"] for w in stats["workers"]]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker
    assert sum(per_worker) == stats["flows_created"] > 2


@pytest.mark.anyio
async def test_snapshot_find_flow_and_info_see_every_worker() -> None:
    """A followed file stays open after its last packet: its flows stay active, in both workers."""
    path = DATA / "tcpreplay_test.pcap"
    ended = list(aioflow.read(path, hash_seed=SEEDS[0]))
    async with FlowParser(path, follow=True, workers=2, hash_seed=SEEDS[0], idle_timeout=1e9) as parser:
        while parser.info().packets < sum(f.packets for f in ended) + sum(parser.info().aside.values()):  # noqa: ASYNC110
            await anyio.sleep(0.01)  # a counter, no event: done when every packet is in
        active = await parser.snapshot()
        info = parser.info()
        assert sorted(f.key for f in active) == sorted(f.key for f in ended)
        assert [w["active_flows"] > 0 for w in info.workers] == [True, True]
        assert sum(w["active_flows"] for w in info.workers) == info.active_flows == len(ended)
        sliced = [f.key async for f in parser.flows()]
        assert sorted(sliced) == sorted(f.key for f in ended)
        for f in ended:
            found = await parser.find_flow(f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.vlan_id)
            assert found is not None and found.packets == f.packets, f.key
        parser.stop()


def test_auto_is_the_usable_cpus() -> None:
    import os

    assert file_config(DATA / "tcpreplay_test.pcap", workers="auto").workers == min(len(os.sched_getaffinity(0)), 16)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"workers": 0}, "workers=0"),
        ({"workers": "many"}, "auto"),
        ({"workers": 2, "meters": ("timeline",)}, "timeline"),
    ],
)
def test_refused_combinations_say_why(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        list(aioflow.read(DATA / "tcpreplay_test.pcap", **options))


def test_max_flows_is_split_among_the_workers() -> None:
    """max_flows=4 over 2 workers: each holds 2 at most, evicts past them, and nothing is lost."""
    _, stats = _run(DATA / "tcpreplay_test.pcap", 2, hash_seed=SEEDS[0], max_flows=4)
    assert [w["peak_active_flows"] for w in stats["workers"]] == [2, 2]
    assert stats["ended_by"]["evicted"] > 0
    assert stats["packets_read"] == stats["packets_in_flows"] + sum(stats["aside"].values())


@pytest.mark.anyio
@pytest.mark.skipif(not stream_patterns_available(), reason="built without Vectorscan")
async def test_stream_patterns_match_in_every_worker() -> None:
    """Each worker searches its own flows' streams: the matches are those of one worker."""
    path = DATA / "ndpi_smtp-starttls.pcap"
    patterns = aioflow.StreamPatterns(client=[rb"EHLO \S+", rb"STARTTLS"], server=[rb"220[ -]"])

    async def found(workers: int) -> list[tuple[Any, ...]]:
        async with FlowParser(path, workers=workers, reassemble=True, stream_patterns=patterns) as parser:
            return sorted([(m.flow.key, m.direction, m.start, m.end, m.data) async for m in parser.matches()])

    one = await found(1)
    assert one
    assert await found(2) == one
