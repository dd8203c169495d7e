"""dissect=True against flow-only aioflow (and nfstream's default dissect=True, when installed) on
one capture, alternated runs; for a quiet machine (the shared development machine's wall clock
says nothing). Prints packets per second per run.

    .venv/bin/python benchmarks/dissect_bench.py CAPTURE [--runs 5]
"""

from __future__ import annotations

import argparse
import time

import aioflow


def _aioflow(capture: str, dissect: bool) -> tuple[float, int]:
    start = time.perf_counter()
    frame = aioflow.read_frame(capture, dissect=dissect)
    return time.perf_counter() - start, int(frame["packets"].sum())


def _nfstream(capture: str) -> tuple[float, int] | None:
    try:
        from nfstream import NFStreamer  # type: ignore[import-not-found]
    except ImportError:
        return None
    start = time.perf_counter()
    packets = sum(f.bidirectional_packets for f in NFStreamer(source=capture))  # dissect=True is its default
    return time.perf_counter() - start, packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for run in range(args.runs):  # alternated: a machine's drift hits each contender alike
        for dissect in (False, True):
            seconds, packets = _aioflow(args.capture, dissect)
            print(f"run {run} aioflow dissect={dissect}: {packets / seconds:,.0f} packets/s")
        nf = _nfstream(args.capture)
        if nf is not None:
            print(f"run {run} nfstream (dissect=True): {nf[1] / nf[0]:,.0f} packets/s")


if __name__ == "__main__":
    main()
