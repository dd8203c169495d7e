"""Throughput with the conn_state and community_id meters on, against flow-only (issue 17: at least
0.9x). Timed on a quiet machine; on a shared one count instructions instead (see --callgrind).

    .venv/bin/python benchmarks/zeek_meters.py CAPTURE [--repeat N]
    .venv/bin/python benchmarks/zeek_meters.py CAPTURE --callgrind   # instruction counts, per mode
    .venv/bin/python benchmarks/zeek_meters.py CAPTURE --cache-sim   # + the C pipeline's cache misses

Each mode runs in a process of its own, modes interleaved round by round (best of N): packets/s
and the ratio to flow-only. Modes: flows (no meter), zeek (conn_state + community_id),
conn_state, community_id. Every mode consumes terminated() and reads the meters' fields, as
`aioflow flows --format zeek` would, minus the text formatting.

--callgrind gives two instruction counts per mode: the producer thread's loop (the C pipeline)
and the whole run (the process, less a process that only starts up: interpreter, imports and
asyncio, no capture), which adds the consumer's Python (flows and their fields, read flow by flow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import _callgrind

MODES = {"flows": (), "zeek": ("conn_state", "community_id"), "conn_state": ("conn_state",),
         "community_id": ("community_id",)}  # fmt: skip


def child(mode: str, path: str) -> dict[str, Any]:
    import aioflow

    if mode == "startup":  # what every mode pays before it opens the capture
        asyncio.run(asyncio.sleep(0))
        return {"mode": mode, "aioflow": aioflow.__name__}

    async def main() -> dict[str, Any]:
        flows = fields = 0
        t0 = time.perf_counter()
        async with aioflow.FlowParser(path, meters=MODES[mode], read_ahead=False) as parser:
            async for flow in parser.terminated():
                flows += 1
                fields += len(flow.meters)  # the fields, read
            seconds = time.perf_counter() - t0
        return {"mode": mode, "packets": parser.info().packets, "flows": flows, "fields": fields, "seconds": seconds}

    return asyncio.run(main())


def callgrind(path: str, mode: str) -> tuple[int, int]:
    """(instructions of the producer thread's loop, of the whole process) for one mode
    (_callgrind.count); the first is 0 for the startup mode, which starts no engine."""
    found = _callgrind.count([sys.executable, __file__, "--child", mode, path], producer=mode != "startup")
    return found.get("producer", 0), found["total"]


def cache_sim(path: str) -> None:
    """The C pipeline's instructions and data-cache misses per mode, as a table."""
    print("| mode | C pipeline Ir | flows / mode | D1 misses | LL misses |\n| --- | ---: | ---: | ---: | ---: |")
    base = 0
    for mode in MODES:
        found = _callgrind.count([sys.executable, __file__, "--child", mode, path], cache=True)
        base = base or found["producer"]
        print(f"| {mode} | {found['producer']:,} | {base / found['producer']:.3f}x | {found['producer_D1']:,} | "
              f"{found['producer_LL']:,} |", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--callgrind", action="store_true", help="instruction counts instead of times (valgrind)")
    ap.add_argument("--cache-sim", action="store_true", help="instructions and cache misses of the C pipeline")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.capture)))
        return 0
    if args.cache_sim:
        cache_sim(args.capture)
        return 0
    if args.callgrind:
        startup = callgrind(args.capture, "startup")[1]
        counts = {mode: callgrind(args.capture, mode) for mode in MODES}
        print("| mode | C pipeline Ir (producer thread) | flows / mode | whole run Ir (less start-up) | flows / mode |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base, base_total = counts["flows"]
        for mode, (n, total) in counts.items():
            run = total - startup
            print(f"| {mode} | {n:,} | {base / n:.3f}x | {run:,} | {(base_total - startup) / run:.3f}x |")
        print(f"start-up alone: {startup:,} instructions")
        return 0
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--child", mode, args.capture], check=True,
                                 capture_output=True, text=True).stdout  # fmt: skip
            r = json.loads(out)
            if mode not in best or r["seconds"] < best[mode]["seconds"]:
                best[mode] = r
    base = best["flows"]["seconds"]
    print("| mode | packets/s | vs flows |\n| --- | ---: | ---: |")
    for mode, r in best.items():
        print(f"| {mode} | {r['packets'] / r['seconds']:,.0f} | {base / r['seconds']:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
