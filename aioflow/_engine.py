"""The one importer of the compiled module: wraps the C engine and turns its codes into exceptions."""

from __future__ import annotations

import os
import secrets
import struct
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from . import _errors
from ._native import ffi as ffi  # re-exported: _stream and _frame read C layouts through it
from ._native import lib as lib
from ._timeline import Timeline


def _text(p: Any) -> str | None:
    return None if p == ffi.NULL else str(ffi.string(p).decode())


def _names(name_of: Callable[[int], Any], count: int) -> tuple[str, ...]:
    return tuple(str(_text(name_of(i))) for i in range(count))


# Names of the C enums, indexed by value, from the compiled module (api.h is their one definition).
END_REASONS: tuple[str, ...] = _names(lib.af_end_reason_name, lib.AF_END_COUNT)
ASIDE_REASONS: tuple[str, ...] = _names(lib.af_aside_reason_name, lib.AF_ASIDE_COUNT)
DEFRAG_REASONS: tuple[str, ...] = _names(lib.af_defrag_reason_name, lib.AF_DEFRAG_REASON_COUNT)
DECODE_EVENTS: tuple[str, ...] = _names(lib.af_decode_event_name, lib.AF_DECODE_EVENT_COUNT)
TCP_FLAG_COUNT: int = lib.AF_TCP_FLAG_COUNT
RECORD_SIZE: int = ffi.sizeof("af_record")
LIVE_BATCH_RECORDS = 4096


@dataclass(frozen=True, slots=True)
class MeterField:
    """One field a meter adds to each ended flow's record: C type, unit, offset in its block."""

    name: str
    ctype: str
    unit: str
    offset: int
    count: int = 0  # an array of up to `count` values (0: one value)


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """A meter of this build, as the C registry (meters.h) declares it."""

    index: int  # its bit in af_config.meters
    name: str
    doc: str
    option: str | None  # None: turned on by name (meters=...); else the option that turns it on
    fields: tuple[MeterField, ...]
    record_size: int
    plain_names: bool = False  # columns are the field names (nfstream's), not <meter>_<field>

    def column(self, field: MeterField) -> str:
        """The read_frame column of one of its fields: <meter>_<field>, or the field's own name
        for a meter that asks for it (plain_names: nfstream's names, application_name, ...)."""
        return field.name if self.plain_names else f"{self.name}_{field.name}"


def _meter_info(index: int, info: Any) -> MeterInfo:
    """A C af_meter_info as a MeterInfo (`index`: its place among the engine's meters)."""
    fields = tuple(
        MeterField(str(_text(f.name)), str(_text(f.ctype)), str(_text(f.unit)), int(f.offset), int(f.count))
        for f in (info.fields[j] for j in range(info.field_count))
    )
    name = str(_text(info.name))
    return MeterInfo(
        index, name, str(_text(info.doc)), _text(info.option), fields, int(info.record_size), bool(info.plain_names)
    )


def _meter_registry() -> dict[str, MeterInfo]:
    out: dict[str, MeterInfo] = {}
    for i in range(32):
        info = lib.af_meter_info_of(i)
        if info == ffi.NULL:
            break
        out[str(_text(info.name))] = _meter_info(i, info)
    return out


METERS: dict[str, MeterInfo] = _meter_registry()
# Meters turned on by name (the others have an option of their own, e.g. reassemble=True).
NAMED_METERS: tuple[str, ...] = tuple(name for name, m in METERS.items() if m.option is None)


def meter_include_dir() -> str:
    """The directory of aioflow_meter.h, the ABI header for meters built as shared libraries
    (``cc -shared -fPIC -I"$(python -c 'import aioflow; print(aioflow.meter_include_dir())')"``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def available_meters() -> tuple[str, ...]:
    """Names this build's FlowParser(meters=...) accepts, e.g. ("low_ttl",): NAMED_METERS, public."""
    return NAMED_METERS

# struct format of each C type a meter field may have (native layout, as C wrote it)
_CTYPE_FORMATS = {"uint64_t": "Q", "int64_t": "q", "uint32_t": "I", "int32_t": "i", "uint16_t": "H",
                  "int16_t": "h", "uint8_t": "B", "int8_t": "b", "double": "d", "float": "f"}  # fmt: skip

def text_size(ctype: str) -> int:
    """N for a text field's "char[N]" (NUL-terminated text in N bytes), else 0."""
    if ctype.startswith("char[") and ctype.endswith("]"):
        return int(ctype[5:-1])
    return 0


