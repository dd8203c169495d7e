"""flow-tools file layout: record structs (ftlib's fts3rec_*), header TLVs and their encoding.

The layouts are taken from flow-tools' ftlib.h (fts3rec_v1 ... fts3rec_v1005): every record is a
C struct of fixed-size integers, stored in the header's byte order. Fields aioflow knows by an IANA
name (srcaddr -> sourceIPv4Address, ...) carry it, so a flow-tools record reads like a collected
v5 record; the rest keep flow-tools' names (unix_secs, sysUpTime, dFlows, ...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._decode import FieldSpec, Template, _spec

MAGIC = b"\xcf\x10"
LITTLE, BIG = 1, 2
FLAG_DONE, FLAG_COMPRESS, FLAG_MULT_PDU, FLAG_STREAMING, FLAG_XLATE, FLAG_PRELOADED = 1, 2, 4, 8, 0x10, 0x20

# TLV types (ftlib FT_TLV_*), in the order flow-tools writes them.
TLV_VENDOR, TLV_EX_VER, TLV_AGG_VER, TLV_AGG_METHOD, TLV_EXPORTER_IP = 1, 2, 3, 4, 5
TLV_CAP_START, TLV_CAP_END, TLV_HEADER_FLAGS, TLV_ROT_SCHEDULE, TLV_FLOW_COUNT = 6, 7, 8, 9, 10
TLV_FLOW_LOST, TLV_FLOW_MISORDERED, TLV_PKT_CORRUPT, TLV_SEQ_RESET = 11, 12, 13, 14
TLV_CAP_HOSTNAME, TLV_COMMENTS, TLV_IF_NAME, TLV_IF_ALIAS, TLV_INTERRUPT = 15, 16, 17, 18, 19
_U8_TLVS = {TLV_VENDOR: "vendor", TLV_AGG_VER: "agg_version", TLV_AGG_METHOD: "agg_method"}
_U32_TLVS = {
    TLV_EXPORTER_IP: "exporter_ip", TLV_CAP_START: "cap_start", TLV_CAP_END: "cap_end",
    TLV_HEADER_FLAGS: "flags", TLV_ROT_SCHEDULE: "rotation", TLV_FLOW_COUNT: "flows_count",
    TLV_FLOW_LOST: "flows_lost", TLV_FLOW_MISORDERED: "flows_misordered", TLV_PKT_CORRUPT: "pkts_corrupt",
    TLV_SEQ_RESET: "seq_reset",
}  # fmt: skip
_STR_TLVS = {TLV_CAP_HOSTNAME: "hostname", TLV_COMMENTS: "comments"}

# flow-tools field name -> IANA element id (the name FlowRecord resolves pyflowtools' names through).
_IANA = {
    "srcaddr": 8, "dstaddr": 12, "nexthop": 15, "input": 10, "output": 14, "dPkts": 2, "dOctets": 1,
    "First": 22, "Last": 21, "srcport": 7, "dstport": 11, "prot": 4, "tos": 5, "tcp_flags": 6,
    "src_mask": 9, "dst_mask": 13, "src_as": 16, "dst_as": 17, "engine_type": 38, "engine_id": 39,
    "exaddr": 130,
}  # fmt: skip
_ADDRESSES = {"peer_nexthop"}

_HEAD = [("unix_secs", 4), ("unix_nsecs", 4), ("sysUpTime", 4), ("exaddr", 4)]
_HEAD_EX_FIRST = [("unix_secs", 4), ("unix_nsecs", 4), ("exaddr", 4), ("sysUpTime", 4)]  # v8.3, 8.11, 8.12
_TIMES = [("dPkts", 4), ("dOctets", 4), ("First", 4), ("Last", 4)]
_FLOWS_TIMES = [("dFlows", 4), *_TIMES]
_V5_BODY = [
    ("srcaddr", 4), ("dstaddr", 4), ("nexthop", 4), ("input", 2), ("output", 2), *_TIMES, ("srcport", 2),
    ("dstport", 2), ("prot", 1), ("tos", 1), ("tcp_flags", 1),
]  # fmt: skip
_V5_TAIL = [("engine_type", 1), ("engine_id", 1), ("src_mask", 1), ("dst_mask", 1), ("src_as", 2), ("dst_as", 2)]
_V5 = [*_HEAD, *_V5_BODY, ("pad", 1), *_V5_TAIL]
_ENG = [("engine_type", 1), ("engine_id", 1)]

# (d_version, agg_method) -> the record's fields in order, each (name, bytes).
LAYOUTS: dict[tuple[int, int], list[tuple[str, int]]] = {
    (1, 0): [*_HEAD, *_V5_BODY, ("pad", 1), ("reserved", 4)],
    (5, 0): _V5,
    (6, 0): [*_V5, ("in_encaps", 1), ("out_encaps", 1), ("pad2", 2), ("peer_nexthop", 4)],
    (7, 0): [*_HEAD, *_V5_BODY, ("flags", 1), *_V5_TAIL, ("router_sc", 4)],
    (1005, 0): [*_V5, ("src_tag", 4), ("dst_tag", 4)],
    (8, 1): [*_HEAD, *_FLOWS_TIMES, ("src_as", 2), ("dst_as", 2), ("input", 2), ("output", 2), *_ENG, ("pad", 2)],
    (8, 2): [*_HEAD, *_FLOWS_TIMES, ("prot", 1), ("pad", 1), ("reserved", 2), ("srcport", 2), ("dstport", 2), *_ENG,
             ("pad2", 2)],
    (8, 3): [*_HEAD_EX_FIRST, *_FLOWS_TIMES, ("srcaddr", 4), ("src_mask", 1), ("pad", 1), ("src_as", 2),
             ("input", 2), *_ENG],
    (8, 4): [*_HEAD, *_FLOWS_TIMES, ("dstaddr", 4), ("dst_mask", 1), ("pad", 1), *_ENG, ("dst_as", 2),
             ("output", 2)],
    (8, 5): [*_HEAD, *_FLOWS_TIMES, ("srcaddr", 4), ("dstaddr", 4), ("dst_mask", 1), ("src_mask", 1), *_ENG,
             ("src_as", 2), ("dst_as", 2), ("input", 2), ("output", 2)],
    (8, 6): [*_HEAD, *_TIMES, ("dstaddr", 4), ("extra_pkts", 4), ("router_sc", 4), ("output", 2), ("pad", 2),
             ("tos", 1), ("marked_tos", 1), *_ENG],
    (8, 7): [*_HEAD, *_TIMES, ("dstaddr", 4), ("srcaddr", 4), ("extra_pkts", 4), ("router_sc", 4), ("output", 2),
             ("input", 2), ("tos", 1), ("marked_tos", 1), *_ENG],
    (8, 8): [*_HEAD, *_TIMES, ("dstaddr", 4), ("srcaddr", 4), ("extra_pkts", 4), ("router_sc", 4), ("dstport", 2),
             ("srcport", 2), ("output", 2), ("input", 2), ("tos", 1), ("marked_tos", 1), *_ENG, ("prot", 1),
             ("pad1", 1), ("pad2", 2)],
    (8, 9): [*_HEAD, *_FLOWS_TIMES, ("src_as", 2), ("dst_as", 2), ("input", 2), ("output", 2), *_ENG, ("tos", 1),
             ("pad", 1)],
    (8, 10): [*_HEAD, *_FLOWS_TIMES, ("srcport", 2), ("dstport", 2), ("input", 2), ("output", 2), *_ENG,
              ("prot", 1), ("tos", 1)],
    (8, 11): [*_HEAD_EX_FIRST, *_FLOWS_TIMES, ("srcaddr", 4), ("src_mask", 1), ("tos", 1), ("src_as", 2),
              ("input", 2), *_ENG],
    (8, 12): [*_HEAD_EX_FIRST, *_FLOWS_TIMES, ("dstaddr", 4), ("output", 2), ("dst_as", 2), ("dst_mask", 1),
              ("tos", 1), *_ENG],
    (8, 13): [*_HEAD, *_FLOWS_TIMES, ("srcaddr", 4), ("dstaddr", 4), ("src_as", 2), ("dst_as", 2), ("input", 2),
              ("output", 2), ("dst_mask", 1), ("src_mask", 1), *_ENG, ("tos", 1), ("pad1", 1), ("pad2", 2)],
    (8, 14): [*_HEAD, *_FLOWS_TIMES, ("srcaddr", 4), ("dstaddr", 4), ("srcport", 2), ("dstport", 2), ("input", 2),
              ("output", 2), ("dst_mask", 1), ("src_mask", 1), *_ENG, ("tos", 1), ("prot", 1), ("pad2", 2)],
}  # fmt: skip

# Stream version 1 (flow-tools before 0.50): fts1rec_compat records, mapped to v1/v5 when read.
COMPAT_LAYOUT = [
    ("unix_secs", 4), ("unix_msecs", 4), ("srcaddr", 4), ("dstaddr", 4), ("nexthop", 4), ("input", 2),
    ("output", 2), ("dPkts", 4), ("dOctets", 4), ("First", 4), ("Last", 4), ("srcport", 2), ("dstport", 2),
    ("pad", 2), ("prot", 1), ("tos", 1), ("flags", 1), ("tcp_retx_cnt", 1), ("tcp_retx_secs", 1),
    ("tcp_misseq_cnt", 1), ("src_as", 2), ("dst_as", 2), ("src_mask", 1), ("dst_mask", 1), ("drops", 2),
]  # fmt: skip
V1_HEADER_SIZE = 368  # fts1header: magic, byte order, version, u16 d_version, 9 u32, hostname[68], comments[256]


def layout(key: tuple[int, int], order: str) -> list[tuple[str, int]]:
    """A record version's fields in one byte order. flow-tools' byte swap of v1005 swaps src_tag and
    dst_tag as 16-bit fields: in a big-endian file (written or read on the little-endian hosts
    flow-tools ran on) each is a big-endian u16 followed by two zero bytes, and only its low 16 bits
    survive. aioflow reads and writes them so, to agree with flow-tools' files."""
    fields = LAYOUTS[key]
    if key == (1005, 0) and order == ">":
        return [*fields[:-2], ("src_tag", 2), ("pad3", 2), ("dst_tag", 2), ("pad4", 2)]
    return fields


