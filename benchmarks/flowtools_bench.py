"""flow-tools file reading speed: records per second from a zlib-compressed v5 file, on one core.

A file of N v5 records (the records of the bundled flow-capture file, repeated with their varying
fields drawn at random so it compresses as a real archive; zlib level 6 as flow-capture -z 6 writes) is read five ways:
  bulk     - FlowSet.batches(): inflate + one numpy structured array per chunk (no per-record work)
  columns  - FlowSet.iter_columns(): bulk + every column by pyflowtools' names, first/last as Unix time
  frame    - FlowSet.to_frame(): the whole file as one pandas DataFrame (those columns)
  arrow    - FlowSet.to_arrow(): the whole file as one pyarrow Table
  records  - iterating FlowSet: one FlowRecord per record reading srcaddr, dPkts, dOctets and first

    .venv/bin/python benchmarks/flowtools_bench.py [--records N] [--mode MODE|all] [--rounds R]

Each mode is run --rounds times (default 3); the best and the median round are printed.

The wall-clock figures mean something only on a quiet machine. Under load, count instructions:
    valgrind --tool=callgrind .venv/bin/python benchmarks/flowtools_bench.py --records 200000 --mode bulk
and subtract a --records 0 run (interpreter start-up, the file's creation is outside the timed part
but inside callgrind's count: use --file to read a file made beforehand).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aioflow.netflow import FlowSet

MODES = ("bulk", "columns", "frame", "arrow", "records")
SOURCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "flowtools" / "capture-softflowd-v5.ft"


def make_file(path: Path, records: int) -> None:
    """`records` v5 records, zlib-compressed, little-endian (flow-capture's defaults): the bundled
    flow-capture file's records, repeated with their varying fields drawn at random (seeded), so the
    file compresses about as a real archive does (the bundled one: 3.5x), not as a repeated block."""
    one = next(FlowSet(SOURCE).batches())
    rng = np.random.default_rng(0)
    with FlowSet(path, "w", version=5, compress=True) as out:
        done = 0
        while done < records:
            n = min(records - done, 65536)
            block = np.resize(one.array, n).copy()
            secs = 1_700_000_000 + (done + np.arange(n)) // 2000  # 2000 flows a second
            block["unix_secs"] = secs
            block["unix_nsecs"] = np.repeat(rng.integers(0, 10**9, n // 30 + 1), 30)[:n]  # one per datagram
            block["sysUpTime"] = (secs - 1_699_000_000) * 1000
            block["sourceIPv4Address"] ^= rng.integers(0, 1 << 12, n, dtype=np.uint32)
            block["destinationIPv4Address"] ^= rng.integers(0, 1 << 8, n, dtype=np.uint32)
            block["sourceTransportPort"] = rng.integers(1024, 65536, n)
            packets = rng.geometric(0.1, n).astype(np.uint32)
            block["packetDeltaCount"] = packets
            block["octetDeltaCount"] = packets * rng.integers(40, 1500, n, dtype=np.uint32)
            block["flowEndSysUpTime"] = block["sysUpTime"] - rng.integers(0, 30_000, n, dtype=np.uint32)
            block["flowStartSysUpTime"] = block["flowEndSysUpTime"] - rng.integers(0, 60_000, n, dtype=np.uint32)
            out.write_batch(type(one)(5, "bench", 0, one.template, 0, None, 0, block))
            done += n


def read(path: Path, mode: str) -> int:
    n = 0
    if mode == "bulk":
        for rs in FlowSet(path).batches():
            n += len(rs)
    elif mode == "columns":
        for columns in FlowSet(path).iter_columns():
            n += len(columns["first"])
    elif mode == "frame":
        n = len(FlowSet(path).to_frame())
    elif mode == "arrow":
        n = FlowSet(path).to_arrow().num_rows
    else:
        for r in FlowSet(path):
            _ = (r.srcaddr, r.dPkts, r.dOctets, r.first)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--mode", choices=(*MODES, "all"), default="all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--file", type=Path, help="read this flow-tools file instead of a temporary one (made first, of "
                    "--records records, when it does not exist: keep it for callgrind runs)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.file or Path(folder) / "bench.ft"
        if not path.exists():
            make_file(path, args.records)
        modes = MODES if args.mode == "all" else (args.mode,)
        if {"frame", "arrow"} & set(modes):  # their libraries' import is not reading: outside the timing
            import pandas  # noqa: F401
            import pyarrow  # noqa: F401
        for mode in modes:
            times = []
            for _ in range(max(1, args.rounds)):
                start = time.perf_counter()
                n = read(path, mode)
                times.append(time.perf_counter() - start)
            best, median = min(times), statistics.median(times)
            print(f"{mode:8} {n} records: best {best:.3f} s = {n / best / 1e6:.2f} M records/s, "
                  f"median {median:.3f} s = {n / median / 1e6:.2f} M records/s ({len(times)} rounds)")


if __name__ == "__main__":
    main()
