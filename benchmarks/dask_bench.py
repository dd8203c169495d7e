"""aioflow.dask against a single-process loop over the same captures, in alternated rounds.

A directory of N synthetic captures (make_capture.py, seeds 1..N) is read two ways, each round
one after the other (which goes first alternates):

- frame:   `[read_frame(c) for c in captures]` in this process, against
           `read_flows(captures).map_partitions(len).compute()` on a LocalCluster of W worker
           processes (one thread each): the frames stay on the workers, only counts come back;
- parquet: aioflow.dask.to_parquet(captures, DIR) on Dask's synchronous scheduler (this process,
           one capture after the other: the loop) against the same call on the cluster.

With --shares-capture PATH, one capture read with statistics=True by read_frame in this process
against read_flows(PATH, shares_per_capture=W) on the cluster: W tasks, each reading the whole
file and counting 1/W of its flows (flow_share).

Then the per-partition overhead: the same on N captures of a few packets each, where reading costs
next to nothing: the workers' CPU seconds less the loop's, divided by N (the workers' count also
holds their own background work: heartbeats, the event loop). Each round prints wall and CPU
seconds; the ratio is the median of each round's loop/dask (a pair runs back to back, under the
same load). The cluster is started once (its start-up time is printed apart) and warmed up by one
untimed round.

    .venv/bin/python benchmarks/dask_bench.py                       # 16 captures of 100k packets, 2 workers
    nice .venv/bin/python benchmarks/dask_bench.py --packets 50000 --rounds 3
    .venv/bin/python benchmarks/dask_bench.py --shares-capture /work/bench-data/1m.pcap
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
from distributed import Client, LocalCluster, get_client
from make_capture import load_or_make

import aioflow
import aioflow.dask as afd

HERE = Path(__file__).resolve().parent


def captures(directory: Path, count: int, packets: int, flows: int) -> list[Path]:
    """`count` captures of `packets` packets and `flows` flows each (made once, then reused)."""
    paths = [directory / f"dask-{packets}-{flows}-{seed}.pcap" for seed in range(1, count + 1)]
    for seed, path in enumerate(paths, 1):
        load_or_make(path, packets=packets, flows=flows, seed=seed, span=60.0)
    return paths


def timed(run: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    """Wall seconds of run() and the CPU seconds `cpu` counted meanwhile."""
    start, cpu_start = time.perf_counter(), cpu()
    run()
    return time.perf_counter() - start, cpu() - cpu_start


def workers_cpu() -> float:
    """CPU seconds of every worker process so far (read_frame's reading thread included)."""
    return float(sum(get_client().run(time.process_time).values()))


def compare(name: str, rounds: int, loop: Callable[[], object], cluster: Callable[[], object]) -> tuple[float, float]:
    """Alternated rounds of each, printed as they come with the CPU seconds (this process's for
    the loop, the workers' for dask; CPU / wall = cores kept busy); returns the median CPU seconds."""
    times: dict[str, list[tuple[float, float]]] = {"loop": [], "dask": []}
    for r in range(rounds):
        order = [("loop", loop, time.process_time), ("dask", cluster, workers_cpu)]
        for label, run, cpu in order if r % 2 == 0 else order[::-1]:
            times[label].append(timed(run, cpu))
        (lw, lc), (dw, dc) = times["loop"][-1], times["dask"][-1]
        print(f"  {name} round {r + 1}: loop {lw:.2f} s ({lc:.2f} s CPU), dask {dw:.2f} s ({dc:.2f} s CPU)", flush=True)
    loop_s = statistics.median(w for w, _ in times["loop"])
    dask_s = statistics.median(w for w, _ in times["dask"])
    # the ratio of each round's pair (run back to back, so under the same load), then their median
    ratio = statistics.median(lw / dw for (lw, _), (dw, _) in zip(times["loop"], times["dask"], strict=True))
    loop_cpu = statistics.median(c for _, c in times["loop"])
    dask_cpu = statistics.median(c for _, c in times["dask"])
    print(f"{name}: loop {loop_s:.2f} s ({loop_cpu:.2f} s CPU), dask {dask_s:.2f} s ({dask_cpu:.2f} s CPU), "
          f"medians of {rounds}; loop/dask per round, median: {ratio:.2f}x")  # fmt: skip
    return loop_cpu, dask_cpu


def workloads(paths: list[Path], out: Path) -> tuple[Callable[[], object], ...]:
    """frame loop, frame on the cluster, parquet loop, parquet on the cluster."""

    def frame_loop() -> int:
        return sum(len(aioflow.read_frame(p)) for p in paths)

    def frame_dask() -> int:
        return int(afd.read_flows(paths).map_partitions(len).compute().sum())

    def parquet_loop() -> object:
        with dask.config.set(scheduler="sync"):
            return afd.to_parquet(paths, out / "loop", partition_on=["protocol"])

    def parquet_dask() -> object:
        return afd.to_parquet(paths, out / "dask", partition_on=["protocol"])

    return frame_loop, frame_dask, parquet_loop, parquet_dask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=16)
    ap.add_argument("--packets", type=int, default=100_000, help="packets per capture")
    ap.add_argument("--flows", type=int, default=6_000, help="flows per capture")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=HERE / "data", help="where the captures are made")
    ap.add_argument("--shares-capture", type=Path, help="also one capture, statistics on, split in shares")
    args = ap.parse_args(argv)

    paths = captures(args.dir, args.captures, args.packets, args.flows)
    tiny = captures(args.dir, args.captures, 40, 4)
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} captures of {args.packets:,} packets ({size / 1e6:.0f} MB in all), "
          f"{args.workers} workers", flush=True)  # fmt: skip
    start = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster), tempfile.TemporaryDirectory() as tmp:
            print(f"cluster start: {time.perf_counter() - start:.2f} s", flush=True)
            out = Path(tmp)
            frame_loop, frame_dask, parquet_loop, parquet_dask = workloads(paths, out)
            frame_dask()  # warm-up: the workers import aioflow, pandas, pyarrow
            assert frame_loop() == frame_dask()
            compare("frame", args.rounds, frame_loop, frame_dask)
            compare("parquet", args.rounds, parquet_loop, parquet_dask)
            if args.shares_capture:
                one = args.shares_capture
                shares = afd.read_flows(one, shares_per_capture=args.workers, statistics=True)
                compare(f"{one.name} in {args.workers} shares, statistics", args.rounds,
                        lambda: len(aioflow.read_frame(one, statistics=True)),
                        lambda: int(shares.map_partitions(len).compute().sum()))  # fmt: skip
            tiny_loop, tiny_dask, _, _ = workloads(tiny, out)
            loop_cpu, dask_cpu = compare(f"{len(tiny)} tiny captures", args.rounds, tiny_loop, tiny_dask)
            # CPU rather than wall: on a shared machine the wall clock mostly measures the others' load
            print(f"CPU per capture of a few packets: dask workers {dask_cpu / len(tiny) * 1e3:.1f} ms, "
                  f"loop {loop_cpu / len(tiny) * 1e3:.1f} ms; overhead per partition "
                  f"{(dask_cpu - loop_cpu) / len(tiny) * 1e3:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
