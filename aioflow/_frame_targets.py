"""read_frame's and read_arrow's forms of the bulk path's columns (_frame.Columns): text and array
fields turned into pandas' or Arrow's own form batch by batch, with no Python object per flow
where the output needs none, and each column joined once at the end."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._engine import ffi, lib
from ._frame import Columns, object_text


def arrow_text(fixed: np.ndarray, large: bool = False) -> Any:
    """NUL-padded fixed-width text (S<N>) as a pyarrow string array (large_string: 64-bit
    offsets), each value the text before its first NUL, as Flow reads it: packed into Arrow's
    buffers in C (af_pack_text), no str per value. Text with bytes past ASCII is decoded by
    Python instead (Flow's UTF-8 with replacement, which Arrow's buffers would not check)."""
    import pyarrow as pa

    kind = pa.large_string() if large else pa.string()
    fixed = np.ascontiguousarray(fixed)
    n, width = len(fixed), fixed.dtype.itemsize
    offsets, data = np.empty(n + 1, np.int64), np.empty(n * width, np.uint8)
    ascii_only = lib.af_pack_text(ffi.from_buffer(fixed), n, width, ffi.from_buffer("int64_t[]", offsets),
                                  ffi.from_buffer(data))  # fmt: skip
    if not ascii_only:
        return pa.array(object_text(fixed), type=kind)
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)),
                                           pa.py_buffer(data[: offsets[-1]])])  # fmt: skip


class _Growing:
    """A numeric column grown batch by batch in one array and trimmed to its rows at the end. A
    batch's values are written in place: reserve gives the room for them (batch_parts' place;
    af_gather_columns and numpy's out= write there), and append then only counts them; values
    made elsewhere are copied in. So each value is written once, while the engine's thread reads
    on: copying every batch's columns in cost read_frame ~0.2 s of main-thread CPU on bench2m
    with statistics and splt=20, and joining them after the last batch costs about as much, all
    of it after reading. It grows fourfold into a new array (np.empty: not zero-filled, as
    ndarray.resize's growth is, which cost a third more in all); the trim is a resize, which
    shrinks in place (realloc), with no view of the array in existence any more, as resize
    without refcheck needs."""

    def __init__(self, dtype: np.dtype[Any], capacity: int = 0) -> None:
        self.values = np.empty(capacity, dtype=dtype)  # not written: memory only once it is
        self.rows = 0
        self.reserved: np.ndarray | None = None

    def reserve(self, n: int) -> np.ndarray:
        """The room for the next n rows (a view), which append(that view) then takes."""
        end = self.rows + n
        if end > len(self.values):
            grown = np.empty(max(end, 4 * len(self.values)), dtype=self.values.dtype)
            grown[: self.rows] = self.values[: self.rows]
            self.values = grown
        self.reserved = self.values[self.rows : end]
        return self.reserved

    def append(self, part: np.ndarray) -> None:
        if part is not self.reserved:
            self.reserve(len(part))[...] = part
        self.reserved = None
        self.rows += len(part)

    def array(self) -> np.ndarray:
        self.reserved = None
        self.values.resize(self.rows, refcheck=False)
        return self.values


class PandasColumns(Columns):
    """read_frame's: numeric columns grown batch by batch, written in place (_Growing), text in
    pandas' own dtype for str, from Arrow buffers where that dtype is Arrow's (pandas 3; str
    objects before), array fields (splt_*) as object columns of numpy rows (each batch's rows
    views of that batch's array: a cell keeps its array, which a grown column could not move).
    An Arrow list column (pandas' ArrowDtype) would need no object per cell, but pandas (3.1)
    cannot read its own Parquet metadata of one back (read_parquet: NotImplementedError)."""

    def __init__(self) -> None:
        import pandas as pd

        super().__init__()
        self.str_dtype = pd.Series([""]).dtype  # what pandas makes of a column of str
        self.arrow = isinstance(self.str_dtype, pd.StringDtype) and self.str_dtype.storage == "pyarrow"
        self.growing: dict[str, _Growing] = {}  # by name: the numeric columns place() has room in
        self.expected = 0  # the rows expected in all (expect), each column's first room

    def expect(self, rows: int) -> None:
        """read_batches' estimate of the rows to come (expected_records): room for them from the
        first batch on, so that columns are not copied as they grow (np.empty: the room not
        written is only address space; the trim gives it back)."""
        self.expected = rows

    def text(self, fixed: np.ndarray) -> Any:
        return arrow_text(fixed, large=True) if self.arrow else object_text(fixed)

    def place(self, name: str, n: int, dtype: np.dtype[Any], width: int = 0) -> np.ndarray:
        if width:  # an array field: list cells (lists), views of an array of the batch's own
            return super().place(name, n, dtype, width)
        if name not in self.growing:
            self.growing[name] = _Growing(dtype, self.expected)
        return self.growing[name].reserve(n)

    def keep(self, name: str, part: Any) -> None:
        if not (isinstance(part, np.ndarray) and part.dtype.kind in "iuf"):  # text, list cells
            return super().keep(name, part)
        if name not in self.kept:  # a column's place in the frame: where it first comes
            self.kept[name] = self.growing.get(name) or _Growing(part.dtype, self.expected)
        self.kept[name].append(part)

    def join(self, kept: Any) -> Any:
        if isinstance(kept, _Growing):
            return kept.array()
        if isinstance(kept[0], np.ndarray):
            return np.concatenate(kept)
        import pandas as pd
        import pyarrow as pa

        return pd.array(pa.chunked_array(kept), dtype=self.str_dtype, copy=False)  # the chunks, not copied


class ArrowColumns(Columns):
    """read_arrow's: every column a chunked array of one chunk per batch (no copy at the end),
    text as `string`, an array field as `list<item>` over the batch's values."""

    def text(self, fixed: np.ndarray) -> Any:
        return arrow_text(fixed)

    def lists(self, values: np.ndarray) -> Any:
        import pyarrow as pa

        values = np.ascontiguousarray(values)
        n, width = values.shape
        offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1)))

    def numbers(self, values: np.ndarray) -> Any:
        import pyarrow as pa

        return pa.array(values)

    def join(self, kept: Any) -> Any:
        import pyarrow as pa

        return pa.chunked_array(kept)
