"""The bulk path: C flow records viewed as a numpy structured array, turned into columns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._engine import END_REASONS, METERS, Batch, MeterLayout, ffi
from ._flow import TCP_FLAGS

# numpy's code for each C integer type the records use (little-endian hosts, as C lays them out)
_NUMPY_KINDS = {"uint64_t": "<u8", "uint32_t": "<u4", "uint16_t": "<u2", "uint8_t": "u1",
                "int64_t": "<i8", "int32_t": "<i4", "double": "<f8", "float": "<f4"}  # fmt: skip


def _numpy_type(ctype: Any) -> Any:
    """A cffi field type as a numpy format: a primitive, or (primitive, length) for an array."""
    if ctype.kind == "array":
        return (np.dtype(_NUMPY_KINDS[ctype.item.cname]), (ctype.length,))
    return np.dtype(_NUMPY_KINDS[ctype.cname])


def _record_dtype() -> np.dtype[Any]:
    """numpy's view of af_record: names, types and offsets from the compiled struct itself
    (padding fields left out)."""
    fields = [(name, f) for name, f in ffi.typeof("af_record").fields if not name.startswith("_")]
    spec: dict[str, Any] = {
        "names": [name for name, _ in fields],
        "formats": [_numpy_type(f.type) for _, f in fields],
        "offsets": [f.offset for _, f in fields],
        "itemsize": ffi.sizeof("af_record"),
    }
    dtype: np.dtype[Any] = np.dtype(spec)  # type: ignore[call-overload]  # numpy's stubs lack the dict form
    return dtype


RECORD_DTYPE = _record_dtype()


def _ip_strings(version: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Dotted/colon strings; IPv4 vectorised, IPv6 through ipaddress (compressed form)."""
    import ipaddress

    out = np.empty(len(version), dtype=object)
    v4 = version == 4
    if v4.any():
        octets = raw[v4, :4].astype(str)
        joined = octets[:, 0]
        for i in range(1, 4):
            joined = np.char.add(np.char.add(joined, "."), octets[:, i])
        out[v4] = joined
    for row in np.flatnonzero(~v4):
        out[row] = str(ipaddress.IPv6Address(raw[row].tobytes()))
    return out


def records_to_columns(rec: np.ndarray) -> dict[str, Any]:
    """C flow records (RECORD_DTYPE) as read_frame's columns, computed per column in numpy."""
    cols: dict[str, Any] = {"id": rec["id"]}
    cols["src_ip"] = _ip_strings(rec["ip_version"], rec["src_ip"])
    cols["src_port"] = rec["src_port"]
    cols["dst_ip"] = _ip_strings(rec["ip_version"], rec["dst_ip"])
    for name in ("dst_port", "protocol", "ip_version", "vlan_id"):
        cols[name] = rec[name]
    cols["first_seen"] = rec["first_ns"] / 1e9
    cols["last_seen"] = rec["last_ns"] / 1e9
    cols["first_seen_ns"] = rec["first_ns"]
    cols["last_seen_ns"] = rec["last_ns"]
    duration = rec["last_ns"] - rec["first_ns"]
    cols["duration"] = duration / 1e9
    cols["duration_ns"] = duration
    cols["packets"] = rec["src2dst_packets"] + rec["dst2src_packets"]
    cols["bytes"] = rec["src2dst_bytes"] + rec["dst2src_bytes"]
    cols["captured_bytes"] = rec["src2dst_captured_bytes"] + rec["dst2src_captured_bytes"]
    for d in ("src2dst", "dst2src"):
        for name in ("packets", "bytes", "captured_bytes"):
            cols[f"{d}_{name}"] = rec[f"{d}_{name}"]
        cols[f"{d}_first_seen_ns"] = rec[f"{d}_first_ns"]
        cols[f"{d}_last_seen_ns"] = rec[f"{d}_last_ns"]
    for d in ("src2dst", "dst2src"):
        cols[f"{d}_tcp_flags"] = rec[f"{d}_tcp_flags"]
        for i, flag in enumerate(TCP_FLAGS):
            cols[f"{d}_{flag}_packets"] = rec[f"{d}_flag_counts"][:, i]
    for d in ("src2dst", "dst2src"):
        cols[f"{d}_min_ttl"] = rec[f"{d}_min_ttl"]
        cols[f"{d}_max_ttl"] = rec[f"{d}_max_ttl"]
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = duration / 1e9
        cols["bytes_per_second"] = np.where(duration > 0, cols["bytes"] / seconds, 0.0)
        cols["packets_per_second"] = np.where(duration > 0, cols["packets"] / seconds, 0.0)
    cols["headers_dropped"] = rec["headers_dropped"]
    cols["end_reason"] = np.asarray(END_REASONS, dtype=object)[rec["end_reason"]]
    return cols


def meter_columns(data: bytes, count: int, layout: MeterLayout) -> dict[str, np.ndarray]:
    """The enabled meters' fields of `count` records as columns named <meter>_<field>, read in
    bulk from their meter blocks (stride and offsets as C published them)."""
    cols: dict[str, np.ndarray] = {}
    if not layout.stride:
        return cols
    raw = np.frombuffer(data, dtype=np.uint8, count=count * layout.stride).reshape(count, layout.stride)
    for name, offset in layout.offsets:
        for f in METERS[name].fields:
            kind = np.dtype(_NUMPY_KINDS[f.ctype])
            at = offset + f.offset
            cols[f"{name}_{f.name}"] = raw[:, at : at + kind.itemsize].copy().view(kind).reshape(count)
    return cols


def batches_to_columns(batches: Iterable[Batch], meters_on: Iterable[str] = ()) -> dict[str, Any]:
    """Every record of these batches as columns (records_to_columns), plus the enabled meters'
    fields (meter_columns; `meters_on` names them, so that a source with no flow still has their
    columns, empty). Each batch is copied out as it comes, so none is kept."""
    parts: list[np.ndarray] = []
    meters: list[dict[str, np.ndarray]] = []
    for b in batches:
        parts.append(np.frombuffer(b.raw_records(), dtype=RECORD_DTYPE).copy())
        meters.append(meter_columns(b.meter_data, b.count, b.meter_layout))
    records = np.concatenate(parts) if parts else np.zeros(0, dtype=RECORD_DTYPE)
    cols = records_to_columns(records)
    if not meters:
        meters = [{f"{m}_{f.name}": np.zeros(0, _NUMPY_KINDS[f.ctype]) for m in meters_on for f in METERS[m].fields}]
    for name in meters[0]:
        cols[name] = np.concatenate([m[name] for m in meters])
    return cols
