"""Reading flow-tools files: the header, then the records in chunks, decompressed on the fly.

Memory is bounded by the chunk size whatever the file's size: the zlib stream is inflated at most
``chunk_records`` records at a time (``decompressobj.decompress(max_length=...)``) and each chunk
becomes one numpy structured array (a RecordSet), the bulk path; FlowRecords are views into it.

Inflating is nearly all of the bulk path's cost (94% of its instructions with Python's zlib), so
zlib-ng's inflate (the ``zlib-ng`` package, ``pip install aioflow[flowtools]``: the same streams,
~2.5x fewer instructions) is used when it is installed.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

import numpy as np

from .._errors import CaptureDamagedWarning, FlowFileFormatError
from . import _ftlayout as lay
from ._decode import RecordSet, Template

READ_SIZE = 1 << 20  # compressed bytes read at a time: few, large inflate calls


def _inflaters() -> tuple[Callable[[], Any], tuple[type[Exception], ...]]:
    """(decompressobj factory, the errors it raises for a corrupt stream): zlib-ng's when installed."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib.decompressobj, (zlib.error,)
    corrupt = cast(type[Exception], zlib_ng.error)  # its stubs call it an instance
    return zlib_ng.decompressobj, (corrupt, zlib.error)


DECOMPRESSOBJ, INFLATE_ERRORS = _inflaters()


def read_header(file: BinaryIO, name: str) -> lay.Header:
    """The stream header at the start of ``file`` (left positioned at the first record). Raises
    FlowFileFormatError for a file that is not flow-tools' (bad magic, unknown byte order or stream
    version) or whose header is cut short or damaged."""
    head = file.read(8)
    if head[:2] != lay.MAGIC[: len(head[:2])] or len(head) < 2:
        raise FlowFileFormatError(
            f"{name}: not a flow-tools file: it starts with {head[:4].hex() or 'nothing'}, not the magic cf10; "
            "read flow-capture/flow-cat output (ft-v05.* files)"
        )
    if len(head) < 8:
        raise FlowFileFormatError(f"{name}: damaged flow-tools file: the header is cut short ({len(head)} bytes)")
    if head[2] not in (lay.LITTLE, lay.BIG) or head[3] not in (1, 3):
        raise FlowFileFormatError(
            f"{name}: unsupported flow-tools file: byte order {head[2]}, stream version {head[3]} "
            "(aioflow reads byte orders 1 and 2, stream versions 1 and 3)"
        )
    header = lay.Header(byte_order="little" if head[2] == lay.LITTLE else "big", stream_version=head[3])
    if head[3] == 1:
        rest = file.read(lay.V1_HEADER_SIZE - 8)
        if len(rest) < lay.V1_HEADER_SIZE - 8:
            raise FlowFileFormatError(f"{name}: damaged flow-tools file: the version 1 header is cut short")
        lay.parse_v1_header(header, head + rest)
        if header.d_version not in (1, 5):
            raise FlowFileFormatError(
                f"{name}: unsupported flow-tools file: stream version 1 with record version {header.d_version} "
                "(flow-tools wrote 1 and 5 there)"
            )
        return header
    size = struct.unpack(header.order + "I", head[4:8])[0]
    if not 8 <= size <= 1 << 24:
        raise FlowFileFormatError(f"{name}: damaged flow-tools file: header length {size} is impossible")
    body = file.read(size - 8)
    if len(body) < size - 8:
        raise FlowFileFormatError(
            f"{name}: damaged flow-tools file: the header is cut short ({8 + len(body)} of {size} bytes)"
        )
    try:
        lay.parse_tlvs(header, body)
    except ValueError as e:
        raise FlowFileFormatError(f"{name}: damaged flow-tools file: {e}") from None
    header.size = size
    if header.key not in lay.LAYOUTS:
        raise FlowFileFormatError(
            f"{name}: unsupported flow-tools record version {header.d_version}"
            + (f".{header.agg_method}" if header.d_version == 8 else "")
            + " (aioflow reads 1, 5, 6, 7, 8.1-8.14 and 1005)"
        )
    return header


