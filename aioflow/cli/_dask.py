"""``aioflow flows --dask ADDRESS CAPTURES... --format parquet -o DIR``: many captures to a Parquet
dataset on a Dask cluster (aioflow.dask.to_parquet), or on a LocalCluster with ``--dask local``."""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import aioflow

from ._common import EXIT_DAMAGED, CommandError, parser_options


@contextlib.contextmanager
def _client(address: str) -> Iterator[Any]:
    """A distributed Client of the scheduler at `address`, or of a new LocalCluster for "local"
    (closed on leaving: its worker processes end with the command)."""
    from distributed import Client, LocalCluster

    if address == "local":
        # a process per usable CPU, one thread each: building a frame's columns holds the GIL
        cpus = len(os.sched_getaffinity(0))
        cluster = LocalCluster(n_workers=cpus, threads_per_worker=1, dashboard_address=None)
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address)
    except (OSError, TimeoutError) as exc:
        raise CommandError(f"--dask {address}: cannot reach the Dask scheduler ({exc}); start one with "
                           "`dask scheduler` and workers with `dask worker ADDRESS`, or use --dask local") from None
    with client:
        yield client


def run(args: argparse.Namespace, err: TextIO) -> int:
    """Writes the flows of args.source (paths or globs) to the dataset args.output on the cluster
    of args.dask; a summary to `err`. 0, or EXIT_DAMAGED after one line per damaged capture (its
    flows before the damage were written)."""
    if args.format != "parquet" or args.output is None:
        raise CommandError("--dask writes a Parquet dataset: give --format parquet -o DIRECTORY")
    try:
        import distributed  # noqa: F401  (aioflow.dask runs without it; --dask needs its Client)

        import aioflow.dask as afd
    except ImportError as exc:
        raise CommandError(f"--dask needs the 'dask' extra: pip install 'aioflow-pcap[dask]' ({exc})") from None
    options = parser_options(args)
    # the captures and options checked before a cluster is started or reached (a graph is built, not run)
    shares = args.shares_per_capture
    afd.read_flows(args.source, shares_per_capture=shares, **options)
    with _client(args.dask) as client, warnings.catch_warnings():
        # each damaged capture is said below, once, in the commands' own words
        warnings.simplefilter("ignore", aioflow.CaptureDamagedWarning)
        written = afd.to_parquet(args.source, args.output, partition_on=args.partition_on, shares_per_capture=shares,
                                 **options)  # fmt: skip
        workers = len(client.nthreads())
    flows = sum(w.flows for w in written)
    packets = sum(w.packets for w in written)
    err.write(f"aioflow: {args.output}: {flows} flows ({packets} packets) from {len(written)} captures, "
              f"{workers} Dask workers\n")  # fmt: skip
    damaged = [w for w in written if w.damage]
    for w in damaged:
        err.write(f"aioflow: error: {w.damage}\n")
    return EXIT_DAMAGED if damaged else 0
