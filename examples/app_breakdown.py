"""Bytes per application per minute: an async service that detects applications (nDPI) on a live
interface and keeps the last hours of totals in memory, bounded.

    sudo python examples/app_breakdown.py IFACE [--seconds S] [--keep-minutes N]
    python examples/app_breakdown.py [CAPTURE]      (a file: its own times; default: a bundled one)

Prints, at the end (Ctrl-C, --seconds, or the end of a file), one line per minute and application:
the minute (UTC), the application ("TLS.YouTube"), its flows' IP bytes both ways. A flow counts
in the minute it ended; active_timeout=60 makes a long flow report every minute, so its bytes
land within a minute of when they crossed. Flows arrive in batches; numpy groups each batch
(aioflow.ApplicationTotals), no Python work per packet or per flow. Needs aioflow built with nDPI
(apt install libndpi-dev).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from collections import OrderedDict
from pathlib import Path
from typing import TextIO

import anyio
import numpy as np

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
MINUTE_NS = 60 * 10**9


class AppBreakdown:
    """Totals per minute, for the last `keep_minutes` minutes that saw flows (older ones are
    dropped: memory stays bounded however long the service runs)."""

    def __init__(self, keep_minutes: int = 180) -> None:
        self.keep_minutes = keep_minutes
        self.minutes: OrderedDict[int, aioflow.ApplicationTotals] = OrderedDict()

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Adds a batch of ended flows: aioflow.application_columns(batch), from a FlowParser(dissect=True)."""
        minute = cols["last_seen_ns"] // MINUTE_NS
        for m in np.unique(minute).tolist():
            if m not in self.minutes:
                self.minutes[m] = aioflow.ApplicationTotals()
                self.minutes = OrderedDict(sorted(self.minutes.items()))
            self.minutes[m].add_columns({name: column[minute == m] for name, column in cols.items()})
        while len(self.minutes) > self.keep_minutes:
            self.minutes.popitem(last=False)

    def write(self, out: TextIO) -> None:
        """One line per minute and application, most bytes first within a minute."""
        out.write(f"{'MINUTE (UTC)':<16}  {'APPLICATION':<24}  {'BYTES':>12}\n")
        for m, totals in self.minutes.items():
            when = dt.datetime.fromtimestamp(m * 60, dt.UTC).strftime("%Y-%m-%d %H:%M")
            for row in totals.rows():
                out.write(f"{when:<16}  {row.application_name or '(not dissected)':<24}  {row.bytes:>12}\n")


async def serve(source: str, seconds: float | None, breakdown: AppBreakdown) -> aioflow.ParserInfo:
    """Reads `source` until it ends, `seconds` pass, or SIGINT/SIGTERM; returns its counters."""
    async with aioflow.FlowParser(source, dissect=True, active_timeout=60.0) as parser:
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        parser.stop()  # the active flows end ("stop") and are still counted
                        return

            async def stop_after(delay: float) -> None:
                await anyio.sleep(delay)
                parser.stop()

            tasks.start_soon(stop_on_signal)
            if parser.live:
                print(f"capturing on {source}; Ctrl-C stops", file=sys.stderr, flush=True)
            if seconds is not None:
                tasks.start_soon(stop_after, seconds)
            async for batch in parser.batches():
                breakdown.add(aioflow.application_columns(batch))
            tasks.cancel_scope.cancel()
        return parser.info()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=str(DEFAULT_CAPTURE), help="interface or capture file")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    parser.add_argument("--keep-minutes", type=int, default=180, help="minutes of totals kept (default 180)")
    args = parser.parse_args()
    breakdown = AppBreakdown(args.keep_minutes)
    try:
        anyio.run(serve, args.source, args.seconds, breakdown)
    except aioflow.AioflowError as exc:  # no nDPI, no such interface, no permission: the message says what to do
        print(f"app_breakdown: {exc}", file=sys.stderr)
        return 2
    breakdown.write(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
