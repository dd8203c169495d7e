"""Alternated A/B of two checkouts' builds on plugins_bench.py's modes (main-thread CPU is what
compares on a loaded machine), each run a process of its own, medians printed.

    python3 benchmarks/ab_builds.py CAPTURE OTHER_CHECKOUT [--rounds 5] [--modes terminated,read_frame]
        [--options '{"statistics": true, "splt": 20}']

OTHER_CHECKOUT is a directory with its own `.venv` (built with `make dev`), e.g. integ's tree
(`git archive integ | tar -x -C /tmp/integ`); this checkout is the other build.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("other", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="terminated,read_frame")
    ap.add_argument("--options", default="{}")
    args = ap.parse_args()
    builds = {"other": args.other.resolve(), "this": HERE}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for build, root in builds.items():
            for mode in args.modes.split(","):
                cmd = ["nice", str(root / ".venv/bin/python"), str(root / "benchmarks/plugins_bench.py"), args.capture,
                       "--child", mode, "--options", args.options]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                runs.setdefault((build, mode), []).append(json.loads(out.splitlines()[-1]))
    for (build, mode), got in runs.items():
        med = {k: statistics.median(r[k] for r in got) for k in ("wall_s", "cpu_s", "main_thread_cpu_s")}
        print(f"{build:6} {mode:11} {got[0]['flows']:>9,} flows  wall {med['wall_s']:7.3f} s  cpu {med['cpu_s']:6.3f} s"
              f"  main thread {med['main_thread_cpu_s']:6.3f} s (min {min(r['main_thread_cpu_s'] for r in got):.3f};"
              f" medians of {len(got)})")  # fmt: skip


if __name__ == "__main__":
    main()