class RecordReader:
    """The records after the header, chunk by chunk. ``damage`` says why reading stopped early (None:
    the file ended cleanly); the warning was given then."""

    def __init__(self, file: BinaryIO, header: lay.Header, name: str, chunk_records: int) -> None:
        self.file, self.header, self.name = file, header, name
        self.compat = header.stream_version == 1
        self.template = lay.template(header.key, header.order)
        # The template's dtype (IANA names where aioflow has one); version 1 streams: the old struct.
        assert self.template.dtype is not None
        self.dtype: np.dtype = lay.numpy_dtype(lay.COMPAT_LAYOUT, header.order) if self.compat else self.template.dtype
        self.record_size = self.dtype.itemsize
        self.chunk_bytes = max(1, chunk_records) * self.record_size
        self.inflater = DECOMPRESSOBJ() if header.flags & lay.FLAG_COMPRESS else None
        self.records = 0
        self.damage: str | None = None

    def _damaged(self, why: str) -> None:
        self.damage = why
        warnings.warn(
            CaptureDamagedWarning(
                f"{self.name}: damaged flow-tools file: reading stopped after record {self.records}: {why}; "
                "the records before were delivered"
            ),
            stacklevel=4,
        )

    def _bytes(self) -> Iterator[bytes]:
        """The record bytes, in pieces of at most chunk_bytes (decompressed when the file is)."""
        z = self.inflater
        while True:
            if z is not None and z.unconsumed_tail:
                data = z.unconsumed_tail
            else:
                data = self.file.read(READ_SIZE if z is not None else self.chunk_bytes)
                if not data:
                    if z is not None and not z.eof:
                        yield z.flush()
                        self._damaged("the zlib stream is cut short")
                    return
            if z is None:
                yield data
                continue
            if z.eof:
                return  # flow-tools writes nothing after the stream
            try:
                out = z.decompress(data, self.chunk_bytes)
            except INFLATE_ERRORS as e:
                self._damaged(f"corrupt zlib stream ({e})")
                return
            if out:
                yield out

    def chunks(self) -> Iterator[np.ndarray]:
        """Structured arrays of whole records, in the file's byte order."""
        pending = b""
        for data in self._bytes():
            buf = pending + data if pending else data
            n = len(buf) // self.record_size
            pending = buf[n * self.record_size :]
            if n:
                array = np.frombuffer(buf, dtype=self.dtype, count=n)
                self.records += n
                yield array
        if pending and self.damage is None:
            self._damaged(f"the last record is cut short ({len(pending)} of {self.record_size} bytes)")

    def record_sets(self, exporter: str) -> Iterator[RecordSet]:
        """One RecordSet (FlowRecord's batch type) per chunk."""
        names = lay.field_names(self.header.key, self.header.order)
        for array in self.chunks():
            if self.compat:
                array = _from_compat(array, self.template, names)
            yield RecordSet(self.header.d_version, exporter, 0, self.template, 0, None, 0, array)


# fts1rec_compat's names for the v1/v5 fields it holds under another name
_COMPAT_NAMES = {"unix_nsecs": "unix_msecs", "tcp_flags": "flags"}


def _from_compat(array: np.ndarray, template: Template, names: list[str]) -> np.ndarray:
    """Stream version 1 records (fts1rec_compat) as v1/v5 records (``template``, its fields'
    flow-tools ``names``), as flow-tools maps them: same-named fields copied, sysUpTime 0, unix_nsecs
    from milliseconds, tcp_flags from the old flags byte."""
    out = np.zeros(len(array), dtype=template.dtype)
    for name, ft in zip(template.names, names, strict=True):
        source = _COMPAT_NAMES.get(ft, ft)
        if not ft.startswith(("pad", "reserved")) and source in (array.dtype.names or ()):
            out[name] = array[source]
    out["unix_nsecs"] = out["unix_nsecs"] * np.uint32(1_000_000)
    return out
