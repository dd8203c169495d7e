"""workers=1 against workers=N on the same capture, alternated (README "Several cores").

Each round reads the capture once with each worker count, in turn (so a machine whose load
changes affects both alike), through aioflow's bulk path (read_batches: the batches are taken
and dropped, nothing per flow in Python). Prints packets per second per run, the median of each
and their ratio, for flows alone, with statistics and dissection on, and with reassembly.

    nice python benchmarks/make_capture.py --packets 1000000 --flows 60000 -o /tmp/1m.pcap
    nice python benchmarks/workers_bench.py /tmp/1m.pcap --rounds 3 --workers 2

The figure says how much a second worker helps on *this* machine as loaded now: on a 2-core
machine that other jobs share it is a lower bound, and never a test's assertion.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aioflow._engine import dissect_unavailable
from aioflow._read import read_batches

SETS: dict[str, dict[str, Any]] = {
    "flows": {},
    "statistics+dissect": {"statistics": True, **({"dissect": True} if not dissect_unavailable() else {})},
    "reassembly": {"reassemble": True},
}


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return use.ru_utime + use.ru_stime


def one_run(path: Path, workers: int, read_ahead: bool | None, options: dict[str, Any]) -> tuple[float, float, int]:
    """Wall seconds to read the capture, CPU seconds of all threads, and the packets it counted."""
    stats: dict[str, Any] = {}
    started, cpu = time.perf_counter(), _cpu()
    for _ in read_batches(path, workers=workers, read_ahead=read_ahead, stats_out=stats, **options):
        pass
    return time.perf_counter() - started, _cpu() - cpu, int(stats["packets_read"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path)
    ap.add_argument("--workers", type=int, default=2, help="compared with 1 (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--read-ahead",
        choices=("on", "off"),
        help="force read_ahead (default: aioflow's choice: "
        "off for one worker on <= 2 CPUs, on for several: their one shared reading thread)",
    )
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    args = ap.parse_args(argv)
    for name in args.sets:
        rates: dict[int, list[float]] = {1: [], args.workers: []}
        cpus: dict[int, list[float]] = {1: [], args.workers: []}
        for r in range(args.rounds):
            for w in rates:
                read_ahead = None if args.read_ahead is None else args.read_ahead == "on"
                seconds, cpu, packets = one_run(args.capture, w, read_ahead, SETS[name])
                rates[w].append(packets / seconds)
                cpus[w].append(cpu)
                print(f"{name:20} round {r + 1} workers={w}: {packets / seconds:12,.0f} packets/s "
                      f"({seconds:.2f} s, {cpu:.2f} CPU s)")  # fmt: skip
        one, many = (statistics.median(rates[w]) for w in rates)
        print(f"{name:20} median workers=1 {one:,.0f} p/s, workers={args.workers} {many:,.0f} p/s: x{many / one:.2f}")
        cpu_one, cpu_many = (statistics.median(cpus[w]) for w in cpus)
        print(f"{name:20} median CPU s workers=1 {cpu_one:.2f}, workers={args.workers} {cpu_many:.2f}: "
              f"x{cpu_many / cpu_one:.2f} (the work workers add, whatever the load)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
