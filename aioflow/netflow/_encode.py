"""NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011/7012, RFC 5103 biflows) encoders.

Input is a numpy array of C flow records (aioflow._frame.RECORD_DTYPE); output is a list of export
messages (bytes), each under the MTU given. Records are encoded in bulk: a template is a big-endian
numpy dtype, its columns are filled for many flows at once and cut into messages, so the only
Python work per message is its header. No I/O here: aioflow.export sends or writes the messages.

Clock: message headers carry packet time (the latest flow end), so a capture file replays with its
own times; see Clock for how v5/v9's 32-bit sysUptime-relative times are kept from wrapping.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._engine import END_REASONS
from .._frame import RECORD_DTYPE
from ._templates import U32_MAX, Template, ipfix_templates, uptime_ms, v9_templates

if TYPE_CHECKING:
    from .._engine import Batch
    from .._flow import Flow

MTU_DEFAULT = 1400
FILE_MESSAGE_SIZE = 65_000  # RFC 5655 files: no path MTU, messages up to the 16-bit length field
BOOT_MARGIN_NS = 86_400 * 10**9  # flows that began up to a day before the first export keep a positive uptime
PORT_PROTOCOLS = (6, 17, 132)  # TCP, UDP, SCTP: ICMP "ports" (type/code or echo id) are not exported

# aioflow end reason (index into END_REASONS) -> IPFIX flowEndReason (RFC 7012): idle 1, active 2,
# end of flow detected (FIN/RST) 3, forced end (end of file, stop) 4, lack of resources (eviction) 5;
# a snapshot of a flow still open is reported as an active-timeout record (the flow goes on).
_END_REASON_CODES = {"": 2, "idle": 1, "active": 2, "fin": 3, "rst": 3, "eof": 4, "evicted": 5, "stop": 4,
                     "custom": 4}  # fmt: skip
FLOW_END_REASON = np.array([_END_REASON_CODES[name] for name in END_REASONS], dtype=np.uint8)


@dataclass(slots=True)
class EncoderStats:
    """What an encoder did. `flows` in, `records` out (one per direction for v5/v9)."""

    flows: int = 0
    records: int = 0
    messages: int = 0
    octets: int = 0  # bytes of messages produced
    templates_sent: int = 0  # messages that carried templates
    skipped_ipv6: int = 0  # v5 only: IPv6 flows cannot be expressed (counted, not sent)
    clamped: int = 0  # v5 only: directions whose packets or bytes exceeded 32 bits (sent as 2**32-1)
    out_of_range: int = 0  # flows ending after 2106 (damaged timestamps): v5/v9 cannot carry their times

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# --- columns: the flow records turned into the values export formats carry ---


def unidirectional(rec: np.ndarray) -> dict[str, np.ndarray]:
    """One row per direction that saw packets (NetFlow v5/v9 and uni-flow IPFIX): the src->dst rows
    keep the flow's order, each followed by its dst->src row."""
    fwd = rec["src2dst_packets"] > 0
    rev = rec["dst2src_packets"] > 0
    # Interleave: row 2i is flow i forward, 2i+1 reverse; then keep the directions that exist.
    keep = np.stack([fwd, rev], axis=1).ravel()
    order = np.repeat(np.arange(len(rec)), 2)[keep]
    is_rev = np.tile(np.array([False, True]), len(rec))[keep]
    r = rec[order]

    def pick(forward: str, reverse: str) -> np.ndarray:
        return np.where(is_rev if r[forward].ndim == 1 else is_rev[:, None], r[reverse], r[forward])

    ported = np.isin(r["protocol"], PORT_PROTOCOLS)
    return {
        "version": r["ip_version"],
        "src": pick("src_ip", "dst_ip"),
        "dst": pick("dst_ip", "src_ip"),
        "src_port": np.where(ported, pick("src_port", "dst_port"), 0),
        "dst_port": np.where(ported, pick("dst_port", "src_port"), 0),
        "protocol": r["protocol"],
        "vlan": r["vlan_id"],
        "packets": pick("src2dst_packets", "dst2src_packets"),
        "octets": pick("src2dst_bytes", "dst2src_bytes"),
        "first_ns": pick("src2dst_first_ns", "dst2src_first_ns"),
        "last_ns": pick("src2dst_last_ns", "dst2src_last_ns"),
        "tcp_flags": pick("src2dst_tcp_flags", "dst2src_tcp_flags"),
        "min_ttl": pick("src2dst_min_ttl", "dst2src_min_ttl"),
        "max_ttl": pick("src2dst_max_ttl", "dst2src_max_ttl"),
        "end_reason": FLOW_END_REASON[r["end_reason"]],
        "biflow_direction": np.zeros(len(r), np.uint8),  # unused by uni-flow templates
        "row": order,  # the record each row comes from (its columns given to encode())
    }


