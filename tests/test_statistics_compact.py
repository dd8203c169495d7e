"""The statistics meter keeps a flow in a compact state (statistics.c: 47-bit extreme gaps whose ms
extremes are one bit each, 16-bit sizes, 32-bit byte counters) and moves it to a wide side entry
when a value outgrows that. Whichever form a flow is in, and whenever it moves, every field must
be what nfstream's definitions give: here they are computed in Python, with integers, from the
packets of a crafted capture whose flows cross every limit at random places (gaps of 2^46 ns and over,
frames over 65,535 bytes on the wire, IP packets of 65,535 bytes, 2^31-byte frames that carry the
byte counters past 2^32, packets older than the one before), alongside flows that cross none.
The corpus comparison with nfstream itself is test_statistics.py."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import struct
from pathlib import Path
from typing import Any

import pytest
from support.crafted import ether, ip4, udp

import aioflow

BIG = 1e6  # no timeout fires: each flow is one record
GAP_LIMIT = 2**46  # gaps this long (ns) or longer are kept wide
MODES = (0, 1, 2, 3)


def write_ns_pcap(path: Path, records: list[tuple[int, bytes, int]]) -> Path:
    """A nanosecond pcap: (time in ns, frame, length on the wire) per record."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for ts, frame, wire in records:
            fh.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), wire) + frame)
    return path


def crafted_flows(seed: int) -> tuple[list[tuple[int, bytes, int]], dict[int, list[tuple[int, int, int, int]]]]:
    """Records in time order (as read), and per flow (its client port) the packets as
    (time ns, direction, wire length, IP length)."""
    rng = random.Random(seed)
    records: list[tuple[int, int, int, bytes, int]] = []  # (place in the capture, tie, time, frame, wire)
    flows: dict[int, list[tuple[int, int, int, int]]] = {}
    for n in range(48):
        port, t = 20000 + n, 1_700_000_000 * 10**9 + rng.randrange(10**9)
        plain = n % 4 == 0  # a quarter of the flows cross no limit: compact throughout
        packets, latest, first = [], t, t
        for i in range(rng.randrange(1, 40)):
            r = rng.random()
            if i and not plain and r < 0.04:
                t += GAP_LIMIT + rng.randrange(-3, 4 * 10**12)  # near the limit, either side, or well past it
            elif i and r < 0.08:
                # older than the one before (a gap of 0), not than the flow's first packet: the
                # record's first time is the earlier of its directions' first packets, so the
                # mean would count from there (test_statistics.py excludes such captures too)
                t = max(first, t - rng.randrange(1, 3 * 10**6))
            elif i:
                t += rng.choice((rng.randrange(10**6), rng.randrange(10**9), rng.randrange(5 * 10**6)))
            direction = int(rng.random() < 0.45) if i else 0
            data = rng.randrange(0, 1400)
            if not plain and rng.random() < 0.02:
                data = 65535 - 28  # an IP packet of 65,535 bytes: a size the compact state cannot hold
            frame = ether(ip4("10.1.0.1", "10.2.0.2", 17, udp(port, 53, b"x" * data)) if direction == 0 else
                          ip4("10.2.0.2", "10.1.0.1", 17, udp(53, port, b"x" * data)))  # fmt: skip
            wire = len(frame)
            if not plain and rng.random() < 0.04:
                wire = rng.choice((70000, 2**31 + rng.randrange(2**20)))  # frames longer on the wire than kept
            packets.append((t, direction, wire, 20 + 8 + data))
            latest = max(latest, t)
            records.append((latest, len(records), t, frame, wire))
        flows[port] = packets
    # flows interleaved by their latest time so far: each flow's packets keep their order, an
    # older one comes just after the packet it is older than
    records.sort()
    return [(t, frame, wire) for _, _, t, frame, wire in records], flows


