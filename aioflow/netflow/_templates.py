"""Export templates: the information elements of each template (IPFIX, NetFlow v9), the
big-endian numpy dtype of its records and how it fills them from columns in bulk; the time
conversions the elements need (NTP timestamps, sysUptime). _encode.py cuts the records into
messages."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._ipfix_elements import ENTERPRISE_BIT, NTP_UNIX_OFFSET, by_name

if TYPE_CHECKING:
    from ._encode import Clock

V9_FIRST_TEMPLATE = 256
U32_MAX = 2**32 - 1


def ns_to_ntp(ns: np.ndarray) -> np.ndarray:
    """Unix ns -> 64-bit NTP timestamps (dateTimeNanoseconds, RFC 7011 6.1.10), vectorised. The
    fraction is rounded up, so decoders that truncate (Wireshark) and those that round both get
    the exact nanosecond back."""
    ns = ns.astype(np.uint64)
    billion = np.uint64(10**9)
    seconds = (ns // billion + np.uint64(NTP_UNIX_OFFSET)) & np.uint64(U32_MAX)  # NTP eras wrap (2036)
    fraction = (((ns % billion) << np.uint64(32)) + billion - np.uint64(1)) // billion
    return (seconds << np.uint64(32)) | fraction


def uptime_ms(ns: np.ndarray | int, boot_ns: np.ndarray | int) -> Any:
    """Milliseconds since boot, modulo 2**32 (unsigned arithmetic wraps as sysUptime does)."""
    if isinstance(ns, np.ndarray):
        boot_ms = np.asarray(boot_ns, dtype=np.uint64) // np.uint64(1_000_000)
        return (ns.astype(np.uint64) // np.uint64(1_000_000) - boot_ms) & np.uint64(U32_MAX)
    return (ns // 1_000_000 - int(boot_ns) // 1_000_000) & U32_MAX


# --- templates ---


@dataclass(frozen=True)
class Element:
    """One template field: the information element, its encoded length and the column it reads."""

    name: str  # IANA (or RFC 5103 reverse) name from aioflow._ipfix_elements
    length: int
    column: str
    convert: Callable[[np.ndarray, Clock], np.ndarray] | None = None


class Template:
    """A template and the big-endian numpy dtype of its records."""

    def __init__(self, template_id: int, elements: Sequence[Element]) -> None:
        self.id = template_id
        self.elements = tuple(elements)
        fields: list[tuple[Any, ...]] = []
        for el in self.elements:
            ie = by_name(el.name)
            if ie.type in ("ipv4Address", "ipv6Address", "octetArray"):
                fields.append((el.name, np.uint8, (el.length,)))
            elif ie.type == "string":  # fixed length: the text, then NULs (RFC 7011 6.1.6 allows no other)
                fields.append((el.name, f"S{el.length}"))
            else:
                fields.append((el.name, f">u{el.length}"))
        self.dtype = np.dtype(fields)
        self.record_length = self.dtype.itemsize

    def fields_ipfix(self) -> bytes:
        """The template record's body in IPFIX form (enterprise elements with their number)."""
        out = bytearray(struct.pack("!HH", self.id, len(self.elements)))
        for el in self.elements:
            ie = by_name(el.name)
            if ie.enterprise:
                out += struct.pack("!HHI", ie.id | ENTERPRISE_BIT, el.length, ie.enterprise)
            else:
                out += struct.pack("!HH", ie.id, el.length)
        return bytes(out)

    def fields_v9(self) -> bytes:
        """The template record's field specifiers, NetFlow v9 form (bytes)."""
        out = bytearray(struct.pack("!HH", self.id, len(self.elements)))
        for el in self.elements:
            out += struct.pack("!HH", by_name(el.name).id, el.length)
        return bytes(out)

    def fill(self, cols: dict[str, np.ndarray], clock: Clock) -> np.ndarray:
        """These columns as data records: a structured array of the template's (big-endian) dtype."""
        out = np.empty(len(next(iter(cols.values()))), dtype=self.dtype)
        for el in self.elements:
            value = cols[el.column]
            if el.convert is not None:
                value = el.convert(value, clock)
            if value.ndim == 2:
                value = value[:, : el.length]
            out[el.name] = value
        return out


def _ms(ns: np.ndarray, clock: Clock) -> np.ndarray:
    return ns // 1_000_000


