"""Throughput of the engine with and without defragment=True (README: "IP defragmentation").

Without --capture it writes a capture of fragmented UDP datagrams (each 4,124 bytes of IP, cut in
three fragments as a 1500-byte MTU would) and times the engine on it; with --capture FILE it times
that file instead (e.g. make_capture.py's, which has no fragments: the cost of the option alone).
The time is the engine's reading thread from open to the last batch, without Python flow objects.
"""

from __future__ import annotations

import argparse
import socket
import struct
import time
from pathlib import Path

from aioflow._engine import Engine, EngineConfig

ETHERNET = b"\x02\x00\x00\x00\x00\x0b\x02\x00\x00\x00\x00\x0a\x08\x00"
PAYLOAD = bytes(8) + bytes(range(256)) * 16  # a 4,104-byte "UDP datagram"
CUTS = ((0, 1480), (1480, 2960), (2960, len(PAYLOAD)))


def write_fragments(path: Path, datagrams: int) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        dst = socket.inet_aton("192.0.2.9")
        for i in range(datagrams):
            src = socket.inet_aton(f"10.{i % 200}.{(i // 200) % 250}.1")
            usec = i * 10
            for a, b in CUTS:
                flags = (0x2000 if b < len(PAYLOAD) else 0) | a // 8
                header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + b - a, i & 0xFFFF, flags, 64, 17, 0, src, dst)
                frame = ETHERNET + header + PAYLOAD[a:b]
                out.write(struct.pack("<IIII", 1_700_000_000 + usec // 10**6, usec % 10**6, len(frame), len(frame)))
                out.write(frame)


def timed_run(path: Path, defragment: bool) -> tuple[float, int, int]:
    engine = Engine(path, EngineConfig(defragment=defragment))
    try:
        started = time.perf_counter()
        engine.start(8192, 4)
        while True:
            state, _ = engine.take_ready()
            if state == "done":
                break
            if state == "wait":
                time.sleep(0.0005)
        elapsed = time.perf_counter() - started
        stats = engine.stats()
    finally:
        engine.close()
    return elapsed, stats["packets_read"], stats["defrag_datagrams"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, help="time this capture instead of generating fragments")
    ap.add_argument("--datagrams", type=int, default=100_000, help="fragmented datagrams to generate")
    ap.add_argument("--output", type=Path, default=Path("/tmp/aioflow-defrag-bench.pcap"))
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the fastest is kept")
    args = ap.parse_args()
    path = args.capture
    if path is None:
        path = args.output
        write_fragments(path, args.datagrams)
    for defragment in (False, True):
        best = min(timed_run(path, defragment) for _ in range(args.repeat))
        seconds, packets, datagrams = best
        print(f"defragment={defragment!s:5}  {packets:,} packets in {seconds:.3f} s: "
              f"{packets / seconds:,.0f} packets/s; {datagrams:,} datagrams reassembled")


if __name__ == "__main__":
    main()
