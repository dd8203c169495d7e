"""What per-packet meters cost the counting thread, in simulated counts rather than time (the
machine is shared): callgrind's instructions and its cache simulation's data misses of
producer.c:run inclusive (the whole C pipeline), flows only against each option set.

    nice .venv/bin/python benchmarks/make_capture.py --packets 200000 --flows 12000 --seed 7 -o /tmp/c.pcap
    nice .venv/bin/python benchmarks/meter_cost.py /tmp/c.pcap
    nice .venv/bin/python benchmarks/meter_cost.py /tmp/c.pcap --options '{"splt": 20}'

Each run is `async with FlowParser(path, read_ahead=False, **options) as p: async for f in
p.terminated()` in a process of its own under `valgrind --tool=callgrind --cache-sim=yes`
(benchmarks/README.md, section "Statistics and splt"). PYTHONPATH picks the aioflow measured, so
a copy of an older build can be measured the same way."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import _callgrind  # sibling scripts, not a package

DEFAULT_SETS = ['{}', '{"statistics": true}', '{"statistics": true, "splt": 20}']


def child(options: dict[str, Any], path: str) -> None:
    import aioflow

    async def main() -> None:
        async with aioflow.FlowParser(path, read_ahead=False, **options) as p:
            async for _flow in p.terminated():
                pass

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture")
    parser.add_argument("--options", action="append", help="a JSON option set (repeatable; default: flows "
                        "only, statistics, statistics + splt=20)")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child), args.capture)
        return
    sets = args.options or DEFAULT_SETS
    if "{}" not in sets:
        sets = ["{}", *sets]
    rows = {}
    for options in sets:
        found = _callgrind.count([sys.executable, str(Path(__file__).resolve()), "--child", options, args.capture],
                                 cache=True)  # fmt: skip
        rows[options] = found
        print(json.dumps({"options": options, **found}), flush=True)
    base = rows["{}"]
    print(f"{'options':42} {'Ir':>13} {'D1 misses':>11} {'LL misses':>11} {'Ir ratio':>9} {'D1 ratio':>9}")
    for options, r in rows.items():
        d1, ll, d1_base = r["producer_D1"], r["producer_LL"], base["producer_D1"]
        print(f"{options:42} {r['producer']:13,} {d1:11,} {ll:11,} {r['producer'] / base['producer']:9.3f} "
              f"{d1 / d1_base if d1_base else 0:9.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
