"""flow-tools files (``ft-v05.*`` archives of flow-capture), pyflowtools' API.

    for flow in FlowSet("ft-v05.2014-01-01.000000+0000"):
        print(flow.srcaddr, flow.dstaddr, flow.dPkts, flow.first)

    frame = FlowSet("ft-v05...").to_frame()                # the bulk path, numpy-decoded

    with FlowSet("out.ft", "w", version=5, compress=True) as out:
        out.write(flow)                                    # any FlowRecord: archives, collected PDUs
        out.write_pdu(parse_pdu(exporter, payload))

Records are ``FlowRecord`` (the collector's type) over one numpy batch per chunk of the file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np

from .._errors import open_flow_file
from . import _ftlayout as lay
from ._decode import RecordSet
from ._ftread import RecordReader, read_header
from ._ftwrite import RecordWriter
from ._records import PDU, FlowRecord

if TYPE_CHECKING:
    import pandas
    import pyarrow

__all__ = ["FlowSet"]

Source = str | PathLike[str] | BinaryIO


def _open(source: Source, mode: str) -> tuple[BinaryIO, str, bool]:
    """(file, name for messages, whether FlowSet closes it)."""
    if not isinstance(source, (str, PathLike)):
        return source, getattr(source, "name", "<file object>"), False
    name = os.fspath(source)
    if name == "-":
        std = sys.stdin if mode == "r" else sys.stdout
        return std.buffer, "<stdin>" if mode == "r" else "<stdout>", False
    return open_flow_file(name, mode, "flow-tools"), name, True


class FlowSet:
    """A flow-tools file, pyflowtools-style. ``FlowSet(path)`` (or ``"-"``, or a binary file object)
    reads: iterate it for FlowRecords; header fields are attributes. ``FlowSet(path, "w", version=5,
    compress=True, byte_order="little")`` writes: ``write(record)``, ``write_pdu(pdu)``, then
    ``close()`` (or use ``with``).

    Reading streams at most ``chunk_records`` records at a time (constant memory). A file that is
    not flow-tools' raises FlowFileFormatError (also FlowFileNotFoundError/FlowFilePermissionError);
    damage after the header (a cut record, a corrupt or cut zlib stream) stops reading with a
    CaptureDamagedWarning after the records before it (``damage`` keeps why)."""

    def __init__(
        self,
        source: Source = "-",
        mode: Literal["r", "w"] = "r",
        *,
        version: int | str = 5,
        compress: bool = True,
        byte_order: Literal["little", "big"] = "little",
        level: int = 6,
        streaming: bool | None = None,
        hostname: str | None = None,
        comments: str | None = None,
        chunk_records: int = 65536,
    ) -> None:
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' or 'w', not {mode!r}")
        self.mode = mode
        self._file, self.name, self._owned = _open(source, mode)
        self._chunk = chunk_records
        self._reader: RecordReader | None = None
        self._writer: RecordWriter | None = None
        self._iter: Iterator[FlowRecord] | None = None
        try:
            if mode == "r":
                self.header = read_header(self._file, self.name)
                self._reader = RecordReader(self._file, self.header, self.name, chunk_records)
            else:
                self._writer = RecordWriter(self._file, _version_key(version), byte_order, compress, level,
                                            streaming, hostname, comments)  # fmt: skip
                self.header = self._writer.header
        except BaseException:
            self.close()
            raise

    # --- header, pyflowtools / flow-header names ---
    @property
    def export_version(self) -> int:
        """The record version: 1, 5, 6, 7, 8 (see agg_method) or 1005."""
        return self.header.d_version

    @property
    def agg_method(self) -> int | None:
        """v8 aggregation method (1-14), None for other versions."""
        return self.header.agg_method

    @property
    def agg_version(self) -> int | None:
        """v8 aggregation version (2), None for other versions."""
        return self.header.agg_version

    @property
    def byte_order(self) -> str:
        """"little" or "big": the byte order of the header and records."""
        return self.header.byte_order

    @property
    def stream_version(self) -> int:
        """1 or 3."""
        return self.header.stream_version

    @property
    def compressed(self) -> bool:
        """Whether the records are one zlib stream."""
        return bool(self.header.flags & lay.FLAG_COMPRESS)

    @property
    def streaming(self) -> bool:
        """flow-tools' streaming mode (flow-cat, flow-gen output: no flow count) rather than normal."""
        return bool(self.header.flags & lay.FLAG_STREAMING)

    @property
    def flags(self) -> int:
        """The header flags (1 done, 2 compressed, 8 streaming, ...)."""
        return self.header.flags

    @property
    def capture_start(self) -> int | None:
        """Unix seconds the capture started (flow-capture), None when the header lacks it."""
        return self.header.cap_start

    @property
    def capture_end(self) -> int | None:
        """Unix seconds the capture ended."""
        return self.header.cap_end

    @property
    def exporter(self) -> str | None:
        """The exporter's IPv4 address, when the header names one."""
        ip = self.header.exporter_ip
        return None if ip is None else ".".join(str(b) for b in ip.to_bytes(4, "big"))

    @property
    def hostname(self) -> str | None:
        """The capture host's name (flow-capture) or the writing tool's."""
        return self.header.hostname

    @property
    def comments(self) -> str | None:
        return self.header.comments

    @property
    def flow_count(self) -> int | None:
        """Records in the file per the header (normal mode only; None when streaming)."""
        return self.header.flows_count

    @property
    def lost(self) -> int | None:
        """Flows lost by the exporter per sequence numbers (flow-capture)."""
        return self.header.flows_lost

    @property
    def misordered(self) -> int | None:
        return self.header.flows_misordered

    @property
    def corrupt(self) -> int | None:
        """Corrupt packets flow-capture saw."""
        return self.header.pkts_corrupt

    @property
    def sequence_resets(self) -> int | None:
        return self.header.seq_reset

    @property
    def interfaces(self) -> dict[tuple[str, int], str]:
        """Interface names from the header: (exporter address, ifIndex) -> name."""
        return {(".".join(str(b) for b in ip.to_bytes(4, "big")), i): n for ip, i, n in self.header.interfaces}

    @property
    def damage(self) -> str | None:
        """Why reading stopped early (None: not, or not yet)."""
        return None if self._reader is None else self._reader.damage

    @property
    def fields(self) -> tuple[str, ...]:
        """The record's flow-tools field names, in file order."""
        return tuple(lay.field_names(self.header.key, self.header.order))

    # --- reading ---
    def batches(self) -> Iterator[RecordSet]:
        """The bulk path: one RecordSet per chunk (``rs.array``: records in the file's byte order)."""
        if self._reader is None:
            raise ValueError("this FlowSet is open for writing")
        return self._batches(self._reader)

    def _batches(self, reader: RecordReader) -> Iterator[RecordSet]:
        try:
            yield from reader.record_sets(f"file:{self.name}")
        finally:  # the end of the file (or damage): nothing more to read
            self.close()

    def __iter__(self) -> Iterator[FlowRecord]:
        if self._iter is None:
            self._iter = self._records()
        return self._iter

    def __next__(self) -> FlowRecord:
        return next(iter(self))

    def _records(self) -> Iterator[FlowRecord]:
        for rs in self.batches():
            yield from map(FlowRecord, [rs] * len(rs), range(len(rs)))

    def iter_columns(self) -> Iterator[dict[str, np.ndarray]]:
        """The bulk path by name: per chunk of records, numpy columns by pyflowtools' names: addresses
        as uint32 (``srcaddr`` ...), ``first``/``last`` as Unix seconds (float64, flow-tools'
        arithmetic), ``first_raw``/``last_raw`` as router uptime ms; no padding fields. The columns
        are read-only views into the chunk (copy one to change it)."""
        names = lay.field_names(self.header.key, self.header.order)
        for rs in self.batches():
            if rs.array is not None:
                yield frame_columns(rs.array, names)

    def _all_columns(self) -> dict[str, np.ndarray]:
        # each chunk's columns copied out while its records are in cache: a column gathered from
        # all chunks at the end reads every record's cache line once per column (~7 ns a value)
        parts = [{k: np.ascontiguousarray(v) for k, v in p.items()} for p in self.iter_columns()]
        if not parts:
            names = lay.field_names(self.header.key, self.header.order)
            empty = np.zeros(0, dtype=lay.numpy_dtype(lay.layout(self.header.key, self.header.order), "="))
            return frame_columns(empty, names)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def to_frame(self) -> pandas.DataFrame:
        """Every (remaining) record as a pandas DataFrame, the columns of ``iter_columns()``."""
        import pandas

        return pandas.DataFrame(self._all_columns())

    def to_arrow(self) -> pyarrow.Table:
        """Every (remaining) record as a pyarrow Table, the columns of ``iter_columns()`` (needs pyarrow)."""
        import pyarrow

        return pyarrow.table(self._all_columns())

    # --- writing ---
    def write(self, record: FlowRecord | Any) -> None:
        """Append one record: a FlowRecord (from a file, a PDU or a collector) or anything with
        pyflowtools' attribute names. Fields the record lacks are written as 0."""
        self._writable().write(record)

    def write_pdu(self, pdu: PDU) -> None:
        """Append every flow record of a decoded datagram (pyflowtools' ``FlowSet.write(pdu)``),
        column-wise, as ``write()`` writes each of them."""
        writer = self._writable()
        for rs in pdu.sets:
            writer.write_set(rs)

    def write_batch(self, rs: RecordSet) -> None:
        """Append a whole batch of the same layout (a FlowSet's RecordSet) without one object per record."""
        self._writable().write_array(rs.array)

    def _writable(self) -> RecordWriter:
        if self._writer is None:
            raise ValueError("this FlowSet is open for reading; open it with mode 'w' to write")
        return self._writer

    @property
    def records_written(self) -> int:
        """Records written so far."""
        return 0 if self._writer is None else self._writer.count

    @property
    def skipped_ipv6(self) -> int:
        """IPv6 records given to write()/write_pdu(): flow-tools records cannot carry them (not written)."""
        return 0 if self._writer is None else self._writer.skipped_ipv6

    def close(self, capture_end: int | None = None) -> None:
        """Finish writing (flush, header with the flow count, capture end (``capture_end``, Unix
        seconds; now by default) and done flag when the file is seekable) and close a file FlowSet opened."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close(int(time.time()) if capture_end is None else capture_end)
        finally:
            if self._owned and not self._file.closed:
                self._file.close()

    def __del__(self) -> None:  # as pyflowtools: a FlowSet dropped unread closes its file
        if getattr(self, "_owned", False) and self._writer is None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> FlowSet:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FlowSet {self.name!r} {self.mode} v{self.export_version} {self.byte_order}>"


def _version_key(version: int | str) -> tuple[int, int]:
    text = str(version)
    major, _, agg = text.partition(".")
    key = (int(major), int(agg or 0)) if major.isdigit() and (agg.isdigit() or not agg) else (-1, 0)
    if key not in lay.LAYOUTS:
        raise ValueError(f"unsupported flow-tools version {version!r}: use 1, 5, 6, 7, 1005 or '8.1' ... '8.14'")
    return key


def frame_columns(array: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Columns of a chunk of records by pyflowtools' names (``names``: the layout's flow-tools names,
    in order), numeric and native (vectorised): views into the chunk when its byte order is the
    machine's (no copy), else into one byte-swapped copy."""
    dtype = array.dtype
    assert dtype.names is not None
    native = dtype.newbyteorder("=")
    if native != dtype:  # a record-by-record, field-by-field copy: only for the other byte order
        array = array.astype(native)
    fields = dtype.fields
    assert fields is not None
    renamed = np.dtype({"names": names, "formats": [fields[n][0].newbyteorder("=") for n in dtype.names],
                        "offsets": [fields[n][1] for n in dtype.names], "itemsize": dtype.itemsize})  # fmt: skip
    records = array.view(renamed)  # the template's (IANA) names -> flow-tools', same positions
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name.startswith(("pad", "reserved")):
            continue
        key = {"First": "first_raw", "Last": "last_raw"}.get(name, name)
        out[key] = records[name]
    if "First" in names:
        out["first"], out["last"] = lay.ftltimes(records["unix_secs"], records["unix_nsecs"], records["sysUpTime"],
                                                 records["First"], records["Last"])  # fmt: skip
    return out


def is_flowtools_file(path: str | PathLike[str]) -> bool:
    """Whether the file starts with flow-tools' magic."""
    with open(path, "rb") as f:
        return f.read(2) == lay.MAGIC

