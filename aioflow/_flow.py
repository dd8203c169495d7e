"""Flow: a read-only view over one C flow record, and PacketHeader for kept packet headers.

Units: bytes are IP-layer lengths (IPv4 total length, IPv6 payload length + 40), as NetFlow's
octets; `captured_bytes` are what the capture holds of the frames. Times are float seconds since
the epoch, with exact integer nanoseconds in the `*_ns` twins.
"""

from __future__ import annotations

import builtins
import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol, overload

from ._engine import END_REASONS, METERS, TCP_FLAG_COUNT, Batch
from ._extras import expiration_id

# Names of the per-flag counters, in the C record's bit order (api.h: FIN SYN RST PSH ACK URG ECE CWR).
TCP_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
assert len(TCP_FLAGS) == TCP_FLAG_COUNT, "api.h's AF_TCP_FLAG_COUNT changed"


class _Record(Protocol):
    """What Flow reads of a cffi af_record (api.h), for the type checker."""

    id: int
    first_ns: int
    last_ns: int
    src2dst_first_ns: int
    src2dst_last_ns: int
    dst2src_first_ns: int
    dst2src_last_ns: int
    src2dst_packets: int
    src2dst_bytes: int
    src2dst_captured_bytes: int
    dst2src_packets: int
    dst2src_bytes: int
    dst2src_captured_bytes: int
    src2dst_flag_counts: Sequence[int]
    dst2src_flag_counts: Sequence[int]
    header_offset: int
    header_count: int
    headers_dropped: int
    src_ip: Sequence[int]
    dst_ip: Sequence[int]
    src_port: int
    dst_port: int
    vlan_id: int
    ip_version: int
    protocol: int
    src2dst_tcp_flags: int
    dst2src_tcp_flags: int
    src2dst_min_ttl: int
    src2dst_max_ttl: int
    dst2src_min_ttl: int
    dst2src_max_ttl: int
    end_reason: int


# One table for every printed protocol name (flows, grep, collect) and the names lookups accept.
PROTOCOL_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmp6", 132: "sctp"}
PROTOCOL_NUMBERS = {**{name: number for number, name in PROTOCOL_NAMES.items()}, "icmpv6": 58}


def protocol_name(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


FLAG_COUNT_FIELDS = tuple(f"{d}_{flag}_packets" for d in ("src2dst", "dst2src") for flag in TCP_FLAGS)


def is_datagrams(protocol: int) -> bool:
    """Whether C keeps this protocol's data as framed datagrams: every IP protocol but TCP."""
    return protocol != 6


def unframe(data: bytes) -> tuple[bytes, ...]:
    """Datagram stream data (UDP, other IP) as C frames it ([uint32 length][payload] each) into datagrams."""
    out: list[bytes] = []
    at, end = 0, len(data)
    while at < end:
        (n,) = struct.unpack_from("=I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return tuple(out)



# A flow's id text, proto-vlan-a_ip:a_port-b_ip:b_port; read_frame maps its bound .format over
# whole columns (no Python frame per flow).
FLOW_ID_FORMAT = "{}-{}-{}:{}-{}:{}"


def flow_id_text(protocol: int, vlan_id: int, a_ip: str, a_port: int, b_ip: str, b_port: int) -> str:
    """A flow's id text, ``proto-vlan-a_ip:a_port-b_ip:b_port``: Flow.bidirectional_id, read_frame's
    bidirectional_id column and the NetFlow records' flow_id() all write it with FLOW_ID_FORMAT."""
    return FLOW_ID_FORMAT.format(protocol, vlan_id, a_ip, a_port, b_ip, b_port)

def ip_to_str(version: int, raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw[:4]) if version == 4 else ipaddress.IPv6Address(raw))


def ip_to_int(version: int, raw: bytes) -> int:
    return int.from_bytes(raw[:4] if version == 4 else raw, "big")


class _Nanoseconds:
    """A Flow attribute that is one C record time field as it is: integer epoch nanoseconds."""

    def __init__(self, field: str) -> None:
        self._field = field

    @overload
    def __get__(self, flow: None, owner: type) -> _Nanoseconds: ...
    @overload
    def __get__(self, flow: Flow, owner: type) -> int: ...
    def __get__(self, flow: Flow | None, owner: type) -> _Nanoseconds | int:
        return self if flow is None else getattr(flow._r, self._field)


class _Seconds:
    """The float seconds twin of a _Nanoseconds attribute (same C field, / 1e9)."""

    def __init__(self, field: str) -> None:
        self._field = field

    @overload
    def __get__(self, flow: None, owner: type) -> _Seconds: ...
    @overload
    def __get__(self, flow: Flow, owner: type) -> float: ...
    def __get__(self, flow: Flow | None, owner: type) -> _Seconds | float:
        return self if flow is None else getattr(flow._r, self._field) / 1e9


class _Extra:
    """A Flow attribute that is a plain-named field of a meter (nfstream's name, e.g. tunnel_id
    of the tunnel meter), or `off` when the meter was not on."""

    def __init__(self, meter: str, off: Any) -> None:
        self._meter, self._off, self._name = meter, off, ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, flow: Flow | None, owner: type) -> Any:
        if flow is None:
            return self
        b = flow._batch
        fields = b.meter_layout.read(b.meter_data, flow._i, self._meter)
        return self._off if fields is None else fields[self._name]


