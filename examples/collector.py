"""A NetFlow/IPFIX collector printing the top talkers every few seconds.

    python examples/collector.py [[HOST]:PORT [SECONDS]]

Defaults: 0.0.0.0:2055, a report every 5 seconds (when records came in); Ctrl-C prints the last one.
Try it with aioflow's exporter: `aioflow export examples/data/ndpi_telegram_videocall.pcapng --to :2055`.
A host's bytes sent count both directions of IPFIX biflow records (RFC 5103 reverse counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter

import aioflow

sent_bytes: Counter[str] = Counter()
sent_packets: Counter[str] = Counter()
per_exporter: Counter[str] = Counter()


def report() -> None:
    exporters = ", ".join(f"{host}: {n}" for host, n in per_exporter.most_common())
    print(f"[{time.strftime('%H:%M:%S')}] {per_exporter.total()} records from {len(per_exporter)} exporters "
          f"({exporters})")  # fmt: skip
    print(f"  {'host':<39} {'bytes sent':>12} {'packets':>9}")
    for host, octets in sent_bytes.most_common(10):
        print(f"  {host:<39} {octets:>12} {sent_packets[host]:>9}")
    print(flush=True)


async def reporter(every: float) -> None:
    reported = 0
    while True:
        await asyncio.sleep(every)
        if per_exporter.total() != reported:
            reported = per_exporter.total()
            report()


async def main(host: str, port: int, every: float) -> None:
    print(f"collecting on {host}:{port} (Ctrl-C to stop)", flush=True)
    task = asyncio.create_task(reporter(every))
    try:
        # aclosing: the collector's socket is closed as soon as the loop ends, even by Ctrl-C.
        async with contextlib.aclosing(aioflow.collect((host, port))) as records:
            async for record in records:
                exporter = record.exporter  # (host, port) of the datagram's sender
                per_exporter[exporter[0] if isinstance(exporter, tuple) else str(exporter)] += 1
                sent_bytes[record.src_ip] += record.bytes or 0
                sent_packets[record.src_ip] += record.packets or 0
                if record.reverse_bytes:  # a biflow: the destination's side of the conversation
                    sent_bytes[record.dst_ip] += record.reverse_bytes
                    sent_packets[record.dst_ip] += record.reverse_packets or 0
    finally:
        task.cancel()
        report()


if __name__ == "__main__":
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "0.0.0.0:2055").rpartition(":")
    every = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(host.strip("[]") or "0.0.0.0", int(port), every))
