"""Search reassembled TCP/UDP streams for a regular expression as the data arrives.

    python examples/stream_grep.py [CAPTURE [PATTERN]]

The default pattern finds host names (the TLS server names of the bundled capture). A match may
span segments and chunks: the end of each direction's data is kept and searched again with the
next chunk, so nothing is re-scanned from the start.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
DEFAULT_PATTERN = rb"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:org|com|net)"
OVERLAP = 256  # bytes of each direction searched again with its next chunk: the longest match


async def main(path: str, pattern: bytes) -> None:
    regex = re.compile(pattern)
    tails: dict[tuple[int, str], bytes] = {}
    async with aioflow.FlowParser(path, reassemble=True) as parser:
        async for event in parser.stream_events():
            if isinstance(event, aioflow.Flow):  # the flow ended: its chunks are all in
                tails.pop((event.id, "client"), None)
                tails.pop((event.id, "server"), None)
                continue
            if not isinstance(event, aioflow.StreamChunk):  # StreamMatch: only with stream_patterns
                continue
            key = (event.flow.id, event.direction)
            tail = tails.get(key, b"")
            text = tail + event.data
            for m in regex.finditer(text):
                if m.end() > len(tail):  # ends in new data: not reported before
                    f = event.flow
                    src, dst = (f"{f.src_ip}:{f.src_port}", f"{f.dst_ip}:{f.dst_port}")
                    if event.direction == "server":
                        src, dst = dst, src
                    offset = event.offset + m.start() - len(tail)
                    print(f"{src} -> {dst} offset {offset}: {m.group().decode(errors='replace')}")
            tails[key] = text[-OVERLAP:]
        info = parser.info()
    print(f"{info.reassembly['stream_bytes']} bytes searched in {info.reassembly['stream_chunks']} chunks")


if __name__ == "__main__":
    capture = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE)
    asyncio.run(main(capture, sys.argv[2].encode() if len(sys.argv) > 2 else DEFAULT_PATTERN))
