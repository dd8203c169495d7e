"""flow-tools files from aioflow's flows and from collected datagrams, rotating like flow-capture.

``FlowToolsRotator`` writes PDUs (v5/v9 datagrams, decoded) to one file, or to a directory of files
named as flow-capture names them (``ft-v05.YYYY-MM-DD.HHMMSS+0000``, ``tmp-v05.*`` while open), a
new one every ``rotate_records`` records (at the next datagram of another second: names are to the
second) and/or at every ``rotate_seconds`` boundary of the datagrams' own export time (packet time,
never the wall clock). An existing file is never overwritten (a restarted collector's name gets
``.1``). ``FlowToolsWriter`` is the sink ``aioflow flows --format flow-tools`` and ``aioflow export
--flow-tools`` use: aioflow's flows become NetFlow v5 records (one per direction, as the v5 exporter
sends them) and go through the rotator.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Hashable
from pathlib import Path
from typing import Literal, TypedDict, Unpack

import numpy as np

from ._ftlayout import Header
from ._records import PDU
from .export import BATCH_FLOWS, FLUSH_INTERVAL, ExportStats, _FileSink, _stats
from .flowtools import FlowSet

FT_SEQ_RESET = 1000  # flow-tools' bound: more flows missing than this is a restarted exporter, not loss
MAX_EXPORTERS = 4096  # exporters whose sequence numbers are followed (memory bound; the oldest forgotten)


def capture_name(when: int, version: int = 5, prefix: str = "ft") -> str:
    """flow-capture's file name for a file starting at ``when`` (Unix seconds, named in UTC)."""
    return f"{prefix}-v{version:02d}." + time.strftime("%Y-%m-%d.%H%M%S+0000", time.gmtime(when))


class FileOptions(TypedDict, total=False):
    """FlowToolsRotator's keyword options, which FlowToolsWriter passes on."""

    directory: str | os.PathLike[str] | None
    rotate_records: int | None
    rotate_seconds: int | None
    compress: bool
    byte_order: Literal["little", "big"]


