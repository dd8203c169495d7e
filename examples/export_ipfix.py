"""Send a capture's flows to an IPFIX collector as they end, keeping only the flows worth it.

    python examples/export_ipfix.py [CAPTURE [HOST:PORT [MIN_BYTES]]]

Defaults: the bundled capture, 127.0.0.1:4739 (nfcapd -p 4739, or `aioflow collect`), 1000 bytes.
Each flow goes out as one IPFIX biflow record (RFC 5103: both directions' counters in it).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"


async def main(path: str, host: str, port: int, min_bytes: int) -> None:
    async with aioflow.FlowParser(path) as parser, aioflow.IPFIXExporter((host, port)) as exporter:
        # The exporter is a sink for terminated(): it buffers flows and encodes them in bulk.
        async for flow in parser.terminated():
            if flow.bytes >= min_bytes:
                await exporter.send(flow)
    # Leaving the `async with` flushed the buffer; the counters say what went out.
    s = exporter.stats
    print(f"sent {s.flows} of {parser.info().flows_ended} flows to {host}:{port}: "
          f"{s.records} records in {s.messages} datagrams ({s.octets} bytes), {s.send_errors} refused")


if __name__ == "__main__":
    capture = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE)
    host, _, port = (sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:4739").rpartition(":")
    min_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    asyncio.run(main(capture, host.strip("[]") or "127.0.0.1", int(port), min_bytes))
