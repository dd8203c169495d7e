"""Collector decoding speed: IPFIX records per second on one core.

Datagrams like a probe's (1400-octet IPFIX messages, one template, 31 records each: addresses,
ports, protocol, packets, octets, start/end milliseconds, TCP flags) are decoded by aioflow's
Decoder three ways:
  parse    - Decoder.parse: framing, template lookup, one numpy view per data set
  columns  - parse + every column converted (what a bulk consumer reads)
  records  - parse + one FlowRecord per record reading src_ip, packets and bytes (the per-record API)

    .venv/bin/python benchmarks/collect_bench.py [--datagrams N]
"""

from __future__ import annotations

import argparse
import struct
import time

from aioflow.netflow.collect import Decoder, FlowRecord

FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 2), (2, 8), (1, 8), (152, 8), (153, 8)]
RECORD = struct.Struct("!IIHHBHQQQQ")
PER_MESSAGE = (1400 - 16 - 4) // RECORD.size


def datagrams(n: int) -> list[bytes]:
    tmpl = struct.pack("!HH", 256, len(FIELDS)) + b"".join(struct.pack("!HH", *f) for f in FIELDS)
    template_set = struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl
    out = []
    seq = 0
    for m in range(n):
        body = b"".join(
            RECORD.pack(0x0A000000 + i, 0xC0A80000 + m % 65536, 1024 + i, 443, 6, 0x1B, i + 1, 1500 * (i + 1),
                        1_700_000_000_000 + m, 1_700_000_001_000 + m)
            for i in range(PER_MESSAGE)
        )  # fmt: skip
        sets = (template_set if m == 0 else b"") + struct.pack("!HH", 256, 4 + len(body)) + body
        out.append(struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_000, seq, 1) + sets)
        seq += PER_MESSAGE
    return out


def run(messages: list[bytes], mode: str) -> float:
    decoder = Decoder()
    start = time.perf_counter()
    for payload in messages:
        message = decoder.parse(("192.0.2.1", 4739), payload)
        if mode == "columns":
            for rs in message.sets:
                for name in rs.template.names:
                    rs.column(name)
        elif mode == "records":
            for rs in message.sets:
                for i in range(len(rs)):
                    r = FlowRecord(rs, i)
                    r.src_ip, r.packets, r.bytes  # noqa: B018 - the reads are what is measured
    elapsed = time.perf_counter() - start
    assert decoder.stats.records == len(messages) * PER_MESSAGE and not decoder.stats.malformed
    return decoder.stats.records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datagrams", type=int, default=50_000)
    args = parser.parse_args()
    messages = datagrams(args.datagrams)
    print(f"{len(messages)} IPFIX datagrams x {PER_MESSAGE} records ({RECORD.size} octets each)")
    for mode in ("parse", "columns", "records"):
        n = args.datagrams if mode != "records" else max(1, args.datagrams // 10)
        best = max(run(messages[:n], mode) for _ in range(3))
        print(f"{mode:8s} {best / 1e6:6.2f} M records/s")


if __name__ == "__main__":
    main()
