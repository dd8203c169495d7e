"""Every ten seconds, print the id of each active flow faster than 1 KB/s (live capture, needs root).

    sudo python examples/fast_flows.py IFACE [--period S] [--min-rate BYTES_PER_S] [--count N]

Each line: flow id, protocol, endpoints and the flow's average rate since it began.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import anyio

import aioflow

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def main(iface: str, period: float, min_rate: float, count: int | None) -> None:
    async with aioflow.FlowParser(iface) as parser:
        print(f"capturing on {iface}: flows faster than {min_rate:g} B/s every {period:g} s", file=sys.stderr)
        for _ in itertools.count() if count is None else range(count):
            await anyio.sleep(period)
            # snapshot(): copies of the active flows at one instant; rates are over each flow's life
            for flow in await parser.snapshot():
                if flow.bytes_per_second > min_rate:
                    proto = PROTOCOLS.get(flow.protocol, str(flow.protocol))
                    print(
                        f"{flow.id} {proto} {endpoint(flow.src_ip, flow.src_port)} -> "
                        f"{endpoint(flow.dst_ip, flow.dst_port)} {flow.bytes_per_second:.0f} B/s",
                        flush=True,  # a pipe would otherwise hold the lines back
                    )


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("iface", metavar="IFACE", help="network interface, e.g. eth0")
    cli.add_argument("--period", type=float, default=10.0, help="seconds between reports (default 10)")
    cli.add_argument("--min-rate", type=float, default=1000.0, help="bytes per second (default 1000)")
    cli.add_argument("--count", type=int, help="stop after N reports (default: run until Ctrl-C)")
    cli.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = cli.parse_args()
    try:
        anyio.run(main, args.iface, args.period, args.min_rate, args.count, backend=args.backend)
    except* KeyboardInterrupt:  # except*: under trio it can come wrapped in a task group's exception group
        pass  # Ctrl-C is how this example ends