# flow-tools' byte swap for v8.12 leaves dst_as alone: big-endian files hold it little-endian.
_UNSWAPPED = {((8, 12), "dst_as")}


def field_order(key: tuple[int, int], order: str, name: str) -> str:
    """The byte order one field is stored in (the header's, but for flow-tools' unswapped fields)."""
    return "<" if order == ">" and (key, name) in _UNSWAPPED else order


def field_names(key: tuple[int, int], order: str) -> list[str]:
    """The flow-tools names of a layout's fields (pyflowtools' attribute names, First/Last capitalised)."""
    return [name for name, _ in layout(key, order)]


def _ft_spec(name: str, size: int) -> FieldSpec:
    element = _IANA.get(name)
    if element is not None:
        return _spec(element, size, 0)
    return FieldSpec(0, size, 0, name, "ipv4Address" if name in _ADDRESSES else f"unsigned{8 * size}")


def numpy_dtype(layout: list[tuple[str, int]], order: str) -> np.dtype:
    """The record struct as a numpy structured dtype in byte order ``order`` ('<' or '>'), by flow-tools names."""
    return np.dtype([(name, f"{order}u{size}") for name, size in layout])


_TEMPLATES: dict[tuple[int, int, str], Template] = {}


def template(key: tuple[int, int], order: str) -> Template:
    """A FlowRecord template for a layout in one byte order (cached): IANA names where aioflow has one."""
    cached = _TEMPLATES.get((*key, order))
    if cached is None:
        fields = layout(key, order)
        cached = Template(0, [_ft_spec(name, size) for name, size in fields])
        cached.dtype = np.dtype([(n, f"{field_order(key, order, ft)}u{size}")
                                 for n, (ft, size) in zip(cached.names, fields, strict=True)])  # fmt: skip
        cached.native_dtype = cached.dtype.newbyteorder("=")
        _TEMPLATES[(*key, order)] = cached
    return cached


