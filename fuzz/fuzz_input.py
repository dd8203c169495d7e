"""fuzz_packet_path's input as what Python reads: the pcap file the harness writes, and the
FlowParser options its option bytes stand for (fuzz/fuzz_packet_path.c has the layout). Turns a
crash input (build/fuzz/crashes/...) into a capture for a regression test:

    python fuzz/fuzz_input.py INPUT OUT.pcap      # prints the options as JSON

Stream search, stream chunks, stopping after one pump and reading without the threads have no
FlowParser option: those bits are dropped here (the harness replays them).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

# fuzz_packet_path.c's LINK_TYPES: the input's first byte picks one (modulo their number).
LINK_TYPES = [1, 113, 276, 101, 228, 229, 0, 108, 9, 50, 104, 239, 12, 14]
STEP_US = 31_250  # a time step: 1/32 s
START_US = 1_577_836_800 * 1_000_000


def to_capture(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """(pcap bytes, FlowParser keyword arguments) of a harness input of at least 3 bytes."""
    link, opt, flows = data[0], data[1], data[2]
    # bit 7 of the first byte: decode_tunnels and the mac meter; the rest picks the link type
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, LINK_TYPES[(link & 0x7F) % len(LINK_TYPES)])]
    i, us, body = 0, START_US, data[3:]
    while i + 3 <= len(body):
        length, step = body[i] | body[i + 1] << 8, body[i + 2]
        us += step * STEP_US
        i += 3
        length = min(length, len(body) - i)
        wire = length + (step & 1) * 7  # odd steps: a snapped packet
        out.append(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, length, wire) + body[i : i + length])
        i += length
    options: dict[str, Any] = {
        "snaplen": 262144,
        "max_flows": 1 + (flows & 0x7F),
        "headers": 3 if opt & 8 else 0,
        "idle_timeout": 2.0,
        "active_timeout": 5.0,
        "fin_timeout": 0.5,
        "defragment": not opt & 1,
        "max_fragment_datagrams": 8,
        "max_fragments_per_datagram": 16,
        "max_fragment_memory": 16384,
        "fragment_timeout": 1.0,
        "reassemble": not opt & 2,
        "max_stream_bytes": 4096,
        "max_reassembly_memory": 1 << 20,
        "keep_streams": not opt & 32,
        "meters": (["low_ttl"] if opt & 64 else []) + (["mac"] if link & 0x80 else []),
        "decode_tunnels": bool(link & 0x80),
    }
    return b"".join(out), options


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    capture, opts = to_capture(Path(sys.argv[1]).read_bytes())
    Path(sys.argv[2]).write_bytes(capture)
    print(json.dumps(opts))
