"""Flows whose streams match regexes, found in C as the packets arrive (Vectorscan).

    python examples/stream_patterns.py [CAPTURE [PATTERN ...]]

Each TCP direction is searched as one stream (a match may span segments), each UDP datagram
alone; a flow reports its first match. The default pattern finds host names (the TLS server names
of the bundled capture). Needs aioflow built with Vectorscan (libvectorscan-dev).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
DEFAULT_PATTERNS = [rb"[a-z0-9-]+(\.[a-z0-9-]+)*\.(org|com|net)"]


async def main(path: str, patterns: list[bytes]) -> None:
    search = aioflow.StreamPatterns(client=patterns, server=patterns, ignore_case=True)
    async with aioflow.FlowParser(path, reassemble=True, keep_streams=False, stream_patterns=search) as parser:
        async for match in parser.matches():
            f = match.flow
            print(f"{f.src_ip}:{f.src_port} -> {f.dst_ip}:{f.dst_port} {match.direction}@{match.start}: "
                  f"{match.data.decode(errors='replace')}")  # fmt: skip
        info = parser.info()
    print(f"{info.reassembly['stream_matches']} of {info.flows_ended} flows matched")


if __name__ == "__main__":
    capture = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE)
    asyncio.run(main(capture, [p.encode() for p in sys.argv[2:]] or DEFAULT_PATTERNS))