class BlockReader:
    """Reads one meter's fields from a record's block: one compiled struct call and a function
    written for the meter's fields (built once per meter and array length), as dataclasses and
    namedtuple write theirs. Reading field by field in a loop cost ~1 us per field, most of a
    per-flow reader's time (Flow.meters with conn_state and community_id: 11 fields)."""

    __slots__ = ("info", "read")

    def __init__(self, info: MeterInfo, array_length: int) -> None:
        self.info = info
        form, pos, index = ["="], 0, 0
        exprs: dict[str, str] = {}  # field -> Python expression of its value from the values `v`
        for f in sorted(info.fields, key=lambda f: f.offset):
            if f.offset > pos:
                form.append(f"{f.offset - pos}x")
            size = text_size(f.ctype)
            if size:  # NUL-terminated text
                form.append(f"{size}s")
                exprs[f.name] = f"v[{index}].partition(b'\\0')[0].decode('utf-8', 'replace')"
                index, pos = index + 1, f.offset + size
                continue
            n = array_length if f.count else 1
            form.append(f"{n}{_CTYPE_FORMATS[f.ctype]}")
            exprs[f.name] = f"list(v[{index}:{index + n}])" if f.count else f"v[{index}]"
            index, pos = index + n, f.offset + n * struct.calcsize("=" + _CTYPE_FORMATS[f.ctype])
        lines = ["def read(data, at):", "    v = unpack_from(data, at)", "    return {"]
        lines += [f"        {f.name!r}: {exprs[f.name]}," for f in info.fields]  # the meter's order
        scope: dict[str, Any] = {"unpack_from": struct.Struct("".join(form)).unpack_from}
        exec("\n".join([*lines, "    }"]), scope)  # names are repr()'d literals, the rest is ours
        self.read: Callable[[bytes, int], dict[str, Any]] = scope["read"]


_READERS: dict[tuple[str, int], BlockReader] = {}


def block_reader(info: MeterInfo, array_length: int) -> BlockReader:
    """The compiled reader of meter `info`'s block (kept per meter name and array length)."""
    reader = _READERS.get((info.name, array_length))
    if reader is None or reader.info is not info:
        reader = _READERS[(info.name, array_length)] = BlockReader(info, array_length)
    return reader


@dataclass(frozen=True, slots=True)
class MeterLayout:
    """Where the enabled meters' blocks lie in a batch's meter data: record i's block is `stride`
    bytes at i * stride; meter `name`'s fields start `offsets[name]` bytes into it."""

    stride: int = 0
    offsets: tuple[tuple[str, int], ...] = ()
    array_length: int = 0  # values of each array field read (splt=N): the first N of `count`
    loaded: tuple[MeterInfo, ...] = ()  # meters loaded from shared libraries (FlowParser(meters=[path]))
    # (name, offset, reader, record size) of each enabled meter, made on first read
    _readers: list[tuple[str, int, BlockReader, int]] = field(default_factory=list, compare=False, repr=False)

    def readers(self) -> list[tuple[str, int, BlockReader, int]]:
        if len(self._readers) != len(self.offsets):
            self._readers[:] = [(n, at, block_reader(self.info(n), self.array_length), self.info(n).record_size)
                                for n, at in self.offsets]  # fmt: skip
        return self._readers

    def info(self, name: str) -> MeterInfo:
        """Meter `name`'s registry entry, built-in or loaded (KeyError when neither)."""
        for m in self.loaded:
            if m.name == name:
                return m
        return METERS[name]

    def fields(self, name: str) -> tuple[MeterField, ...] | None:
        """The fields of meter `name` when it is on, else None."""
        return self.info(name).fields if any(n == name for n, _ in self.offsets) else None

    def read(self, data: bytes, index: int, name: str) -> dict[str, Any] | None:
        """Record `index`'s fields of meter `name` (None when the meter is off or the data is not
        there: snapshots and lookups of active flows carry none)."""
        for n, offset, reader, size in self.readers():
            if n == name:
                at = index * self.stride + offset
                return None if at + size > len(data) else reader.read(data, at)
        return None

    def read_all(self, data: bytes, index: int) -> dict[str, Mapping[str, Any]]:
        """Record `index`'s fields of every enabled meter, by meter name (those with data)."""
        out: dict[str, Mapping[str, Any]] = {}
        base = index * self.stride
        for n, offset, reader, size in self.readers():
            if base + offset + size <= len(data):
                out[n] = reader.read(data, base + offset)
        return out


NO_METERS = MeterLayout()


def is_meter_library(meter: str) -> bool:
    """Whether a FlowParser(meters=...) entry is a shared library's path rather than a meter name."""
    return "/" in meter or meter.endswith(".so")


def meter_bits(names: Sequence[str]) -> int:
    """af_config.meters for these meter names (library paths left aside); ConfigError for a name
    this build lacks."""
    bits = 0
    for name in (n for n in names if not is_meter_library(n)):
        if name not in NAMED_METERS:
            raise _errors.ConfigError(
                f"unknown meter {name!r}: available meters are {', '.join(NAMED_METERS) or '(none)'}"
            )
        bits |= 1 << METERS[name].index
    return bits


