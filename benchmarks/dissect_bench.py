"""dissect=True against flow-only aioflow and nfstream's default (n_dissections=20) on one capture:
alternated runs, each contender in a process of its own (_contenders.py), so its peak RSS is its
own. Prints per run packets/s, flows/s, peak RSS, peak active flows and the nDPI states held at
once; then the best run of each and the issue's two ratios (issue 15: dissect >= 10x nfstream's
default, >= 0.5x aioflow flow-only).

    nice .venv/bin/python benchmarks/dissect_bench.py CAPTURE [--runs 3] [--nfstream-python PY]

--nfstream-python: an interpreter with nfstream (default build/nfstream-venv/bin/python, which
`make test` creates); nfstream is left out when it has none. Wall-clock figures need a quiet
machine; RSS does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTENDERS = HERE / "_contenders.py"
NFSTREAM_PYTHON = HERE.parent / "build" / "nfstream-venv" / "bin" / "python"


def run(python: str, kind: str, capture: str) -> dict[str, Any]:
    proc = subprocess.run([python, str(CONTENDERS), kind, capture], capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout.splitlines()[-1]))


def line(kind: str, r: dict[str, Any]) -> str:
    text = (f"{kind:>17}: {r['packets'] / r['seconds']:>10,.0f} packets/s {r['flows'] / r['seconds']:>9,.0f} flows/s"
            f"  peak RSS {r['peak_rss_kb'] / 1024:>7.1f} MB")  # fmt: skip
    if "peak_active_flows" in r:
        text += f"  peak active flows {r['peak_active_flows']:,}"
    dissection = r.get("info", {}).get("dissection") or {}
    if dissection.get("dissect_peak_in_flight"):
        text += f"  nDPI states at once {dissection['dissect_peak_in_flight']:,}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nfstream-python", default=str(NFSTREAM_PYTHON))
    args = parser.parse_args()
    kinds = [(sys.executable, "aioflow"), (sys.executable, "aioflow-dissect")]
    probe = subprocess.run([args.nfstream_python, "-c", "import nfstream"], capture_output=True, check=False)
    if Path(args.nfstream_python).exists() and probe.returncode == 0:
        kinds.append((args.nfstream_python, "nfstream-dissect"))
    else:
        print(f"nfstream left out: {args.nfstream_python} cannot import it")
    best: dict[str, dict[str, Any]] = {}
    for n in range(args.runs):  # alternated: the machine's drift hits every contender alike
        for python, kind in kinds:
            r = run(python, kind, args.capture)
            print(f"run {n} {line(kind, r)}", flush=True)
            if kind not in best or r["seconds"] < best[kind]["seconds"]:
                best[kind] = r
    print("best of each:")
    for kind, r in best.items():
        print(f"       {line(kind, r)}")
    rate = {kind: r["flows"] / r["seconds"] for kind, r in best.items()}
    print(f"dissect / flow-only: {rate['aioflow-dissect'] / rate['aioflow']:.2f}x (goal >= 0.5x)")
    if "nfstream-dissect" in rate:
        print(f"dissect / nfstream dissect: {rate['aioflow-dissect'] / rate['nfstream-dissect']:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
