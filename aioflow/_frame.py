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


# Where a column's values go (read_frame: in place, in the column it grows batch by batch):
# (column name, rows, dtype, width) -> a C-contiguous array of that many rows, one value each, or
# `width` values each (an array field, 2-D) when width > 0.
Place = Callable[[str, int, np.dtype[Any], int], np.ndarray]

_INT64, _FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)


def new_column(name: str, n: int, dtype: np.dtype[Any], width: int = 0) -> np.ndarray:
    """Place's default: a new array of its own."""
    return np.empty((n, width) if width else n, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _gather_plan(dtype: np.dtype[Any]) -> tuple[np.ndarray, tuple[tuple[str, int, bool], ...]]:
    """What af_gather_columns copies out of rows of this structured dtype: its numeric fields
    (one spec per array element, each field an output column of its own); per field (name,
    values per row, is a float), in output column order."""
    specs: list[tuple[int, int, int, int, int]] = []
    outs: list[tuple[str, int, bool]] = []
    for name in dtype.names or ():
        field, at = dtype.fields[name][:2]  # type: ignore[index]
        item, shape = field.subdtype or (field, ())
        kind = _GATHER_KINDS.get(f"{item.kind}{item.itemsize}")
        if kind is None:  # text and float32: numpy's views
            continue
        count = shape[0] if shape else 0
        specs += [(at + j * item.itemsize, kind, len(outs), max(count, 1), j) for j in range(max(count, 1))]
        outs.append((name, count, item.kind == "f"))
    return np.array(specs, dtype=_GATHER_FIELD), tuple(outs)


def _gather(rows: np.ndarray, fields: np.dtype[Any] | None = None, place: Place = new_column) -> dict[str, np.ndarray]:
    """The numeric fields (`fields`: of this dtype over the same rows; else all) of a structured
    array's rows as int64 columns (float64 for doubles; an array field 2-D, a row each), each
    where place() puts it, copied out in C in one pass over the rows (af_gather_columns). The
    fields it leaves (text, float32) are not in the result."""
    specs, outs = _gather_plan(rows.dtype if fields is None else fields)
    n = len(rows)
    cols = {name: place(name, n, _FLOAT64 if is_float else _INT64, count) for name, count, is_float in outs}
    if n and len(specs):
        rows = np.ascontiguousarray(rows)
        targets = ffi.new("int64_t *[]", [ffi.cast("int64_t *", ffi.from_buffer(c)) for c in cols.values()])
        fields_c = ffi.from_buffer("af_gather_field[]", specs)
        lib.af_gather_columns(ffi.from_buffer(rows), n, rows.dtype.itemsize, fields_c, len(specs), targets)
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


# record_parts' names of the record fields it copies out (the addresses are read by
# af_records_text), so that these go where place() puts the column of that name
_RECORD_RENAMED = {"first_ns": "first_seen_ns", "last_ns": "last_seen_ns", "end_reason": "end_reason_code"} | {
    f"{d}_{t}_ns": f"{d}_{t}_seen_ns" for d in ("src2dst", "dst2src") for t in ("first", "last")
}
_SCALARS = frozenset(SCALAR_FIELDS)


def _record_numbers() -> np.dtype[Any]:
    """The numeric fields of af_record (RECORD_DTYPE's offsets) under record_parts' column names,
    each direction's flag_counts as one field per TCP flag ("src2dst_syn_packets", ...)."""
    names, formats, offsets = [], [], []
    for name in RECORD_DTYPE.names or ():
        field, at = RECORD_DTYPE.fields[name][:2]  # type: ignore[index]
        if name in ("src_ip", "dst_ip", "header_offset", "header_count"):
            continue
        if name.endswith("_flag_counts"):
            item = field.base  # the array's element type
            for i, flag in enumerate(TCP_FLAGS):
                names.append(f"{name.removesuffix('_flag_counts')}_{flag}_packets")
                formats.append(item)
                offsets.append(at + i * item.itemsize)
        else:
            names.append(_RECORD_RENAMED.get(name, name))
            formats.append(field)
            offsets.append(at)
    spec = {"names": names, "formats": formats, "offsets": offsets, "itemsize": RECORD_DTYPE.itemsize}
    dtype: np.dtype[Any] = np.dtype(spec)  # type: ignore[call-overload]  # numpy's stubs lack the dict form
    return dtype


_RECORD_NUMBERS = _record_numbers()


def record_parts(rec: np.ndarray, place: Place = new_column) -> dict[str, np.ndarray]:
    """C flow records (RECORD_DTYPE) as read_frame's columns (Flow.to_dict()'s, SCALAR_FIELDS, in
    its order), integers as int64, each numeric column where place() puts it: the fields copied
    out in one pass in C (_gather), the rest computed per column in numpy; the text columns
    (src_ip, dst_ip, bidirectional_id, end_reason) as NUL-padded bytes (S<N>), which each output
    decodes its own way (Columns.text)."""
    n = len(rec)

    def gathered(name: str, rows: int, dtype: np.dtype[Any], width: int) -> np.ndarray:
        return (place if name in _SCALARS else new_column)(name, rows, dtype, width)

    def out(name: str, dtype: np.dtype[Any]) -> np.ndarray:
        return place(name, n, dtype, 0)

    cols: dict[str, Any] = _gather(rec, _RECORD_NUMBERS, gathered)
    cols["src_ip"], cols["dst_ip"], cols["bidirectional_id"] = _record_texts(rec)
    first, last = cols["first_seen_ns"], cols["last_seen_ns"]
    cols["first_seen"] = np.divide(first, 1e9, out=out("first_seen", _FLOAT64))
    cols["last_seen"] = np.divide(last, 1e9, out=out("last_seen", _FLOAT64))
    duration = cols["duration_ns"] = np.subtract(last, first, out=out("duration_ns", _INT64))
    cols["duration"] = np.divide(duration, 1e9, out=out("duration", _FLOAT64))
    for name in ("packets", "bytes", "captured_bytes"):
        cols[name] = np.add(cols[f"src2dst_{name}"], cols[f"dst2src_{name}"], out=out(name, _INT64))
    positive = duration > 0
    for name in ("bytes", "packets"):  # 0 for a flow of no duration
        rate = cols[f"{name}_per_second"] = out(f"{name}_per_second", _FLOAT64)
        rate.fill(0.0)
        np.divide(cols[name], cols["duration"], out=rate, where=positive)
    code = cols["end_reason_code"]
    cols["end_reason"] = _END_REASON_TEXT[code]
    cols["expiration_id"] = np.take(_EXPIRATION_IDS, code, out=out("expiration_id", _INT64))
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
    data: bytes, count: int, layout: MeterLayout, only: Container[str] | None = None, place: Place = new_column
) -> dict[str, np.ndarray]:
    """The enabled meters' fields of `count` records, columns named <meter>_<field> (or the
    field's own name, for meters with plain names: MeterInfo.column), views of their meter blocks
    through one structured dtype (stride and offsets as C published them): integers as int64, an
    array field 2-D (count, layout.array_length), a "char[N]" field as bytes S<N> (record_parts'
    text form). `only`: just these columns. The numeric ones go where place() puts them."""
    if not layout.stride:
        return {}
    blocks = [(layout.info(name), offset) for name, offset in layout.offsets]
    view = np.frombuffer(data, dtype=_block_dtype(blocks, layout.array_length, layout.stride), count=count)
    return _fields(view, [name for name in view.dtype.names or () if only is None or name in only], place)


