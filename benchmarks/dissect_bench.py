"""dissect=True against flow-only aioflow and nfstream's default (n_dissections=20) on one capture:
alternated runs, each contender in a process of its own (_contenders.py), so its peak RSS is its
own. Prints per run packets/s, flows/s, peak RSS, peak active flows and the nDPI states held at
once; then the best run of each and the issue's two ratios (issue 15: dissect >= 10x nfstream's
default, >= 0.5x aioflow flow-only).

    nice .venv/bin/python benchmarks/dissect_bench.py [CAPTURE] [--runs 3] [--nfstream-python PY]
    nice .venv/bin/python benchmarks/dissect_bench.py [CAPTURE] --callgrind   # instruction counts

Without CAPTURE it makes (once) and uses the application capture: make_capture.py --packets
1000000 --flows 60000 --seed 7 --payloads apps (real applications' first packets: random payloads
are nDPI's worst case, never recognised, every flow dissected to the budget's end).
--callgrind: instructions (load-independent) of flow-only and dissect=True aioflow and of nfstream's
default, one callgrind run each, every process a contender runs counted (nfstream reads in one
process and meters in a forked one), less a run of the same interpreter that only imports the
contender (start-up, which the timed runs leave out too). Prints each one's work and the ratios:
the work's, and the busiest stage's (aioflow's producer thread or its consumer; nfstream's meter
process or its reader), which bounds the throughput when each stage has a core. Bytecode is compiled
once, by a run outside valgrind (PYTHONPYCACHEPREFIX in a temporary directory), so no run counts
compiling modules it imports late. ~25 minutes on the 50,000-packet capture.

--nfstream-python: an interpreter with nfstream (default build/nfstream-venv/bin/python, which
`make test` creates); nfstream is left out when it has none. Wall-clock figures need a quiet
machine; RSS does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _callgrind  # sibling scripts, not a package
import make_capture as mc

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


def nfstream_python(python: str) -> str | None:
    """python when it can import nfstream, else None (said)."""
    probe = [python, "-c", "import nfstream"]
    if not Path(python).exists() or subprocess.run(probe, capture_output=True, check=False).returncode:
        print(f"nfstream left out: {python} cannot import it")
        return None
    return python


def callgrind(capture: str, nfstream: str | None) -> None:
    """Instructions of each contender under callgrind, every process it runs counted (nfstream's
    meter is a forked process), and the same less a run that only starts up (interpreter and the
    imports, which the timed runs leave out too): the work on the capture."""
    kinds = [(sys.executable, "aioflow"), (sys.executable, "aioflow-dissect"), (sys.executable, "aioflow-startup")]
    if nfstream:
        kinds += [(nfstream, "nfstream-dissect"), (nfstream, "nfstream-startup")]
    counts = {}
    with tempfile.TemporaryDirectory() as pycache:
        # Every module's bytecode compiled once, by a run outside valgrind, and read from then on,
        # as from an installed package: PYTHONDONTWRITEBYTECODE (set for the timed runs) would have
        # each run compile the modules it imports late, inside what is counted as work.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for python, kind in kinds:
            subprocess.run([python, str(CONTENDERS), kind, capture], check=True, capture_output=True, env=env)
        for python, kind in kinds:
            engine = kind in ("aioflow", "aioflow-dissect")  # the producer thread's loop is counted apart
            c = counts[kind] = _callgrind.count([python, str(CONTENDERS), kind, capture], producer=engine, env=env)
            each = " + ".join(f"{n:,}" for _, n in c["processes"])
            producer = f", producer thread {c['producer']:,}" if "producer" in c else ""
            print(f"{kind:>17}: {c['total']:>14,} Ir ({len(c['processes'])} processes: {each}){producer}", flush=True)
    startup = {k: counts[f"{k.split('-')[0]}-startup"]["total"] for k in counts if "startup" not in k}
    work = {k: counts[k]["total"] - n for k, n in startup.items()}
    for kind, n in work.items():
        print(f"{kind:>17}: {n:>14,} Ir of work (less start-up)")
    flows, dissect = counts["aioflow"], counts["aioflow-dissect"]
    print(f"dissect / flow-only (instructions): work {work['aioflow'] / work['aioflow-dissect']:.3f}x, producer thread "
          f"{flows.get('producer', 0) / dissect['producer']:.3f}x (goal >= 0.5x)")  # fmt: skip
    if nfstream:
        # the busiest of the two stages each runs at once: nfstream's reading process (less start-up)
        # and its meter process; aioflow's consumer (its Python, less start-up) and producer thread
        (_, reader), (_, meter) = counts["nfstream-dissect"]["processes"]
        nf_stage = max(reader - startup["nfstream-dissect"], meter)
        ours = max(work["aioflow-dissect"] - dissect["producer"], dissect["producer"])
        print(f"nfstream dissect / aioflow dissect (instructions, goal >= 10x): work "
              f"{work['nfstream-dissect'] / work['aioflow-dissect']:.2f}x; busiest stage {nf_stage:,} / {ours:,} = "
              f"{nf_stage / ours:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", nargs="?", help="default: the application capture (see above)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nfstream-python", default=str(NFSTREAM_PYTHON))
    parser.add_argument("--callgrind", action="store_true", help="instruction counts instead of times (valgrind)")
    args = parser.parse_args()
    if not args.capture:
        size = {"packets": 1_000_000, "flows": 60_000, "seed": 7, "payloads": "apps"}
        args.capture = str(mc.default_output(**size))
        meta = mc.load_or_make(Path(args.capture), **size)
        print(f"capture {args.capture} (payloads from {meta['payload_scripts']['source']})")
    nfstream = nfstream_python(args.nfstream_python)
    if args.callgrind:
        callgrind(args.capture, nfstream)
        return
    kinds = [(sys.executable, "aioflow"), (sys.executable, "aioflow-dissect")]
    if nfstream:
        kinds.append((nfstream, "nfstream-dissect"))
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
