"""The bulk path: C flow records viewed as a numpy structured array, turned into columns."""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any

import numpy as np

from ._engine import END_REASONS, METERS, Batch, MeterInfo, MeterLayout, ffi, lib, text_size
from ._extras import expiration_id
from ._flow import SCALAR_FIELDS, TCP_FLAGS, flow_id_text, ip_to_str

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


def _text_column(fixed: np.ndarray) -> np.ndarray:
    """NUL-padded fixed-width ASCII text (af_records_text's) as an object column of str (numpy's
    bytes strip the padding; the fastest of numpy's ways to make str objects)."""
    out = np.empty(len(fixed), dtype=object)
    out[:] = [b.decode() for b in fixed.tolist()]
    return out


def _record_texts(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """src_ip, dst_ip and bidirectional_id of the records, as Flow writes them: written in C
    (af_records_text), but the few fields it leaves to Python (IPv6 addresses whose first 80
    bits are zero, whose text Python's ipaddress writes its own way)."""
    n = len(rec)
    rec = np.ascontiguousarray(rec, dtype=RECORD_DTYPE)  # C reads af_record: its stride, not a packed copy's
    src, dst = np.zeros(n, f"S{lib.AF_ADDRESS_TEXT}"), np.zeros(n, f"S{lib.AF_ADDRESS_TEXT}")
    flow_id = np.zeros(n, f"S{lib.AF_FLOW_ID_TEXT}")
    if n:
        lib.af_records_text(ffi.cast("af_record *", ffi.from_buffer(rec)), n, ffi.from_buffer(src),
                            ffi.from_buffer(dst), ffi.from_buffer(flow_id))  # fmt: skip
    texts = _text_column(src), _text_column(dst), _text_column(flow_id)
    for i in np.flatnonzero(flow_id == b""):
        r = rec[i]
        v = int(r["ip_version"])
        ends = sorted([(r["src_ip"].tobytes(), int(r["src_port"])), (r["dst_ip"].tobytes(), int(r["dst_port"]))])
        texts[0][i], texts[1][i] = ip_to_str(v, r["src_ip"].tobytes()), ip_to_str(v, r["dst_ip"].tobytes())
        texts[2][i] = flow_id_text(int(r["protocol"]), int(r["vlan_id"]), ip_to_str(v, ends[0][0]), ends[0][1],
                                   ip_to_str(v, ends[1][0]), ends[1][1])  # fmt: skip
    return texts


def _signed(values: np.ndarray) -> np.ndarray:
    """An integer column as int64, so that differences and sums of columns cannot wrap (a uint64
    `a - b` with b > a would give ~1.8e19); floats pass as they are."""
    return values.astype(np.int64, copy=False) if values.dtype.kind in "ui" else values


def records_to_columns(rec: np.ndarray) -> dict[str, Any]:
    """C flow records (RECORD_DTYPE) as read_frame's columns, computed per column in numpy (the
    text ones in C): the columns of Flow.to_dict() (SCALAR_FIELDS), in its order, integers as
    int64."""
    cols: dict[str, Any] = {"id": rec["id"]}
    cols["src_ip"], cols["dst_ip"], cols["bidirectional_id"] = _record_texts(rec)
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
    cols["expiration_id"] = np.asarray([expiration_id(r) for r in END_REASONS], dtype=np.int64)[rec["end_reason"]]
    return {name: _signed(cols[name]) for name in SCALAR_FIELDS}


def meter_columns(
    data: bytes, count: int, layout: MeterLayout, only: Container[str] | None = None
) -> dict[str, np.ndarray]:
    """The enabled meters' fields of `count` records as columns named <meter>_<field> (or the
    field's own name, for meters with plain names: MeterInfo.column), read in bulk from their
    meter blocks (stride and offsets as C published them). An array field is a 2-D column,
    (count, layout.array_length): its first array_length values. `only`: just these columns
    (a text field costs a str per record)."""
    cols: dict[str, np.ndarray] = {}
    if not layout.stride:
        return cols
    raw = np.frombuffer(data, dtype=np.uint8, count=count * layout.stride).reshape(count, layout.stride)
    for name, offset in layout.offsets:
        cols.update(_field_columns(raw, offset, layout.info(name), layout.array_length, only))
    return cols


def _field_columns(
    raw: np.ndarray, offset: int, meter: MeterInfo, array_length: int, only: Container[str] | None = None
) -> dict[str, np.ndarray]:
    """One meter's columns from its blocks at `offset` in each row of `raw` (records' meter data);
    `only`: just these columns."""
    cols: dict[str, np.ndarray] = {}
    count = len(raw)
    for f in meter.fields:
        if only is not None and meter.column(f) not in only:
            continue
        kind = _field_kind(f.ctype)
        at = offset + f.offset
        n = array_length if f.count else 1
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


def _list_column(values: np.ndarray) -> np.ndarray:
    """A 2-D column as one object column whose cells are its rows (numpy arrays, views of it),
    the shape of nfstream's list columns (splt_*)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def batch_columns(b: Batch) -> dict[str, Any]:
    """One batch's records as columns: records_to_columns, the enabled meters' fields
    (meter_columns; a plain-named field the record already has keeps the record's column) and
    the plugins' udps fields (lists, "udps.<name>")."""
    cols = records_to_columns(np.frombuffer(b.raw_records(), dtype=RECORD_DTYPE))
    for name, column in meter_columns(b.meter_data, b.count, b.meter_layout).items():
        cols.setdefault(name, column)
    cols.update(udps_columns(b))
    return cols


def udps_columns(b: Batch) -> dict[str, list[Any]]:
    """The plugins' fields of a batch's records, "udps.<name>" columns in the order plugins first
    set them (None where a flow has no such field)."""
    if b.udps is None:
        return {}
    names: dict[str, None] = {}
    for u in b.udps:
        names.update(dict.fromkeys(vars(u)))
    return {f"udps.{name}": [vars(u).get(name) for u in b.udps] for name in names}


def concat_columns(parts: list[dict[str, Any]], empty: dict[str, Any]) -> dict[str, Any]:
    """Per-batch columns (batch_columns) joined into one set, in the first batch's order; `empty`
    when there was no batch. A udps field some batches lack is None in their rows."""
    if not parts:  # an array field's empty (0, N) column is still a list column
        return {name: _list_column(c) if np.ndim(c) == 2 else c for name, c in empty.items()}
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part))
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("udps."):
            out[name] = [v for part in parts for v in part.get(name, [None] * len(part["id"]))]
        else:
            column = np.concatenate([part[name] for part in parts])
            out[name] = _list_column(column) if column.ndim == 2 else column
    return out


