"""Print one line per flow as flows end, with the async API.

    python examples/async_consumer.py [CAPTURE]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def main(path: str) -> None:
    async with aioflow.FlowParser(path) as parser:
        # Every flow comes out exactly once, when it ends; the end of the file flushes the rest.
        async for flow in parser.terminated():
            proto = PROTOCOLS.get(flow.protocol, str(flow.protocol))
            print(
                f"{proto:5} {endpoint(flow.src_ip, flow.src_port)} -> {endpoint(flow.dst_ip, flow.dst_port)}"
                f"  {flow.packets} packets  {flow.bytes} bytes  {flow.duration:.3f}s  {flow.end_reason}"
            )
        info = parser.info()
    print(f"{info.flows_ended} flows from {info.packets} packets")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE)))