class _FlagCount:
    """A Flow attribute that is one direction's count of packets carrying one TCP flag
    (index into TCP_FLAGS) from the C record's flag_counts array."""

    def __init__(self, direction: str, flag: int) -> None:
        self._field, self._flag = f"{direction}_flag_counts", flag

    @overload
    def __get__(self, flow: None, owner: type) -> _FlagCount: ...
    @overload
    def __get__(self, flow: Flow, owner: type) -> int: ...
    def __get__(self, flow: Flow | None, owner: type) -> _FlagCount | int:
        return self if flow is None else getattr(flow._r, self._field)[self._flag]


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """One packet's network+transport headers, kept with headers=N. `ts_ns`: epoch ns;
    lengths in bytes; `raw`: the headers as captured (at most 120 bytes)."""

    ts_ns: int
    direction: int  # 0: src->dst, 1: dst->src
    ip_length: int
    captured_length: int
    ttl: int
    ip_id: int
    ip_frag: int
    tcp_flags: int
    tcp_seq: int
    tcp_ack: int
    tcp_window: int
    raw: bytes

    @property
    def ts(self) -> float:
        return self.ts_ns / 1e9


class Flow:
    """A bidirectional flow: `src` is the initiator (the sender of its first packet; a first
    SYN-ACK makes its receiver the src). A read-only view over one C record of a batch.

    Units: packets; bytes at the IP layer (`*_captured_bytes`: as captured); times as float
    seconds since the epoch with exact integer nanoseconds in the `*_ns` twins; TTLs as carried.
    Every attribute is documented in the README. Nothing here raises but `meter()` (KeyError for
    a meter this build lacks)."""

    __slots__ = ("_batch", "_i")

    def __init__(self, batch: Batch, index: int) -> None:
        # One small object per flow (the batch holds the C memory) keeps garbage collection cheap.
        self._batch = batch
        self._i = index

    @property
    def position(self) -> tuple[Batch, int]:
        """Where this flow's C record is: (its batch, its index there), for bulk readers (the exporters)."""
        return self._batch, self._i

    @property
    def _r(self) -> _Record:
        return self._batch.records[self._i]  # type: ignore[no-any-return]  # a cffi af_record

    # --- record fields (integers) ---
    @property
    def id(self) -> int:
        """Unique per record, in order of flow creation."""
        return self._r.id

    @property
    def src_port(self) -> int:
        """The initiator's port (ICMP: see the README)."""
        return self._r.src_port

    @property
    def dst_port(self) -> int:
        return self._r.dst_port

    @property
    def protocol(self) -> int:
        """IP protocol number."""
        return self._r.protocol

    @property
    def ip_version(self) -> int:
        """4 or 6."""
        return self._r.ip_version

    @property
    def vlan_id(self) -> int:
        """Innermost 802.1Q id; 0 when untagged."""
        return self._r.vlan_id

    @property
    def src2dst_packets(self) -> int:
        return self._r.src2dst_packets

    @property
    def src2dst_bytes(self) -> int:
        """IP-layer bytes the initiator sent."""
        return self._r.src2dst_bytes

    @property
    def src2dst_captured_bytes(self) -> int:
        """Captured bytes of the initiator's frames."""
        return self._r.src2dst_captured_bytes

    @property
    def dst2src_packets(self) -> int:
        return self._r.dst2src_packets

    @property
    def dst2src_bytes(self) -> int:
        return self._r.dst2src_bytes

    @property
    def dst2src_captured_bytes(self) -> int:
        return self._r.dst2src_captured_bytes

    @property
    def src2dst_tcp_flags(self) -> int:
        """OR of the TCP flags the initiator sent."""
        return self._r.src2dst_tcp_flags

    @property
    def dst2src_tcp_flags(self) -> int:
        return self._r.dst2src_tcp_flags

    @property
    def src2dst_min_ttl(self) -> int:
        """Lowest TTL (IPv6: hop limit) the initiator's packets carried."""
        return self._r.src2dst_min_ttl

    @property
    def src2dst_max_ttl(self) -> int:
        return self._r.src2dst_max_ttl

    @property
    def dst2src_min_ttl(self) -> int:
        return self._r.dst2src_min_ttl

    @property
    def dst2src_max_ttl(self) -> int:
        return self._r.dst2src_max_ttl

    @property
    def headers_dropped(self) -> int:
        """Packets past the headers=N bound (their headers were not kept)."""
        return self._r.headers_dropped

    # --- times: epoch nanoseconds, and float seconds twins ---
    first_seen_ns = _Nanoseconds("first_ns")
    first_seen = _Seconds("first_ns")
    last_seen_ns = _Nanoseconds("last_ns")
    last_seen = _Seconds("last_ns")
    src2dst_first_seen_ns = _Nanoseconds("src2dst_first_ns")
    src2dst_first_seen = _Seconds("src2dst_first_ns")
    src2dst_last_seen_ns = _Nanoseconds("src2dst_last_ns")
    src2dst_last_seen = _Seconds("src2dst_last_ns")
    dst2src_first_seen_ns = _Nanoseconds("dst2src_first_ns")
    dst2src_first_seen = _Seconds("dst2src_first_ns")
    dst2src_last_seen_ns = _Nanoseconds("dst2src_last_ns")
    dst2src_last_seen = _Seconds("dst2src_last_ns")

    # --- per-flag packet counters (packets that carried the flag, per direction) ---
    src2dst_fin_packets = _FlagCount("src2dst", 0)
    dst2src_fin_packets = _FlagCount("dst2src", 0)
    src2dst_syn_packets = _FlagCount("src2dst", 1)
    dst2src_syn_packets = _FlagCount("dst2src", 1)
    src2dst_rst_packets = _FlagCount("src2dst", 2)
    dst2src_rst_packets = _FlagCount("dst2src", 2)
    src2dst_psh_packets = _FlagCount("src2dst", 3)
    dst2src_psh_packets = _FlagCount("dst2src", 3)
    src2dst_ack_packets = _FlagCount("src2dst", 4)
    dst2src_ack_packets = _FlagCount("dst2src", 4)
    src2dst_urg_packets = _FlagCount("src2dst", 5)
    dst2src_urg_packets = _FlagCount("dst2src", 5)
    src2dst_ece_packets = _FlagCount("src2dst", 6)
    dst2src_ece_packets = _FlagCount("dst2src", 6)
    src2dst_cwr_packets = _FlagCount("src2dst", 7)
    dst2src_cwr_packets = _FlagCount("dst2src", 7)

    # --- addresses and key ---
    @property
    def src_ip(self) -> str:
        return ip_to_str(self._r.ip_version, bytes(self._r.src_ip))

    @property
    def dst_ip(self) -> str:
        return ip_to_str(self._r.ip_version, bytes(self._r.dst_ip))

    @property
    def src_ip_int(self) -> int:
        return ip_to_int(self._r.ip_version, bytes(self._r.src_ip))

    @property
    def dst_ip_int(self) -> int:
        return ip_to_int(self._r.ip_version, bytes(self._r.dst_ip))

    @property
    def key(self) -> tuple[str, int, str, int, int]:
        return (self.src_ip, self._r.src_port, self.dst_ip, self._r.dst_port, self._r.protocol)

    @property
    def bidirectional_id(self) -> str:
        """The same for both directions of a conversation: endpoints in sorted order."""
        r = self._r
        a = (bytes(r.src_ip), r.src_port)
        b = (bytes(r.dst_ip), r.dst_port)
        lo, hi = sorted((a, b))
        v = r.ip_version
        return flow_id_text(r.protocol, r.vlan_id, ip_to_str(v, lo[0]), lo[1], ip_to_str(v, hi[0]), hi[1])

    # --- totals and times ---
    @property
    def packets(self) -> int:
        return int(self._r.src2dst_packets + self._r.dst2src_packets)

    @property
    def bytes(self) -> int:
        """IP-layer bytes both ways."""
        return int(self._r.src2dst_bytes + self._r.dst2src_bytes)

    @property
    def captured_bytes(self) -> int:
        return int(self._r.src2dst_captured_bytes + self._r.dst2src_captured_bytes)

    @property
    def duration_ns(self) -> int:
        return int(self._r.last_ns - self._r.first_ns)

    @property
    def duration(self) -> float:
        return self.duration_ns / 1e9

    @property
    def bytes_per_second(self) -> float:
        """Over the flow's duration; 0.0 for a single-instant flow."""
        d = self.duration_ns
        return self.bytes * 1e9 / d if d else 0.0

    @property
    def packets_per_second(self) -> float:
        d = self.duration_ns
        return self.packets * 1e9 / d if d else 0.0

    @property
    def end_reason(self) -> str:
        """idle, active, fin, rst, eof, evicted, stop; "" for a flow still active."""
        return END_REASONS[self._r.end_reason]

    @property
    def expiration_id(self) -> int:
        """nfstream's expiration_id: 0 idle (and fin, rst, eof, stop), 1 active, -1 otherwise (evicted)."""
        return expiration_id(self.end_reason)

    # --- extras under nfstream's names (README "Features for analytics"): zero/empty when off ---
    # tunnel_id: decode_tunnels=True, the tunnel path's id (part of the flow key), 0 outside tunnels;
    # tunnel_type: gre, erspan, ipip, vxlan, geneve, gtp, teredo, mpls ("" without); tunnel_src_ip,
    # tunnel_dst_ip: the outermost carrier's addresses, src side first ("" without)
    tunnel_id = _Extra("tunnel", 0)
    tunnel_type = _Extra("tunnel", "")
    tunnel_src_ip = _Extra("tunnel", "")
    tunnel_dst_ip = _Extra("tunnel", "")
    # meters=("mac",): the first packet's Ethernet addresses, src->dst oriented, and their OUIs
    src_mac = _Extra("mac", "00:00:00:00:00:00")
    dst_mac = _Extra("mac", "00:00:00:00:00:00")
    src_oui = _Extra("mac", "00:00:00")
    dst_oui = _Extra("mac", "00:00:00")

    @property
    def headers(self) -> list[PacketHeader]:
        r = self._r
        out: list[PacketHeader] = []
        for i in range(r.header_offset, r.header_offset + r.header_count):
            h = self._batch.headers[i]
            out.append(
                PacketHeader(
                    ts_ns=h.ts_ns, direction=h.direction, ip_length=h.ip_length,
                    captured_length=h.captured_length, ttl=h.ttl, ip_id=h.ip_id, ip_frag=h.ip_frag,
                    tcp_flags=h.tcp_flags, tcp_seq=h.tcp_seq, tcp_ack=h.tcp_ack,
                    tcp_window=h.tcp_window, raw=bytes(h.raw[0 : h.raw_length]),
                )
            )  # fmt: skip
        return out

    # --- reassembly (FlowParser(reassemble=True)); index 0 is the client (src), 1 the server ---
    def _kept(self, d: int) -> tuple[builtins.bytes, bool] | None:
        """Direction d's kept data as C lays it out, and whether that is framed datagrams."""
        spans = self._batch.spans
        kept = spans.kept(self._i, d) if spans is not None else None
        if kept is None:
            return None
        at, length, protocol = kept
        return self._batch.stream_data[at : at + length], is_datagrams(protocol)

    def _stream(self, d: int) -> builtins.bytes | None:
        kept = self._kept(d)
        if kept is None:
            return None
        raw, framed = kept
        return b"".join(unframe(raw)) if framed else raw

    def _datagrams(self, d: int) -> tuple[builtins.bytes, ...] | None:
        kept = self._kept(d)
        return unframe(kept[0]) if kept is not None and kept[1] else None

    def _holes(self, d: int) -> tuple[tuple[int, int], ...]:
        spans = self._batch.spans
        if spans is None:
            return ()
        at, n = spans.holes(self._i, d)
        flat = struct.unpack_from(f"={2 * n}Q", self._batch.stream_data, at)
        return tuple(zip(flat[::2], flat[1::2], strict=True))

    def _truncated(self, d: int) -> bool:
        spans = self._batch.spans
        return spans is not None and spans.truncated(self._i, d)

    @property
    def client_stream(self) -> builtins.bytes | None:
        """Bytes the client (src) sent, in order, holes left out (see client_holes); for UDP and
        other IP protocols its datagrams' payloads joined (ICMP: after the 8-byte header; see
        client_datagrams). None without reassembly and for snapshots of active flows."""
        return self._stream(0)

    @property
    def server_stream(self) -> builtins.bytes | None:
        return self._stream(1)

    @property
    def client_holes(self) -> tuple[tuple[int, int], ...]:
        """(stream offset, length) of data the client sent that was never seen."""
        return self._holes(0)

    @property
    def server_holes(self) -> tuple[tuple[int, int], ...]:
        return self._holes(1)

    @property
    def client_truncated(self) -> bool:
        """The client's stream went past max_stream_bytes (or reassembly memory): it is cut."""
        return self._truncated(0)

    @property
    def server_truncated(self) -> bool:
        return self._truncated(1)

    @property
    def client_datagrams(self) -> tuple[builtins.bytes, ...] | None:
        """UDP and other IP protocols (not TCP): the payloads the client sent, one per datagram;
        None for TCP."""
        return self._datagrams(0)

    @property
    def server_datagrams(self) -> tuple[builtins.bytes, ...] | None:
        return self._datagrams(1)

    # --- meters (FlowParser(meters=(...))) ---
    def meter(self, name: str) -> Mapping[str, Any]:
        """The fields meter `name` measured for this flow (names, C types and units: its fields in
        `aioflow._engine.METERS[name]`); an empty mapping when the meter was not on, and for
        snapshots of active flows. Array fields (splt_*) are lists. Raises KeyError for a meter
        name this build does not have."""
        b = self._batch
        if name not in METERS and all(m.name != name for m in b.meter_layout.loaded):
            raise KeyError(f"no meter {name!r}: this build has {', '.join(METERS)}")
        return b.meter_layout.read(b.meter_data, self._i, name) or {}

    @property
    def meters(self) -> dict[str, Mapping[str, Any]]:
        """Every enabled meter's fields, by meter name (see meter())."""
        b = self._batch
        return b.meter_layout.read_all(b.meter_data, self._i)

    def meter_columns(self) -> dict[str, Any]:
        """Every enabled meter's fields under their read_frame column names (``low_ttl_...``;
        nfstream's names for the meters with plain names: statistics, splt, tunnel, mac), in
        read_frame's order."""
        out: dict[str, Any] = {}
        for name, values in self.meters.items():
            meter = self._batch.meter_layout.info(name)
            out.update((meter.column(f), values[f.name]) for f in meter.fields)
        return out

    @property
    def udps(self) -> SimpleNamespace:
        """The plugins' fields of this flow (FlowParser(plugins=...)): ``flow.udps.x``; with no
        plugin, an empty namespace not kept anywhere."""
        udps = self._batch.udps
        return SimpleNamespace() if udps is None else udps[self._i]

    def to_dict(self) -> dict[str, Any]:
        """Every scalar attribute (headers excluded), JSON-friendly, then the plugins' fields as
        ``udps.<name>``."""
        out = {name: getattr(self, name) for name in SCALAR_FIELDS}
        if self._batch.udps is not None:
            out.update({f"udps.{k}": v for k, v in vars(self._batch.udps[self._i]).items()})
        return out

    def __repr__(self) -> str:
        return (
            f"<Flow {self.src_ip}:{self.src_port} -> {self.dst_ip}:{self.dst_port} proto={self.protocol} "
            f"packets={self.packets} bytes={self.bytes} end={self.end_reason or 'active'}>"
        )


SCALAR_FIELDS = (
    "id", "bidirectional_id", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "ip_version",
    "vlan_id", "first_seen", "last_seen", "first_seen_ns", "last_seen_ns", "duration", "duration_ns",
    "packets", "bytes", "captured_bytes",
    "src2dst_packets", "src2dst_bytes", "src2dst_captured_bytes",
    "dst2src_packets", "dst2src_bytes", "dst2src_captured_bytes",
    "src2dst_first_seen_ns", "src2dst_last_seen_ns", "dst2src_first_seen_ns", "dst2src_last_seen_ns",
    "src2dst_tcp_flags", "dst2src_tcp_flags", *FLAG_COUNT_FIELDS,
    "src2dst_min_ttl", "src2dst_max_ttl", "dst2src_min_ttl", "dst2src_max_ttl",
    "bytes_per_second", "packets_per_second", "headers_dropped", "end_reason", "expiration_id",
)  # fmt: skip
