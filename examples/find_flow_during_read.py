"""Look a flow up by its 5-tuple while the capture is still being read, then see how it ended.

    python examples/find_flow_during_read.py [CAPTURE [SRC_IP SRC_PORT DST_IP DST_PORT [tcp|udp]]]

Without a 5-tuple it follows the largest TCP connection of the bundled capture.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
DEFAULT_KEY = ("192.168.12.169", 37950, "149.154.167.91", 443, "tcp")
PROTOCOLS = {"tcp": 6, "udp": 17}

Key = tuple[str, int, str, int, str]


async def watch(parser: aioflow.FlowParser, key: Key) -> None:
    """Poll find_flow until the flow shows up, then take a snapshot of every active flow."""
    src_ip, src_port, dst_ip, dst_port, protocol = key
    while not parser.info().finished:
        flow = await parser.find_flow(src_ip, src_port, dst_ip, dst_port, protocol=protocol)
        if flow is not None:
            info = parser.info()
            print(f"found during the read ({info.progress:.0%} of the file, {info.packets} packets read): "
                  f"{flow.packets} packets, {flow.bytes} bytes so far")
            active = await parser.snapshot()
            biggest = max(active, key=lambda f: f.bytes)
            print(f"snapshot: {len(active)} active flows, the biggest {biggest.src_ip}:{biggest.src_port} -> "
                  f"{biggest.dst_ip}:{biggest.dst_port} with {biggest.bytes} bytes")
            return
        # Yield so the reader can go on; a lookup is cheap but must not starve it.
        await asyncio.sleep(0.001)
    # The reader takes thousands of packets per step, so a small file is read before a lookup.
    print(f"the whole file ({parser.info().packets} packets) was read before the flow was looked up; "
          "on a larger capture the lookup sees the flow while it is still open")


def matches(flow: aioflow.Flow, key: Key) -> bool:
    src_ip, src_port, dst_ip, dst_port, protocol = key
    ends = {(flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port)}
    return flow.protocol == PROTOCOLS[protocol] and ends == {(src_ip, src_port), (dst_ip, dst_port)}


async def main(path: str, key: Key) -> None:
    packets = 0
    records = 0
    async with aioflow.FlowParser(path) as parser:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(watch(parser, key))
            async for flow in parser.terminated():
                if matches(flow, key):
                    # More than one record when active_timeout splits a long flow.
                    packets += flow.packets
                    records += 1
                    print(f"ended ({flow.end_reason}): {flow.packets} packets, {flow.bytes} bytes, "
                          f"{flow.duration:.3f}s")
    if records:
        print(f"total: {packets} packets in {records} record(s)")
    else:
        print("no such flow in this capture")


if __name__ == "__main__":
    argv = sys.argv[1:]
    capture = argv[0] if argv else str(DEFAULT_CAPTURE)
    key: Key = DEFAULT_KEY
    if len(argv) >= 5:
        key = (argv[1], int(argv[2]), argv[3], int(argv[4]), argv[5] if len(argv) > 5 else "tcp")
    asyncio.run(main(capture, key))