def _ntp(ns: np.ndarray, clock: Clock) -> np.ndarray:
    return ns_to_ntp(ns)


def _uptime(ns: np.ndarray, clock: Clock) -> np.ndarray:
    assert clock.row_boot_ns is not None  # set by the message plan
    uptime: np.ndarray = uptime_ms(ns, clock.row_boot_ns)
    return uptime


def _address_elements(version: int) -> list[Element]:
    if version == 4:
        return [Element("sourceIPv4Address", 4, "src"), Element("destinationIPv4Address", 4, "dst")]
    return [Element("sourceIPv6Address", 16, "src"), Element("destinationIPv6Address", 16, "dst")]


_KEY_ELEMENTS = [
    Element("sourceTransportPort", 2, "src_port"),
    Element("destinationTransportPort", 2, "dst_port"),
    Element("protocolIdentifier", 1, "protocol"),
    Element("ipVersion", 1, "version"),
    Element("vlanId", 2, "vlan"),
]


def _counter_elements(prefix: str, tcp_flags_length: int) -> list[Element]:
    rev = bool(prefix)

    def name(forward: str) -> str:
        return "reverse" + forward[0].upper() + forward[1:] if rev else forward

    return [
        Element(name("packetDeltaCount"), 8, prefix + "packets"),
        Element(name("octetDeltaCount"), 8, prefix + "octets"),
        Element(name("tcpControlBits"), tcp_flags_length, prefix + "tcp_flags"),
        Element(name("minimumTTL"), 1, prefix + "min_ttl"),
        Element(name("maximumTTL"), 1, prefix + "max_ttl"),
    ]


def v9_templates() -> dict[int, Template]:
    """RFC 3954 uni-flow templates with sysUptime-relative times (FIRST/LAST_SWITCHED)."""
    times = [
        Element("flowStartSysUpTime", 4, "first_ns", _uptime),
        Element("flowEndSysUpTime", 4, "last_ns", _uptime),
    ]
    return {
        v: Template(V9_FIRST_TEMPLATE + i, [*_address_elements(v), *_KEY_ELEMENTS, *_counter_elements("", 1), *times])
        for i, v in enumerate((4, 6))
    }


# RFC 6759 applicationId: a Classification Engine ID octet, then that engine's selector. nDPI has
# no engine id of its own, so 6 ("USER-Defined"): the selector is nDPI 4.2's protocol id (2 bytes,
# network order), its application protocol, else its master protocol ("TLS.YouTube": YouTube's).
APPLICATION_ENGINE_ID = 6
# With dissect=True (the dissect meter's text fields, their C sizes: application_name char[48]...)
APPLICATION_ELEMENTS = [
    Element("applicationId", 3, "application_id"),
    Element("applicationName", 48, "application_name"),
    Element("applicationCategoryName", 32, "application_category_name"),
    # TLS/QUIC SNI, HTTP Host, DNS query name: IANA has no such element; ntop's FLOW_SERVER_NAME
    Element("ntopFlowServerName", 80, "requested_server_name"),
]


def ipfix_templates(biflow: bool, nanoseconds: bool, applications: bool = False) -> dict[int, Template]:
    """IPFIX templates by id: IPv4 and IPv6, biflow or not, ms or ns times, with the application
    elements or not."""
    times = [
        Element("flowStartMilliseconds", 8, "first_ns", _ms),
        Element("flowEndMilliseconds", 8, "last_ns", _ms),
    ]
    if nanoseconds:  # beside the milliseconds, which collectors such as nfdump 1.7 need (no ns elements there)
        times += [
            Element("flowStartNanoseconds", 8, "first_ns", _ntp),
            Element("flowEndNanoseconds", 8, "last_ns", _ntp),
        ]
    tail = [Element("flowEndReason", 1, "end_reason")] + (APPLICATION_ELEMENTS if applications else [])
    counters = _counter_elements("", 2)
    if biflow:
        counters += _counter_elements("reverse_", 2)
        tail.append(Element("biflowDirection", 1, "biflow_direction"))
    return {
        v: Template(V9_FIRST_TEMPLATE + i, [*_address_elements(v), *_KEY_ELEMENTS, *times, *counters, *tail])
        for i, v in enumerate((4, 6))
    }
