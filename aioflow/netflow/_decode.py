"""NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) message decoding, batched with numpy.

A template with fixed-length fields becomes a cached big-endian structured dtype: all records of a
data set are one ``np.frombuffer`` (a view, no copy, no loop per field). Templates with
variable-length fields take a per-record path. Malformed input raises ``_Malformed`` inside this
module only; ``Decoder.parse`` turns it into a counted reason and an empty PDU, with no template
change from that datagram kept (templates are staged and committed only when the whole datagram
decoded).
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO

import numpy as np

from . import _ipfix_elements as ies

V5_HEADER = struct.Struct("!HHIIIIBBH")
V9_HEADER = struct.Struct("!HHIIII")
IPFIX_HEADER = struct.Struct("!HHIII")
SET_HEADER = struct.Struct("!HH")
FIELD_SPEC = struct.Struct("!HH")
U32 = struct.Struct("!I")
U16 = struct.Struct("!H")
V5_MAX_RECORDS = 30  # RFC-less but universal: a v5 datagram holds 1..30 records
V9_RESTART_MS = 10_000  # sysUptime going back more than this is a restarted exporter, not reordering


class _Malformed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One template field: IANA name, element id, enterprise, length in bytes, type."""
    element_id: int
    length: int
    enterprise: int
    name: str
    type: str


class Template:
    """A decoded template: its fields and, when every field has a fixed length, a numpy dtype."""

    __slots__ = ("attrs", "by_key", "dtype", "fields", "is_options", "names", "native_dtype", "record_length",
                 "scope_count", "spec", "template_id")  # fmt: skip

    def __init__(self, template_id: int, fields: list[FieldSpec], scope_count: int = 0) -> None:
        self.template_id = template_id
        self.fields = tuple(fields)
        self.scope_count = scope_count
        self.is_options = scope_count > 0
        names: list[str] = []
        seen: Counter[str] = Counter()
        for f in fields:  # a template may repeat an element: later copies get #2, #3, ...
            seen[f.name] += 1
            names.append(f.name if seen[f.name] == 1 else f"{f.name}#{seen[f.name]}")
        self.names = tuple(names)
        self.by_key: dict[Hashable, str] = {}
        for f, name in zip(fields, names, strict=True):
            self.by_key.setdefault((f.enterprise, f.element_id), name)
            self.by_key.setdefault(name, name)
        variable = any(f.length == ies.VARLEN for f in fields)
        self.record_length = 0 if variable else sum(f.length for f in fields)
        self.dtype = None if variable else np.dtype([(n, _field_dtype(f)) for f, n in zip(fields, names, strict=True)])
        # The same layout in native byte order: one astype converts every numeric column of a set at once.
        self.native_dtype = None if self.dtype is None else self.dtype.newbyteorder("=")
        self.spec = dict(zip(names, fields, strict=True))
        self.attrs: dict[str, Any] = {}  # the record API's attribute -> field resolutions, cached

    def same_as(self, other: Template) -> bool:
        """Whether the other template has the same fields (a refresh, not a change)."""
        return self.fields == other.fields and self.scope_count == other.scope_count


def _field_dtype(f: FieldSpec) -> Any:
    n = f.length
    if f.type in ies.SIGNED_TYPES and n in (1, 2, 4, 8):
        return f">i{n}"
    if f.type.startswith("float") and n in (4, 8):
        return f">f{n}"
    numeric = f.type in ies.UNSIGNED_TYPES or f.type in ies.TIME_TYPES or f.type in ("ipv4Address", "boolean")
    if numeric and n in (1, 2, 4, 8):
        return f">u{n}"
    return ("u1", (n,))  # odd-length integers, addresses, MACs, strings: raw octets, converted per column


def _as_uint(octets: np.ndarray) -> np.ndarray:
    """(n, k) big-endian octets (k <= 8) -> uint64, vectorised."""
    out = np.zeros(len(octets), dtype=np.uint64)
    for k in range(octets.shape[1]):  # loop over octet positions (<= 8), not records
        out = (out << np.uint64(8)) | octets[:, k].astype(np.uint64)
    return out