def bidirectional(rec: np.ndarray) -> dict[str, np.ndarray]:
    """One row per flow (IPFIX with RFC 5103 reverse elements): src is the initiator."""
    ported = np.isin(rec["protocol"], PORT_PROTOCOLS)
    cols = {
        "version": rec["ip_version"],
        "src": rec["src_ip"],
        "dst": rec["dst_ip"],
        "src_port": np.where(ported, rec["src_port"], 0),
        "dst_port": np.where(ported, rec["dst_port"], 0),
        "protocol": rec["protocol"],
        "vlan": rec["vlan_id"],
        "first_ns": rec["first_ns"],
        "last_ns": rec["last_ns"],
        "end_reason": FLOW_END_REASON[rec["end_reason"]],
        "biflow_direction": np.ones(len(rec), np.uint8),  # 1 = initiator: src opened the flow
        "row": np.arange(len(rec)),
    }
    for prefix, d in (("", "src2dst"), ("reverse_", "dst2src")):
        cols[prefix + "packets"] = rec[f"{d}_packets"]
        cols[prefix + "octets"] = rec[f"{d}_bytes"]
        cols[prefix + "tcp_flags"] = rec[f"{d}_tcp_flags"]
        cols[prefix + "min_ttl"] = rec[f"{d}_min_ttl"]
        cols[prefix + "max_ttl"] = rec[f"{d}_max_ttl"]
    return cols


# --- the export clock ---


