"""The bulk path: C flow records viewed as a numpy structured array, turned into columns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._engine import END_REASONS, METERS, Batch, MeterLayout, ffi, text_size
from ._flow import SCALAR_FIELDS, TCP_FLAGS, flow_id_text

# numpy's code for each C integer type the records use (little-endian hosts, as C lays them out)
_NUMPY_KINDS = {"uint64_t": "<u8", "uint32_t": "<u4", "uint16_t": "<u2", "uint8_t": "u1",
                "int64_t": "<i8", "int32_t": "<i4", "int16_t": "<i2", "int8_t": "i1", "double": "<f8",
                "float": "<f4"}  # fmt: skip


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


def _signed(values: np.ndarray) -> np.ndarray:
    """An integer column as int64, so that differences and sums of columns cannot wrap (a uint64
    `a - b` with b > a would give ~1.8e19); floats pass as they are."""
    return values.astype(np.int64, copy=False) if values.dtype.kind in "ui" else values


def _bidirectional_ids(rec: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Flow.bidirectional_id per record, in bulk: "proto-vlan-lo:port-hi:port" with the endpoints
    ordered as (raw 16-byte address, port), the way Flow orders them."""
    def key(name: str) -> np.ndarray:
        return np.ascontiguousarray(rec[name]).view(">u8").reshape(len(rec), 2)

    a, b = key("src_ip"), key("dst_ip")
    sport, dport = rec["src_port"], rec["dst_port"]
    later = (a[:, 1] > b[:, 1]) | ((a[:, 1] == b[:, 1]) & (sport > dport))
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & later)
    # the order is found in bulk; the text per flow (not per packet), as Flow writes it
    rows = zip(rec["protocol"].tolist(), rec["vlan_id"].tolist(), np.where(swap, dst, src).tolist(),
               np.where(swap, dport, sport).tolist(), np.where(swap, src, dst).tolist(),
               np.where(swap, sport, dport).tolist(), strict=True)  # fmt: skip
    out = np.empty(len(rec), dtype=object)
    out[:] = [flow_id_text(*row) for row in rows]
    return out


