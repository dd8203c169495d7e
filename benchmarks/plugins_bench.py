"""The bulk path and the plugins, each consumer of one capture in a process of its own.

    .venv/bin/python benchmarks/plugins_bench.py CAPTURE [--repeat 3] [--modes terminated,read_frame]
    .venv/bin/python benchmarks/plugins_bench.py CAPTURE --callgrind      # instruction counts

Modes: terminated (async for over FlowParser.terminated(), counting), read (the blocking
iterator), read_frame (pandas), read_arrow (pyarrow), plugin_flow (a FlowPlugin with on_init and
on_expire, through read()), plugin_packet (the same plus on_update, headers=HEADERS), slicer
(max_packets=SLICE, through read()).

Each run reports wall seconds (for a quiet machine only), the process's CPU seconds (all threads)
and the CPU seconds of the consuming (main) thread: the engine's reading thread does the same
work in every mode, so on a loaded machine the main thread's CPU time is what compares the
consumers. --callgrind runs each mode once under valgrind and reports instructions (Ir) instead,
minus those of an "import" run that only loads the modules; that count does not depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

HEADERS = 16
SLICE = 10
MODES = ("terminated", "read", "read_frame", "read_arrow", "plugin_flow", "plugin_packet", "slicer")


def _child(path: str, mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """Runs one mode in this process (after the imports) with these parser options (--options)
    and returns its figures."""
    import asyncio

    import pandas  # noqa: F401  (imported before timing, as read_frame's own import would be)
    import pyarrow  # noqa: F401

    import aioflow

    class Plugin(aioflow.FlowPlugin):
        def on_init(self, flow: aioflow.Flow) -> None:
            flow.udps.big = 0

        def on_expire(self, flow: aioflow.Flow) -> None:
            flow.udps.mean = flow.bytes / flow.packets

    class PacketPlugin(Plugin):
        def on_update(self, packet: aioflow.PacketHeader, flow: aioflow.Flow) -> None:
            flow.udps.big += packet.ip_length > 1000

    async def terminated() -> int:
        n = 0
        async with aioflow.FlowParser(path, **options) as parser:
            async for _ in parser.terminated():
                n += 1
        return n

    runs = {
        "import": lambda: 0,
        "terminated": lambda: asyncio.run(terminated()),
        "read": lambda: sum(1 for _ in aioflow.read(path, **options)),
        "read_frame": lambda: len(aioflow.read_frame(path, **options)),
        "read_arrow": lambda: aioflow.read_arrow(path, **options).num_rows,
        "plugin_flow": lambda: sum(1 for _ in aioflow.read(path, plugins=[Plugin()], **options)),
        "plugin_packet": lambda: sum(1 for _ in aioflow.read(path, plugins=[PacketPlugin()], headers=HEADERS,
                                                             **options)),
        "slicer": lambda: sum(1 for _ in aioflow.read(path, max_packets=SLICE, **options)),
    }
    wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    flows = runs[mode]()
    return {"mode": mode, "flows": flows, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu, "main_thread_cpu_s": time.thread_time() - thread}  # fmt: skip


def _run(path: str, mode: str, callgrind: bool, options: str = "{}") -> dict[str, Any]:
    cmd = [sys.executable, __file__, path, "--child", mode, "--options", options]
    if not callgrind:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return dict(json.loads(out.splitlines()[-1]))
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg", *cmd],
                              capture_output=True, text=True, check=True)  # fmt: skip
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr) or re.search(r"refs:\s*([\d,]+)", proc.stderr)
    assert found, proc.stderr[-2000:]
    result = dict(json.loads(proc.stdout.splitlines()[-1]))
    result["instructions"] = int(found.group(1).replace(",", ""))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--repeat", type=int, default=1, help="alternated rounds; the fastest of each mode is kept")
    ap.add_argument("--callgrind", action="store_true", help="instruction counts under valgrind (one round)")
    ap.add_argument("--options", default="{}", help='parser options of every mode, JSON: \'{"statistics": true}\'')
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.capture, args.child, json.loads(args.options))))
        return
    modes = [m for m in args.modes.split(",") if m]
    best: dict[str, dict[str, Any]] = {}
    if args.callgrind:
        base = _run(args.capture, "import", True, args.options)["instructions"]
        for mode in modes:
            r = _run(args.capture, mode, True, args.options)
            r["instructions"] -= base
            best[mode] = r
            print(f"{mode:14} {r['flows']:>9,} flows {r['instructions'] / 1e6:>12,.1f} M instructions", flush=True)
    else:
        for _ in range(args.repeat):
            for mode in modes:
                r = _run(args.capture, mode, False, args.options)
                if mode not in best or r["main_thread_cpu_s"] < best[mode]["main_thread_cpu_s"]:
                    best[mode] = r
        for mode, r in best.items():
            print(f"{mode:14} {r['flows']:>9,} flows  wall {r['wall_s']:7.3f} s  cpu {r['cpu_s']:7.3f} s  "
                  f"main thread cpu {r['main_thread_cpu_s']:7.3f} s")  # fmt: skip
    print(json.dumps({"capture": os.path.abspath(args.capture), "options": json.loads(args.options), "results": best}))


if __name__ == "__main__":
    main()
