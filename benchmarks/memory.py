"""Memory per active flow, measured as a slope rather than a ratio.

The flow table's memory follows the most flows held at once, plus a fixed base (the interpreter,
the engine's batches and buffers). Running the same capture with several idle timeouts changes
how many flows are held at once and nothing else, so peak RSS against peak active flows is a
line: its slope is the bytes each flow costs, its intercept the base. Each run is its own process.

    python benchmarks/memory.py [--capture FILE] [--idle 30 120 600 1800]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_capture import DEFAULT_FLOWS, DEFAULT_PACKETS, DEFAULT_SEED, default_output, load_or_make  # noqa: E402

# One run: FlowParser(capture, **options) with options as JSON in argv[2] (flow_memory.py uses it too).
CHILD = """
import anyio, json, sys, aioflow
async def main():
    async with aioflow.FlowParser(sys.argv[1], **json.loads(sys.argv[2])) as parser:
        async for _ in parser.terminated():
            pass
    info = parser.info()
    rss = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(json.dumps({"peak_active_flows": info.peak_active_flows, "flows": info.flows_ended,
                      "peak_rss_kb": int(rss["VmHWM"].split()[0])}))
anyio.run(main)
"""


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, default=default_output(DEFAULT_PACKETS, DEFAULT_FLOWS, DEFAULT_SEED))
    ap.add_argument("--idle", type=float, nargs="+", default=[30, 120, 600, 1800])
    args = ap.parse_args()
    if not args.capture.exists():
        load_or_make(args.capture)
    points = []
    print(f"capture: {args.capture}")
    print(f"{'idle s':>8} {'peak active flows':>18} {'peak RSS MB':>12}")
    for idle in args.idle:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.capture), json.dumps({"idle_timeout": idle})],
                              capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(proc.stdout)
        points.append((r["peak_active_flows"], r["peak_rss_kb"] * 1024))
        print(f"{idle:>8.0f} {r['peak_active_flows']:>18,} {r['peak_rss_kb'] / 1024:>12.1f}")
    slope, base = fit(points)
    print(f"bytes per active flow (slope): {slope:.0f}; fixed base (intercept): {base / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
