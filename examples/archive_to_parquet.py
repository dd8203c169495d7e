"""A directory of captures to a Parquet dataset on a Dask cluster, then the top talkers by DuckDB.

    python examples/archive_to_parquet.py [DIRECTORY [OUT_DIR [SCHEDULER]]]

DIRECTORY's *.pcap and *.pcapng files (default: examples/data) are read one task per capture
(aioflow.dask.to_parquet) and written to OUT_DIR (default: a new temporary directory), partitioned
by protocol; then DuckDB reads the dataset. SCHEDULER: a Dask scheduler's address
(tcp://HOST:8786) whose workers see the same paths; without it, a LocalCluster of two worker
processes on this machine. Needs the `dask` extra and duckdb
(`pip install 'aioflow-pcap[dask]' duckdb`).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

import aioflow
import aioflow.dask

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "data"


@contextlib.contextmanager
def dask_client(scheduler: str | None) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with cluster, Client(cluster) as client:
            yield client


def main(directory: Path, out_dir: Path, scheduler: str | None, top: int = 10) -> None:
    captures = sorted(p for p in directory.iterdir() if p.suffix in (".pcap", ".pcapng"))
    with dask_client(scheduler), warnings.catch_warnings():
        warnings.simplefilter("ignore", aioflow.CaptureDamagedWarning)  # said below, one line per capture
        written = aioflow.dask.to_parquet(captures, out_dir, partition_on=["protocol"])
    for w in written:
        if w.damage:
            print(f"damaged, flows before the damage kept: {w.damage}")
    print(f"{sum(w.flows for w in written)} flows from {len(written)} captures in {out_dir}")

    # A flow is two-way: its src sent src2dst_bytes and its dst sent dst2src_bytes.
    talkers = duckdb.connect().execute(f"""
        WITH flows AS (SELECT * FROM read_parquet('{out_dir}/**/*.parquet', hive_partitioning = true)),
             sent AS (SELECT src_ip AS host, src2dst_bytes AS bytes, capture FROM flows
                      UNION ALL SELECT dst_ip, dst2src_bytes, capture FROM flows)
        SELECT host, sum(bytes) AS sent, count(DISTINCT capture) AS captures FROM sent
        GROUP BY host HAVING sum(bytes) > 0 ORDER BY sent DESC, host LIMIT {top}
    """).fetchall()
    print(f"{'host':<40} {'bytes sent':>12} {'captures':>9}")
    for host, sent, in_captures in talkers:
        print(f"{host:<40} {int(sent):>12} {in_captures:>9}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        Path(args[0]) if args else DEFAULT_DIRECTORY,
        Path(args[1]) if len(args) > 1 else Path(tempfile.mkdtemp(prefix="flows-")),
        args[2] if len(args) > 2 else None,
    )