@dataclass
class Header:
    """A flow-tools stream header (stream version 3 TLVs, or version 1's fixed struct)."""

    byte_order: str = "little"
    stream_version: int = 3
    d_version: int = 5
    agg_version: int | None = None
    agg_method: int | None = None
    vendor: int | None = None
    exporter_ip: int | None = None
    cap_start: int | None = None
    cap_end: int | None = None
    flags: int = 0
    rotation: int | None = None
    flows_count: int | None = None
    flows_lost: int | None = None
    flows_misordered: int | None = None
    pkts_corrupt: int | None = None
    seq_reset: int | None = None
    hostname: str | None = None
    comments: str | None = None
    interfaces: list[tuple[int, int, str]] = field(default_factory=list)  # (exporter ip, ifIndex, name)
    aliases: list[tuple[int, tuple[int, ...], str]] = field(default_factory=list)
    size: int = 0  # header length in the file: records start there

    @property
    def order(self) -> str:
        return "<" if self.byte_order == "little" else ">"

    @property
    def key(self) -> tuple[int, int]:
        return (self.d_version, self.agg_method or 0 if self.d_version == 8 else 0)


def ftltime(secs: Any, nsecs: Any, uptime: Any, when: np.ndarray) -> np.ndarray:
    """flow-tools' ftltime() over columns: Unix seconds (float64, ms resolution) of router uptimes
    ``when``: export ms (``secs``*1000 + ``nsecs``/1e6) - ``uptime`` + ``when``, in unsigned 64-bit
    arithmetic with no wrap handling, as flow-tools computes it. Scalars or columns."""
    return ftltimes(secs, nsecs, uptime, when)[0]


