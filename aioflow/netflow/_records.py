"""Flow records and datagrams, pyflowtools-style: ``FlowRecord`` (a view into one record of a decoded
RecordSet, attributes by IANA, aioflow and pyflowtools names), ``PDU`` / ``FlowPDU`` (one decoded
datagram: header fields, ordering), ``parse_pdu`` and ``message_records``. Public through
``aioflow.netflow.collect``; flow-tools files (``flowtools``) give the same record type."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np

from .._errors import MalformedPDUError
from .._flow import flow_id_text
from ._decode import Decoder, Message, RecordSet, Template
from ._ftlayout import ftltime

# Normalised attribute -> the elements that may carry it, first present wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "src_ip": ("sourceIPv4Address", "sourceIPv6Address"),
    "dst_ip": ("destinationIPv4Address", "destinationIPv6Address"),
    "src_port": ("sourceTransportPort", "udpSourcePort", "tcpSourcePort"),
    # ICMP type << 8 | code where NetFlow v5 puts it, the destination port
    "dst_port": (
        "destinationTransportPort",
        "udpDestinationPort",
        "tcpDestinationPort",
        "icmpTypeCodeIPv4",
        "icmpTypeCodeIPv6",
    ),
    "protocol": ("protocolIdentifier",),
    "packets": ("packetDeltaCount", "packetTotalCount"),
    "bytes": ("octetDeltaCount", "octetTotalCount"),
    "reverse_packets": ("reversePacketDeltaCount", "reversePacketTotalCount"),
    "reverse_bytes": ("reverseOctetDeltaCount", "reverseOctetTotalCount"),
    "tcp_flags": ("tcpControlBits",),
    "tos": ("ipClassOfService",),
    "vlan_id": ("vlanId", "dot1qVlanId"),
    "next_hop": ("ipNextHopIPv4Address", "ipNextHopIPv6Address"),
    "input": ("ingressInterface",),
    "output": ("egressInterface",),
    "src_as": ("bgpSourceAsNumber",),
    "dst_as": ("bgpDestinationAsNumber",),
    "src_mask": ("sourceIPv4PrefixLength", "sourceIPv6PrefixLength"),
    "dst_mask": ("destinationIPv4PrefixLength", "destinationIPv6PrefixLength"),
    "first": ("flowStartSysUpTime",),  # pyflowtools' first_raw/last_raw (uptime ms); first/last: Unix time
    "last": ("flowEndSysUpTime",),
    "engine_type": ("engineType",),
    "engine_id": ("engineId",),
    "exporter_ip": ("exporterIPv4Address",),
}
# pyflowtools' names for the same attributes.
_FLOWTOOLS = {"srcaddr": "src_ip", "dstaddr": "dst_ip", "srcport": "src_port", "dstport": "dst_port",
              "prot": "protocol", "dPkts": "packets", "dOctets": "bytes", "nexthop": "next_hop",
              "exaddr": "exporter_ip"}  # fmt: skip


def _exporter_host(rs: RecordSet) -> str | None:
    host = rs.exporter[0] if isinstance(rs.exporter, tuple) and rs.exporter else rs.exporter
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return None


# pyflowtools' per-record header fields, for records whose template lacks them (a datagram's records
# share its header): attribute -> value from the RecordSet (None where the version has none).
_HEADER_FIELDS: dict[str, Any] = {
    "unix_secs": lambda rs: rs.export_time,
    "unix_nsecs": lambda rs: rs.export_nsecs,
    "sysUpTime": lambda rs: rs.sys_uptime_ms,
    "engine_type": lambda rs: rs.domain >> 8 & 0xFF if rs.version == 5 else None,
    "engine_id": lambda rs: rs.domain & 0xFF if rs.version == 5 else None,
    "exaddr": _exporter_host,
    "exaddr_raw": lambda rs: None if (h := _exporter_host(rs)) is None else int(ipaddress.IPv4Address(h)),
}
_ADDRESS_TYPES = ("ipv4Address", "ipv6Address", "macAddress")


_MISSING = object()


def _resolve(template: Template, name: str) -> tuple[str, bool] | None:
    """Attribute name -> (template field, raw?), or None for a known name the template lacks; cached."""
    raw = name.endswith("_raw")
    base = _FLOWTOOLS.get(name.removesuffix("_raw"), name.removesuffix("_raw"))
    result: tuple[str, bool] | None
    if base in template.by_key:
        result = (base, raw)
    elif base in _ALIASES:
        result = next(((c, raw) for c in _ALIASES[base] if c in template.by_key), None)
    elif name in _HEADER_FIELDS:
        result = None  # from the datagram's header (FlowRecord.__getattr__)
    else:
        raise AttributeError(name)
    template.attrs[name] = result
    return result


def _number(value: Any) -> int:
    # A field of an odd size is kept as octets: still orderable, as the integer they spell.
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value or 0)


def _python_value(spec: Any, value: Any, raw: bool) -> Any:
    """One field value as FlowRecord gives it (addresses as text unless raw, octets as bytes)."""
    if spec.type in ("ipv6Address",) and spec.length == 16:
        number = int.from_bytes(bytes(value), "big")
        return number if raw else str(ipaddress.IPv6Address(number))
    if isinstance(value, np.ndarray):  # raw octets of a long field
        return bytes(value)
    if spec.type == "string" and not raw:
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value
    number = value.item()
    if raw or spec.type not in _ADDRESS_TYPES:
        return number
    if spec.type == "ipv4Address":
        return str(ipaddress.IPv4Address(number))
    return ":".join(f"{b:02x}" for b in number.to_bytes(6, "big"))


# "0." ... "255." and "0" ... "255": dotted quads are three concatenations of these per address, done by
# numpy over object arrays (glibc's inet_ntoa formats with snprintf: ~2600 instructions an address)
_OCTET_DOT = np.array([f"{i}." for i in range(256)], dtype=object)
_OCTET = np.array([str(i) for i in range(256)], dtype=object)


def _dotted_quads(column: np.ndarray) -> list[str]:
    """IPv4 addresses (integers) as text, as ipaddress and inet_ntoa write them."""
    octets = column.astype(">u4").view(np.uint8).reshape(-1, 4)
    text = _OCTET_DOT[octets[:, 0]] + _OCTET_DOT[octets[:, 1]] + _OCTET_DOT[octets[:, 2]] + _OCTET[octets[:, 3]]
    values: list[str] = text.tolist()
    return values


def _column_values(rs: RecordSet, name: str, raw: bool) -> list[Any]:
    """A template field's Python values for every record of a set (as FlowRecord gives them:
    addresses as text unless raw), made once per set: a loop over records then reads a list."""
    values = rs._python.get((name, raw))
    if values is None:
        spec = rs.template.spec[name]
        column = rs.column(name)
        if column.ndim == 1 and column.dtype.kind in "ui" and (raw or spec.type not in _ADDRESS_TYPES):
            values = column.tolist()
        elif column.ndim == 1 and spec.type == "ipv4Address":
            values = _dotted_quads(column)
        else:
            values = [_python_value(spec, v, raw) for v in column]
        rs._python[(name, raw)] = values
    return values


def set_values(rs: RecordSet, name: str) -> Any:
    """An attribute of every record of a set at once, resolved as FlowRecord resolves it: the column
    of the template field it names (or its alias; as converted, addresses as integers), else the
    datagram header's value, one for every record; None when the set has neither."""
    resolved = rs.template.attrs.get(name, _MISSING)
    if resolved is _MISSING:
        try:
            resolved = _resolve(rs.template, name)
        except AttributeError:
            return None
    if resolved is not None:
        return rs.column(resolved[0])
    header = _HEADER_FIELDS.get(name)
    return None if header is None else header(rs)


