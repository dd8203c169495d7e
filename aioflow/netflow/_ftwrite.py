"""Writing flow-tools files: a stream version 3 header with flow-tools' TLVs, records in the header's
byte order, zlib when asked. Records are gathered in a numpy array and written a block at a time."""

from __future__ import annotations

import socket
import time
import zlib
from typing import Any, BinaryIO

import numpy as np

from . import _ftlayout as lay
from ._decode import RecordSet
from ._records import set_values

BLOCK = 4096  # records gathered before they are encoded and written
_UPTIME_ANCHOR = 1 << 31  # sysUpTime given to records that carry absolute times only (IPFIX)


def _attribute(name: str) -> str:
    """The pyflowtools attribute that gives a layout field's value."""
    if name in ("First", "Last"):
        return name.lower() + "_raw"
    if name in ("srcaddr", "dstaddr", "nexthop", "exaddr", "peer_nexthop"):
        return name + "_raw"
    return name


class RecordWriter:
    """Encodes records of one layout to ``file``. ``streaming`` (None: when the file cannot seek)
    writes flow-tools' streaming header (no flow count, as flow-cat); otherwise the header is
    rewritten at close with the count, the capture end and the done flag, as flow-capture does."""

    def __init__(
        self, file: BinaryIO, key: tuple[int, int], byte_order: str, compress: bool, level: int,
        streaming: bool | None, hostname: str | None, comments: str | None,
    ) -> None:  # fmt: skip
        if byte_order not in ("little", "big"):
            raise ValueError(f"byte_order must be 'little' or 'big', not {byte_order!r}")
        self.file = file
        if streaming is None:
            try:
                streaming = not file.seekable()
            except (AttributeError, OSError):
                streaming = True
        self.streaming = streaming
        header = lay.Header(byte_order=byte_order, d_version=key[0])
        if key[0] == 8:
            header.agg_version, header.agg_method = 2, key[1]
        header.flags = (lay.FLAG_COMPRESS if compress else 0) | (lay.FLAG_STREAMING if streaming else 0)
        if streaming:
            header.hostname, header.comments = hostname, comments
        else:
            now = int(time.time())
            header.cap_start, header.cap_end = now, now
            header.flows_count = header.flows_lost = header.pkts_corrupt = header.seq_reset = 0
            header.hostname = hostname if hostname is not None else socket.gethostname()
            header.comments = comments
        self.header = header
        self.layout = lay.layout(key, header.order)
        self.template = lay.template(key, header.order)
        assert self.template.dtype is not None
        self.dtype: np.dtype = self.template.dtype  # field names: the template's (IANA where aioflow has one)
        self.columns = [(ft, name, size) for (ft, size), name in zip(self.layout, self.template.names, strict=True)]
        self.block = np.zeros(BLOCK, dtype=self.dtype)
        self.filled = 0
        self.count = 0
        self.skipped_ipv6 = 0  # IPv6 records given to write(): not written
        self.deflater = zlib.compressobj(level) if compress else None
        self.header_size = 0
        self._write_header()

    def _write_header(self) -> None:
        data = lay.encode_header(self.header)
        if self.header_size and len(data) != self.header_size:
            raise RuntimeError("flow-tools header changed size on rewrite")  # cannot happen: fixed-size TLVs
        self.header_size = len(data)
        self.header.size = len(data)
        self.file.write(data)

    def write(self, record: Any) -> None:
        """Append one record (a FlowRecord or an object with pyflowtools' attribute names)."""
        if any(":" in str(_attr(record, name) or "") for name in ("srcaddr", "dstaddr")):
            self.skipped_ipv6 += 1  # flow-tools records carry IPv4 addresses only
            return
        rs = getattr(record, "_set", None)
        if rs is not None and rs.array is not None and rs.array.dtype.names == self.dtype.names:
            self.block[self.filled] = rs.array[record._i]  # the same layout (a FlowSet's): byte order converted
        else:
            self._fill(self.block[self.filled], record)
        self.filled += 1
        if self.filled == BLOCK:
            self._flush()

    def _fill(self, row: np.ndarray, record: Any) -> None:
        values: dict[str, int] = {}
        for ft, _, size in self.columns:
            if not ft.startswith(("pad", "reserved")):
                values[ft] = int(_attr(record, _attribute(ft)) or 0) & ((1 << (8 * size)) - 1)
        if "First" in values and _attr(record, "first_raw") is None:
            start = _attr(record, "start_ns")
            if start is not None:  # absolute times only (IPFIX): anchor them to a made-up uptime
                values.update(_anchored(start, _attr(record, "end_ns")))
        for ft, name, _ in self.columns:
            if ft in values:
                row[name] = values[ft]

    def write_set(self, rs: RecordSet) -> None:
        """Append a decoded data set (a datagram's, or another version's FlowSet chunk) column by
        column, without one object per record: each field resolved as FlowRecord resolves it (the
        template's field or an alias of it, else the datagram header's value), absolute times (IPFIX)
        anchored as write() anchors them. Options sets are not flows: not written; IPv6 records
        cannot be written: counted in ``skipped_ipv6``."""
        if not len(rs) or rs.template.is_options:
            return
        if any(getattr(set_values(rs, a), "ndim", 1) != 1 for a in ("srcaddr_raw", "dstaddr_raw")):
            self.skipped_ipv6 += len(rs)  # IPv6 addresses: (n, 16) octets
            return
        values = {ft: set_values(rs, _attribute(ft)) for ft, _, _ in self.columns}
        if "First" in values and values["First"] is None:
            start, end = rs.start_end_ns()
            if start is not None:
                values.update(_anchored(start, end))
        out = np.zeros(len(rs), dtype=self.dtype)
        for ft, name, size in self.columns:
            value = values[ft]
            if ft.startswith(("pad", "reserved")) or value is None or isinstance(value, (bytes, str)):
                continue
            if isinstance(value, np.ndarray) and (value.ndim != 1 or value.dtype.kind not in "ui"):
                continue  # octets or text the template sent under this name: not a number
            out[name] = np.asarray(value).astype(np.uint64) & np.uint64((1 << (8 * size)) - 1)
        self._flush()
        self._emit(out.tobytes())
        self.count += len(out)

    def write_array(self, array: np.ndarray | None) -> None:
        """Append a structured array of this layout's records (any byte order)."""
        if array is None or array.dtype.names != self.dtype.names:
            raise ValueError("write_batch needs records of the file's own version (from a FlowSet of that version)")
        self._flush()
        self._emit(array.astype(self.dtype).tobytes())
        self.count += len(array)

    def _flush(self) -> None:
        if self.filled:
            self._emit(self.block[: self.filled].tobytes())
            self.count += self.filled
            self.block[: self.filled] = np.zeros(1, dtype=self.dtype)
            self.filled = 0

    def _emit(self, data: bytes) -> None:
        self.file.write(self.deflater.compress(data) if self.deflater is not None else data)

    def close(self, now: int) -> None:
        """Flush the records and the zlib stream; in normal mode, rewrite the header as complete."""
        self._flush()
        if self.deflater is not None:
            self.file.write(self.deflater.flush())
        if not self.streaming:
            self.header.flags |= lay.FLAG_DONE
            self.header.flows_count = self.count
            if self.header.cap_end is not None:
                self.header.cap_end = now
            self.file.seek(0)
            self._write_header()
            self.file.seek(0, 2)
        self.file.flush()


def _anchored(start: Any, end: Any) -> dict[str, Any]:
    """Absolute flow times (Unix ns: ints, or int64 columns; ``end`` None: ``start``) as flow-tools'
    uptime fields: exported at the end (ms) with a made-up uptime of _UPTIME_ANCHOR then."""
    end = start if end is None else end
    secs, nsecs = divmod(end // 1_000_000 * 1_000_000, 10**9)
    first = (_UPTIME_ANCHOR - (end - start) // 1_000_000) % 2**32
    return {"unix_secs": secs, "unix_nsecs": nsecs, "sysUpTime": _UPTIME_ANCHOR, "Last": _UPTIME_ANCHOR, "First": first}


def _attr(record: Any, name: str) -> Any:
    try:
        return getattr(record, name)
    except AttributeError:
        return None
