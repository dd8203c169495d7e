"""Inputs of the packet-path fuzz harness (fuzz/fuzz_packet_path.c, docs/fuzzing.md) replayed
through the Python API: tests/data/fuzz/*.bin, each turned into the capture and the FlowParser
options it stands for (fuzz/fuzz_input.py). A crash the fuzzer finds joins them (with its fix).

empty-packets.bin: 35 zero-length frames (it crashed the harness itself, whose pcap buffer was
too small for it); the others are small corpus inputs the fuzzer derived from real captures,
one per link type, with defragmentation, reassembly, kept headers and the low_ttl meter.
Checked: dpkt reads as many packets as aioflow, and every packet is in exactly one flow or counted
aside (the records' packets add up to packets_in_flows).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import dpkt
import pytest

import aioflow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))
from fuzz_input import to_capture  # noqa: E402

INPUTS = sorted((ROOT / "tests" / "data" / "fuzz").glob("*.bin"))


def _write_capture(path: Path, tmp_path: Path) -> tuple[Path, bytes, dict[str, Any]]:
    capture, options = to_capture(path.read_bytes())
    pcap = tmp_path / "input.pcap"
    pcap.write_bytes(capture)
    return pcap, capture, options


@pytest.mark.anyio
@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
async def test_fuzz_input_is_conserved(path: Path, tmp_path: Path) -> None:
    pcap, capture, options = _write_capture(path, tmp_path)
    frames = sum(1 for _ in dpkt.pcap.Reader(io.BytesIO(capture)))
    assert frames > 0
    in_records = 0
    async with aioflow.FlowParser(pcap, **options) as parser:
        async for flow in parser.terminated():
            in_records += flow.src2dst_packets + flow.dst2src_packets
    info = parser.info()
    assert info.packets == frames
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert in_records == info.packets_in_flows
    assert info.active_flows == 0 and info.fragments_held == 0