# Every AF_ERR_* code: the exception it becomes and what to do about it (files; live below).
_ERRORS: dict[int, tuple[type[_errors.AioflowError], str]] = {
    lib.AF_ERR_NOT_FOUND: (_errors.CaptureNotFoundError, "check the path (a file wins over an interface name)"),
    lib.AF_ERR_PERMISSION: (_errors.CapturePermissionError, "give this user read access to the file"),
    lib.AF_ERR_FORMAT: (
        _errors.CaptureFormatError,
        "is it a pcap or pcapng file? (`capinfos FILE` tells); damaged headers cannot be read",
    ),
    lib.AF_ERR_FILTER: (_errors.FilterError, "fix the BPF expression (see `man pcap-filter`)"),
    lib.AF_ERR_CONFIG: (_errors.ConfigError, "check the FlowParser parameters"),
    lib.AF_ERR_NOMEM: (_errors.EngineError, "lower max_flows, headers or the defragment bounds"),
    lib.AF_ERR_SOURCE: (_errors.CaptureSourceError, "libpcap could not open the source"),
    lib.AF_ERR_UNSUPPORTED: (_errors.PatternUnsupportedError, "this build cannot do that (see the message)"),
}
# A live source's messages from C already say what to do.
_LIVE_ERRORS: dict[int, tuple[type[_errors.AioflowError], str]] = {
    **_ERRORS,
    lib.AF_ERR_NOT_FOUND: (_errors.InterfaceNotFoundError, "nor is it a file here; for a file, give its path"),
    lib.AF_ERR_PERMISSION: (_errors.CapturePermissionError, ""),
    lib.AF_ERR_SOURCE: (_errors.CaptureSourceError, ""),
}
_ERROR_CODES = {getattr(lib, name) for name in dir(lib) if name.startswith("AF_ERR_")}
assert _ERROR_CODES == set(_ERRORS), "an AF_ERR_* code has no exception in _engine._ERRORS"


def error_for(code: int, message: str, live: bool = False, hint: bool = True) -> _errors.AioflowError:
    """The typed exception for a negative af_* status, with C's message and (hint=True) what to do
    about it: the one place C error codes become exceptions."""
    exc_type, advice = (_LIVE_ERRORS if live else _ERRORS).get(code, (_errors.EngineError, "report this as a bug"))
    hint_text = advice if hint else ""
    message = message or f"the engine failed ({exc_type.__name__})"
    return exc_type(f"{message} ({hint_text})" if hint_text else message)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """FlowParser's options in the engine's units (nanoseconds)."""

    filter: str | None = None
    snaplen: int = 65535
    idle_timeout_ns: int = 120 * 10**9
    active_timeout_ns: int = 1800 * 10**9
    fin_timeout_ns: int = 10 * 10**9
    max_flows: int = 1_000_000
    headers: int = 0
    hash_seed: int | None = None
    live: bool = False  # an interface rather than a file
    promiscuous: bool = True
    buffer_size: int = 0  # kernel capture buffer in bytes; 0: libpcap's default
    defragment: bool = False
    fragment_timeout_ns: int = 30 * 10**9
    max_fragment_datagrams: int = 8192
    max_fragments_per_datagram: int = 128
    max_datagram_size: int = 65575
    max_fragment_memory: int = 16 * 2**20
    reassemble: bool = False  # TCP streams and UDP payloads (implies IP defragmentation)
    stream_chunks: bool = False  # reassemble: chunks of new in-order data from the start (else: enable_chunks)
    max_stream_bytes: int = 1 << 20
    max_reassembly_memory: int = 256 << 20
    keep_streams: bool = True  # reassemble: ended flows carry their streams (False: chunks and matches only)
    meters: tuple[str, ...] = ()  # meters turned on by name (NAMED_METERS), e.g. ("low_ttl",)
    statistics: bool = False  # the statistics meter (nfstream's statistical features)
    accounting_mode: int = 0  # statistics/splt sizes: 0 link layer, 1 IP, 2 transport, 3 payload
    splt: int = 0  # the splt meter: the first N packets of each flow (0: off)
    community_id_seed: int = 0  # the community_id meter's seed (Community ID v1: 0..65535)
    follow: bool = False  # files: keep reading as the file grows, until stop()
    dissect: bool = False  # application detection with nDPI (the dissect meter)
    max_dissections: int = 20  # dissect: packets per flow given to nDPI at most
    max_dissecting_flows: int = 65536  # dissect: flows dissected at once (nDPI states)
    decode_tunnels: bool = False  # key flows on the innermost IP of tunnels, plus a tunnel id (tunnel meter)
    check_checksums: bool = False  # verify IPv4/TCP/UDP/ICMP checksums: bad_checksum events, Zeek's C in history
    max_packets: int = 0  # > 0: a flow ends ("custom") with its max_packets-th packet (FlowSlicer)
    max_bytes: int = 0  # > 0: ... with the packet that brings its IP bytes to max_bytes or more
    workers: int = 1  # flow tables counted by this many threads (docs/architecture.md, "Workers")
    flow_share: tuple[int, int] | None = None  # files: (index, count): count only that share of the flows

    def __post_init__(self) -> None:
        meter_bits(self.meters)  # an unknown meter name fails here, when the parser is made
        if self.dissect and (why := dissect_unavailable()):
            raise _errors.DissectUnavailableError(why)
        _check_range("accounting_mode", self.accounting_mode, 0, 3)
        _check_range("splt", self.splt, 0, lib.AF_MAX_SPLT)
        _check_range("workers", self.workers, 1, lib.AF_MAX_WORKERS)
        if self.workers > 1 and "timeline" in self.meters:
            raise _errors.ConfigError(f"workers={self.workers}: the timeline meter counts one flow table; "
                                      "use workers=1 with it")  # fmt: skip
        if self.flow_share is not None:
            self._check_flow_share(self.flow_share)

    def _check_flow_share(self, share: tuple[int, int]) -> None:
        """flow_share=(index, count): one share of a file's flows, as worker `index` of `count`."""
        if not (isinstance(share, tuple | list) and len(share) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in share)):  # fmt: skip
            raise _errors.ConfigError(f"flow_share={share!r}: expected (index, count), e.g. (0, 4) for the first "
                                      "of four shares")  # fmt: skip
        index, count = share
        if not 0 <= index < count <= lib.AF_MAX_WORKERS:
            raise _errors.ConfigError(f"flow_share={share!r}: expected 0 <= index < count <= {lib.AF_MAX_WORKERS}")
        refused = (
            (self.live, "a live capture's packets are each seen once: use workers=N (PACKET_FANOUT) instead"),
            (self.workers > 1, f"a share is counted by one worker; drop workers={self.workers}"),
            ("timeline" in self.meters, "the timeline meter counts one flow table"),
            (self.hash_seed is None, "every share must hash flows alike: pass the same hash_seed=<integer> to each"),
        )
        for applies, why in refused:
            if applies:
                raise _errors.ConfigError(f"flow_share={share!r}: {why}")

    def meters_on(self) -> tuple[str, ...]:
        """The meters this configuration turns on, by name and by their own options."""
        by_option = {"statistics": self.statistics, "splt": self.splt > 0, "dissect": self.dissect,
                     "tunnel": self.decode_tunnels}  # fmt: skip
        return self.meters + tuple(name for name, on in by_option.items() if on)