def _fields(view: np.ndarray, names: list[str], place: Place = new_column) -> dict[str, np.ndarray]:
    """These fields of a structured array, copied: the numeric ones as int64 or float64 columns
    where place() puts them (_gather), the others (text, float32) as they are (the array may be a batch's memory in the
    engine, reused once it is released: Engine.take_ready's `use`)."""
    numbers = _gather(view, view.dtype[names], place)
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

    def place(self, name: str, n: int, dtype: np.dtype[Any], width: int = 0) -> np.ndarray:
        """Where batch_parts puts a numeric column's values of a batch (Place; here an array of
        their own, which keep keeps)."""
        return new_column(name, n, dtype, width)

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


def batch_parts(b: Batch, place: Place = new_column) -> dict[str, Any]:
    """One batch's records as columns: record_parts, the enabled meters' fields (meter_parts; a
    plain-named field the record already has keeps the record's column) and the plugins' udps
    fields (lists, "udps.<name>"); the numeric ones where place() puts them."""
    cols: dict[str, Any] = record_parts(np.frombuffer(b.raw_records(), dtype=RECORD_DTYPE), place)

    def meter_place(name: str, n: int, dtype: np.dtype[Any], width: int) -> np.ndarray:
        return (new_column if name in cols else place)(name, n, dtype, width)  # not the record's column's room

    for name, column in meter_parts(b.meter_data, b.count, b.meter_layout, place=meter_place).items():
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
        form.add(batch_parts(b, form.place))

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
        form.add(batch_parts(b, form.place))
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