class Clock:
    """Export time = the latest flow end seen (packet time), so a capture replays with its own times
    and the output is deterministic (the tests rely on it).

    v5/v9 record times are milliseconds of sysUptime, 32 bits wide, and collectors place them as
    header time - sysUptime + value, which only works when no value wraps. So those encoders order
    records by end time, give each message the latest end of its own records, keep records ending
    more than WINDOW_NS apart out of one message, and keep one "boot" while every message fits
    after it and within one wrap of it; when one does not (a capture spanning years, an export
    running for 49 days), the boot moves to a day before that message's earliest start, as if the
    exporter had restarted.

    Header times are 32-bit Unix seconds: a time past 2106 (a damaged capture's timestamp) cannot be
    carried; such flows are counted in `out_of_range` and left out of the clock.
    """

    LIMIT_NS = 2**32 * 10**9
    WRAP_NS = 2**32 * 10**6  # sysUptime wraps after 2**32 ms
    WINDOW_NS = 2**31 * 10**6  # records of one message end within this of each other

    def __init__(self) -> None:
        self.boot_ns: int | None = None
        self.now_ns = 0
        self.row_boot_ns: np.ndarray | None = None  # per record, while a message plan is filled in

    def advance(self, rec: np.ndarray) -> int:
        """Moves the clock over these records; returns how many have a time it cannot carry."""
        ok = rec["last_ns"] < self.LIMIT_NS
        if ok.any():
            self.now_ns = max(self.now_ns, int(rec["last_ns"][ok].max()))
        return int((~ok).sum())

    def boot_for(self, earliest: int, header_ns: int) -> int:
        """The boot of a message whose records start at `earliest` at the soonest, and whose
        header says header_ns."""
        earliest = min(earliest, header_ns)
        boot = self.boot_ns
        if boot is None or earliest < boot or header_ns - boot >= self.WRAP_NS:
            # a second boundary at or after both bounds: nothing wraps unless a flow lasts 49 days
            boot = max(earliest - BOOT_MARGIN_NS, header_ns - self.WRAP_NS + 10**9, 0)
            self.boot_ns = boot = -(-boot // 10**9) * 10**9
        return boot


@dataclass(frozen=True, slots=True)
class _Message:
    """One planned message: records [start, start+count), with the templates or not."""

    start: int
    count: int
    with_templates: bool
    time_ns: int  # the header's export time
    boot_ns: int  # v5/v9: the sysUptime origin of this message


# --- encoders ---


class Encoder:
    """Shared machinery: the clock, counters, when to (re)send templates, and cutting records into
    messages."""

    relative_times = True  # v5/v9: sysUptime-relative record times (see Clock)

    def __init__(self, mtu: int, template_refresh_packets: int | None, template_refresh_seconds: float | None) -> None:
        if mtu < 256 or mtu > 65_535:
            raise ValueError(f"mtu={mtu!r}: expected 256..65535 bytes of UDP payload")
        self.mtu = mtu
        self.refresh_packets = template_refresh_packets
        self.refresh_seconds = template_refresh_seconds
        self.clock = Clock()
        self.stats = EncoderStats()
        self._messages = 0
        # per template id: (message count, monotonic time) when it was last sent
        self._template_sent: dict[int, tuple[int, float]] = {}

    def _template_due(self, template_id: int) -> bool:
        """Before its first data, then every refresh_packets messages or refresh_seconds."""
        last = self._template_sent.get(template_id)
        if last is None:
            return True
        if self.refresh_packets is not None and self._messages - last[0] >= self.refresh_packets:
            return True
        return self.refresh_seconds is not None and time.monotonic() - last[1] >= self.refresh_seconds

    def _sent(self, template_id: int | None) -> None:
        """A message is out, with that template in it (or none)."""
        if template_id is not None:
            self._template_sent[template_id] = (self._messages, time.monotonic())
            self.stats.templates_sent += 1
        self._messages += 1

    def encode(self, rec: np.ndarray, extra: Mapping[str, np.ndarray] | None = None) -> list[bytes]:
        """Export messages for these flow records (RECORD_DTYPE), in order; `extra`: more columns,
        one value per record, for templates that name them (application_name, ...: the
        applications' elements); a column a template names and nobody gives is zeros."""
        if rec.dtype.names != RECORD_DTYPE.names:
            raise TypeError("encode() takes an array of aioflow flow records (RECORD_DTYPE)")
        self.stats.out_of_range += self.clock.advance(rec)
        self.stats.flows += len(rec)
        out = self._encode(rec, extra or {})
        self.stats.messages += len(out)
        self.stats.octets += sum(map(len, out))
        return out

    def _encode(self, rec: np.ndarray, extra: Mapping[str, np.ndarray]) -> list[bytes]:
        raise NotImplementedError

    def _room(self, with_templates: bool) -> int:
        """Records of this encoder's largest template that fit in one message (with its template)."""
        raise NotImplementedError

    def _header_time(self, latest: int) -> int:
        """A message's export time from the latest in-range end of its records (0: none), in whole ms."""
        return (latest or self.clock.now_ns) // 1_000_000 * 1_000_000

    def _plan(self, first_ns: np.ndarray, last_ns: np.ndarray, template_id: int | None) -> list[_Message]:
        """Cuts n records (sorted by end time when relative_times) into messages; sets the clock's
        per-record boot for the sysUptime columns."""
        # First the cuts (Python ints only), then each message's latest end and earliest start in
        # two numpy reductions: the per-message Python work stays a few operations.
        cuts: list[tuple[int, int, bool]] = []
        start, n = 0, len(last_ns)
        while start < n:
            with_templates = template_id is not None and self._template_due(template_id)
            count = min(self._room(with_templates), n - start)
            if self.relative_times and int(last_ns[start + count - 1]) - int(last_ns[start]) > Clock.WINDOW_NS:
                count = int(np.searchsorted(last_ns, last_ns[start] + np.uint64(Clock.WINDOW_NS), "right")) - start
            cuts.append((start, count, with_templates))
            self._sent(template_id if with_templates else None)
            start += count
        self.clock.row_boot_ns = np.zeros(0, dtype=np.uint64)
        if not cuts:
            return []
        if not self.relative_times:
            return [_Message(start, count, t, self.clock.now_ns, 0) for start, count, t in cuts]
        starts = np.array([c[0] for c in cuts])
        limit = np.uint64(Clock.LIMIT_NS)
        latest = np.maximum.reduceat(np.where(last_ns < limit, last_ns, np.uint64(0)), starts).tolist()
        earliest = np.minimum.reduceat(np.where(first_ns < limit, first_ns, limit), starts).tolist()
        plan = []
        for (start, count, with_templates), late, early in zip(cuts, latest, earliest, strict=True):
            when = self._header_time(late)
            plan.append(_Message(start, count, with_templates, when, self.clock.boot_for(early, when)))
        self.clock.row_boot_ns = np.repeat(np.array([m.boot_ns for m in plan], dtype=np.uint64), [c[1] for c in cuts])
        return plan


def by_end_time(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows ordered by end time (stable: directions of one flow stay together when they end together)."""
    order = np.argsort(cols["last_ns"], kind="stable")
    return {name: value[order] for name, value in cols.items()}


class NetflowV5Encoder(Encoder):
    """NetFlow v5: IPv4 only, one 48-byte record per direction, at most 30 per datagram."""

    HEADER = struct.Struct("!HHIIIIBBH")
    RECORD = np.dtype([
        ("src", np.uint8, (4,)), ("dst", np.uint8, (4,)), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
        ("packets", ">u4"), ("octets", ">u4"), ("first", ">u4"), ("last", ">u4"),
        ("src_port", ">u2"), ("dst_port", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("protocol", "u1"),
        ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
    ])  # fmt: skip
    MAX_RECORDS = 30  # the v5 format's own limit

    def __init__(self, mtu: int = MTU_DEFAULT, engine_type: int = 0, engine_id: int = 0) -> None:
        super().__init__(mtu, None, None)
        self.engine_type = engine_type
        self.engine_id = engine_id
        self.sequence = 0  # flows sent before the next datagram (v5's flow_sequence)
        self.per_message = min(self.MAX_RECORDS, (mtu - self.HEADER.size) // self.RECORD.itemsize)

    def _room(self, with_templates: bool) -> int:
        return self.per_message

    def _encode(self, rec: np.ndarray, extra: Mapping[str, np.ndarray]) -> list[bytes]:
        v4 = rec["ip_version"] == 4
        self.stats.skipped_ipv6 += int((~v4).sum())
        cols = by_end_time(unidirectional(rec[v4]))
        n = len(cols["packets"])
        plan = self._plan(cols["first_ns"], cols["last_ns"], None)
        out = np.zeros(n, dtype=self.RECORD)
        for name in ("src", "dst"):
            out[name] = cols[name][:, :4]
        for name in ("src_port", "dst_port", "protocol", "tcp_flags"):
            out[name] = cols[name]
        over = (cols["packets"] > U32_MAX) | (cols["octets"] > U32_MAX)
        self.stats.clamped += int(over.sum())
        out["packets"] = np.minimum(cols["packets"], U32_MAX)
        out["octets"] = np.minimum(cols["octets"], U32_MAX)
        assert self.clock.row_boot_ns is not None  # set by the plan above
        out["first"] = uptime_ms(cols["first_ns"], self.clock.row_boot_ns)
        out["last"] = uptime_ms(cols["last_ns"], self.clock.row_boot_ns)
        data = out.tobytes()
        size = self.RECORD.itemsize
        messages = []
        for m in plan:
            seconds, nanos = divmod(m.time_ns, 10**9)
            header = self.HEADER.pack(5, m.count, uptime_ms(m.time_ns, m.boot_ns), seconds, nanos,
                                      self.sequence & U32_MAX, self.engine_type, self.engine_id, 0)  # fmt: skip
            messages.append(header + data[m.start * size : (m.start + m.count) * size])
            self.sequence += m.count
        self.stats.records += n
        return messages


class _TemplatedEncoder(Encoder):
    """v9 and IPFIX: template sets, data sets of one template per message, cut to the MTU."""

    SET_HEADER = struct.Struct("!HH")
    header_size = 0
    template_set_id = 0
    pad_sets = False

    def __init__(
        self,
        templates: dict[int, Template],
        mtu: int,
        template_refresh_packets: int | None,
        template_refresh_seconds: float | None,
    ) -> None:
        super().__init__(mtu, template_refresh_packets, template_refresh_seconds)
        self.templates = templates
        # Each message carries the template of its own data set when that one is due: the smallest
        # MTU then only needs room for one template.
        self.template_sets = {}
        for t in templates.values():
            body = self._template_body(t)
            header = self.SET_HEADER.pack(self.template_set_id, self.SET_HEADER.size + len(body))
            self.template_sets[t.id] = header + body
        self._record_length = max(t.record_length for t in templates.values())
        if self._room(True) < 1:
            raise ValueError(f"mtu={mtu}: too small for the templates and one record")

    def _room(self, with_templates: bool) -> int:
        room = self.mtu - self.header_size - self.SET_HEADER.size - 3  # 3: the most padding a set takes
        if with_templates:
            room -= max(map(len, self.template_sets.values()))
        return room // self._record_length

    def _template_body(self, template: Template) -> bytes:
        raise NotImplementedError

    def _columns(self, rec: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _header(self, length: int, m: _Message, template_records: int) -> bytes:
        raise NotImplementedError

    def _after_message(self, records: int) -> None:
        raise NotImplementedError

    def _encode(self, rec: np.ndarray, extra: Mapping[str, np.ndarray]) -> list[bytes]:
        cols = self._columns(rec)
        for name, column in extra.items():
            cols[name] = column[cols["row"]]
        messages: list[bytes] = []
        for version, template in self.templates.items():
            mask = cols["version"] == version
            if not mask.any():
                continue
            rows = {k: v[mask] for k, v in cols.items()}
            for el in template.elements:
                if el.column not in rows:  # flows given without their meters' columns
                    rows[el.column] = np.zeros(int(mask.sum()), dtype=template.dtype[el.name])
            if self.relative_times:
                rows = by_end_time(rows)
            plan = self._plan(rows["first_ns"], rows["last_ns"], template.id)
            data = template.fill(rows, self.clock).tobytes()
            messages += self._assemble(template, data, plan)
            self.stats.records += len(rows["last_ns"])
        return messages

    def _assemble(self, template: Template, data: bytes, plan: list[_Message]) -> list[bytes]:
        size = template.record_length
        messages = []
        for m in plan:
            body = data[m.start * size : (m.start + m.count) * size]
            padding = -(self.SET_HEADER.size + len(body)) % 4 if self.pad_sets else 0
            data_set = self.SET_HEADER.pack(template.id, self.SET_HEADER.size + len(body) + padding) + body
            data_set += bytes(padding)
            sets = [self.template_sets[template.id], data_set] if m.with_templates else [data_set]
            length = self.header_size + sum(map(len, sets))
            template_records = 1 if m.with_templates else 0
            messages.append(self._header(length, m, template_records) + b"".join(sets))
            self._after_message(m.count)
        return messages


class NetflowV9Encoder(_TemplatedEncoder):
    """NetFlow v9 (RFC 3954): one record per direction, IPv4 and IPv6 templates (256, 257)."""

    HEADER = struct.Struct("!HHIIII")
    header_size = HEADER.size
    template_set_id = 0
    pad_sets = True  # RFC 3954 5.3: data FlowSets padded to 32 bits

    def __init__(
        self,
        mtu: int = MTU_DEFAULT,
        source_id: int = 0,
        template_refresh_packets: int | None = 20,
        template_refresh_seconds: float | None = 60.0,
    ) -> None:
        super().__init__(v9_templates(), mtu, template_refresh_packets, template_refresh_seconds)
        self.source_id = source_id
        self.sequence = 0  # export packets sent before this one (RFC 3954 package sequence)

    def _header_time(self, latest: int) -> int:
        # v9 headers carry whole seconds, so sysUptime is taken at that second; rounded up, so the
        # header is not older than the records' ends
        return -(-super()._header_time(latest) // 10**9) * 10**9

    def _template_body(self, template: Template) -> bytes:
        return template.fields_v9()

    def _columns(self, rec: np.ndarray) -> dict[str, np.ndarray]:
        return unidirectional(rec)

    def _header(self, length: int, m: _Message, template_records: int) -> bytes:
        # count: every record in the packet, template records included (RFC 3954 5.1)
        return self.HEADER.pack(9, m.count + template_records, uptime_ms(m.time_ns, m.boot_ns), m.time_ns // 10**9,
                                self.sequence & U32_MAX, self.source_id)  # fmt: skip

    def _after_message(self, records: int) -> None:
        self.sequence += 1


class IPFIXEncoder(_TemplatedEncoder):
    """IPFIX (RFC 7011): biflows with RFC 5103 reverse elements (or one record per direction with
    biflow=False); flowStart/EndMilliseconds, and also flowStart/EndNanoseconds with nanoseconds=True;
    with applications=True, nDPI's application (templates.APPLICATION_ELEMENTS) from encode()'s
    `extra` columns (netflow._applications)."""

    HEADER = struct.Struct("!HHIII")
    header_size = HEADER.size
    template_set_id = 2
    relative_times = False  # absolute times: records keep the order flows ended

    def __init__(
        self,
        mtu: int = MTU_DEFAULT,
        observation_domain: int = 0,
        biflow: bool = True,
        nanoseconds: bool = False,
        template_refresh_packets: int | None = 20,
        template_refresh_seconds: float | None = 60.0,
        applications: bool = False,
    ) -> None:
        templates = ipfix_templates(biflow, nanoseconds, applications)
        super().__init__(templates, mtu, template_refresh_packets, template_refresh_seconds)
        self.observation_domain = observation_domain
        self.biflow = biflow
        self.sequence = 0  # data records sent before this message (RFC 7011 3.1)

    def _template_body(self, template: Template) -> bytes:
        return template.fields_ipfix()

    def _columns(self, rec: np.ndarray) -> dict[str, np.ndarray]:
        return bidirectional(rec) if self.biflow else unidirectional(rec)

    def _header(self, length: int, m: _Message, template_records: int) -> bytes:
        return self.HEADER.pack(10, length, m.time_ns // 10**9 & U32_MAX, self.sequence & U32_MAX,
                                self.observation_domain)  # fmt: skip

    def _after_message(self, records: int) -> None:
        self.sequence += records


def encoder_for(format: str, **options: Any) -> Encoder:
    """ "ipfix", "v9" or "v5" -> a new encoder with those options."""
    kinds: dict[str, type[Encoder]] = {"ipfix": IPFIXEncoder, "v9": NetflowV9Encoder, "v5": NetflowV5Encoder}
    try:
        return kinds[format](**options)
    except KeyError:
        raise ValueError(f"format={format!r}: expected one of {sorted(kinds)}") from None


def batch_runs(flows: Sequence[Flow]) -> list[tuple[Batch, list[int]]]:
    """Flow objects as runs of flows from the same batch (as terminated() yields them): each
    run's batch and the flows' indexes in it, so a run's columns are one fancy index."""
    runs: list[tuple[Batch, list[int]]] = []
    for flow in flows:
        batch, index = flow.position
        if not runs or runs[-1][0] is not batch:
            runs.append((batch, []))
        runs[-1][1].append(index)
    return runs


def gather_records(flows: Sequence[Flow]) -> np.ndarray:
    """The C records behind Flow objects, copied into one array (a fancy index per batch_runs run)."""
    if not flows:
        return np.zeros(0, dtype=RECORD_DTYPE)
    parts = [np.frombuffer(batch.raw_records(), dtype=RECORD_DTYPE)[run] for batch, run in batch_runs(flows)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
