"""Pseudo-headers in the writing host's byte order, in a file of the other byte order (libpcap's
swap_pseudo_headers): NFLOG's TLV lengths and types follow the file's byte order. A big-endian
copy of the bundled little-endian NFLOG capture is written here (editcap cannot swap a file's byte
order): the pcap header, the record headers and every TLV's length and type byte-swapped, as a
big-endian host would have written the same packets. aioflow's reader must give libpcap's records
(AIOFLOW_FILE_READER=libpcap) on it, and the flows of the original."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from support.corpus import DATA
from test_file_reader import _counters, _flows, _run

NFLOG = DATA / "zeek_nflog-http.pcap"  # LINKTYPE_NFLOG, little-endian, 13 packets


def swap_nflog(packet: bytes) -> bytes:
    """The TLVs' lengths and types byte-swapped, walked as libpcap's swap_nflog_header walks them
    (4-byte aligned; a TLV that does not fit ends the walk)."""
    out, off = bytearray(packet), 4
    if len(packet) < 4 or packet[1] != 0:  # version 0 only
        return packet
    while off + 4 <= len(packet):
        length, kind = struct.unpack_from("<HH", packet, off)
        struct.pack_into(">HH", out, off, length, kind)
        size = (length + 3) & ~3
        if size < 4 or off + size > len(packet):
            break
        off += size
    return bytes(out)


def big_endian_copy(source: Path, target: Path) -> int:
    """The little-endian pcap `source` as a big-endian host writes it; returns its packet count."""
    raw = source.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, link = struct.unpack_from("<IHHiIII", raw)
    assert magic == 0xA1B2C3D4 and link == 239
    out = bytearray(struct.pack(">IHHiIII", magic, major, minor, zone, sigfigs, snaplen, link))
    off, count = 24, 0
    while off < len(raw):
        sec, usec, caplen, length = struct.unpack_from("<IIII", raw, off)
        packet = raw[off + 16 : off + 16 + caplen]
        out += struct.pack(">IIII", sec, usec, caplen, length) + swap_nflog(packet)
        off += 16 + caplen
        count += 1
    target.write_bytes(out)
    return count


@pytest.mark.anyio
async def test_big_endian_nflog_reads_as_libpcap_reads_it(tmp_path: Path) -> None:
    swapped = tmp_path / "nflog-be.pcap"
    packets = big_endian_copy(NFLOG, swapped)
    assert swapped.read_bytes() != NFLOG.read_bytes()
    theirs = await _run(swapped, libpcap=True)
    ours = await _run(swapped)
    assert ours.records == theirs.records and _counters(ours.info) == _counters(theirs.info)
    assert ours.info.packets == packets == ours.info.packets_in_flows, ours.info  # all decoded, none aside
    assert _flows(swapped) == _flows(NFLOG)  # the same flows as the little-endian original
