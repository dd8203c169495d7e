"""tcpflow as the outside reference for reassembled TCP streams (tests only).

`tcpflow -r CAPTURE -o DIR` writes one file per TCP connection direction, each byte at its place
(sequence number minus the initial one): retransmitted bytes are written again where they were
(last copy wins), holes are left as zeros (the file is sparse), data before the first segment seen
of a stream picked up mid-stream is inserted at the front, and a new connection on the same four
addresses/ports gets another file (suffix cN). Its DFXML report (report.xml) names each file with
its endpoints, in the order connections were seen.

tcpflow also takes the link layer's padding of short Ethernet frames (the bytes after the IP
datagram) for TCP payload. `trailers_stripped()` writes a copy of a capture with those bytes cut
off, which is what tcpflow is given; tests/test_reassembly.py proves the padding behaviour on a
capture of its own.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import dpkt

from support import reference
from support.files import identity
from support.tools import TOOL_ENV

TCPFLOW = shutil.which("tcpflow")
Direction = tuple[str, int, str, int]  # source address, port, destination address, port

_ETHERTYPE_LINKS = {reference.LT_ETHERNET: (12, 14), reference.LT_SLL: (14, 16)}
_VLAN = frozenset({0x8100, 0x88A8, 0x9100})


def _ip_end(frame: bytes, off: int, etype: int) -> int | None:
    """Where the IP datagram at `off` ends in the frame (None: not plain IP over this link)."""
    while etype in _VLAN and len(frame) >= off + 4:
        etype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    if etype == 0x0800 and len(frame) >= off + 4:
        total = struct.unpack_from("!H", frame, off + 2)[0]
        return off + total if total else None
    if etype == 0x86DD and len(frame) >= off + 6:
        return off + 40 + struct.unpack_from("!H", frame, off + 4)[0]
    return None


def strip_trailer(link_type: int, frame: bytes) -> bytes:
    """The frame without the link layer's bytes after its IP datagram."""
    where = _ETHERTYPE_LINKS.get(link_type)
    if where is None or len(frame) < where[1]:
        return frame
    end = _ip_end(frame, where[1], struct.unpack_from("!H", frame, where[0])[0])
    return frame[:end] if end is not None and end < len(frame) else frame


def trailers_stripped(path: Path, out: Path) -> Path:
    """A classic pcap of the capture's records (as libpcap reads them) with trailers cut off."""
    cap = reference.read_capture(path)
    link_type = cap.link_types[0] if cap.link_types else reference.LT_ETHERNET
    with out.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=link_type, snaplen=reference.MAX_SNAPLEN, nano=True)
        for lt, frame, ts_ns in cap.records:
            if lt != link_type:
                break  # libpcap stops at a pcapng interface of another link type, as aioflow does
            writer.writepkt(strip_trailer(lt, frame), ts=(ts_ns or 0) / 1e9)
    return out


def tcpflow_streams(path: Path, strip: bool = True) -> dict[Direction, list[bytes]]:
    """tcpflow's files for the capture, per direction, one per connection in tcpflow's order."""
    assert TCPFLOW is not None
    out: dict[Direction, list[bytes]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = trailers_stripped(path, d / "input.pcap") if strip else path
        (d / "out").mkdir()
        # -Z: bodies as sent (no gzip decoding); -X: the report where tests find the files
        subprocess.run([TCPFLOW, "-Z", "-o", str(d / "out"), "-X", str(d / "report.xml"), "-r", str(src)],
                       capture_output=True, check=False, timeout=300, env=TOOL_ENV)  # fmt: skip
        report = d / "report.xml"
        if not report.exists():
            return {}
        try:
            root = ET.parse(report).getroot()
        except ET.ParseError:  # tcpflow leaves the report unfinished when it saw no TCP at all
            return {}
        for fo in root.iter("fileobject"):
            name, t = fo.findtext("filename"), fo.find("tcpflow")
            if name is None or t is None or t.get("src_ipn") is None:
                continue
            key = (_ip(t.get("src_ipn")), int(t.get("srcport", 0)), _ip(t.get("dst_ipn")), int(t.get("dstport", 0)))
            out[key].append((d / "out" / Path(name).name).read_bytes())
    return dict(out)


def _ip(text: str | None) -> str:
    return str(ipaddress.ip_address(text or ""))


def zero_filled(stream: bytes, holes: tuple[tuple[int, int], ...]) -> bytes:
    """A stream with its holes put back as zeros (how tcpflow's sparse files read)."""
    out = bytearray()
    at = off = 0
    for hole_off, hole_len in holes:
        out += stream[at : at + hole_off - off]
        at += hole_off - off
        out += bytes(hole_len)
        off = hole_off + hole_len
    out += stream[at:]
    return bytes(out)


class TcpFlow:
    """tcpflow's reassembled streams of a capture (support.tcpflow_ref), kept for the session."""

    def __init__(self) -> None:
        self._streams: dict[tuple[object, ...], dict[Direction, list[bytes]]] = {}

    def streams(self, path: Path, strip: bool = True) -> dict[Direction, list[bytes]]:
        key = (identity(path), strip)
        if key not in self._streams:
            self._streams[key] = tcpflow_streams(path, strip=strip)
        return self._streams[key]