class FlowToolsRotator:
    """PDUs into flow-tools files: ``path`` (one file, no rotation) or ``directory`` (rotating).
    ``files_written`` counts the files completed; ``recent_files`` keeps the last ``keep_paths`` of
    their paths only, so a collector that rotates for months holds a bounded list."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        rotate_records: int | None = None,
        rotate_seconds: int | None = None,
        compress: bool = True,
        byte_order: Literal["little", "big"] = "little",
        keep_paths: int = 16,
    ) -> None:
        if (path is None) == (directory is None):
            raise ValueError("give a path (one file) or a directory (rotating files), not both")
        if path is not None and (rotate_records or rotate_seconds):
            raise ValueError("rotation needs a directory (files are named by their start time)")
        for name, value in (("rotate_records", rotate_records), ("rotate_seconds", rotate_seconds)):
            if value is not None and value < 1:
                raise ValueError(f"{name}={value}: at least 1")
        self.path = None if path is None else Path(path)
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_records, self.rotate_seconds = rotate_records, rotate_seconds
        self.compress, self.byte_order = compress, byte_order
        self.files_written = 0  # files completed
        self.recent_files: deque[Path] = deque(maxlen=max(1, keep_paths))  # the last of them, oldest first
        self._current: FlowSet | None = None
        self._tmp: Path | None = None
        self._start = 0  # export time the current file starts at (its name)
        self._last = 0  # latest export time written to it
        # v5 sequence numbers as flow-capture checks them: (exporter, engine) -> the next one expected
        self._expected: dict[tuple[Hashable, int], int] = {}

    def _open(self, when: int) -> FlowSet:
        if self.directory is None:
            assert self.path is not None
            self._tmp = self.path
        else:
            start = when - when % self.rotate_seconds if self.rotate_seconds else when
            if self.files_written and start == self._start:
                start = when  # rotated by records within a period: named by its own second
            self._start = start
            self._tmp = _unused(self.directory / capture_name(start, prefix="tmp"))
        fs = FlowSet(self._tmp, "w", version=5, compress=self.compress, byte_order=self.byte_order, streaming=False)
        fs.header.cap_start = self._start if self.directory is not None else when
        self._last = when
        return fs

    def _due(self, fs: FlowSet, when: int) -> bool:
        if self.directory is None:
            return False
        # By records only at a datagram of another second than the file's start: files are named to the
        # second, so two files of one second would have one name (a burst stays in one file).
        if self.rotate_records and fs.records_written >= self.rotate_records and when != self._start:
            return True
        return bool(self.rotate_seconds) and when >= self._start + (self.rotate_seconds or 0)

    def write_pdu(self, pdu: PDU) -> None:
        """Append a datagram's flow records, to a new file first when the rotation is due."""
        when = pdu.unix_secs
        if self._current is not None and self._due(self._current, when):
            self.close()
        if self._current is None:
            self._current = self._open(when)
        if pdu.version == 5:
            self._check_sequence(self._current.header, pdu)
        self._current.write_pdu(pdu)
        self._last = max(self._last, when)

    def _check_sequence(self, header: Header, pdu: PDU) -> None:
        """flow-capture's accounting in the file's header: a v5 datagram whose sequence number is not
        the one expected from its exporter (and engine) lost the flows between, counted in ``lost``
        when fewer than FT_SEQ_RESET, else as one sequence reset (an exporter restarted)."""
        key = (pdu.exporter, pdu.observation_domain)
        expected = self._expected.pop(key, None)  # re-inserted last: the oldest exporter is first to go
        if expected is not None and pdu.sequence != expected:
            lost = (pdu.sequence - expected) % 2**32
            if lost < FT_SEQ_RESET:
                header.flows_lost = (header.flows_lost or 0) + lost
            else:
                header.seq_reset = (header.seq_reset or 0) + 1
        self._expected[key] = (pdu.sequence + len(pdu)) % 2**32
        if len(self._expected) > MAX_EXPORTERS:
            del self._expected[next(iter(self._expected))]

    def close(self) -> None:
        """Complete the current file (header with count and capture end; renamed ft-* from tmp-*)."""
        fs, self._current = self._current, None
        if fs is None and self.path is not None and not self.files_written:
            fs = self._open(int(time.time()))  # no record at all: still a valid (empty) file
        if fs is None:
            return
        fs.close(capture_end=self._last)
        assert self._tmp is not None
        final = self._tmp
        if self.directory is not None:
            final = _unused(self.directory / self._tmp.name.replace("tmp-", "ft-", 1))
            self._tmp.rename(final)
        self.recent_files.append(final)
        self.files_written += 1


def _unused(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... when a file has that name (a collector restarted within the
    second or period of an earlier run's file): an archive is never overwritten."""
    n = 0
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


class FlowToolsWriter(_FileSink):
    """aioflow's flows into flow-tools v5 files (``path``, or rotating files in ``directory``: the
    keyword options of FlowToolsRotator). Each direction that saw packets is one v5 record (IPv6
    flows cannot be: counted in ``stats.skipped_ipv6``), timed as the NetFlow v5 exporter times them.
    Raises OSError when the file or directory cannot be written."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        engine_id: int = 0,
        batch_flows: int = BATCH_FLOWS,
        flush_interval: float = FLUSH_INTERVAL,
        **files: Unpack[FileOptions],
    ) -> None:
        from ._decode import Decoder
        from ._encode import NetflowV5Encoder

        super().__init__(batch_flows, flush_interval)
        self.encoder = NetflowV5Encoder(engine_id=engine_id)
        self.decoder = Decoder()
        self.rotator = FlowToolsRotator(path, **files)
        if path is not None:
            open(path, "wb").close()  # a path that cannot be written fails now, not after the whole capture

    @property
    def stats(self) -> ExportStats:
        """The counters so far: flows, records (one per direction), datagrams encoded, IPv6 skipped."""
        return _stats(self.encoder)

    @property
    def files_written(self) -> int:
        """The flow-tools files completed so far (their last paths: ``rotator.recent_files``)."""
        return self.rotator.files_written

    def write_records(self, rec: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
        """Writes C flow records (RECORD_DTYPE) now, blocking (v5 has no room for `extra`)."""
        for datagram in self.encoder.encode(rec):
            message = self.decoder.parse(("0.0.0.0", 0), datagram)
            self.rotator.write_pdu(PDU(message, datagram))

    def close(self) -> None:
        """Completes the last file (idempotent)."""
        if not self.closed:
            self.closed = True
            self.rotator.close()
