"""Damaged packets never crash the engine and never go uncounted: frames of a real capture are cut
and bit-flipped at random (seeded) under every link type the decoder knows. Run under
`make sanitize`, this is also the out-of-bounds check of every decoder."""

from __future__ import annotations

import random
from pathlib import Path

import dpkt
import pytest
from support.crafted import mutate

import aioflow

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"

# DLT -> how to wrap an Ethernet frame's payload (or the frame) for that link type
LINK_TYPES = {
    1: lambda eth: eth,  # Ethernet
    101: lambda eth: eth[14:],  # raw IP
    228: lambda eth: eth[14:],  # IPv4 (the IPv6 frames are damage for it)
    229: lambda eth: eth[14:],
    0: lambda eth: (2 if eth[12:14] == b"\x08\x00" else 30).to_bytes(4, "little") + eth[14:],  # NULL
    108: lambda eth: (2 if eth[12:14] == b"\x08\x00" else 24).to_bytes(4, "big") + eth[14:],  # LOOP
    113: lambda eth: b"\x00\x00\x00\x01\x00\x06" + eth[6:12] + b"\x00\x00" + eth[12:],  # Linux SLL
    276: lambda eth: eth[12:14] + b"\x00\x00" + b"\x00\x00\x00\x02\x00\x01\x00\x06" + eth[6:12] + b"\x00\x00"
    + eth[14:],  # SLL2
    9: lambda eth: b"\xff\x03" + (b"\x00\x21" if eth[12:14] == b"\x08\x00" else b"\x00\x57") + eth[14:],  # PPP
    239: lambda eth: b"\x02\x00\x00\x00" + (len(eth) - 14 + 4).to_bytes(2, "little") + b"\x09\x00" + eth[14:],
    147: lambda eth: eth,  # a user DLT aioflow does not decode
}


def frames(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return [bytes(buf) for _, buf in dpkt.pcapng.Reader(f)]


@pytest.mark.parametrize("dlt", sorted(LINK_TYPES))
def test_mutated_frames_are_counted_never_fatal(tmp_path: Path, dlt: int) -> None:
    rng = random.Random(dlt)
    originals = frames(BUNDLED)
    written = []
    for i in range(4000):
        written.append(mutate(rng, LINK_TYPES[dlt](originals[i % len(originals)])))
    capture = tmp_path / f"mutated-{dlt}.pcap"
    with capture.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dlt, snaplen=65535)
        for i, frame in enumerate(written):
            writer.writepkt(frame, ts=1_700_000_000 + i * 0.001)

    async def run() -> tuple[list[aioflow.Flow], aioflow.ParserInfo]:
        async with aioflow.FlowParser(capture, headers=2) as parser:
            flows = [f async for f in parser.terminated()]
        return flows, parser.info()

    import anyio

    flows, info = anyio.run(run)
    assert info.packets == len(written)
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert sum(f.packets for f in flows) == info.packets_in_flows
    if dlt == 147:
        assert info.aside["unsupported_link"] == len(written)
    elif dlt not in (228, 229):  # there, frames of the other IP version are damage too
        assert info.packets_in_flows > len(written) // 4, "most mildly damaged frames still decode"