def ftltimes(secs: Any, nsecs: Any, uptime: Any, *whens: np.ndarray) -> list[np.ndarray]:
    """ftltime() of several uptime columns of the same records (first and last): the export time
    in ms, less the uptime, is computed once for all of them."""
    u64 = np.uint64
    base = np.asarray(secs, dtype=u64) * u64(1000) + np.asarray(nsecs, dtype=u64) // u64(1_000_000)
    base -= np.asarray(uptime, dtype=u64)  # wraps modulo 2^64 as flow-tools' u_int64 does: the sum is the same
    out = []
    for when in whens:
        seconds, ms = np.divmod(base + np.asarray(when, dtype=u64), u64(1000))
        out.append(seconds.astype(np.float64) + ms.astype(np.float64) * 1e-3)
    return out


def parse_tlvs(header: Header, data: bytes) -> None:
    """Fill ``header`` from the TLVs in ``data`` (the bytes after the 8-byte generic header). Padding
    after the last TLV (flow-tools rounds the length up to 4, not always zeroed) is skipped; a TLV
    running past the end raises ValueError."""
    o, end, order = 0, len(data), header.order
    while end - o >= 4:
        kind, length = struct.unpack_from(order + "HH", data, o)
        value = data[o + 4 : o + 4 + length]
        if len(value) < length:
            if end - o < 8:  # 1-3 bytes of alignment padding that happen to look like a TLV start
                return
            raise ValueError(f"header TLV {kind} at offset {8 + o} runs past the header length")
        o += 4 + length
        if kind == TLV_EX_VER and length == 2:
            header.d_version = struct.unpack(order + "H", value)[0]
        elif kind in _U8_TLVS and length == 1:
            setattr(header, _U8_TLVS[kind], value[0])
        elif kind in _U32_TLVS and length == 4:
            setattr(header, _U32_TLVS[kind], struct.unpack(order + "I", value)[0])
        elif kind in _STR_TLVS:
            setattr(header, _STR_TLVS[kind], value.split(b"\0", 1)[0].decode("utf-8", "replace"))
        elif kind == TLV_IF_NAME and length >= 6:
            ip, index = struct.unpack_from(order + "IH", value)
            header.interfaces.append((ip, index, value[6:].split(b"\0", 1)[0].decode("utf-8", "replace")))
        elif kind == TLV_IF_ALIAS and length >= 6:
            ip, n = struct.unpack_from(order + "IH", value)
            indexes = struct.unpack_from(f"{order}{n}H", value, 6) if length >= 6 + 2 * n else ()
            name = value[6 + 2 * n :].split(b"\0", 1)[0].decode("utf-8", "replace")
            header.aliases.append((ip, tuple(indexes), name))


def parse_v1_header(header: Header, data: bytes) -> None:
    """Fill ``header`` from a stream version 1 header (``data``: its 368 bytes)."""
    o = header.order
    header.d_version = struct.unpack_from(o + "H", data, 4)[0]
    values = struct.unpack_from(o + "9I", data, 8)
    (header.cap_start, header.cap_end, header.flags, header.rotation, header.flows_count, header.flows_lost,
     header.flows_misordered, header.pkts_corrupt, header.seq_reset) = values  # fmt: skip
    header.hostname = data[44:112].split(b"\0", 1)[0].decode("utf-8", "replace")
    header.comments = data[112:368].split(b"\0", 1)[0].decode("utf-8", "replace")
    header.size = V1_HEADER_SIZE


def encode_header(header: Header) -> bytes:
    """Stream version 3 header bytes, TLVs in flow-tools' order (by type), length rounded up to 4."""
    o = header.order
    tlvs = bytearray()

    def tlv(kind: int, value: bytes) -> None:
        tlvs.extend(struct.pack(o + "HH", kind, len(value)) + value)

    if header.vendor is not None:
        tlv(TLV_VENDOR, bytes([header.vendor]))
    tlv(TLV_EX_VER, struct.pack(o + "H", header.d_version))
    for kind in (TLV_AGG_VER, TLV_AGG_METHOD):
        value = getattr(header, _U8_TLVS[kind])
        if value is not None:
            tlv(kind, bytes([value]))
    for kind, name in _U32_TLVS.items():
        value = header.flags if kind == TLV_HEADER_FLAGS else getattr(header, name)
        if value is not None:
            tlv(kind, struct.pack(o + "I", value))
    for kind, name in _STR_TLVS.items():
        text = getattr(header, name)
        if text is not None:
            tlv(kind, text.encode() + b"\0")
    for ip, index, name in header.interfaces:
        tlv(TLV_IF_NAME, struct.pack(o + "IH", ip, index) + name.encode() + b"\0")
    for ip, indexes, name in header.aliases:
        tlv(TLV_IF_ALIAS, struct.pack(f"{o}IH{len(indexes)}H", ip, len(indexes), *indexes) + name.encode() + b"\0")
    size = 8 + len(tlvs)
    size += -size % 4
    head = MAGIC + bytes([LITTLE if header.byte_order == "little" else BIG, 3]) + struct.pack(o + "I", size)
    return (head + tlvs).ljust(size, b"\0")
