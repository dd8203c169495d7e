"""Throughput with TCP/UDP reassembly on, against flow-only, on one capture.

    .venv/bin/python benchmarks/reassembly.py CAPTURE [--repeat N]

Each mode runs in a process of its own (best of N, modes interleaved so that machine noise falls
on all of them alike) and prints a markdown table row: packets/s and the ratio to flow-only; then
every run's time and the ratio round by round (each round runs the modes back to back), since on
a noisy machine the best-of ratio alone can mislead.

- flows:      FlowParser(path), `async for` over terminated()
- reassemble: FlowParser(path, reassemble=True), terminated(), reading every flow's two streams
- events:     FlowParser(path, reassemble=True), stream_events(), every chunk's and flow's data
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("flows", "reassemble", "events")


def child(mode: str, path: str) -> dict[str, Any]:
    import aioflow

    async def main() -> dict[str, Any]:
        flows = stream_bytes = 0
        t0 = time.perf_counter()
        async with aioflow.FlowParser(path, reassemble=mode != "flows") as parser:
            if mode == "events":
                async for event in parser.stream_events():
                    if isinstance(event, aioflow.StreamChunk):
                        stream_bytes += len(event.data)
                    else:
                        flows += 1
            else:
                async for flow in parser.terminated():
                    flows += 1
                    if mode == "reassemble":
                        stream_bytes += len(flow.client_stream or b"") + len(flow.server_stream or b"")
            seconds = time.perf_counter() - t0
        info = parser.info()
        return {"mode": mode, "packets": info.packets, "flows": flows, "seconds": seconds,
                "stream_bytes": stream_bytes, "reassembly": info.reassembly}  # fmt: skip

    out = asyncio.run(main())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, str(args.capture))))
        return 0
    best: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(args.capture)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(proc.stdout)
            times[mode].append(r["seconds"])
            if mode not in best or r["seconds"] < best[mode]["seconds"]:
                best[mode] = r
    base = best["flows"]["packets"] / best["flows"]["seconds"]
    print("| mode | packets | flows | seconds | packets/s | vs flow-only | stream MB | peak RSS MB | arena peak MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in MODES:
        r = best[mode]
        pps = r["packets"] / r["seconds"]
        peak = r["reassembly"].get("stream_peak_memory", 0) / 2**20
        print(f"| {mode} | {r['packets']:,} | {r['flows']:,} | {r['seconds']:.2f} | {pps:,.0f} | {pps / base:.0%} "
              f"| {r['stream_bytes'] / 1e6:,.1f} | {r['peak_rss_mb']:,.0f} | {peak:,.1f} |")
    print()
    for mode in MODES:
        runs = ", ".join(f"{s:.2f}" for s in times[mode])
        print(f"{mode}: runs {runs} s (median {statistics.median(times[mode]):.2f})")
    for mode in MODES[1:]:
        ratios = [flows / other for flows, other in zip(times["flows"], times[mode], strict=True)]
        print(f"{mode} vs flow-only, round by round: {', '.join(f'{x:.0%}' for x in ratios)} "
              f"(median {statistics.median(ratios):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