def records_to_columns(rec: np.ndarray) -> dict[str, Any]:
    """C flow records (RECORD_DTYPE) as read_frame's columns, computed per column in numpy: the
    columns of Flow.to_dict() (SCALAR_FIELDS), in its order, integers as int64."""
    cols: dict[str, Any] = {"id": rec["id"]}
    cols["src_ip"] = _ip_strings(rec["ip_version"], rec["src_ip"])
    cols["dst_ip"] = _ip_strings(rec["ip_version"], rec["dst_ip"])
    cols["bidirectional_id"] = _bidirectional_ids(rec, cols["src_ip"], cols["dst_ip"])
    for name in ("src_port", "dst_port", "protocol", "ip_version", "vlan_id", "headers_dropped"):
        cols[name] = rec[name]
    first, last = rec["first_ns"].astype(np.int64), rec["last_ns"].astype(np.int64)
    cols["first_seen"] = first / 1e9
    cols["last_seen"] = last / 1e9
    cols["first_seen_ns"] = first
    cols["last_seen_ns"] = last
    duration = last - first
    cols["duration"] = duration / 1e9
    cols["duration_ns"] = duration
    for name in ("packets", "bytes", "captured_bytes"):
        cols[name] = _signed(rec[f"src2dst_{name}"]) + _signed(rec[f"dst2src_{name}"])
    for d in ("src2dst", "dst2src"):
        for name in ("packets", "bytes", "captured_bytes", "tcp_flags", "min_ttl", "max_ttl"):
            cols[f"{d}_{name}"] = rec[f"{d}_{name}"]
        cols[f"{d}_first_seen_ns"] = rec[f"{d}_first_ns"]
        cols[f"{d}_last_seen_ns"] = rec[f"{d}_last_ns"]
        for i, flag in enumerate(TCP_FLAGS):
            cols[f"{d}_{flag}_packets"] = rec[f"{d}_flag_counts"][:, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = duration / 1e9
        cols["bytes_per_second"] = np.where(duration > 0, cols["bytes"] / seconds, 0.0)
        cols["packets_per_second"] = np.where(duration > 0, cols["packets"] / seconds, 0.0)
    cols["end_reason"] = np.asarray(END_REASONS, dtype=object)[rec["end_reason"]]
    return {name: _signed(cols[name]) for name in SCALAR_FIELDS}


def meter_columns(data: bytes, count: int, layout: MeterLayout) -> dict[str, np.ndarray]:
    """The enabled meters' fields of `count` records as columns named <meter>_<field> (or the
    field's own name, for meters with plain names: MeterInfo.column), read in bulk from their
    meter blocks (stride and offsets as C published them). An array field is a 2-D column,
    (count, layout.array_length): its first array_length values."""
    cols: dict[str, np.ndarray] = {}
    if not layout.stride:
        return cols
    raw = np.frombuffer(data, dtype=np.uint8, count=count * layout.stride).reshape(count, layout.stride)
    for name, offset in layout.offsets:
        meter = METERS[name]
        for f in meter.fields:
            kind = _field_kind(f.ctype)
            at = offset + f.offset
            n = layout.array_length if f.count else 1
            values = raw[:, at : at + n * kind.itemsize].copy().view(kind)
            if kind.kind == "S":
                cols[meter.column(f)] = _texts(values.reshape(count))
            else:
                cols[meter.column(f)] = _signed(values if f.count else values.reshape(count))
    return cols


def _field_kind(ctype: str) -> np.dtype[Any]:
    """numpy's type of a meter field: an integer or float, or bytes "S<N>" for "char[N]" text."""
    size = text_size(ctype)
    return np.dtype(f"S{size}") if size else np.dtype(_NUMPY_KINDS[ctype])


def _texts(column: np.ndarray) -> np.ndarray:
    """A "char[N]" column (numpy's S<N> stops at the first NUL) as str objects."""
    return np.array([v.decode(errors="replace") for v in column.tolist()], dtype=object)


def _empty_meter_columns(meters_on: Iterable[str], array_length: int) -> dict[str, np.ndarray]:
    """meter_columns' columns for no record."""
    out: dict[str, np.ndarray] = {}
    for m in meters_on:
        for f in METERS[m].fields:
            if text_size(f.ctype):
                out[METERS[m].column(f)] = np.zeros(0, dtype=object)
            else:
                out[METERS[m].column(f)] = _signed(np.zeros((0, array_length) if f.count else 0, _NUMPY_KINDS[f.ctype]))
    return out


def _list_column(values: np.ndarray) -> np.ndarray:
    """A 2-D column as one object column whose cells are its rows (numpy arrays, views of it),
    the shape of nfstream's list columns (splt_*)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def batches_to_columns(
    batches: Iterable[Batch], meters_on: Iterable[str] = (), array_length: int = 0
) -> dict[str, Any]:
    """Every record of these batches as columns (records_to_columns), plus the enabled meters'
    fields (meter_columns; `meters_on` names them, so that a source with no flow still has their
    columns, empty). An array field (splt_*) is one column whose cells are numpy arrays of
    `array_length` values: the rows of one (flows, array_length) int64 array. A plain-named
    field that the record already has (none today) keeps the record's column. Each batch is
    copied out as it comes, so none is kept."""
    parts: list[np.ndarray] = []
    meters: list[dict[str, np.ndarray]] = []
    for b in batches:
        parts.append(np.frombuffer(b.raw_records(), dtype=RECORD_DTYPE).copy())
        meters.append(meter_columns(b.meter_data, b.count, b.meter_layout))
    records = np.concatenate(parts) if parts else np.zeros(0, dtype=RECORD_DTYPE)
    cols = records_to_columns(records)
    if not meters:
        meters = [_empty_meter_columns(meters_on, array_length)]
    for name in meters[0]:
        if name in cols:
            continue
        column = np.concatenate([m[name] for m in meters])
        cols[name] = _list_column(column) if column.ndim == 2 else column
    return cols
