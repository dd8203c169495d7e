"""The one importer of the compiled module: wraps the C engine and turns its codes into exceptions."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

from . import _errors
from ._native import ffi, lib

END_REASONS = ("", "idle", "active", "fin", "rst", "eof", "evicted", "stop")
ASIDE_REASONS = (
    "non_ip",
    "truncated",
    "bad_header",
    "unsupported_link",
    "fragment_orphan",
    "filtered",
    "no_memory",
)
RECORD_SIZE: int = ffi.sizeof("af_record")

_OPEN_ERRORS: dict[int, tuple[type[_errors.AioflowError], str]] = {
    lib.AF_ERR_NOT_FOUND: (_errors.CaptureNotFoundError, "check the path (a file wins over an interface name)"),
    lib.AF_ERR_PERMISSION: (_errors.CapturePermissionError, "give this user read access to the file"),
    lib.AF_ERR_FORMAT: (
        _errors.CaptureFormatError,
        "is it a pcap or pcapng file? (`capinfos FILE` tells); damaged headers cannot be read",
    ),
    lib.AF_ERR_FILTER: (_errors.FilterError, "fix the BPF expression (see `man pcap-filter`)"),
    lib.AF_ERR_CONFIG: (_errors.ConfigError, "check the FlowParser parameters"),
    lib.AF_ERR_NOMEM: (_errors.EngineError, "lower max_flows or headers"),
}


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


class Batch:
    """Ended (or snapshot) flow records copied out of C in one go, plus their kept headers."""

    __slots__ = ("count", "header_count", "headers", "records")

    def __init__(self, capacity: int, headers_per_flow: int) -> None:
        self.records = ffi.new("af_record[]", capacity)
        self.headers = ffi.new("af_header[]", capacity * headers_per_flow) if headers_per_flow else ffi.NULL
        self.count = 0
        self.header_count = 0

    def raw_records(self) -> Any:
        """The filled records as a buffer (for numpy's bulk path)."""
        return ffi.buffer(self.records, self.count * RECORD_SIZE)


class Engine:
    """One opened source and its flow table. Calls must not overlap (the parser holds a lock)."""

    def __init__(self, source: str | os.PathLike[str], config: EngineConfig) -> None:
        cfg = ffi.new("af_config *")
        cfg.max_flows = _check_range("max_flows", config.max_flows, 1, 2**31 - 1)
        cfg.headers_per_flow = _check_range("headers", config.headers, 0, 65535)
        cfg.idle_timeout_ns = _check_range("idle_timeout", config.idle_timeout_ns, 0, 2**63)
        cfg.active_timeout_ns = _check_range("active_timeout", config.active_timeout_ns, 0, 2**63)
        cfg.fin_timeout_ns = _check_range("fin_timeout", config.fin_timeout_ns, 0, 2**63)
        cfg.snaplen = _check_range("snaplen", config.snaplen, 1, 262144)
        cfg.hash_seed = secrets.randbits(64) if config.hash_seed is None else config.hash_seed
        self.headers_per_flow = config.headers
        path = os.fsencode(source)
        bpf = config.filter.encode() if config.filter else ffi.NULL
        out = ffi.new("af_engine **")
        code = lib.af_open_offline(path, bpf, cfg, out)
        if code != lib.AF_OK:
            message = ffi.string(lib.af_open_error()).decode(errors="replace")
            exc_type, hint = _OPEN_ERRORS.get(code, (_errors.EngineError, "report this as a bug"))
            raise exc_type(f"{message} ({hint})")
        self._engine = ffi.gc(out[0], lib.af_close)
        self._closed = False

    def pump(self, max_packets: int, batch: Batch) -> bool:
        """Reads up to max_packets, filling batch with ended flows. True when the source is done.

        Runs in a worker thread: cffi releases the GIL for the C call."""
        b = ffi.new("af_batch *")
        b.records = batch.records
        b.capacity = len(batch.records)
        b.headers = batch.headers
        b.header_capacity = len(batch.records) * self.headers_per_flow
        status = lib.af_pump(self._engine, max_packets, b)
        batch.count = b.count
        batch.header_count = b.header_count
        if status < 0:
            raise _errors.EngineError(ffi.string(lib.af_error_message(self._engine)).decode())
        return bool(status == lib.AF_DONE)

    def stop(self) -> None:
        lib.af_stop(self._engine)

    def lookup(self, version: int, a: bytes, port_a: int, b: bytes, port_b: int, proto: int, vlan: int) -> Any:
        out = ffi.new("af_record *")
        found = lib.af_lookup(self._engine, version, a, port_a, b, port_b, proto, vlan, out)
        return out if found else None

    def snapshot_slice(self, cursor: Any, capacity: int) -> Batch:
        """Copies up to capacity active flows from slot cursor[0] on (advancing it)."""
        batch = Batch(capacity, 0)
        batch.count = lib.af_snapshot(self._engine, cursor, batch.records, capacity)
        return batch

    def stats(self) -> dict[str, Any]:
        s = ffi.new("af_stats *")
        lib.af_get_stats(self._engine, s)
        out: dict[str, Any] = {
            name: getattr(s, name) for name in dir(s) if not name.startswith("_") and name not in ("aside", "ended_by")
        }
        out["aside"] = {name: s.aside[i] for i, name in enumerate(ASIDE_REASONS)}
        out["ended_by"] = {name: s.ended_by[i] for i, name in enumerate(END_REASONS) if name}
        out["error"] = ffi.string(lib.af_error_message(self._engine)).decode(errors="replace")
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            ffi.release(self._engine)


def new_cursor() -> Any:
    return ffi.new("uint32_t *", 0)


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _errors.ConfigError(f"{name}={value!r} is out of range: expected {low}..{high}")
    return value
