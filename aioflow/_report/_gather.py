"""Reading the sources of a report: every capture's flow columns (the bulk path), its timeline
(the `timeline` meter) and its facts (what was read, what was counted aside and why)."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from .._engine import EMPTY_BATCH, END_REASONS, Batch
from .._frame import RECORD_DTYPE, meter_columns
from .._parser import FlowParser, ParserInfo
from .._timeline import Timeline
from ._aggregate import address_keys

MAX_BUCKETS = 2048  # as the timeline meter keeps: the chart stays light whatever the span


@dataclass(frozen=True)
class SourceFacts:
    """What reading one source gave: its counters (ParserInfo) and the time its flows span."""

    source: str
    info: ParserInfo
    first_ns: int
    last_ns: int


@dataclass
class ReportData:
    """Everything a report is drawn from. `timeline_estimated`: the timeline was spread over
    flows (no per-packet counts were available: flows were given, not captures)."""

    columns: dict[str, Any]
    timeline: Timeline | None
    timeline_estimated: bool = False
    sources: list[SourceFacts] = field(default_factory=list)


async def gather(
    sources: Sequence[str | os.PathLike[str]],
    options: dict[str, Any],
    seconds: float | None = None,
    watch: Callable[[FlowParser], Coroutine[Any, Any, None]] | None = None,
    on_source: Callable[[str], None] | None = None,
) -> ReportData:
    """Reads each source in turn (a live one for `seconds`, or until stopped) with the timeline
    meter on. `on_source(source)` is called before each is opened (error messages name it);
    `watch(parser)` runs beside the reading of each (progress bars, signal handlers) and is
    cancelled when it ends."""
    parts: list[dict[str, Any]] = []
    timelines: list[Timeline] = []
    facts: list[SourceFacts] = []
    # conn_state: TCP connections' fates (Zeek's conn_state) for its section of the report
    meters = tuple(dict.fromkeys((*options.pop("meters", ()), "timeline", "conn_state")))
    dissect = bool(options.get("dissect"))
    for source in sources:
        start = len(parts)
        if on_source is not None:
            on_source(os.fspath(source))
        async with FlowParser(source, meters=meters, **options) as parser:
            async with anyio.create_task_group() as tasks:
                if watch is not None:
                    tasks.start_soon(watch, parser)
                if seconds is not None and parser.live:
                    tasks.start_soon(stop_after, parser, seconds)
                async for batch in parser.batches():
                    parts.append(report_columns(batch, dissect))
                tasks.cancel_scope.cancel()
        timeline = parser.timeline()
        if timeline is not None and len(timeline.packets):
            timelines.append(timeline)
        mine = parts[start:]
        first = min((int(p["first_seen_ns"].min()) for p in mine if len(p["first_seen_ns"])), default=0)
        last = max((int(p["last_seen_ns"].max()) for p in mine if len(p["last_seen_ns"])), default=0)
        facts.append(SourceFacts(os.fspath(source), parser.info(), first, last))
    columns = _concatenate(parts) if parts else report_columns(EMPTY_BATCH, dissect)
    return ReportData(columns, merge_timelines(timelines), False, facts)


def report_columns(batch: Batch, dissect: bool = False) -> dict[str, Any]:
    """What the report draws from, straight from a batch's C records: numbers (addresses as
    sortable 17-byte values), and of the meters' text fields only the two it shows, conn_state's
    state and, with `dissect`, the application name."""
    rec = np.frombuffer(batch.raw_records(), dtype=RECORD_DTYPE)
    cols: dict[str, Any] = {
        "src_addr": address_keys(rec["ip_version"], rec["src_ip"]),
        "dst_addr": address_keys(rec["ip_version"], rec["dst_ip"]),
        "first_seen_ns": rec["first_ns"].astype(np.int64),
        "last_seen_ns": rec["last_ns"].astype(np.int64),
        "end_reason": np.asarray(END_REASONS, dtype=object)[rec["end_reason"]],
    }
    for name in ("src_port", "dst_port", "protocol", "src2dst_packets", "dst2src_packets",
                 "src2dst_captured_bytes", "dst2src_captured_bytes"):  # fmt: skip
        cols[name] = rec[name].astype(np.int64)
    cols["duration_ns"] = cols["last_seen_ns"] - cols["first_seen_ns"]
    cols["packets"] = cols["src2dst_packets"] + cols["dst2src_packets"]
    cols["captured_bytes"] = cols["src2dst_captured_bytes"] + cols["dst2src_captured_bytes"]
    wanted = ("conn_state_state", "application_name") if dissect else ("conn_state_state",)
    meters = meter_columns(batch.meter_data, batch.count, batch.meter_layout, wanted)  # no other field decoded
    cols["tcp_state"] = meters.get("conn_state_state", np.zeros(batch.count, dtype=object))
    if dissect:  # EMPTY_BATCH (no source gave a batch) has no meter columns
        cols["application_name"] = meters["application_name"] if batch.count else np.zeros(0, dtype=object)
    return cols


async def stop_after(parser: FlowParser, seconds: float) -> None:
    """Stops a live parser after `seconds` (its active flows end as "stop")."""
    await anyio.sleep(seconds)
    parser.stop()


def _concatenate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def merge_timelines(timelines: list[Timeline]) -> Timeline | None:
    """One timeline of several sources: the coarsest interval (coarser still while the sources'
    span would need more than MAX_BUCKETS), from the earliest origin; each bucket moved to where
    its start falls (exact for one source; for several, a bucket can move by less than one
    interval)."""
    if not timelines:
        return None
    if len(timelines) == 1:
        return timelines[0]
    interval = max(t.interval_ns for t in timelines)
    origin = min(t.origin_ns for t in timelines)
    end = max(t.origin_ns + t.interval_ns * len(t.packets) for t in timelines)
    steps = 0
    while (end - origin + interval - 1) // interval > MAX_BUCKETS:  # sources far apart: coarser
        interval *= 5 if steps % 2 else 2
        steps += 1
    count = (end - origin + interval - 1) // interval
    packets = np.zeros((count, timelines[0].packets.shape[1]), dtype=np.int64)
    sizes = np.zeros_like(packets)
    for t in timelines:
        where = (t.starts_ns - origin) // interval
        np.add.at(packets, where, t.packets)
        np.add.at(sizes, where, t.bytes)
    return Timeline(origin, interval, packets, sizes, max(t.coarsened for t in timelines),
                    sum(t.before_origin for t in timelines))  # fmt: skip