def batches_to_columns(batches: Iterable[Batch], layouts: Sequence[MeterLayout] = ()) -> dict[str, Any]:
    """Every record of these batches as columns (batch_columns). An array field (splt_*) is one
    column whose cells are numpy arrays of the layout's array_length values. A source with no
    flow still has every meter's columns, empty: `layouts` holds the engine's meter layout by then
    (read_batches(layouts=...)), built-in and loaded meters alike. Each batch is turned into
    columns as it comes (while the engine's thread reads on), so none is kept."""
    parts = []
    for b in batches:  # a loop, not a comprehension: read_frame's warning stacklevel counts these frames
        parts.append(batch_columns(b))
    empty = records_to_columns(np.zeros(0, dtype=RECORD_DTYPE))
    for layout in layouts[:1]:
        for name, column in meter_columns(b"", 0, layout).items():
            empty.setdefault(name, column)
    return concat_columns(parts, empty)


def empty_columns(meters_on: Iterable[str], array_length: int = 0) -> dict[str, Any]:
    """The columns of no record with these built-in meters on, known before any engine opens
    (aioflow.dask's meta): an array field (splt_*) is a 2-D (0, array_length) column."""
    empty = records_to_columns(np.zeros(0, dtype=RECORD_DTYPE))
    wanted = set(meters_on)
    for m in [m for m in METERS if m in wanted]:  # the engine's order: its layout's, a frame's columns'
        info = METERS[m]
        for name, column in _field_columns(np.zeros((0, info.record_size), np.uint8), 0, info, array_length).items():
            empty.setdefault(name, column)
    return empty
