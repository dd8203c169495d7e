"""The bulk path: C flow records and meter blocks viewed as numpy structured arrays, turned into
columns per batch (read_frame, read_arrow; _frame_targets makes pandas' and Arrow's of them)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterable, Sequence
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


# af_gather_columns' code of each numeric type it copies out (float32 is left to numpy: a column
# of it stays float32)
_GATHER_KINDS = {"u1": lib.AF_GATHER_U8, "i1": lib.AF_GATHER_I8, "u2": lib.AF_GATHER_U16, "i2": lib.AF_GATHER_I16,
                 "u4": lib.AF_GATHER_U32, "i4": lib.AF_GATHER_I32, "u8": lib.AF_GATHER_64, "i8": lib.AF_GATHER_64,
                 "f8": lib.AF_GATHER_64}  # fmt: skip
_GATHER_FIELD = np.dtype([("at", "<u4"), ("kind", "<u4"), ("column", "<u4"), ("step", "<u4"), ("elem", "<u4")])


@functools.lru_cache(maxsize=64)
def _gather_plan(dtype: np.dtype[Any]) -> tuple[np.ndarray, tuple[tuple[str, int, int, bool, bool], ...], int]:
    """What af_gather_columns copies out of rows of this structured dtype: its numeric fields
    (one spec per array element); per field (name, first column, columns, is an array, is a
    float); the columns in all."""
    specs, outs, column = [], [], 0
    for name in dtype.names or ():
        field, at = dtype.fields[name][:2]  # type: ignore[index]
        item, shape = field.subdtype or (field, ())
        kind = _GATHER_KINDS.get(f"{item.kind}{item.itemsize}")
        if kind is None:  # text and float32: numpy's views
            continue
        count = shape[0] if shape else 1
        specs += [(at + j * item.itemsize, kind, column, count, j) for j in range(count)]
        outs.append((name, column, count, bool(shape), item.kind == "f"))
        column += count
    return np.array(specs, dtype=_GATHER_FIELD), tuple(outs), column


def _gather(rows: np.ndarray, fields: np.dtype[Any] | None = None) -> dict[str, np.ndarray]:
    """The numeric fields (`fields`: of this dtype over the same rows; else all) of a structured
    array's rows as contiguous int64 columns (float64 for doubles; an array field 2-D, a row
    each), copied out in C in one pass over the rows (af_gather_columns). The fields it leaves
    (text, float32) are not in the result."""
    specs, outs, width = _gather_plan(rows.dtype if fields is None else fields)
    n = len(rows)
    out = np.empty(width * n, dtype=np.int64)
    if n and len(specs):
        rows = np.ascontiguousarray(rows)
        fields_c = ffi.from_buffer("af_gather_field[]", specs)
        lib.af_gather_columns(ffi.from_buffer(rows), n, rows.dtype.itemsize, fields_c, len(specs),
                              ffi.from_buffer("int64_t[]", out))  # fmt: skip
    cols = {}
    for name, column, count, is_array, is_float in outs:
        values = out[column * n : (column + count) * n]
        values = values.reshape(n, count) if is_array else values
        cols[name] = values.view(np.float64) if is_float else values
    return cols


# end_reason's text by its C code, as bytes (the text columns' form before decoding), and nfstream's
# expiration_id by the same code
_END_REASON_TEXT = np.array([r.encode() for r in END_REASONS], dtype=bytes)
_EXPIRATION_IDS = np.array([expiration_id(r) for r in END_REASONS], dtype=np.int64)


def _record_texts(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """src_ip, dst_ip and bidirectional_id of the records, as Flow writes them, as NUL-padded
    fixed-width bytes: written in C (af_records_text), but the few it leaves to Python (IPv6
    addresses whose first 80 bits are zero, whose text Python's ipaddress writes its own way)."""
    n = len(rec)
    rec = np.ascontiguousarray(rec, dtype=RECORD_DTYPE)  # C reads af_record: its stride, not a packed copy's
    src, dst = np.zeros(n, f"S{lib.AF_ADDRESS_TEXT}"), np.zeros(n, f"S{lib.AF_ADDRESS_TEXT}")
    flow_id = np.zeros(n, f"S{lib.AF_FLOW_ID_TEXT}")
    if n:
        lib.af_records_text(ffi.cast("af_record *", ffi.from_buffer(rec)), n, ffi.from_buffer(src),
                            ffi.from_buffer(dst), ffi.from_buffer(flow_id))  # fmt: skip
    for i in np.flatnonzero(flow_id == b""):  # an IPv6 text is at most 45 characters: the widths fit it
        r = rec[i]
        v = int(r["ip_version"])
        ends = sorted([(r["src_ip"].tobytes(), int(r["src_port"])), (r["dst_ip"].tobytes(), int(r["dst_port"]))])
        src[i], dst[i] = ip_to_str(v, r["src_ip"].tobytes()).encode(), ip_to_str(v, r["dst_ip"].tobytes()).encode()
        flow_id[i] = flow_id_text(int(r["protocol"]), int(r["vlan_id"]), ip_to_str(v, ends[0][0]), ends[0][1],
                                  ip_to_str(v, ends[1][0]), ends[1][1]).encode()  # fmt: skip
    return src, dst, flow_id


# the record fields record_parts reads (the addresses are read by af_records_text)
_RECORD_NUMBERS = RECORD_DTYPE[[n for n in RECORD_DTYPE.names or () if n not in ("src_ip", "dst_ip", "header_offset",
                                                                             "header_count")]]  # fmt: skip


def record_parts(rec: np.ndarray) -> dict[str, np.ndarray]:
    """C flow records (RECORD_DTYPE) as read_frame's columns (Flow.to_dict()'s, SCALAR_FIELDS, in
    its order), integers as int64: the fields copied out in one pass in C (_gather), the rest
    computed per column in numpy; the text columns (src_ip, dst_ip, bidirectional_id,
    end_reason) as NUL-padded bytes (S<N>), which each output decodes its own way
    (Columns.text)."""
    r = _gather(rec, _RECORD_NUMBERS)
    cols: dict[str, Any] = {"id": r["id"]}
    cols["src_ip"], cols["dst_ip"], cols["bidirectional_id"] = _record_texts(rec)
    for name in ("src_port", "dst_port", "protocol", "ip_version", "vlan_id", "headers_dropped"):
        cols[name] = r[name]
    first, last = r["first_ns"], r["last_ns"]
    cols["first_seen"] = first / 1e9
    cols["last_seen"] = last / 1e9
    cols["first_seen_ns"] = first
    cols["last_seen_ns"] = last
    duration = last - first
    cols["duration"] = duration / 1e9
    cols["duration_ns"] = duration
    for name in ("packets", "bytes", "captured_bytes"):
        cols[name] = r[f"src2dst_{name}"] + r[f"dst2src_{name}"]
    for d in ("src2dst", "dst2src"):
        for name in ("packets", "bytes", "captured_bytes", "tcp_flags", "min_ttl", "max_ttl"):
            cols[f"{d}_{name}"] = r[f"{d}_{name}"]
        cols[f"{d}_first_seen_ns"] = r[f"{d}_first_ns"]
        cols[f"{d}_last_seen_ns"] = r[f"{d}_last_ns"]
        for i, flag in enumerate(TCP_FLAGS):
            cols[f"{d}_{flag}_packets"] = r[f"{d}_flag_counts"][:, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = duration / 1e9
        cols["bytes_per_second"] = np.where(duration > 0, cols["bytes"] / seconds, 0.0)
        cols["packets_per_second"] = np.where(duration > 0, cols["packets"] / seconds, 0.0)
    cols["end_reason"] = _END_REASON_TEXT[r["end_reason"]]
    cols["expiration_id"] = _EXPIRATION_IDS[r["end_reason"]]
    return {name: cols[name] for name in SCALAR_FIELDS}


def records_to_columns(rec: np.ndarray) -> dict[str, Any]:
    """record_parts with the text as str objects (Columns): the columns of Flow.to_dict()."""
    return Columns().batch(record_parts(rec))


def _block_dtype(blocks: Iterable[tuple[MeterInfo, int]], array_length: int, itemsize: int) -> np.dtype[Any]:
    """numpy's view of `itemsize` bytes holding meter blocks, (meter, offset) each: every field
    under its column name (MeterInfo.column; a later meter's field of the same name wins), an
    array field as its first array_length values, a "char[N]" field as bytes S<N>."""
    spec: dict[str, tuple[Any, int]] = {}
    for info, offset in blocks:
        for f in info.fields:
            kind = _field_kind(f.ctype)
            spec[info.column(f)] = ((kind, (array_length,)) if f.count else kind, offset + f.offset)
    return np.dtype({"names": list(spec), "formats": [k for k, _ in spec.values()],
                     "offsets": [at for _, at in spec.values()], "itemsize": itemsize})  # fmt: skip


def meter_parts(
    data: bytes, count: int, layout: MeterLayout, only: Container[str] | None = None
) -> dict[str, np.ndarray]:
    """The enabled meters' fields of `count` records, columns named <meter>_<field> (or the
    field's own name, for meters with plain names: MeterInfo.column), views of their meter blocks
    through one structured dtype (stride and offsets as C published them): integers as int64, an
    array field 2-D (count, layout.array_length), a "char[N]" field as bytes S<N> (record_parts'
    text form). `only`: just these columns."""
    if not layout.stride:
        return {}
    blocks = [(layout.info(name), offset) for name, offset in layout.offsets]
    view = np.frombuffer(data, dtype=_block_dtype(blocks, layout.array_length, layout.stride), count=count)
    return _fields(view, [name for name in view.dtype.names or () if only is None or name in only])


def _fields(view: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """These fields of a structured array, copied: the numeric ones as int64 or float64 columns
    (_gather), the others (text, float32) as they are (the array may be a batch's memory in the
    engine, reused once it is released: Engine.take_ready's `use`)."""
    numbers = _gather(view, view.dtype[names])
    return {name: numbers[name] if name in numbers else view[name].copy() for name in names}


def meter_columns(
    data: bytes, count: int, layout: MeterLayout, only: Container[str] | None = None
) -> dict[str, np.ndarray]:
    """meter_parts with the text fields as str objects (only what `only` names is decoded: a text
    field costs a str per record)."""
    cols = meter_parts(data, count, layout, only)
    return {name: object_text(c) if c.dtype.kind == "S" else c for name, c in cols.items()}


def _field_kind(ctype: str) -> np.dtype[Any]:
    """numpy's type of a meter field: an integer or float, or bytes "S<N>" for "char[N]" text."""
    size = text_size(ctype)
    return np.dtype(f"S{size}") if size else np.dtype(_NUMPY_KINDS[ctype])


def object_text(fixed: np.ndarray) -> np.ndarray:
    """NUL-padded fixed-width text (S<N>) as an object column of str, each the text before its
    first NUL, as Flow reads it (UTF-8, undecodable bytes replaced)."""
    out = np.empty(len(fixed), dtype=object)
    out[:] = [v.partition(b"\0")[0].decode("utf-8", "replace") for v in fixed.tolist()]
    return out


def list_cells(values: np.ndarray) -> np.ndarray:
    """A 2-D column as one object column whose cells are its rows (numpy arrays, views of one
    contiguous array), the shape of nfstream's list columns (splt_*)."""
    return np.fromiter(np.ascontiguousarray(values), dtype=object, count=len(values))


class Columns:
    """How batches' columns (batch_parts) become an output's: each batch's converted as it comes
    (add), each column joined once at the end (columns). Here numpy arrays, text as str objects,
    an array field (splt_*) as an object column of numpy rows (_frame_targets has pandas' and
    Arrow's). One use: an instance collects one source's batches."""

    def __init__(self) -> None:
        self.rows = 0
        self.kept: dict[str, Any] = {}  # per column, in order of first appearance: what add keeps of it

    def text(self, fixed: np.ndarray) -> Any:
        return object_text(fixed)

    def lists(self, values: np.ndarray) -> Any:
        return list_cells(values)

    def numbers(self, values: np.ndarray) -> Any:
        return values

    def keep(self, name: str, part: Any) -> None:
        """Keeps one batch's part of a column (converted) until columns()."""
        self.kept.setdefault(name, []).append(part)

    def join(self, kept: Any) -> Any:
        """A column from what keep kept of it (here its parts, at least one)."""
        return np.concatenate(kept)

    def batch(self, parts: dict[str, Any]) -> dict[str, Any]:
        """A batch's columns (batch_parts) in this output's form; udps lists as they are."""
        out: dict[str, Any] = {}
        for name, c in parts.items():
            if isinstance(c, list):
                out[name] = c
            elif c.dtype.kind == "S":
                out[name] = self.text(c)
            else:
                out[name] = self.lists(c) if c.ndim == 2 else self.numbers(c)
        return out

    def add(self, parts: dict[str, Any]) -> None:
        """One batch's columns (batch_parts). A udps field some batches lack is None in their rows."""
        for name, part in self.batch(parts).items():
            if name.startswith("udps."):
                self.kept.setdefault(name, [None] * self.rows).extend(part)
            else:
                self.keep(name, part)
        self.rows += len(parts["id"])
        for name, kept in self.kept.items():
            if name.startswith("udps.") and len(kept) < self.rows:
                kept.extend([None] * (self.rows - len(kept)))

    def columns(self) -> dict[str, Any]:
        """Every column of the batches added (at least one), in the order they first came."""
        return {name: kept if name.startswith("udps.") else self.join(kept) for name, kept in self.kept.items()}


def batch_parts(b: Batch) -> dict[str, Any]:
    """One batch's records as columns: record_parts, the enabled meters' fields (meter_parts; a
    plain-named field the record already has keeps the record's column) and the plugins' udps
    fields (lists, "udps.<name>")."""
    cols: dict[str, Any] = record_parts(np.frombuffer(b.raw_records(), dtype=RECORD_DTYPE))
    for name, column in meter_parts(b.meter_data, b.count, b.meter_layout).items():
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


def add_batch(form: Columns) -> Callable[[Batch], None]:
    """What read_batches(use=...) calls on each batch for batches_to_columns: its columns added
    to `form`, which keeps copies only (each batch_parts column is copied out of the batch)."""

    def add(b: Batch) -> None:
        form.add(batch_parts(b))

    return add


def batches_to_columns(
    batches: Iterable[Batch], layouts: Sequence[MeterLayout] = (), form: Columns | None = None
) -> dict[str, Any]:
    """Every record of these batches as columns in `form` (Columns' numpy form by default): each
    batch turned into its columns as it comes, while the engine's thread reads on (so the batch
    itself is not kept), each column joined once at the end; the batches read_batches gave
    `form` itself (use=add_batch(form), not yielded) are in it too. A source with no flow still
    has every meter's columns, empty: `layouts` holds the engine's meter layout by then
    (read_batches(layouts=...)), built-in and loaded meters alike."""
    form = form or Columns()
    for b in batches:  # a loop, not a comprehension: read_frame's warning stacklevel counts these frames
        form.add(batch_parts(b))
    if not form.kept:
        empty = record_parts(np.zeros(0, dtype=RECORD_DTYPE))
        for layout in layouts[:1]:
            for name, column in meter_parts(b"", 0, layout).items():
                empty.setdefault(name, column)
        form.add(empty)
    return form.columns()


def empty_parts(meters_on: Iterable[str], array_length: int = 0) -> dict[str, np.ndarray]:
    """The columns (batch_parts' form) of no record with these built-in meters on, known before
    any engine opens (aioflow.dask's meta): an array field (splt_*) is a 2-D (0, array_length)
    column, a text field bytes."""
    empty = record_parts(np.zeros(0, dtype=RECORD_DTYPE))
    wanted = set(meters_on)
    for m in [m for m in METERS if m in wanted]:  # the engine's order: its layout's, a frame's columns'
        info = METERS[m]
        view = np.zeros(0, _block_dtype([(info, 0)], array_length, info.record_size))
        for name, column in _fields(view, list(view.dtype.names or ())).items():
            empty.setdefault(name, column)
    return empty