def expected(packets: list[tuple[int, int, int, int]], mode: int) -> dict[str, Any]:
    """nfstream's definitions over the packets, with aioflow's gap rule (from the latest time
    before; 0 for an older packet)."""
    out: dict[str, Any] = {}
    for name, keep in (("bidirectional", (0, 1)), ("src2dst", (0,)), ("dst2src", (1,))):
        mine = [p for p in packets if p[1] in keep]
        sizes = [(p[2], p[3], p[3] - 20, p[3] - 28)[mode] for p in mine]
        ns, ms, latest = [], [], None
        for t, *_ in mine:
            if latest is not None:
                start = min(latest, t)
                ns.append(t - start)
                ms.append(t // 10**6 - start // 10**6)
            latest = t if latest is None else max(latest, t)
        for kind, values in (("ps", sizes), ("piat_ms", ms), ("piat_ns", ns)):
            out[f"{name}_min_{kind}"] = min(values) if values else 0
            out[f"{name}_max_{kind}"] = max(values) if values else 0
            out[f"{name}_mean_{kind}"] = sum(values) / len(values) if values else 0.0
            out[f"{name}_stddev_{kind}"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out[f"{name}_raw_bytes"] = sum(p[2] for p in mine)
        out[f"{name}_payload_bytes"] = sum(p[3] - 28 for p in mine)
        if name == "bidirectional":
            out["bidirectional_bytes"] = sum(sizes)
            out["bidirectional_packets"] = len(mine)
    return out


def assert_exact_in_every_mode(path: Path, flows: dict[int, list[tuple[int, int, int, int]]]) -> None:
    """Every statistics field of every flow of `path` (one record a flow) is expected()'s, in
    every accounting mode: integers equal, floats to the last digits."""
    for mode in MODES:
        frame = aioflow.read_frame(path, statistics=True, accounting_mode=mode, idle_timeout=BIG,
                                   active_timeout=BIG, fin_timeout=BIG)  # fmt: skip
        assert sorted(frame["src_port"]) == sorted(flows)
        for row in frame.to_dict("records"):
            for name, want in expected(flows[row["src_port"]], mode).items():
                got = row[name]
                if isinstance(want, float):
                    # sums of squares of ns gaps are doubles (as nfstream's): near-equal spreads
                    # of 19-hour gaps lose digits there, nowhere else
                    tol = 1e-6 if name.endswith("stddev_piat_ns") else 1e-9
                    assert math.isclose(got, want, rel_tol=tol, abs_tol=1e-6), (mode, row["src_port"], name, got, want)
                else:
                    assert got == want, (mode, row["src_port"], name, got, want)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_field_exact_whichever_form_a_flow_is_kept_in(tmp_path: Path, seed: int) -> None:
    records, flows = crafted_flows(seed)
    path = write_ns_pcap(tmp_path / "limits.pcap", records)
    crossing = sum(
        any(w >= 65535 or ip == 65535 for _, _, w, ip in ps) or sum(w for _, _, w, _ in ps) >= 2**32
        or any(b[0] - a[0] >= GAP_LIMIT for a, b in itertools.pairwise(ps))
        for ps in flows.values()
    )  # fmt: skip
    assert crossing >= 12 and len(flows) - crossing >= 12  # both forms (and moves between them) are exercised
    assert_exact_in_every_mode(path, flows)



def test_mode_2_sizes_exact_past_the_compact_header_counter(tmp_path: Path) -> None:
    """Accounting mode 2 keeps its sizes' sum as the payload bytes plus 16 bits of transport
    header bytes a direction (8 a UDP packet): flows either side of 8,191 packets in one direction
    must give nfstream's values, in every mode, whichever form they end in."""
    records: list[tuple[int, bytes, int]] = []
    flows: dict[int, list[tuple[int, int, int, int]]] = {}
    t = 1_700_000_000 * 10**9
    # 8,191 src->dst packets fit (c - c // 50 of them), 8,192 and on cross
    for port, count in ((30000, 8358), (30001, 8359), (30002, 9500)):
        packets = []
        for i in range(count):
            t += 1000 + i % 7 * 10**5
            direction = int(i % 50 == 49)  # some replies too, one set below the limit
            data = b"y" * (i % 5)
            frame = ether(ip4("10.1.0.1", "10.2.0.2", 17, udp(port, 53, data)) if direction == 0 else
                          ip4("10.2.0.2", "10.1.0.1", 17, udp(53, port, data)))  # fmt: skip
            packets.append((t, direction, len(frame), 28 + len(data)))
            records.append((t, frame, len(frame)))
        flows[port] = packets
    path = write_ns_pcap(tmp_path / "headers.pcap", records)
    assert_exact_in_every_mode(path, flows)
