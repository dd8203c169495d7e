"""Memory per active flow at a fixed count: peak RSS of a run holding N flows at once, minus a
run holding one flow, divided by N (headers off, default options).

Both captures have N packets (UDP, one packet per flow in the N-flow capture, all packets of one
flow in the other) within a second, so every flow of the first is still alive when the file ends
and the two runs differ only in flows held. Each run is its own process. RSS is not a timing:
the figure does not depend on the machine's load.

    python benchmarks/flow_memory.py [--flows 500000] [--repeat 1] [--options '{"buffer_batches": 2}']
    python benchmarks/flow_memory.py --engine    # the C engine alone, before the end-of-file flush
    python benchmarks/flow_memory.py --kind tcp6 # flows of TCP SYNs over IPv6 (default: UDP over IPv4)

--engine pumps the engine from Python (af_pump_some, one small batch at a time) and takes RSS once
every packet is counted, before the flush: the flow table and its buckets without the batch ring
and the subscriber's queue, which fill once when all flows end together at the end of the file.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import CHILD  # FlowParser with JSON options; prints peak RSS

ENGINE_CHILD = """
import json, sys
from aioflow._engine import Engine, EngineConfig
engine = Engine(sys.argv[1], EngineConfig(**json.loads(sys.argv[2])))  # EngineConfig fields (statistics, splt)
while True:
    state, _ = engine.pump_some(4096)
    s = engine.stats()
    if s["packets_in_flows"] == s["packets_read"] and s["active_flows"] == s["peak_active_flows"] and state == "more":
        rss = int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])
    if state == "done":
        break
print(json.dumps({"peak_active_flows": s["peak_active_flows"], "flows": s["flows_ended"], "peak_rss_kb": rss}))
"""


KINDS = ("udp", "tcp", "udp6", "tcp6")


def _transport(kind: str, k: int) -> bytes:
    """A UDP header, or a TCP SYN (a flag that takes the flow's TCP entry)."""
    if kind.startswith("tcp"):
        return struct.pack("!HHIIBBHHH", 1024 + (k >> 24), 80, 1, 0, 0x50, 0x02, 65535, 0, 0)
    return struct.pack("!HHHH", 1024 + (k >> 24), 53, 8, 0)


def _frame(kind: str, k: int) -> bytes:
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    body = _transport(kind, k)
    proto = 6 if kind.startswith("tcp") else 17
    src = bytes([(k >> 16) & 0xFF, (k >> 8) & 0xFF, k & 0xFF])
    if kind.endswith("6"):
        addrs = b"\x20\x01\x0d\xb8" + bytes(9) + src + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01"
        return eth + b"\x86\xdd" + struct.pack("!IHBB", 0x60000000, len(body), proto, 64) + addrs + body
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0, b"\x0a" + src, b"\xc0\x00\x02\x01")
    return eth + b"\x08\x00" + ip + body


def write_capture(path: Path, packets: int, flows: int, kind: str = "udp") -> None:
    """Ethernet/IP/UDP (or TCP SYNs), packet i in flow i % flows (distinct source address and port)."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.Struct("<IIII")
    with path.open("wb") as f:
        f.write(head)
        out = []
        for i in range(packets):
            frame = _frame(kind, i % flows)
            out.append(rec.pack(1_700_000_000, i * 1_000_000 // max(packets, 1), len(frame), len(frame)) + frame)
            if len(out) >= 65536:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))


def run(capture: Path, options: str, engine: bool) -> dict[str, int]:
    child = ENGINE_CHILD if engine else CHILD
    proc = subprocess.run(
        [sys.executable, "-c", child, str(capture), options], capture_output=True, text=True, check=True
    )
    return dict(json.loads(proc.stdout))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each capture; the lowest peak is kept")
    ap.add_argument("--options", default="{}", help="FlowParser keyword arguments, as JSON")
    ap.add_argument("--engine", action="store_true", help="the engine alone, before the end-of-file flush")
    ap.add_argument("--kind", choices=KINDS, default="udp", help="the flows' transport and IP version")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        many, one = Path(tmp) / "many.pcap", Path(tmp) / "one.pcap"
        write_capture(many, args.flows, args.flows, args.kind)
        write_capture(one, args.flows, 1, args.kind)
        peaks = {}
        for name, path in (("one", one), ("many", many)):
            results = [run(path, args.options, args.engine) for _ in range(args.repeat)]
            best = min(results, key=lambda r: r["peak_rss_kb"])
            peaks[name] = best
            mb = best["peak_rss_kb"] / 1024
            print(f"{name:>5}: {best['peak_active_flows']:>9,} flows at once, peak RSS {mb:.1f} MB")
    held = peaks["many"]["peak_active_flows"] - peaks["one"]["peak_active_flows"]
    per_flow = (peaks["many"]["peak_rss_kb"] - peaks["one"]["peak_rss_kb"]) * 1024 / held
    print(f"bytes per active flow: {per_flow:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
