"""Floods: memory stays at its bound, and what a bound turned away is counted.

Each flood is a capture written here (struct, no tool), read by the engine in a child process of
its own, pumped a fixed number of packets at a time; after every pump the child records its RSS
(VmRSS) and the engine's counters. The checks are on those samples by packets read, never on
time: past the point where the bound is reached, RSS grows by a small fraction of what the flood
would cost unbounded.

- SYN flood from random sources at 10x max_flows: the table holds max_flows, the rest is
  evicted (ended_by evicted), every packet is in a flow.
- Fragment flood: first fragments that are never completed, far past the defragmenter's
  max_fragment_datagrams and max_fragment_memory: given up and counted (defrag_gave_up, aside
  fragment_dropped), the pool never above its bound.
- Reassembly flood: thousands of TCP streams that each lose their first segment, so everything
  after it waits out of order: max_reassembly_memory bounds the arena, the rest is counted in
  stream_segments_dropped.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
PUMP = 500  # packets per pump, between two samples

CHILD = """
import json, sys
from aioflow._engine import Engine, EngineConfig
engine = Engine(sys.argv[1], EngineConfig(**json.loads(sys.argv[2])))
samples = []
def rss_kb():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])
while True:
    state, _ = engine.pump_some(int(sys.argv[3]))
    s = engine.stats()
    samples.append((s["packets_read"], rss_kb()))
    if state == "done":
        break
s = engine.stats()
print(json.dumps({"samples": samples, "stats": s}))
"""


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0, frag: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst) + payload


def tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"", ack: int = 0) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload


def write_pcap(path: Path, frames: list[bytes]) -> None:
    """Ethernet frames 10 us apart: the whole flood lies within a second, inside every timeout."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, ip in enumerate(frames):
        frame = ETH + ip
        out.append(struct.pack("<IIII", 1_700_000_000, i * 10, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def child_env() -> dict[str, str]:
    """Under `make sanitize`, ASan holds freed memory in a quarantine (up to 256 MiB), so RSS would
    grow with every batch Python frees: the child runs without it, so RSS still shows the bounds."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    return env


def run(path: Path, **config: Any) -> tuple[list[tuple[int, int]], dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(config), str(PUMP)],
                          capture_output=True, text=True, check=True, env=child_env())  # fmt: skip
    result = json.loads(proc.stdout)
    stats = result["stats"]
    assert stats["packets_read"] == stats["packets_in_flows"] + sum(stats["aside"].values()), stats
    return [tuple(s) for s in result["samples"]], stats


def growth_after(samples: list[tuple[int, int]], packets: int) -> int:
    """RSS bytes gained from the first sample at or past `packets` read to the highest later one
    while reading (the end-of-file flush fills the bounded batch buffers once: not the flood)."""
    total = samples[-1][0]
    later = [rss for read, rss in samples if packets <= read < total]
    assert len(later) >= 10, samples  # enough pumps past the bound to see growth
    return (max(later) - later[0]) * 1024


def sources(n: int, seed: int) -> list[int]:
    """n distinct random IPv4 source addresses (as integers in 10/8)."""
    return [0x0A000000 | k for k in random.Random(seed).sample(range(1, 1 << 24), n)]


def test_syn_flood_holds_max_flows_and_counts_evictions(tmp_path: Path) -> None:
    max_flows, packets = 10_000, 100_000
    rng = random.Random(1)
    dst = bytes([192, 0, 2, 1])
    frames = [ipv4(struct.pack("!I", a), dst, 6, tcp(rng.randrange(1024, 65536), 80, rng.getrandbits(32), 0x02))
              for a in sources(packets, 2)]  # fmt: skip
    path = tmp_path / "syn.pcap"
    write_pcap(path, frames)
    samples, stats = run(path, max_flows=max_flows)
    assert stats["flows_created"] == packets
    assert stats["peak_active_flows"] == max_flows
    assert stats["ended_by"]["evicted"] == packets - max_flows
    assert stats["ended_by"]["eof"] == max_flows
    assert stats["packets_in_flows"] == packets
    # once the table is full (and a few batches on): a flow slot costs ~190 bytes, so the 80k
    # flows that follow would add ~15 MB unbounded
    assert growth_after(samples, 2 * max_flows) < 2 * 2**20


def test_fragment_flood_stays_within_the_defragmenter_caps(tmp_path: Path) -> None:
    datagrams, limit, memory = 40_000, 256, 256 * 1024
    dst = bytes([192, 0, 2, 1])
    payload = bytes(1000)  # of a 3000-byte datagram whose later fragments never come
    frames = [ipv4(struct.pack("!I", a), dst, 17, struct.pack("!HHHH", 1000, 53, 3008, 0) + payload,
                   ident=i & 0xFFFF, frag=0x2000)
              for i, a in enumerate(sources(datagrams, 3))]  # fmt: skip
    path = tmp_path / "frag.pcap"
    write_pcap(path, frames)
    samples, stats = run(path, defragment=True, max_fragment_datagrams=limit, max_fragment_memory=memory)
    assert stats["defrag_peak_in_progress"] <= limit
    assert 0 < stats["defrag_peak_memory"] <= memory
    gave_up = stats["defrag_gave_up"]
    assert gave_up["table_full"] + gave_up["memory_full"] >= datagrams - limit, gave_up
    assert sum(gave_up.values()) == datagrams  # the rest at the end of the file
    assert stats["packets_in_flows"] == 0 and stats["defrag_fragments_held"] == 0
    assert stats["aside"]["fragment_dropped"] == datagrams
    # unbounded, 39k held fragments would be ~40 MB
    assert growth_after(samples, 4 * limit) < 2 * 2**20


def test_reassembly_flood_is_bounded_by_max_reassembly_memory(tmp_path: Path) -> None:
    flows, segments, size = 4_000, 3, 1000
    memory = 2 << 20  # the smallest bound; the flood would hold 4000 * 3 * 1000 = 12 MB out of order
    dst = bytes([192, 0, 2, 1])
    frames = []
    order = []
    for k, a in enumerate(sources(flows, 4)):
        src, port, isn = struct.pack("!I", a), 1024 + k % 60000, 1000 * k
        frames.append(ipv4(src, dst, 6, tcp(port, 80, isn, 0x02)))
        # the first data segment (isn + 1) is lost: every later one waits for it
        order += [(k, src, port, isn + 1 + size * j) for j in range(1, segments + 1)]
    random.Random(5).shuffle(order)  # streams interleaved
    frames += [
        ipv4(src, dst, 6, tcp(port, 80, seq, 0x18, bytes([k & 0xFF]) * size, ack=1)) for k, src, port, seq in order
    ]
    path = tmp_path / "ooo.pcap"
    write_pcap(path, frames)
    samples, stats = run(path, reassemble=True, max_reassembly_memory=memory)
    assert stats["peak_active_flows"] == flows
    assert 0 < stats["stream_peak_memory"] <= memory
    assert stats["stream_segments_dropped"] > 0
    kept = flows * segments - stats["stream_segments_dropped"]
    assert kept * size <= memory  # what was buffered fits the bound
    # the arena is full once `memory` bytes of segments came; unbounded the rest is ~10 MB
    assert growth_after(samples, flows + 2 * memory // size + 2 * PUMP) < 2 * 2**20