def dissect_unavailable() -> str:
    """"" when this build can dissect (dissect=True), else why not and what to install."""
    return str(_text(lib.af_dissect_unavailable()))


_INFO_SIZE = ffi.sizeof("af_stream_info")
_INFO_U64S, _INFO_U32S = _INFO_SIZE // 8, _INFO_SIZE // 4  # one record's info in those units
_INFO_AT = ffi.offsetof("af_stream_info", "data_at") // 8  # uint64_t[2]
_INFO_LENGTH = ffi.offsetof("af_stream_info", "data_length") // 4  # uint32_t[2]
_INFO_KEPT = ffi.offsetof("af_stream_info", "kept")  # uint8_t[2]
_INFO_HOLES_AT = ffi.offsetof("af_stream_info", "holes_at") // 8  # uint64_t[2]
_INFO_HOLE_COUNT = ffi.offsetof("af_stream_info", "hole_count") // 4  # uint32_t[2]
_INFO_TRUNCATED = ffi.offsetof("af_stream_info", "truncated")  # uint8_t[2]
_RECORD_PROTOCOL = ffi.offsetof("af_record", "protocol")
assert dict(ffi.typeof("af_record").fields)["protocol"].type.cname == "uint8_t", "af_record layout changed"


class StreamSpans:
    """Where each record's kept streams and holes lie in its batch's stream_data, and whether they
    were truncated, read through memoryviews
    of the C arrays: about 1 us per flow less than cffi field access (measured on 120,000 flows),
    which is much of a reader's time when it takes both streams of a million flows."""

    __slots__ = ("_records", "_u8", "_u32", "_u64")

    def __init__(self, streams: Any, records: Any, count: int) -> None:
        raw = memoryview(ffi.buffer(streams, count * _INFO_SIZE))
        self._u8, self._u32, self._u64 = raw, raw.cast("I"), raw.cast("Q")
        self._records = memoryview(ffi.buffer(records, count * RECORD_SIZE))

    def kept(self, i: int, d: int) -> tuple[int, int, int] | None:
        """Record i's stream in direction d (0: client) as (offset, length, IP protocol), or None
        when it was not kept."""
        if not self._u8[i * _INFO_SIZE + _INFO_KEPT + d]:
            return None
        return (
            self._u64[i * _INFO_U64S + _INFO_AT + d],
            self._u32[i * _INFO_U32S + _INFO_LENGTH + d],
            self._records[i * RECORD_SIZE + _RECORD_PROTOCOL],
        )

    def holes(self, i: int, d: int) -> tuple[int, int]:
        """Record i's holes in direction d: (offset of their uint64 pairs, how many pairs)."""
        return self._u64[i * _INFO_U64S + _INFO_HOLES_AT + d], self._u32[i * _INFO_U32S + _INFO_HOLE_COUNT + d]

    def truncated(self, i: int, d: int) -> bool:
        return bool(self._u8[i * _INFO_SIZE + _INFO_TRUNCATED + d])