def _ftltimes(rs: RecordSet, which: int) -> list[Any]:
    """pyflowtools' first (which 0) or last (1) of every record of a set, as Unix seconds: flow-tools'
    arithmetic on the uptime and the export time (the record's own in a flow-tools file, its
    datagram's header otherwise); the set's start/end in seconds when it has no uptimes (IPFIX)."""
    when = set_values(rs, "first_raw" if which == 0 else "last_raw")
    secs, nsecs, uptime = set_values(rs, "unix_secs"), set_values(rs, "unix_nsecs"), set_values(rs, "sysUpTime")
    if when is None or secs is None or uptime is None:
        ns = rs.start_end_ns()[which]
        seconds: list[Any] = [None] * len(rs) if ns is None else (ns / 1e9).tolist()
        return seconds
    times: list[Any] = ftltime(secs, 0 if nsecs is None else nsecs, uptime, when).tolist()
    return times


class FlowRecord:
    """One flow (or options) record. Attributes: every template field by its IANA name
    (``record.octetDeltaCount``), addresses as strings with ``_raw`` integer twins
    (``record.sourceIPv4Address_raw``), normalised names (``src_ip``, ``dst_port``, ``packets``,
    ``bytes``, ``start_ns``, ...; None when the template lacks them) and pyflowtools' names
    (``srcaddr``, ``dPkts``, ...). ``record[(enterprise, id)]`` reads any field by number."""

    __slots__ = ("_i", "_set")

    def __init__(self, record_set: RecordSet, index: int) -> None:
        self._set = record_set
        self._i = index

    # --- where it came from ---
    @property
    def version(self) -> int:
        """NetFlow/IPFIX version of the message it came in: 5, 9 or 10 (IPFIX)."""
        return self._set.version

    @property
    def exporter(self) -> Hashable:
        """Who sent it: the (host, port) of the datagram, or what parse_pdu() was given (\"file:PATH\" for files)."""
        return self._set.exporter

    @property
    def observation_domain(self) -> int:
        """IPFIX observation domain id, v9 source id, v5 engine type << 8 | engine id."""
        return self._set.domain

    @property
    def template_id(self) -> int:
        """The id of the template the record was decoded with (v5: its fixed layout's)."""
        return self._set.template.template_id

    @property
    def is_options(self) -> bool:
        """Whether it is an options record (exporter statistics, sampling), not a flow."""
        return self._set.template.is_options

    @property
    def fields(self) -> tuple[str, ...]:
        """The template's field names (IANA names; unknown ones as ``e<enterprise>id<id>``)."""
        return self._set.template.names

    # --- field access ---
    def _value(self, name: str, raw: bool = False) -> Any:
        return _column_values(self._set, name, raw)[self._i]

    def _values_of(self, name: str) -> list[Any]:
        """Every record's value of attribute ``name`` in this set, made once per set and name: a loop over
        records then reads a list per access, no resolving and no numpy scalar (the attribute path's
        slow half; unknown names raise AttributeError)."""
        rs = self._set
        values = rs._python.get(name)
        if values is None:
            template = rs.template
            resolved = template.attrs.get(name, _MISSING)
            if resolved is _MISSING:
                resolved = _resolve(template, name)
            if resolved is None:
                header = _HEADER_FIELDS.get(name)
                values = [None if header is None else header(rs)] * len(rs)
            else:
                values = _column_values(rs, *resolved)
            rs._python[name] = values
        return values

    def __getitem__(self, key: str | tuple[int, int]) -> Any:
        name = self._set.template.by_key.get(key)
        if name is None:
            raise KeyError(key)
        return self._value(name)

    def get(self, key: str | tuple[int, int], default: Any = None) -> Any:
        """``record[key]``, or ``default`` when the template has no such field (raises nothing)."""
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, name: str) -> Any:
        return self._values_of(name)[self._i]

    # --- pyflowtools ---
    def _ftl(self, which: int) -> float | None:
        key = "@first" if which == 0 else "@last"
        values = self._set._python.get(key)
        if values is None:  # computed for the whole set at once
            values = self._set._python[key] = _ftltimes(self._set, which)
        value: float | None = values[self._i]
        return value

    @property
    def first(self) -> float | None:
        """Flow start as Unix seconds (pyflowtools: flow-tools' arithmetic on the uptime); ``first_raw``
        is the router uptime (ms). Without uptimes (IPFIX absolute times): ``start_ns`` in seconds."""
        try:
            value: float | None = self._set._python["@first"][self._i]
            return value
        except KeyError:
            return self._ftl(0)

    @property
    def last(self) -> float | None:
        """Flow end as Unix seconds (see ``first``); ``last_raw`` is the router uptime (ms)."""
        try:
            value: float | None = self._set._python["@last"][self._i]
            return value
        except KeyError:
            return self._ftl(1)

    def getID(self, bidir: bool = False) -> bytes:
        """pyflowtools' flow key: 18 bytes, source (address, port, input interface) and destination
        (address, port, output interface) as host-order integers (little-endian, as pyflowtools on
        x86), then the protocol and a zero byte; with bidir, the byte-wise smaller endpoint first."""
        src = struct.pack("<IHH", _number(self.srcaddr_raw), _number(self.srcport), _number(self.input))
        dst = struct.pack("<IHH", _number(self.dstaddr_raw), _number(self.dstport), _number(self.output))
        if bidir and not src < dst:
            src, dst = dst, src
        return src + dst + bytes([_number(self.prot) & 0xFF, 0])

    @property
    def start_ns(self) -> int | None:
        """Flow start, Unix nanoseconds, from whichever time elements the record has (None: none)."""
        start = self._set.start_end_ns()[0]
        return None if start is None else int(start[self._i])

    @property
    def end_ns(self) -> int | None:
        """Flow end, Unix nanoseconds, from whichever time elements the record has (None: none)."""
        end = self._set.start_end_ns()[1]
        return None if end is None else int(end[self._i])

    def flow_id(self, bidir: bool = False) -> str:
        """``proto-vlan-src:sport-dst:dport``; with bidir, endpoints sorted so both directions match
        (the same form as ``Flow.bidirectional_id``)."""
        a = (_number(self.src_ip_raw), _number(self.src_port), self.src_ip)
        b = (_number(self.dst_ip_raw), _number(self.dst_port), self.dst_ip)
        if bidir and b[:2] < a[:2]:
            a, b = b, a
        return flow_id_text(self.protocol, self.vlan_id or 0, a[2], a[1], b[2], b[1])

    def to_dict(self) -> dict[str, Any]:
        """Every template field by name, values as the attributes give them."""
        return {name: self._value(name) for name in self._set.template.names}

    def __repr__(self) -> str:
        return (
            f"<FlowRecord v{self.version} {self.src_ip}:{self.src_port} -> {self.dst_ip}:{self.dst_port} "
            f"proto={self.protocol} packets={self.packets} bytes={self.bytes}>"
        )


