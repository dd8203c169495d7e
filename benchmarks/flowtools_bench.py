"""flow-tools file reading speed: records per second from a zlib-compressed v5 file, on one core.

A file of N v5 records (the records of the bundled flow-capture file, repeated; zlib level 6 as
flow-capture -z 6 writes) is read three ways:
  bulk     - FlowSet.batches(): inflate + one numpy structured array per chunk (no per-record work)
  columns  - FlowSet.iter_columns(): bulk + every column by pyflowtools' names, first/last as Unix time
  records  - iterating FlowSet: one FlowRecord per record reading srcaddr, dPkts, dOctets and first

    .venv/bin/python benchmarks/flowtools_bench.py [--records N] [--mode bulk|columns|records|all]

The wall-clock figures mean something only on a quiet machine. Under load, count instructions:
    valgrind --tool=callgrind .venv/bin/python benchmarks/flowtools_bench.py --records 200000 --mode bulk
and subtract a --records 0 run (interpreter start-up, the file's creation is outside the timed part
but inside callgrind's count: use --file to read a file made beforehand).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from aioflow.netflow import FlowSet

SOURCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "flowtools" / "capture-softflowd-v5.ft"


def make_file(path: Path, records: int) -> None:
    """`records` v5 records, zlib-compressed, little-endian (flow-capture's defaults)."""
    one = next(FlowSet(SOURCE).batches())
    block = type(one)(5, "bench", 0, one.template, 0, None, 0, np.resize(one.array, 65536))
    with FlowSet(path, "w", version=5, compress=True) as out:
        left = records
        while left > 0:
            n = min(left, 65536)
            if n < 65536:
                block = type(one)(5, "bench", 0, one.template, 0, None, 0, block.array[:n])
            out.write_batch(block)
            left -= n


def read(path: Path, mode: str) -> int:
    n = 0
    if mode == "bulk":
        for rs in FlowSet(path).batches():
            n += len(rs)
    elif mode == "columns":
        for columns in FlowSet(path).iter_columns():
            n += len(columns["first"])
    else:
        for r in FlowSet(path):
            _ = (r.srcaddr, r.dPkts, r.dOctets, r.first)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--mode", choices=("bulk", "columns", "records", "all"), default="all")
    ap.add_argument("--file", type=Path, help="read this flow-tools file instead of making one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.file
        if path is None:
            path = Path(folder) / "bench.ft"
            make_file(path, args.records)
        modes = ("bulk", "columns", "records") if args.mode == "all" else (args.mode,)
        for mode in modes:
            start = time.perf_counter()
            n = read(path, mode)
            took = time.perf_counter() - start
            rate = n / took if took > 0 else float("inf")
            print(f"{mode:8} {n} records in {took:.3f} s: {rate / 1e6:.2f} M records/s")


if __name__ == "__main__":
    main()
