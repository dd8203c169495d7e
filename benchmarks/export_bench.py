"""Does the exporter keep up with the engine? Times, on one synthetic capture:

1. the engine alone: FlowParser read batch by batch as exporter.run() does, and with a Flow object
   per flow as `async for flow in parser.terminated()` does (flows per second);
2. each encoder alone (NetFlow v5, v9, IPFIX biflow) over all the capture's flow records, in the
   engine's batch size: records and flows per second, one core;
3. the whole path: FlowParser + `exporter.run(parser)` sending UDP to a local socket, per format,
   and the IPFIX file and Parquet writers; the ratio to (1, batches) says whether export slows the
   parse.

    .venv/bin/python benchmarks/export_bench.py                # 2M packets, 200k flows
    .venv/bin/python benchmarks/export_bench.py --quick        # 300k packets, 30k flows
    .venv/bin/python benchmarks/export_bench.py --capture FILE
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

import aioflow
from aioflow._frame import RECORD_DTYPE
from aioflow._read import read_batches
from aioflow.export import EXPORTERS, IPFIXFileWriter, ParquetWriter
from aioflow.netflow._encode import encoder_for

HERE = Path(__file__).resolve().parent
BATCH = 8192  # the engine's batch size (aioflow._parser.BATCH_RECORDS)


def capture_for(args: argparse.Namespace) -> Path:
    if args.capture:
        return Path(args.capture)
    packets, flows = (300_000, 30_000) if args.quick else (2_000_000, 200_000)
    out = HERE / "data" / f"synth-{packets}p-{flows}f-s1.pcap"
    if not out.exists():
        subprocess.run([sys.executable, str(HERE / "make_capture.py"), str(out), "--packets", str(packets),
                        "--flows", str(flows), "--seed", "1"], check=True)  # fmt: skip
    return out


def best(runs: int, fn: Any) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def parse_only(path: Path) -> int:
    n = 0
    async with aioflow.FlowParser(path) as parser:
        async for _ in parser.terminated():
            n += 1
    return n


async def parse_batches(path: Path) -> int:
    n = 0
    async with aioflow.FlowParser(path) as parser:
        async for batch in parser.batches():  # what exporter.run() reads: no Flow objects
            n += batch.count
    return n


async def parse_and_export(path: Path, make_sink: Any) -> int:
    async with aioflow.FlowParser(path) as parser, make_sink() as sink:
        await sink.run(parser)
    return int(sink.stats.flows) if hasattr(sink, "stats") else int(sink.rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", help="an existing capture (default: a generated one)")
    ap.add_argument("--quick", action="store_true", help="a small generated capture")
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    path = capture_for(args)
    results: dict[str, Any] = {"capture": str(path)}

    records = np.concatenate([np.frombuffer(b.raw_records(), RECORD_DTYPE).copy() for b in read_batches(path)])
    flows = len(records)
    results["flows"] = flows
    print(f"capture: {path} ({flows} flows)")

    engine = best(args.repeat, lambda: anyio.run(parse_only, path))
    results["engine_flows_seconds"] = engine
    print(f"{'engine + a Flow object per flow':44} {engine:7.3f} s  {flows / engine / 1e3:8.0f} k flows/s")
    engine = best(args.repeat, lambda: anyio.run(parse_batches, path))
    results["engine_batches_seconds"] = engine
    print(f"{'engine alone (batches, as run() reads them)':44} {engine:7.3f} s  {flows / engine / 1e3:8.0f} k flows/s")

    for fmt in ("v5", "v9", "ipfix"):
        out: dict[str, int] = {}

        def encode(fmt: str = fmt, out: dict[str, int] = out) -> None:
            encoder = encoder_for(fmt)
            for start in range(0, flows, BATCH):
                encoder.encode(records[start : start + BATCH])
            out.update(encoder.stats.as_dict())

        seconds = best(args.repeat, encode)
        results[f"encode_{fmt}"] = {"seconds": seconds, **out}
        print(f"{'encode ' + fmt + ' (one core)':44} {seconds:7.3f} s  {flows / seconds / 1e3:8.0f} k flows/s"
              f"  {out['records'] / seconds / 1e3:8.0f} k records/s  {out['messages']} datagrams")  # fmt: skip

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink, tempfile.TemporaryDirectory() as tmp:
        sink.bind(("127.0.0.1", 0))  # nobody reads it: the kernel drops what overflows, sends still succeed
        address = sink.getsockname()
        makers: dict[str, Any] = {fmt: (lambda fmt=fmt: EXPORTERS[fmt](address)) for fmt in ("v5", "v9", "ipfix")}
        makers["ipfix file"] = lambda: IPFIXFileWriter(Path(tmp) / "flows.ipfix")
        makers["parquet"] = lambda: ParquetWriter(Path(tmp) / "flows.parquet")
        for name, make in makers.items():
            seconds = best(args.repeat, lambda make=make: anyio.run(parse_and_export, path, make))
            results[f"pipeline_{name}"] = seconds
            print(f"{'engine + ' + name + ' exporter':44} {seconds:7.3f} s  {flows / seconds / 1e3:8.0f} k flows/s"
                  f"  {seconds / engine:5.2f}x the engine alone")  # fmt: skip

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
