"""Workers read ahead through one lane each (readahead.h): a worker sees only its own flows'
packets, so the time other workers' packets bring must reach it another way, the clock in each
entry and the watermark of an empty lane. Captures crafted here (dpkt) where that time decides
which flows end: the records of workers=2 and 3 must be those of workers=1 (tests/test_workers.py
compares them on every corpus capture; these captures make the clock's paths matter for sure)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import dpkt
import pytest

import aioflow

SHORT = 20  # flows that go quiet: with 2 workers, some are on the other worker than the long one


def _udp(src: str, sport: int, dst: str, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"ping"
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, ttl=64, data=udp)
    ip.len = 20 + len(udp)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=bytes(ip)))


def _write(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535)
        for ts, frame in packets:
            writer.writepkt(frame, ts=ts)
    return path


def _short(i: int) -> bytes:
    return _udp(f"10.0.{i}.1", 1000 + i, "10.9.9.9", 53)


def _records(path: Path, workers: int, **options: Any) -> list[tuple[Any, ...]]:
    flows = aioflow.read(path, workers=workers, read_ahead=True, idle_timeout=10, **options)
    return sorted((f.src_ip, f.src_port, f.first_seen_ns, f.last_seen_ns, f.packets, f.end_reason) for f in flows)


@pytest.mark.parametrize("workers", [2, 3])
def test_a_late_packet_sees_the_time_of_other_workers_packets(tmp_path: Path, workers: int) -> None:
    """Each short flow is seen at 1000 s, a long flow at 1013 s, then each short flow again at
    1005 s (stamped 8 s back: a reordered capture). With one table the clock is at 1013 s by then,
    so each short flow has been idle 13 s > 10 s and the late packet starts a new record; a worker
    that only knew its own packets' times would count it in the old one (idle 5 s)."""
    packets = [(1000.0 + i / 1000, _short(i)) for i in range(SHORT)]
    packets.append((1013.0, _udp("10.1.1.1", 4000, "10.9.9.9", 53)))
    packets += [(1005.0 + i / 1000, _short(i)) for i in range(SHORT)]
    path = _write(tmp_path / "late.pcap", packets)
    one = _records(path, 1)
    assert len(one) == 2 * SHORT + 1  # each short flow twice: the premise
    assert _records(path, workers) == one


@pytest.mark.parametrize("workers", [2, 3])
def test_flows_of_a_quiet_worker_end_by_the_others_time(tmp_path: Path, workers: int) -> None:
    """Short flows at 1000 s, then only one long flow for 60 s: with one table the short flows end
    idle (by the long flow's packets) before the file ends; a worker whose lane goes empty must end
    them by the reader's clock too (the watermark), not at the end of the file."""
    packets = [(1000.0 + i / 1000, _short(i)) for i in range(SHORT)]
    packets += [(1001.0 + s, _udp("10.1.1.1", 4000, "10.9.9.9", 53)) for s in range(60)]
    path = _write(tmp_path / "quiet.pcap", packets)
    one = _records(path, 1)
    assert sum(r[-1] == "idle" for r in one) == SHORT  # the premise
    assert _records(path, workers) == one
