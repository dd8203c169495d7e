"""One benchmark contender, run in a process of its own by run.py.

    python _contenders.py aioflow CAPTURE
    python _contenders.py aioflow-read CAPTURE  (aioflow.read, blocking)
    python _contenders.py aioflow-frame CAPTURE (aioflow.read_frame, pandas)
    python _contenders.py nfstream CAPTURE      (with the nfstream venv's python)
    python _contenders.py aioflow-stats CAPTURE       (statistics=True)
    python _contenders.py aioflow-stats-splt CAPTURE  (statistics=True, splt=20)
    python _contenders.py nfstream-stats CAPTURE      (statistical_analysis=True)
    python _contenders.py aioflow-dissect CAPTURE     (dissect=True: nDPI)
    python _contenders.py nfstream-dissect CAPTURE    (n_dissections=20, nfstream's default)
    python _contenders.py aioflow-startup CAPTURE     (imports only: what the runs' timing leaves out)
    python _contenders.py nfstream-startup CAPTURE

Prints one JSON line on stdout: packets, flows, seconds (from opening the source to the last flow,
interpreter start-up and imports excluded), peak_rss_kb (this process's VmHWM plus the largest
peak of any child it waited for, e.g. nfstream's meter process), base_rss_kb (RSS just before the
source was opened) and contender-specific extras. Standard library only, so it runs in either venv.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _peaks() -> dict[str, int]:
    own = _status_kb("VmHWM")
    # ru_maxrss of RUSAGE_CHILDREN is the largest peak among reaped descendants (KiB on Linux)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"own_peak_rss_kb": own, "children_peak_rss_kb": children, "peak_rss_kb": own + children}


def run_aioflow(path: str, **options: Any) -> dict[str, Any]:
    import aioflow

    base = _status_kb("VmRSS")

    async def main() -> dict[str, Any]:
        flows = 0
        t0 = time.perf_counter()
        async with aioflow.FlowParser(path, **options) as p:
            async for _flow in p.terminated():
                flows += 1
            t1 = time.perf_counter()
        info = p.info()
        info_d = dataclasses.asdict(info)
        return {
            "packets": info.packets,
            "flows": flows,
            "seconds": t1 - t0,
            # kept by the engine: the most flows held at once, which the table's memory follows
            "peak_active_flows": info.peak_active_flows,
            "info": info_d,
            "version": getattr(aioflow, "__version__", "?"),
        }

    out = asyncio.run(main())
    out["base_rss_kb"] = base
    return out


def run_aioflow_read(path: str) -> dict[str, Any]:
    """The blocking iterator for scripts: same engine, no event loop."""
    import aioflow

    base = _status_kb("VmRSS")
    flows = packets = 0
    t0 = time.perf_counter()
    for flow in aioflow.read(path):
        flows += 1
        packets += flow.packets
    return {"packets": packets, "flows": flows, "seconds": time.perf_counter() - t0, "base_rss_kb": base}


def run_aioflow_frame(path: str) -> dict[str, Any]:
    """The bulk path: one DataFrame built from the C records, no Python object per flow."""
    import pandas  # noqa: F401  (imported here so its ~0.5 s import is not timed)

    import aioflow

    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    df = aioflow.read_frame(path)
    t1 = time.perf_counter()
    return {"packets": int(df["packets"].sum()), "flows": len(df), "seconds": t1 - t0, "base_rss_kb": base}


def run_nfstream(path: str, statistics: bool = False, dissections: int = 0) -> dict[str, Any]:
    import nfstream

    base = _status_kb("VmRSS")
    flows = 0
    packets = 0
    t0 = time.perf_counter()
    # timeouts as aioflow's defaults (also nfstream's); no tunnel decoding, as aioflow does not
    streamer = nfstream.NFStreamer(
        source=path,
        decode_tunnels=False,
        n_dissections=dissections,
        statistical_analysis=statistics,
        splt_analysis=0,
        n_meters=1,
        idle_timeout=120,
        active_timeout=1800,
    )
    for flow in streamer:
        flows += 1
        packets += flow.bidirectional_packets
    t1 = time.perf_counter()
    return {
        "packets": packets,
        "flows": flows,
        "seconds": t1 - t0,
        "base_rss_kb": base,
        "version": nfstream.__version__,
    }


def run_startup(module: str) -> dict[str, Any]:
    """What a contender does before its timing starts (interpreter, imports), and nothing else: its
    instructions, taken from a run's, leave the work the run times (dissect_bench.py --callgrind)."""
    __import__(module)
    return {"packets": 0, "flows": 0, "seconds": 0.0, "base_rss_kb": _status_kb("VmRSS")}


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    runners = {
        "aioflow": run_aioflow,
        "aioflow-read": run_aioflow_read,
        "aioflow-frame": run_aioflow_frame,
        "nfstream": run_nfstream,
        "aioflow-stats": lambda p: run_aioflow(p, statistics=True),
        "aioflow-stats-splt": lambda p: run_aioflow(p, statistics=True, splt=20),
        "nfstream-stats": lambda p: run_nfstream(p, statistics=True),
        "aioflow-dissect": lambda p: run_aioflow(p, dissect=True),
        "nfstream-dissect": lambda p: run_nfstream(p, dissections=20),
        "aioflow-startup": lambda p: run_startup("aioflow"),
        "nfstream-startup": lambda p: run_startup("nfstream"),
    }
    out = runners[kind](path)
    out.update(_peaks())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