class Batch:
    """Flow records copied out of C in one go (exact size), plus their kept headers and, with
    reassembly, their streams (`streams[i]` and `spans` locate record i's in `stream_data`) and
    the chunks."""

    __slots__ = (
        "chunk_count", "chunks", "count", "header_count", "headers", "meter_data", "meter_layout", "records", "spans",
        "stream_data", "streams", "udps",
    )  # fmt: skip

    def __init__(
        self,
        records: Any,
        count: int,
        headers: Any = None,
        header_count: int = 0,
        streams: Any = None,
        chunks: Any = None,
        chunk_count: int = 0,
        stream_data: bytes = b"",
    ) -> None:
        self.records = records
        self.count = count
        self.headers = headers
        self.header_count = header_count
        self.streams = streams
        self.spans: StreamSpans | None = None
        self.chunks = chunks
        self.chunk_count = chunk_count
        self.stream_data = stream_data
        self.meter_data = b""  # enabled meters' record blocks (meter_layout says where)
        self.meter_layout = NO_METERS
        self.udps: list[SimpleNamespace] | None = None  # plugins' fields per record (_plugins.run_plugins)

    def raw_records(self) -> Any:
        """The records as a buffer (for numpy's bulk path)."""
        return ffi.buffer(self.records, self.count * RECORD_SIZE)


EMPTY_BATCH = Batch(ffi.NULL, 0)