@dataclass(slots=True)
class RecordSet:
    """The records of one data set: one template, decoded together.

    ``array`` is the numpy structured array (fixed-length templates; a view over the datagram),
    ``column(name)`` a converted column (integers as uint64/int64, IPv6 addresses as (n, 16) octets,
    strings and octet arrays as objects)."""

    version: int
    exporter: Hashable
    domain: int
    template: Template
    export_time: int  # Unix seconds of the message header
    sys_uptime_ms: int | None  # v5/v9 header; None for IPFIX
    export_nsecs: int  # v5's residual nanoseconds; 0 otherwise
    array: np.ndarray | None
    _raw_columns: dict[str, list[bytes]] | None = None
    _columns: dict[str, np.ndarray] = field(default_factory=dict)
    system_init_ms: int | None = None  # IPFIX: the exporter's systemInitTimeMilliseconds (options data)
    _start_end: tuple[np.ndarray | None, np.ndarray | None] | None = None
    # FlowRecord's per-record Python values: by (field, raw), by attribute name, "@first"/"@last"
    _python: dict[Any, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        if self.array is not None:
            return len(self.array)
        assert self._raw_columns is not None
        first = next(iter(self._raw_columns.values()), [])
        return len(first)

    def column(self, name: str) -> np.ndarray:
        """One field of every record, converted once and cached."""
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self._convert(name)
        return col

    def _convert(self, name: str) -> np.ndarray:
        spec = self.template.spec[name]
        if self.array is not None:
            raw = self.array[name]
            if raw.ndim == 1:
                native = self._columns.get("")
                if native is None:
                    native = self._columns[""] = self.array.astype(self.template.native_dtype)
                return native[name]
        else:
            assert self._raw_columns is not None
            values = self._raw_columns[name]
            if spec.length == ies.VARLEN or spec.type in ("string", "octetArray"):
                out = np.empty(len(values), dtype=object)
                out[:] = values
                return out
            raw = np.frombuffer(b"".join(values), dtype=np.dtype(_field_dtype(spec)))
        if raw.ndim == 1:  # a numeric field numpy reads directly: native byte order for arithmetic
            return raw.astype(raw.dtype.newbyteorder("="))
        if spec.type in ("string", "octetArray"):
            out = np.empty(len(raw), dtype=object)
            out[:] = [bytes(r) for r in raw]
            return out
        if spec.type == "ipv6Address" or spec.length > 8:
            return np.ascontiguousarray(raw)
        return _as_uint(raw)

    def has(self, name: str) -> bool:
        """Whether the set's template carries the field `name`."""
        return name in self.template.by_key

    def start_end_ns(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Flow start and end as Unix nanoseconds (int64), from whichever time elements are present;
        computed once per set."""
        if self._start_end is None:
            start, end = _times(self, "Start"), _times(self, "End")
            if start is not None and end is not None and "flowStartSysUpTime" in self.template.by_key:
                # A start after the end is a start from before the 32-bit uptime wrapped: nfdump's
                # reading, kept for v5/v9 so both read the same records alike. In IPFIX (boot time
                # from options data) only a start more than half the 32-bit range after the end is
                # (serial-number arithmetic): softflowd -r on a capture whose packets are out of
                # time order ends some flows 86-170 ms before they start, and reading that as a wrap
                # put those starts 49.7 days early. (v5/v9 still read those records so, as nfdump.)
                wrapped = (start - end > 2**31 * 10**6) if self.system_init_ms is not None else (start > end)
                start = np.where(wrapped, start - 2**32 * 10**6, start)
            self._start_end = (start, end)
        return self._start_end


class _NumericFields:
    """``name in has``: the template has that field and it decoded as numbers (a time element sent
    with an odd size is kept as octets and cannot be used as a time)."""

    def __init__(self, rs: RecordSet) -> None:
        self.rs = rs

    def __contains__(self, name: str) -> bool:
        return name in self.rs.template.by_key and self.rs.column(name).dtype.kind in "uif"


def _times(rs: RecordSet, which: str) -> np.ndarray | None:
    has = _NumericFields(rs)
    for unit, scale in (("Nanoseconds", None), ("Microseconds", None), ("Milliseconds", 10**6), ("Seconds", 10**9)):
        name = f"flow{which}{unit}"
        if name in has:
            col = rs.column(name).astype(np.uint64)
            if scale is None:  # NTP timestamps (RFC 7011 6.1.9/10)
                secs = (col >> np.uint64(32)).astype(np.int64) - ies.NTP_UNIX_OFFSET
                frac = (col & np.uint64(0xFFFFFFFF)).astype(np.float64)
                return secs * 10**9 + np.rint(frac * 1e9 / 2**32).astype(np.int64)
            return col.astype(np.int64) * scale
    uptime_name = f"flow{which}SysUpTime"
    if uptime_name in has and rs.system_init_ms is not None:  # IPFIX: uptime since the announced boot
        return (rs.system_init_ms + rs.column(uptime_name).astype(np.int64)) * 10**6
    if uptime_name in has and rs.sys_uptime_ms is not None:
        # RFC 3954: times are sysUptime ms; the header pairs sysUptime with the export's Unix time.
        export_ns = rs.export_time * 10**9 + rs.export_nsecs
        # A time above the header's sysUptime is read as nfdump reads it: in v5, from before the 32-bit
        # counter wrapped (49.7 days); in v9, after the header (plain boot time + uptime).
        delta = rs.sys_uptime_ms - rs.column(uptime_name).astype(np.int64)
        if rs.version == 5:
            delta %= 2**32
        return export_ns - delta * 10**6
    delta_name = f"flow{which}DeltaMicroseconds"
    if delta_name in has:
        return rs.export_time * 10**9 - rs.column(delta_name).astype(np.int64) * 1000
    return None


@dataclass(slots=True)
class DecodeStats:
    """What the decoder saw. ``malformed`` counts datagrams by reason; skipped records never count as
    records."""

    datagrams: int = 0
    records: int = 0
    options_records: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    sets_without_template: int = 0
    templates: int = 0
    template_redefinitions: int = 0
    template_withdrawals: int = 0
    templates_expired: int = 0
    templates_refused: int = 0  # over max_templates
    exporter_restarts: int = 0
    sequence_gaps: int = 0
    sequence_lost: int = 0  # records (v5/IPFIX) or datagrams (v9) missing by the sequence numbers
    sequence_backwards: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters by name (malformed as a plain dict)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["malformed"] = dict(self.malformed)
        return out


@dataclass(slots=True)
class Message:
    """One decoded datagram (or IPFIX file message)."""

    version: int
    exporter: Hashable
    domain: int  # IPFIX observation domain, v9 source id, v5 engine type << 8 | engine id
    sequence: int
    export_time: int
    sys_uptime_ms: int | None
    sets: list[RecordSet]
    count: int  # data records the sequence number advances by
    error: str | None = None

    @property
    def next_sequence(self) -> int:
        """The sequence number the exporter's next message should carry."""
        step = 1 if self.version == 9 else self.count
        return (self.sequence + step) % 2**32


# A template cache key: exporter, version, domain, template id.
_Key = tuple[Hashable, int, int, int]


class Decoder:
    """Template caches and sequence tracking per (exporter, version, observation domain / source id).

    ``template_timeout`` (seconds, None for never): a template not refreshed for that long is
    forgotten, so data after a silent exporter change is skipped rather than misread (RFC 7011 8.4).
    ``max_templates`` bounds the cache (new templates beyond it are refused and counted); the
    per-stream sequence state is a few integers per (exporter, domain)."""

    def __init__(
        self,
        *,
        template_timeout: float | None = 1800.0,
        max_templates: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.template_timeout = template_timeout
        self.max_templates = max_templates
        self.clock = clock
        self.stats = DecodeStats()
        self._templates: dict[_Key, tuple[Template, float]] = {}
        self._expected: dict[tuple[Hashable, int, int], int] = {}
        self._uptime: dict[tuple[Hashable, int], int] = {}
        self._boot: dict[tuple[Hashable, int], int] = {}

    def templates(self) -> dict[_Key, Template]:
        """The templates known now, by (exporter, version, domain, template id)."""
        return {k: t for k, (t, _) in self._templates.items()}

    def parse(self, exporter: Hashable, payload: bytes) -> Message:
        """Decode one datagram; never raises for bad input (the Message carries the error reason)."""
        self.stats.datagrams += 1
        try:
            msg, staged = self._decode(exporter, bytes(payload))
        except _Malformed as exc:
            self.stats.malformed[exc.reason] += 1
            return Message(0, exporter, 0, 0, 0, None, [], 0, error=exc.reason)
        self._commit(staged)
        self._track_sequence(msg)
        if msg.version == 10:
            self._system_init(msg)
        for rs in msg.sets:
            if rs.template.is_options:
                self.stats.options_records += len(rs)
            else:
                self.stats.records += len(rs)
        return msg

    def _system_init(self, msg: Message) -> None:
        # Exporters using flowStart/EndSysUpTime in IPFIX announce their boot time in options data.
        key = (msg.exporter, msg.domain)
        for rs in msg.sets:
            if rs.template.is_options and "systemInitTimeMilliseconds" in rs.template.by_key and len(rs):
                self._boot[key] = int(rs.column("systemInitTimeMilliseconds")[-1])
        boot = self._boot.get(key)
        for rs in msg.sets:
            rs.system_init_ms = boot

    def parse_file(self, exporter: Hashable, file: BinaryIO) -> Iterator[tuple[Message, bytes]]:
        """The IPFIX messages of an RFC 5655 file (back to back), read one at a time, each decoded as a
        datagram would be and given with its bytes. Reading stops where the framing is lost, counted:
        a header that is not IPFIX (``file_framing``) or a message cut short by the end (``file_truncated``)."""
        while header := file.read(IPFIX_HEADER.size):
            if len(header) < IPFIX_HEADER.size:
                self.stats.malformed["file_truncated"] += 1
                return
            version, length = struct.unpack_from("!HH", header)
            if version != 10 or length < IPFIX_HEADER.size:
                self.stats.malformed["file_framing"] += 1
                return
            payload = header + file.read(length - IPFIX_HEADER.size)
            if len(payload) < length:
                self.stats.malformed["file_truncated"] += 1
                return
            yield self.parse(exporter, payload), payload

    # --- datagram level ---
    def _decode(self, exporter: Hashable, data: bytes) -> tuple[Message, dict[_Key, Template | None]]:
        if len(data) < 4:
            raise _Malformed("short_header")
        version = U16.unpack_from(data)[0]
        if version == 5:
            return self._decode_v5(exporter, data), {}
        if version == 9:
            if len(data) < V9_HEADER.size:
                raise _Malformed("short_header")
            _, _count, uptime, secs, seq, source = V9_HEADER.unpack_from(data)
            self._check_restart(exporter, source, uptime, seq)
            return self._decode_sets(exporter, data, V9_HEADER.size, len(data), 9, source, seq, secs, uptime)
        if version == 10:
            if len(data) < IPFIX_HEADER.size:
                raise _Malformed("short_header")
            _, length, secs, seq, domain = IPFIX_HEADER.unpack_from(data)
            if length < IPFIX_HEADER.size or length > len(data):
                raise _Malformed("bad_length")
            return self._decode_sets(exporter, data, IPFIX_HEADER.size, length, 10, domain, seq, secs, None)
        raise _Malformed("bad_version")

    def _decode_v5(self, exporter: Hashable, data: bytes) -> Message:
        if len(data) < V5_HEADER.size:
            raise _Malformed("short_header")
        _, count, uptime, secs, nsecs, seq, etype, eid, _sampling = V5_HEADER.unpack_from(data)
        if not 1 <= count <= V5_MAX_RECORDS or len(data) < V5_HEADER.size + count * V5_TEMPLATE.record_length:
            raise _Malformed("bad_count")
        array = np.frombuffer(data, dtype=V5_TEMPLATE.dtype, count=count, offset=V5_HEADER.size)
        domain = etype << 8 | eid
        rs = RecordSet(5, exporter, domain, V5_TEMPLATE, secs, uptime, nsecs, array)
        return Message(5, exporter, domain, seq, secs, uptime, [rs], count)

    def _check_restart(self, exporter: Hashable, source: int, uptime: int, seq: int) -> None:
        # A restart sets back both the uptime and the packet sequence; an uptime alone going back is
        # an exporter that dates each datagram its own way (and keeps its templates).
        key = (exporter, source)
        previous = self._uptime.get(key)
        self._uptime[key] = uptime
        expected = self._expected.get((exporter, 9, source))
        if (
            previous is not None
            and previous - uptime > V9_RESTART_MS
            and previous < 0xF0000000
            and expected is not None
            and seq != expected
        ):
            # A restarted exporter reuses template ids with new meanings: its old templates must go.
            self.stats.exporter_restarts += 1
            for k in [k for k in self._templates if k[0] == exporter and k[1] == 9 and k[2] == source]:
                del self._templates[k]

    def _decode_sets(
        self, exporter: Hashable, data: bytes, offset: int, end: int, version: int, domain: int, seq: int,
        secs: int, uptime: int | None,
    ) -> tuple[Message, dict[_Key, Template | None]]:  # fmt: skip
        staged: dict[_Key, Template | None] = {}  # None: withdrawn
        sets: list[RecordSet] = []
        count = 0
        template_ids = (0, 1) if version == 9 else (2, 3)
        while offset < end:
            if end - offset < SET_HEADER.size:
                if version == 9 and not any(data[offset:end]):
                    break  # v9 allows zero padding after the last flowset
                raise _Malformed("truncated_set")
            set_id, length = SET_HEADER.unpack_from(data, offset)
            if length < SET_HEADER.size or offset + length > end:
                raise _Malformed("bad_set_length")
            body_start, offset = offset + SET_HEADER.size, offset + length
            if set_id in template_ids:
                self._templates_in(data, body_start, offset, version, set_id, (exporter, version, domain), staged)
            elif set_id >= 256:
                template = self._template_for((exporter, version, domain, set_id), staged)
                if template is None:
                    self.stats.sets_without_template += 1
                    count = -1  # the record count is unknown: no sequence check
                    continue
                rs = _data_set(data, body_start, offset, template, version, exporter, domain, secs, uptime)
                sets.append(rs)
                if count >= 0:
                    count += len(rs)
            else:
                self.stats.malformed["reserved_set_id"] += 1  # skipped, the rest of the message is fine
        return Message(version, exporter, domain, seq, secs, uptime, sets, count), staged

    def _template_for(self, key: _Key, staged: dict[_Key, Template | None]) -> Template | None:
        if key in staged:
            return staged[key]
        entry = self._templates.get(key)
        if entry is None:
            return None
        template, seen = entry
        if self.template_timeout is not None and self.clock() - seen > self.template_timeout:
            del self._templates[key]
            self.stats.templates_expired += 1
            return None
        return template

    def _templates_in(
        self, data: bytes, offset: int, end: int, version: int, set_id: int, scope: tuple[Hashable, int, int],
        staged: dict[_Key, Template | None],
    ) -> None:  # fmt: skip
        options = set_id in (1, 3)
        while end - offset >= 4:
            tid, n = U16.unpack_from(data, offset)[0], U16.unpack_from(data, offset + 2)[0]
            if tid == 0 and n == 0 and not any(data[offset:end]):
                return  # padding
            if version == 10 and n == 0:  # RFC 7011 8.1: withdrawal; the set id itself withdraws them all
                self.stats.template_withdrawals += 1
                if tid == set_id:
                    for key in [k for k in self._templates if k[:3] == scope]:
                        staged[key] = None
                    for key in [k for k in staged if k[:3] == scope]:
                        staged[key] = None
                elif tid >= 256:
                    staged[(*scope, tid)] = None
                else:
                    raise _Malformed("bad_template_id")
                offset += 4
                continue
            if tid < 256:
                raise _Malformed("bad_template_id")
            if options and version == 9:
                template, offset = _v9_options_template(data, offset, end, tid)
            else:
                scope_count = 0
                offset += 4
                if options:
                    if end - offset < 2:
                        raise _Malformed("truncated_template")
                    scope_count = U16.unpack_from(data, offset)[0]
                    offset += 2
                    if not 0 < scope_count <= n:
                        raise _Malformed("bad_scope_count")
                fields, offset = _field_specs(data, offset, end, n, version)
                template = Template(tid, fields, scope_count)
            if template.record_length == 0 and template.dtype is not None:
                raise _Malformed("empty_template")
            staged[(*scope, tid)] = template

    def _commit(self, staged: dict[_Key, Template | None]) -> None:
        now = self.clock()
        for key, template in staged.items():
            old = self._templates.pop(key, None)
            if template is None:
                continue
            if len(self._templates) >= self.max_templates:
                # Memory stays bounded whatever exporters send: the template is refused, its data counted
                # as without template.
                self.stats.templates_refused += 1
                continue
            self.stats.templates += 1
            if old is not None and not old[0].same_as(template):
                self.stats.template_redefinitions += 1
            self._templates[key] = (template, now)

    def _track_sequence(self, msg: Message) -> None:
        key = (msg.exporter, msg.version, msg.domain)
        expected = self._expected.pop(key, None)
        if expected is not None:
            gap = (msg.sequence - expected) % 2**32
            if gap >= 2**31:
                self.stats.sequence_backwards += 1
            elif gap:
                self.stats.sequence_gaps += 1
                self.stats.sequence_lost += gap
        if msg.version == 9 or msg.count >= 0:
            self._expected[key] = msg.next_sequence


def _field_specs(data: bytes, offset: int, end: int, n: int, version: int) -> tuple[list[FieldSpec], int]:
    fields: list[FieldSpec] = []
    for _ in range(n):
        if end - offset < 4:
            raise _Malformed("truncated_template")
        element, length = FIELD_SPEC.unpack_from(data, offset)
        offset += 4
        enterprise = 0
        if version == 10 and element & ies.ENTERPRISE_BIT:
            if end - offset < 4:
                raise _Malformed("truncated_template")
            enterprise = U32.unpack_from(data, offset)[0]
            offset += 4
            element &= ~ies.ENTERPRISE_BIT
        if length == 0 or (version == 9 and length == ies.VARLEN):
            raise _Malformed("bad_field_length")
        fields.append(_spec(element, length, enterprise))
    return fields, offset


def _spec(element: int, length: int, enterprise: int, table: dict[int, ies.IE] | None = None) -> FieldSpec:
    if table is not None:
        ie = table.get(element)
        name, kind = (ie.name, ie.type) if ie else (f"scope{element}", "octetArray")
    else:
        name, kind = ies.field_name(element, enterprise), ies.element_type(element, enterprise)
    if length != ies.VARLEN and kind in ies.ADDRESS_TYPES | {"macAddress"} and length != ies.TYPE_LENGTHS[kind]:
        kind = "octetArray"  # an address of the wrong size is kept as bytes, not misread
    elif length != ies.VARLEN and kind not in ("string", "octetArray", *ies.ADDRESS_TYPES) and length > 8:
        kind = "octetArray"
    return FieldSpec(element, length, enterprise, name, kind)


def _v9_options_template(data: bytes, offset: int, end: int, tid: int) -> tuple[Template, int]:
    # RFC 3954 6.1: template id, scope length and option length in octets, then (type, length) pairs.
    scope_len, option_len = U16.unpack_from(data, offset + 2)[0], 0
    if end - offset < 6:
        raise _Malformed("truncated_template")
    option_len = U16.unpack_from(data, offset + 4)[0]
    offset += 6
    if scope_len % 4 or option_len % 4 or scope_len == 0 or end - offset < scope_len + option_len:
        raise _Malformed("bad_options_template")
    fields: list[FieldSpec] = []
    for i in range((scope_len + option_len) // 4):
        element, length = FIELD_SPEC.unpack_from(data, offset + 4 * i)
        if length == 0 or length == ies.VARLEN:
            raise _Malformed("bad_field_length")
        fields.append(_spec(element, length, 0, ies.V9_SCOPES if i < scope_len // 4 else None))
    return Template(tid, fields, scope_len // 4), offset + scope_len + option_len


def _data_set(
    data: bytes, start: int, end: int, template: Template, version: int, exporter: Hashable, domain: int,
    secs: int, uptime: int | None,
) -> RecordSet:  # fmt: skip
    if template.dtype is not None:
        # Fewer octets than a record at the end are padding (RFC 7011 3.3.1, RFC 3954 5.3).
        count = (end - start) // template.record_length
        array = np.frombuffer(data, dtype=template.dtype, count=count, offset=start)
        return RecordSet(version, exporter, domain, template, secs, uptime, 0, array)
    columns: dict[str, list[bytes]] = {name: [] for name in template.names}
    offset = start
    minimum = sum(1 if f.length == ies.VARLEN else f.length for f in template.fields)
    while end - offset >= minimum:
        for f, name in zip(template.fields, template.names, strict=True):
            length = f.length
            if length == ies.VARLEN:  # RFC 7011 7: one length octet, 255 announcing a two-octet length
                if offset >= end:
                    raise _Malformed("truncated_record")
                length = data[offset]
                offset += 1
                if length == 255:
                    if end - offset < 2:
                        raise _Malformed("truncated_record")
                    length = U16.unpack_from(data, offset)[0]
                    offset += 2
            if end - offset < length:
                raise _Malformed("truncated_record")
            columns[name].append(data[offset : offset + length])
            offset += length
    return RecordSet(version, exporter, domain, template, secs, uptime, 0, None, columns)


def _v5_template() -> Template:
    # The fixed v5 record (48 octets) in IANA names, so v5 records read like v9/IPFIX ones.
    layout = [
        (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4), (7, 2), (11, 2),
        (210, 1), (6, 1), (4, 1), (5, 1), (16, 2), (17, 2), (9, 1), (13, 1), (210, 2),
    ]  # fmt: skip
    return Template(0, [_spec(e, n, 0) for e, n in layout])


V5_TEMPLATE = _v5_template()
