"""`aioflow collect --listen ... --flow-tools DIR` as a flow-capture box, live: softflowd (nobody here
wrote it) reads a capture and exports NetFlow v5 over loopback to the collector, which is stopped by
SIGINT or SIGTERM once it has printed every record softflowd says it sent (counted, never timed).
The ft-v05.* files it leaves must hold exactly the records softflowd sent, every v5 field, as many
times each (the datagrams of an identical softflowd run, received raw and parsed here with struct),
be named as flow-capture names them and carry a complete header. On ndpi_sites.pcapng (shared
corpus) they must also equal the file flow-capture itself wrote from the same softflowd run."""

from __future__ import annotations

import collections
import contextlib
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.corpus import BUNDLED, CORPUS, DATA
from support.flowtools_ref import BUNDLED as FT_BUNDLED
from support.nfdump_peer import free_udp_port
from support.softflowd import SOFTFLOWD, run_softflowd, softflowd_datagrams

from aioflow.netflow import FlowSet

pytestmark = pytest.mark.skipif(not SOFTFLOWD, reason="softflowd (the exporter) is not installed (apt install it)")

# flow-capture's names: ft-v05.YYYY-MM-DD.HHMMSS+ZZZZ (tmp-v05.* while open)
NAME = re.compile(r"ft-v05\.(\d{4}-\d\d-\d\d\.\d{6})([+-]\d{4})")
HEADER = struct.Struct("!HHIIIIBBH")
RECORD = struct.Struct("!IIIHHIIIIHHxBBBHHBBxx")
FIELDS = ("srcaddr_raw", "dstaddr_raw", "nexthop_raw", "input", "output", "dPkts", "dOctets", "first_raw", "last_raw",
          "srcport", "dstport", "tcp_flags", "prot", "tos", "src_as", "dst_as", "src_mask", "dst_mask")  # fmt: skip
EXPORT = ("unix_secs", "unix_nsecs", "sysUpTime", "engine_type", "engine_id", "exaddr")
Row = tuple[int | str, ...]


def sent_records(datagrams: list[bytes]) -> list[list[Row]]:
    """The v5 records of each datagram, by struct (RFC-less but fixed: Cisco's v5 layout), as
    (export fields..., record fields...) rows in EXPORT + FIELDS order."""
    out = []
    for d in datagrams:
        version, count, uptime, secs, nsecs, _, engine_type, engine_id, _ = HEADER.unpack_from(d)
        assert version == 5 and len(d) == HEADER.size + count * RECORD.size
        export = (secs, nsecs, uptime, engine_type, engine_id, "127.0.0.1")
        out.append([export + RECORD.unpack_from(d, HEADER.size + i * RECORD.size) for i in range(count)])
    return out


def file_rows(fs: FlowSet) -> list[Row]:
    return [tuple(getattr(r, name) for name in EXPORT + FIELDS) for r in fs]


@contextlib.contextmanager
def collector(directory: Path, rotate_records: int) -> Iterator[tuple[subprocess.Popen[str], int, queue.Queue[str]]]:
    """`aioflow collect --flow-tools DIR` on a free loopback port once it says it is collecting:
    (process, port, its stdout lines as they come). Killed if the test fails first."""
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "aioflow", "collect", "--listen", f"127.0.0.1:{port}",
                             "--flow-tools", str(directory), "--rotate-records", str(rotate_records)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    try:
        started = proc.stderr.readline()
        assert started.startswith("aioflow: collecting on"), started + (proc.communicate()[1] if proc.poll() else "")
        reader.start()
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if reader.is_alive():
            reader.join(timeout=60)  # at the end of its stdout, now the process has exited
        proc.stdout.close()
        proc.stderr.close()


def files_expected(datagrams: list[tuple[int, int]], rotate_records: int) -> list[int]:
    """Records per file for datagrams of (export second, records): a new file at a datagram of another
    second than the file's first once the file holds rotate_records (a datagram is never split)."""
    files: list[list[int]] = []  # [start second, records]
    for when, n in datagrams:
        if not files or (files[-1][1] >= rotate_records and when != files[-1][0]):
            files.append([when, 0])
        files[-1][1] += n
    return [n for _, n in files]


SITES = CORPUS / "ndpi_sites.pcapng"  # flow-capture's bundled file was made from softflowd -a on it
# in capture-time order (2010, 2015, 2022; ndpi_sites 2024), as a live exporter's clock goes: softflowd
# -a sends each capture's records at one export second (43, 20, 55 and 115 records, in datagrams of up
# to 30): with ROTATE 20 a file of each second, the 30-record datagrams past ROTATE kept with their second
CAPTURES = [DATA / "tcpreplay_test.pcap", DATA / "ndpi_ocs.pcap", BUNDLED]
ROTATE = 20


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


@pytest.mark.parametrize("signum", SIGNALS)
def test_collector_writes_what_softflowd_sent(signum: int, tmp_path: Path) -> None:
    """softflowd runs over three bundled captures (and ndpi_sites.pcapng when the corpus is there), one
    after the other, into one collector rotating every ROTATE records."""
    captures = CAPTURES + ([SITES] if SITES.is_file() else [])
    # what softflowd -a sends for each capture (-a: times from the capture, so every run sends the same)
    sent = {capture: sent_records(softflowd_datagrams(capture, 5, ("-a",))) for capture in captures}
    datagrams = [d for each in sent.values() for d in each]
    records = sum(len(d) for d in datagrams)
    folder = tmp_path / "ft"
    with collector(folder, ROTATE) as (proc, port, lines):
        for capture, each in sent.items():
            assert run_softflowd(capture, port, 5, ("-a",)) == (sum(len(d) for d in each), len(each))
        for _ in range(records):  # every record reached the collector (it prints one line each)
            assert lines.get(timeout=60).startswith("v5 127.0.0.1 ")
        proc.send_signal(signum)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert proc.returncode == 128 + signum, err
    want_files = files_expected([(int(d[0][0]), len(d)) for d in datagrams], ROTATE)
    assert want_files[:3] == [43, 20, 55], want_files  # what softflowd sent for each capture, one file each
    assert f"{len(want_files)} flow-tools files written" in err, err
    assert f"datagrams {len(datagrams)}, records {records}," in err and "sequence_gaps 0" in err, err

    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == len(want_files) and all(NAME.fullmatch(n) for n in names), names  # no tmp-* left
    sets = [FlowSet(folder / n) for n in names]
    got = [file_rows(fs) for fs in sets]
    assert [len(rows) for rows in got] == want_files
    for name, fs, rows in zip(names, sets, got, strict=True):
        # named by the export time of the file's first datagram, in UTC
        stamp, zone = NAME.fullmatch(name).groups()  # type: ignore[union-attr]
        assert (stamp, zone) == (time.strftime("%Y-%m-%d.%H%M%S", time.gmtime(int(rows[0][0]))), "+0000")
        assert (fs.export_version, fs.streaming, fs.compressed, fs.flags & 1) == (5, False, True, 1)
        assert fs.flow_count == len(rows) and fs.lost == 0 and fs.hostname
        assert fs.capture_start == rows[0][0] and fs.capture_end == max(int(r[0]) for r in rows)
    # counts per flow: every record softflowd sent, as many times, every field; in the order sent
    assert collections.Counter(r for rows in got for r in rows) == collections.Counter(r for d in datagrams for r in d)
    assert [r for rows in got for r in rows] == [r for d in datagrams for r in d]
    if SITES in sent:  # a whole file equal to the one flow-capture wrote from the same softflowd run
        assert file_rows(FlowSet(FT_BUNDLED / "capture-softflowd-v5.ft")) == got[-1]