class Engine:
    """One opened source and its flow table; the C side locks, so any thread may call it.

    Opening raises the typed error of `error_for` (CaptureNotFoundError, CapturePermissionError,
    CaptureFormatError, FilterError, InterfaceNotFoundError, CaptureSourceError, ConfigError for a
    bound out of range or an unknown meter, EngineError when out of memory). Times are ns."""

    def __init__(self, source: str | os.PathLike[str], config: EngineConfig) -> None:
        cfg = ffi.new("af_config *")
        cfg.max_flows = _check_range("max_flows", config.max_flows, 1, 2**31 - 1)
        cfg.headers_per_flow = _check_range("headers", config.headers, 0, lib.AF_MAX_HEADERS_PER_FLOW)
        cfg.idle_timeout_ns = _check_range("idle_timeout", config.idle_timeout_ns, 0, 2**63)
        cfg.active_timeout_ns = _check_range("active_timeout", config.active_timeout_ns, 0, 2**63)
        cfg.fin_timeout_ns = _check_range("fin_timeout", config.fin_timeout_ns, 0, 2**63)
        cfg.snaplen = _check_range("snaplen", config.snaplen, 1, lib.AF_MAX_SNAPLEN)
        cfg.hash_seed = secrets.randbits(64) if config.hash_seed is None else config.hash_seed
        cfg.defragment = int(bool(config.defragment))
        cfg.fragment_timeout_ns = _check_range("fragment_timeout", config.fragment_timeout_ns, 0, 2**63)
        cfg.max_fragment_datagrams = _check_range(
            "max_fragment_datagrams", config.max_fragment_datagrams, 1, lib.AF_MAX_FRAGMENT_DATAGRAMS
        )
        cfg.max_fragments_per_datagram = _check_range(
            "max_fragments_per_datagram", config.max_fragments_per_datagram, 1, lib.AF_MAX_FRAGMENTS_PER_DATAGRAM
        )
        cfg.max_datagram_size = _check_range(
            "max_datagram_size", config.max_datagram_size, lib.AF_MIN_DATAGRAM_SIZE, lib.AF_MAX_DATAGRAM_SIZE
        )
        cfg.max_fragment_memory = _check_range(
            "max_fragment_memory", config.max_fragment_memory, lib.AF_MIN_FRAGMENT_MEMORY, 2**40
        )
        if config.reassemble:
            cfg.reassemble = 1
            cfg.defragment = 1  # a stream needs whole datagrams
            cfg.stream_chunks = int(config.stream_chunks)
            cfg.max_stream_bytes = _check_range("max_stream_bytes", config.max_stream_bytes, 1, lib.AF_MAX_STREAM_BYTES)
            cfg.discard_streams = int(not config.keep_streams)
            cfg.max_reassembly_memory = _check_range(
                "max_reassembly_memory", config.max_reassembly_memory, lib.AF_MIN_REASSEMBLY_MEMORY, 2**48
            )
        cfg.meters = meter_bits(config.meters)
        if config.dissect:
            cfg.dissect = 1
            cfg.max_dissections = _check_range("max_dissections", config.max_dissections, 1, lib.AF_MAX_DISSECTIONS)
            cfg.max_dissecting_flows = _check_range(
                "max_dissecting_flows", config.max_dissecting_flows, 1, lib.AF_MAX_DISSECTING_FLOWS
            )
        cfg.community_id_seed = _check_range("community_id_seed", config.community_id_seed, 0, 65535)
        cfg.follow = int(config.follow)
        cfg.statistics = int(config.statistics)
        cfg.accounting_mode = config.accounting_mode
        cfg.splt = config.splt
        cfg.decode_tunnels = int(config.decode_tunnels)
        cfg.check_checksums = int(config.check_checksums)
        # read by the engine at open only: kept alive here until af_open_* returns
        libraries = [ffi.new("char[]", os.fsencode(os.path.abspath(m))) for m in config.meters if is_meter_library(m)]
        library_array = ffi.new("char *[]", libraries)
        cfg.meter_libraries = library_array
        cfg.meter_library_count = len(libraries)
        cfg.follow = int(config.follow)
        cfg.max_packets = _check_range("max_packets", config.max_packets, 0, 2**63)
        cfg.max_bytes = _check_range("max_bytes", config.max_bytes, 0, 2**63)
        cfg.workers = config.workers
        if config.flow_share is not None:
            cfg.share, cfg.shares = config.flow_share
        # internal: libpcap reads the file instead of aioflow's reader (the comparison test, benchmarks)
        cfg.libpcap_files = int(os.environ.get("AIOFLOW_FILE_READER") == "libpcap")
        self.headers_per_flow = config.headers
        path = os.fsencode(source)
        bpf = config.filter.encode() if config.filter else ffi.NULL
        out = ffi.new("af_engine **")
        if config.live:
            buffer_size = _check_range("buffer_size", config.buffer_size, 0, 2**31 - 1)
            code = lib.af_open_live(path, bpf, cfg, int(config.promiscuous), buffer_size, out)
        else:
            code = lib.af_open_offline(path, bpf, cfg, out)
        if code != lib.AF_OK:
            raise error_for(code, ffi.string(lib.af_open_error()).decode(errors="replace"), config.live)
        self._engine = ffi.gc(out[0], lib.af_close)
        self._live = config.live
        self.workers = int(lib.af_workers(self._engine))
        if self.workers < config.workers:  # live: the kernel refused PACKET_FANOUT, or a handle failed
            warnings.warn(f"workers={config.workers}: the kernel did not join {self.workers + 1} capture handles "
                          f"with PACKET_FANOUT on {os.fsdecode(path)}; capturing with {self.workers}",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
        loaded = tuple(
            _meter_info(lib.af_meter_registry_size() + j, lib.af_loaded_meter_info(self._engine, j))
            for j in range(len(libraries))
        )
        self.meter_layout = MeterLayout(
            int(lib.af_meter_stride(self._engine)),
            tuple(
                (m.name, int(lib.af_meter_offset(self._engine, m.index)))
                for m in (*METERS.values(), *loaded)
                if lib.af_meter_offset(self._engine, m.index) >= 0
            ),
            config.splt,
            loaded,
        )
        self.closed = False
        self._stats = ffi.new("af_stats *")
        self._ready = ffi.new("af_batch **")
        self._scratch: Any = None
        self.pumped_packets = self.pumped_bytes = 0  # what the last pump_some read

    def start(self, batch_records: int = 8192, slots: int = 4, read_ahead: bool = False) -> int:
        """Starts the engine's reading thread (and, read_ahead, a second one reading and decoding
        ahead of it); returns the fd that is readable when batches are. Raises ConfigError when
        already started, EngineError without memory for the threads or their buffers."""
        code = lib.af_start(self._engine, batch_records, slots, int(read_ahead))
        if code != lib.AF_OK:
            raise error_for(code, "could not start the reading thread", self._live)
        return int(lib.af_notify_fd(self._engine))

    def take_ready(self, records: bool = True, use: Callable[[Batch], object] | None = None) -> tuple[str, Batch]:
        """("batch", flows) when the thread has a batch ready; ("wait", empty) when not yet (wait
        for the fd); ("done", empty) when the source is finished and every batch was taken.
        records=False: only the chunks (and matches) are copied, the batch has no records.
        `use`: called on a ready batch in place, its records and meter blocks in the engine's
        memory rather than copied (the bulk path), before the engine may reuse them: it must
        keep nothing of the batch. ("batch", empty) then; a batch with streams is copied and
        returned as without `use`. Raises the typed error of the C status when the engine failed."""
        status = lib.af_ready(self._engine, self._ready)
        if status == lib.AF_MORE:
            ready = self._ready[0]
            try:
                if use is None or ready.streams != ffi.NULL:
                    return "batch", _copy_batch(ready, records, self.meter_layout)
                if ready.count:
                    use(_batch_in_place(ready, self.meter_layout))
                return "batch", EMPTY_BATCH
            finally:
                lib.af_release(self._engine)
        if status == lib.AF_DONE:
            return "done", EMPTY_BATCH
        if status < 0:
            raise self._error(status)
        return "wait", EMPTY_BATCH

    def _error(self, status: int) -> _errors.AioflowError:
        return error_for(status, ffi.string(lib.af_error_message(self._engine)).decode(errors="replace"), self._live)

    def stop(self) -> None:
        """Asks the engine to stop reading: the flows still active end as "stop" on the next pumps."""
        lib.af_stop(self._engine)

    def enable_chunks(self) -> None:
        """reassemble: chunks of the data that comes from now on (stream_events)."""
        lib.af_enable_chunks(self._engine)

    def set_stream_patterns(self, client: Sequence[bytes], server: Sequence[bytes], ignore_case: bool) -> None:
        """reassemble, before reading: search streams natively (see af_set_stream_patterns)."""
        _patterns_call(lib.af_set_stream_patterns, client, server, ignore_case, self._engine)

    def lookup(
        self, version: int, a: bytes, port_a: int, b: bytes, port_b: int, proto: int, vlan: int
    ) -> Batch | None:
        """The active flow between (a, port_a) and (b, port_b) (packed addresses; either order),
        as a one-record batch, or None."""
        out = ffi.new("af_record[1]")
        found = lib.af_lookup(self._engine, version, a, port_a, b, port_b, proto, vlan, out)
        return Batch(out, 1) if found else None

    def snapshot_slice(self, cursor: Any, capacity: int) -> Batch:
        """Copies up to capacity active flows from slot cursor[0] on (advancing it)."""
        records = ffi.new("af_record[]", capacity)
        return Batch(records, lib.af_snapshot(self._engine, cursor, records, capacity))

    # --- live sources: the event loop drives reading and wall-clock expiry ---
    def selectable_fd(self) -> int:
        return int(lib.af_selectable_fd(self._engine))

    def _scratch_batch(self) -> Any:
        if self._scratch is None:
            self._scratch = ffi.new("af_batch *")
            self._scratch_records = ffi.new("af_record[]", LIVE_BATCH_RECORDS)
            self._scratch.records = self._scratch_records
            self._scratch.capacity = LIVE_BATCH_RECORDS
            if self.headers_per_flow:
                self._scratch_headers = ffi.new("af_header[]", LIVE_BATCH_RECORDS * self.headers_per_flow)
                self._scratch.headers = self._scratch_headers
                self._scratch.header_capacity = LIVE_BATCH_RECORDS * self.headers_per_flow
            # reassembly: C gives the batch its stream room (reserved, backed as used), freed with it
            if lib.af_batch_meters_alloc(self._engine, self._scratch, LIVE_BATCH_RECORDS) != lib.AF_OK:
                raise _errors.EngineError("out of memory for the stream batch (lower max_stream_bytes)")
            self._scratch_streams = ffi.gc(self._scratch, lib.af_batch_meters_free)
        return self._scratch

    def pump_some(self, max_packets: int) -> tuple[str, Batch]:
        """Reads what the interface has (up to max_packets): ("drained" | "more" (stopped at a bound:
        call again) | "done" (stopped and flushed), ended flows). pumped_packets and pumped_bytes
        (captured bytes) say what the call read."""
        b = self._scratch_batch()
        status = lib.af_pump_some(self._engine, max_packets, b)
        if status < 0:
            raise self._error(status)
        self.pumped_packets, self.pumped_bytes = b.packets, b.bytes
        state = "done" if status == lib.AF_DONE else "more" if status == lib.AF_MORE else "drained"
        return state, _copy_batch(b, True, self.meter_layout)

    def expire(self, now_ns: int) -> tuple[bool, Batch]:
        """Ends flows idle (or closed) as of now_ns; (more are due, ended flows)."""
        b = self._scratch_batch()
        status = lib.af_expire(self._engine, now_ns, b)
        return bool(status == lib.AF_MORE), _copy_batch(b, True, self.meter_layout)

    def next_deadline(self) -> int:
        """Epoch ns of the next idle/FIN expiry; 0 when no flow is active."""
        return int(lib.af_next_deadline(self._engine))

    def snapshot_all(self) -> Batch:
        """Every active flow at one instant: one C call under the engine lock (run it in a thread)."""
        lib.af_get_stats(self._engine, self._stats)
        capacity = int(self._stats.active_flows * 5 // 4) + 1024
        while True:  # flows may have been added since the count: retry until they all fit
            records = ffi.new("af_record[]", capacity)
            count = lib.af_snapshot(self._engine, new_cursor(), records, capacity)
            if count < capacity:
                return Batch(records, count)
            capacity *= 2

    def stats(self) -> dict[str, Any]:
        """af_stats as a dict (times in ns, sizes in bytes); per-reason arrays as dicts by name."""
        s = ffi.new("af_stats *")
        lib.af_get_stats(self._engine, s)
        out = _stats_dict(s, self._engine)
        out["workers"] = tuple(self._worker_stats(i) for i in range(lib.af_workers(self._engine)))
        return out

    def _worker_stats(self, index: int) -> dict[str, int]:
        """Worker `index`'s own flow counters (what it counted; reading counters are the same in all)."""
        s = ffi.new("af_stats *")
        lib.af_get_worker_stats(self._engine, index, s)
        return {name: int(getattr(s, name)) for name in _WORKER_FIELDS}

    def timeline(self) -> Timeline | None:
        """What the timeline meter counted so far (a ~0.2 ms copy under the engine lock); None
        when that meter is off."""
        t = ffi.new("af_timeline *")
        if not lib.af_get_timeline(self._engine, t):
            return None  # numpy not imported: a parser that dropped privileges may no longer read it
        import numpy as np

        n = int(t.count)
        size = lib.AF_TIMELINE_MAX_BUCKETS * lib.AF_TIMELINE_CLASSES * 8
        shape = (lib.AF_TIMELINE_MAX_BUCKETS, lib.AF_TIMELINE_CLASSES)

        def table(field: Any) -> Any:
            return np.frombuffer(ffi.buffer(field, size), dtype="<u8").reshape(shape)[:n].astype(np.int64)

        return Timeline(int(t.origin_ns), int(t.interval_ns), table(t.packets), table(t.bytes),
                        int(t.coarsened), int(t.before_origin))  # fmt: skip

    def close(self) -> None:
        self.detach()()

    def detach(self) -> Callable[[], None]:
        """Marks the engine closed now (lookups refuse from here on) and returns what frees its C
        side, for a caller that runs that elsewhere: freeing a live ring takes ~20 ms."""
        if self.closed:
            return lambda: None
        self.closed = True
        engine = self._engine
        return lambda: ffi.release(engine)


def check_stream_patterns(client: Sequence[bytes], server: Sequence[bytes], ignore_case: bool) -> None:
    """Raises PatternUnsupportedError when the native stream search cannot run these regexes."""
    _patterns_call(lib.af_check_stream_patterns, client, server, ignore_case)


def stream_patterns_available() -> bool:
    return bool(lib.af_stream_patterns_available())


def _patterns_call(
    function: Any, client: Sequence[bytes], server: Sequence[bytes], ignore_case: bool, *engine: Any
) -> None:
    if any(b"\0" in p for p in (*client, *server)):
        raise _errors.PatternUnsupportedError("a pattern with a NUL byte: write it as \\x00")
    strings = [[ffi.new("char[]", p) for p in side] for side in (client, server)]  # alive for the call
    arrays = [ffi.new("char *[]", side) for side in strings]
    error = ffi.new("char[]", 1024)
    flags = lib.AF_MATCH_CASELESS if ignore_case else 0
    code = function(*engine, arrays[0], len(client), arrays[1], len(server), flags, error, len(error))
    if code != lib.AF_OK:
        raise error_for(code, ffi.string(error).decode(errors="replace"), hint=False)


def _copy_batch(b: Any, records: bool = True, layout: MeterLayout = NO_METERS) -> Batch:
    """A filled C batch copied into Python-owned memory of its exact size (records=False: its
    chunks only, for consumers of matches alone)."""
    if not records:
        if not b.chunk_count:
            return EMPTY_BATCH
        chunks = ffi.new("af_chunk[]", b.chunk_count)
        ffi.memmove(chunks, b.chunks, b.chunk_count * ffi.sizeof("af_chunk"))
        return Batch(ffi.NULL, 0, chunks=chunks, chunk_count=b.chunk_count,
                     stream_data=ffi.buffer(b.stream_data, b.stream_data_used)[:])  # fmt: skip
    if not b.count and not b.chunk_count:
        return EMPTY_BATCH
    records = ffi.new("af_record[]", b.count)
    ffi.memmove(records, b.records, b.count * RECORD_SIZE)
    headers = ffi.NULL
    if b.header_count:
        headers = ffi.new("af_header[]", b.header_count)
        ffi.memmove(headers, b.headers, b.header_count * ffi.sizeof("af_header"))
    batch = Batch(records, b.count, headers, b.header_count)
    if b.meter_stride:
        batch.meter_data = ffi.buffer(b.meter_data, b.count * b.meter_stride)[:]
        batch.meter_layout = layout
    if b.streams != ffi.NULL:  # reassembly: one copy of the stream bytes, views cut from it later
        batch.streams = ffi.new("af_stream_info[]", b.count)
        ffi.memmove(batch.streams, b.streams, b.count * _INFO_SIZE)
        batch.spans = StreamSpans(batch.streams, records, b.count)
        batch.chunk_count = b.chunk_count
        if b.chunk_count:
            batch.chunks = ffi.new("af_chunk[]", b.chunk_count)
            ffi.memmove(batch.chunks, b.chunks, b.chunk_count * ffi.sizeof("af_chunk"))
        batch.stream_data = ffi.buffer(b.stream_data, b.stream_data_used)[:]
    return batch


def _batch_in_place(b: Any, layout: MeterLayout) -> Batch:
    """A filled C batch without streams as a Batch over the engine's own memory (Engine.take_ready's
    `use`): valid until the batch is released."""
    batch = Batch(b.records, b.count, b.headers if b.header_count else ffi.NULL, b.header_count)
    if b.meter_stride:
        batch.meter_data = ffi.buffer(b.meter_data, b.count * b.meter_stride)
        batch.meter_layout = layout
    return batch


def _stats_dict(s: Any, engine: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(s, name) for name in _STATS_FIELDS}
    out["aside"] = {name: s.aside[i] for i, name in enumerate(ASIDE_REASONS)}
    out["ended_by"] = {name: s.ended_by[i] for i, name in enumerate(END_REASONS) if name}
    out["defrag_gave_up"] = {name: s.defrag_gave_up[i] for i, name in enumerate(DEFRAG_REASONS)}
    out["decode_events"] = {name: s.decode_events[i] for i, name in enumerate(DECODE_EVENTS)}
    out["error"] = ffi.string(lib.af_error_message(engine)).decode(errors="replace")
    return out


_STATS_ARRAYS = ("aside", "ended_by", "defrag_gave_up", "decode_events")  # per-reason arrays, turned into dicts above
_STATS_FIELDS = tuple(
    name for name, _ in ffi.typeof("af_stats").fields if not name.startswith("_") and name not in _STATS_ARRAYS
)


MAX_WORKERS = int(lib.AF_MAX_WORKERS)
_WORKER_FIELDS = ("packets_in_flows", "flows_created", "flows_ended", "active_flows", "peak_active_flows")


def new_cursor() -> Any:
    return ffi.new("uint32_t *", 0)


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _errors.ConfigError(f"{name}={value!r} is out of range: expected {low}..{high}")
    return value
