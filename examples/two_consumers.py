"""Two consumers of one live parser: a logger and a JSON-lines writer (live capture, needs root).

    sudo python examples/two_consumers.py IFACE OUT.jsonl [--seconds N] [--idle-timeout S]

Each `parser.terminated()` call is a subscriber of its own, so both tasks see every ended flow.
Runs until Ctrl-C (or SIGTERM, or --seconds); then the flows still open end with reason "stop"
and reach both consumers too.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

import aioflow

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


async def log_flows(flows: AsyncIterator[aioflow.Flow]) -> None:
    async for flow in flows:
        proto = PROTOCOLS.get(flow.protocol, str(flow.protocol))
        print(
            f"ended {flow.id} {proto} {endpoint(flow.src_ip, flow.src_port)} -> "
            f"{endpoint(flow.dst_ip, flow.dst_port)} {flow.packets} packets {flow.bytes} bytes {flow.end_reason}",
            flush=True,
        )


async def write_jsonl(flows: AsyncIterator[aioflow.Flow], path: Path) -> None:
    # Plain writes: a line is small and the OS buffers it; line buffering lets `tail -f` follow.
    with path.open("w", buffering=1) as out:
        async for flow in flows:
            out.write(json.dumps(flow.to_dict()) + "\n")


async def stop_on_signal_or_timeout(parser: aioflow.FlowParser, seconds: float | None) -> None:
    # Stopping the parser (rather than cancelling everything) flushes the open flows to both
    # consumers, and their streams then end: nothing in flight is lost on Ctrl-C.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        with anyio.move_on_after(seconds if seconds is not None else float("inf")):
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
                break
    parser.stop()


async def main(iface: str, out: Path, seconds: float | None, idle_timeout: float) -> None:
    async with aioflow.FlowParser(iface, idle_timeout=idle_timeout) as parser:
        # Both subscriptions are taken before any await, so both see exactly the same flows.
        to_log, to_file = parser.terminated(), parser.terminated()
        print(f"capturing on {iface}; Ctrl-C stops", file=sys.stderr, flush=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signal_or_timeout, parser, seconds)
            async with anyio.create_task_group() as consumers:
                consumers.start_soon(log_flows, to_log)
                consumers.start_soon(write_jsonl, to_file, out)
            tg.cancel_scope.cancel()  # both streams ended (the capture stopped): no signal to wait for
        info = parser.info()
    print(f"{info.flows_ended} flows, {info.packets} packets, {info.flows_dropped} dropped", file=sys.stderr)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("iface", metavar="IFACE", help="network interface, e.g. eth0")
    cli.add_argument("out", metavar="OUT.jsonl", type=Path, help="JSON lines file, one Flow.to_dict() a line")
    cli.add_argument("--seconds", type=float, help="stop after N seconds (default: run until Ctrl-C)")
    cli.add_argument("--idle-timeout", type=float, default=120.0, help="seconds (default 120)")
    cli.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = cli.parse_args()
    anyio.run(main, args.iface, args.out, args.seconds, args.idle_timeout, backend=args.backend)