def _named(name: str) -> property:
    def get(self: FlowRecord) -> Any:
        try:  # the set's values of this attribute are made on the first access (of any record)
            return self._set._python[name][self._i]
        except KeyError:
            return self._values_of(name)[self._i]

    return property(get, doc=f"pyflowtools' / aioflow's ``{name}`` (see FlowRecord)")


# The names loops read most, as properties: found in the class, without the AttributeError that a
# __getattr__ fallback costs on every access, and in one dict and one list lookup once the set's
# values of the name are made. Same values as __getattr__ gives.
for _name in ("srcaddr", "dstaddr", "nexthop", "exaddr", "srcport", "dstport", "prot", "tos", "tcp_flags", "dPkts",
              "dOctets", "input", "output", "src_as", "dst_as", "src_mask", "dst_mask", "engine_type", "engine_id",
              "unix_secs", "unix_nsecs", "sysUpTime", "first_raw", "last_raw", "srcaddr_raw", "dstaddr_raw",
              "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "packets", "bytes"):  # fmt: skip
    setattr(FlowRecord, _name, _named(_name))


class PDU:
    """One decoded datagram, pyflowtools-style: iterate it for its flow records; header fields are
    attributes (pyflowtools' names). PDUs of one exporter order by sequence number (``a < b``: a was
    sent earlier), with 32-bit wrap-around (serial number arithmetic, RFC 1982)."""

    def __init__(self, message: Message, payload: bytes = b"") -> None:
        self.message = message
        self._payload = bytes(payload[:24])

    @property
    def version(self) -> int:
        """NetFlow/IPFIX version: 5, 9 or 10 (IPFIX)."""
        return self.message.version

    @property
    def sequence(self) -> int:
        """The header's sequence number (v5/IPFIX: records before this message; v9: datagrams)."""
        return self.message.sequence

    flow_sequence = sequence

    @property
    def count(self) -> int:
        """Flow records in the datagram (v9: the header's count of records, templates included)."""
        if self.version == 9 and len(self._payload) >= 4:
            return int.from_bytes(self._payload[2:4], "big")
        return len(self)

    @property
    def sysUpTime(self) -> int | None:
        """The exporter's uptime (ms) in the header; None for IPFIX, which has none."""
        return self.message.sys_uptime_ms

    @property
    def unix_secs(self) -> int:
        """Export time, Unix seconds."""
        return self.message.export_time

    @property
    def unix_nsecs(self) -> int:
        """v5's residual nanoseconds of the export time (0 for v9/IPFIX)."""
        return int.from_bytes(self._payload[12:16], "big") if self.version == 5 and len(self._payload) >= 16 else 0

    @property
    def engine_type(self) -> int | None:
        """v5's engine type (None for v9/IPFIX: see ``observation_domain``)."""
        return self.message.domain >> 8 & 0xFF if self.version == 5 else None

    @property
    def engine_id(self) -> int | None:
        """v5's engine id (None for v9/IPFIX)."""
        return self.message.domain & 0xFF if self.version == 5 else None

    @property
    def sampling_interval(self) -> int | None:
        """v5's sampling interval (the low 14 bits of the header's last field); None for v9/IPFIX."""
        if self.version != 5 or len(self._payload) < 24:
            return None
        return int.from_bytes(self._payload[22:24], "big") & 0x3FFF

    @property
    def observation_domain(self) -> int:
        """IPFIX observation domain, v9 source id, v5 engine type << 8 | engine id."""
        return self.message.domain

    @property
    def exporter(self) -> Hashable:
        return self.message.exporter

    @property
    def sets(self) -> list[RecordSet]:
        """The decoded data sets, flow and options, each a numpy batch (``rs.array``)."""
        return self.message.sets

    def __iter__(self) -> Iterator[FlowRecord]:
        return message_records(self.message, options=False)

    def options(self) -> Iterator[FlowRecord]:
        """The options records (exporter statistics, sampling, ...)."""
        for rs in self.message.sets:
            if rs.template.is_options:
                yield from (FlowRecord(rs, i) for i in range(len(rs)))

    def __len__(self) -> int:
        return sum(len(rs) for rs in self.message.sets if not rs.template.is_options)

    def is_next(self, previous: PDU) -> bool:
        """Whether this PDU follows ``previous`` (same exporter and domain) with no datagram lost
        (pyflowtools' check; v5/IPFIX sequence numbers count records, v9's count datagrams)."""
        return self.message.sequence == previous.message.next_sequence

    def _distance(self, other: PDU) -> int:
        if (self.exporter, self.version, self.observation_domain) != (other.exporter, other.version,
                                                                        other.observation_domain):  # fmt: skip
            raise ValueError("only PDUs of one exporter (address, version, domain) are ordered")
        d = (self.sequence - other.sequence) % 2**32
        return d - 2**32 if d >= 2**31 else d

    def __lt__(self, other: PDU) -> bool:
        return self._distance(other) < 0

    def __gt__(self, other: PDU) -> bool:
        return self._distance(other) > 0

    def __le__(self, other: PDU) -> bool:
        return self._distance(other) <= 0

    def __ge__(self, other: PDU) -> bool:
        return self._distance(other) >= 0

    def __repr__(self) -> str:
        return f"<PDU v{self.version} from {self.exporter!r} seq={self.sequence} records={len(self)}>"


class FlowPDU(PDU):
    """pyflowtools' constructor: ``FlowPDU(exporter_ip, udp_payload)`` decodes one datagram (as
    ``parse_pdu``; v9/IPFIX templates kept in ``decoder``, a module-wide one by default). Raises
    MalformedPDUError for a datagram that cannot be decoded."""

    def __init__(self, exporter_ip: Hashable, payload: bytes, *, decoder: Decoder | None = None) -> None:
        pdu = parse_pdu(exporter_ip, payload, decoder=decoder)
        super().__init__(pdu.message, payload)


def message_records(message: Message, options: bool = False) -> Iterator[FlowRecord]:
    """The records of one decoded message (``Decoder.parse``/``parse_file``, ``Collector.receive``)
    in set order: flow records, and options records too with ``options=True``. Raises nothing."""
    for rs in message.sets:
        if options or not rs.template.is_options:
            for i in range(len(rs)):
                yield FlowRecord(rs, i)


_default_decoder = Decoder()


def parse_pdu(exporter: Hashable, payload: bytes, *, decoder: Decoder | None = None) -> PDU:
    """Decode one NetFlow v5/v9 or IPFIX datagram from ``exporter`` (any hashable: an address or
    (host, port)). v9/IPFIX templates are remembered in ``decoder`` (a module-wide one by default)
    for the datagrams that follow. Raises MalformedPDUError (a ValueError) for a datagram that
    cannot be decoded; it is also counted in ``decoder.stats``."""
    message = (decoder or _default_decoder).parse(exporter, payload)
    if message.error is not None:
        raise MalformedPDUError(f"cannot decode the datagram from {exporter!r}: {message.error}")
    return PDU(message, payload)
