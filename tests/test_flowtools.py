"""flow-tools files (aioflow.FlowSet) against files written by the real flow-tools and what its
programs printed for them (tests/data/flowtools; the whole set from ../shared/flowtools when present):
every record field equal to `flow-export`, header fields to `flow-header`, `flow-print -f 5` text
equal, writing byte-equal to flow-gen's and flow-import's records and headers, round trips, damage."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.flowtools_ref import ABSENT, BUNDLED, SHARED, export_rows, header_fields, print_f5

import aioflow
from aioflow.netflow import FlowSet

BUNDLED_FILES = sorted(BUNDLED.glob("*.ft"))
SHARED_FILES = sorted(SHARED.glob("*.ft")) if SHARED.is_dir() else []


_ADDRS = ("exaddr", "srcaddr", "dstaddr", "nexthop", "peer_nexthop")


def _ids(p: Path) -> str:
    return p.name


def _shared(name: str = "") -> Path:
    if not SHARED.is_dir():
        pytest.skip(ABSENT)
    return SHARED / name


def _check_records(path: Path) -> int:
    rows = export_rows(path.with_name(path.name + ".csv"))
    fs = FlowSet(path)
    frame = FlowSet(path).to_frame()
    got = list(fs)
    assert len(got) == len(rows) == len(frame) > 0
    for i, (record, want) in enumerate(zip(got, rows, strict=True)):
        have = {name: getattr(record, name + "_raw" if name in _ADDRS else name) for name in want}
        assert have == want, f"{path.name} record {i}"
        assert {name: int(frame[name].iloc[i]) for name in want} == want, f"{path.name} frame row {i}"
    return len(rows)


def _check_header(path: Path) -> None:
    want = header_fields(path.with_name(path.name + ".header.txt"))
    fs = FlowSet(path)
    assert want["mode"] == ("streaming" if fs.streaming else "normal")
    assert want["compress"] == ("on" if fs.compressed else "off")
    assert want["byte order"] == fs.byte_order
    assert int(want["stream version"]) == fs.stream_version
    assert int(want["export version"]) == fs.export_version
    if "export agg_method" in want:
        assert int(want["export agg_method"].split()[0]) == fs.agg_method
        assert int(want["export agg_version"]) == fs.agg_version
    assert want.get("comments") == fs.comments
    assert want.get("capture hostname") == (None if fs.streaming else fs.hostname)
    for label, value in (("capture flows", fs.flow_count), ("lost flows", fs.lost),
                         ("corrupt packets", fs.corrupt), ("sequencer resets", fs.sequence_resets)):  # fmt: skip
        assert want.get(label) == (None if value is None else str(value)), label
    if "capture start" in want:
        assert fs.capture_start is not None and fs.capture_end is not None
        stamp = "%a, %d %b %Y %H:%M:%S +0000"
        import time

        assert want["capture start"] == time.strftime(stamp, time.gmtime(fs.capture_start))
        assert want["capture end"] == time.strftime(stamp, time.gmtime(fs.capture_end))


@pytest.mark.parametrize("path", BUNDLED_FILES, ids=_ids)
def test_bundled_records_and_header_equal_flow_tools(path: Path) -> None:
    _check_records(path)
    _check_header(path)


@pytest.mark.parametrize("name", [p.name for p in SHARED_FILES] or ["(corpus absent)"])
def test_corpus_records_and_header_equal_flow_tools(name: str) -> None:
    path = _shared(name)
    assert _check_records(path) == int(next(r for r in _manifest() if r[0] == name)[8])
    _check_header(path)


def _manifest() -> list[list[str]]:
    return [line.split("\t") for line in (_shared() / "MANIFEST.tsv").read_text().splitlines()[1:]]


def test_corpus_covers_every_version_order_and_compression() -> None:
    rows = _manifest()
    kinds = {(r[1], r[2] + ("." + r[3] if r[3] != "-" else ""), r[4]) for r in rows}
    versions = {k[1] for k in kinds}
    assert {"1", "5", "6", "7", "1005", *(f"8.{i}" for i in range(1, 15))} <= versions
    assert {k[0] for k in kinds} == {"little", "big"} and {k[2] for k in kinds} == {"yes", "no"}


def _print_files() -> list[Path]:
    files = [p for p in BUNDLED_FILES if not p.name.startswith("gen-v8")]
    files += [p for p in SHARED_FILES if "-v8." not in p.name]
    return files


@pytest.mark.parametrize("path", _print_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_flow_print_f5_text_equal(path: Path) -> None:
    want = path.with_name(path.name + ".print.txt").read_text()
    assert print_f5(list(FlowSet(path))) == want


# --- writing ---


def _records_bytes(data: bytes) -> tuple[bytes, bytes]:
    """(header bytes, records decompressed) of a stream version 3 file."""
    order = "<" if data[2] == 1 else ">"
    size = struct.unpack(order + "I", data[4:8])[0]
    flags = FlowSet(io.BytesIO(data)).flags
    body = data[size:]
    return data[:size], zlib.decompress(body) if flags & 2 else body


def test_write_import_csv_equals_flow_import() -> None:
    """The hand-written edge-case CSV given to flow-import, written by aioflow: the same header bytes
    (TLVs, flags, padding) and byte-equal records after decompression."""
    reference = (BUNDLED / "import-v5-edge.ft").read_bytes()
    out = io.BytesIO()
    rows = export_rows(BUNDLED / "import-v5-edge.input.csv")
    with FlowSet(out, "w", version=5, compress=True, streaming=True, hostname="flow-import",
                 comments="flow-import") as fs:  # fmt: skip
        for row in rows:
            fs.write(SimpleNamespace(**{k + "_raw" if k in ("exaddr", "srcaddr", "dstaddr", "nexthop") else k: v
                                        for k, v in row.items()}))  # fmt: skip
    assert len(rows) == 13
    assert _records_bytes(out.getvalue()) == _records_bytes(reference)


def _rewrite(path: Path) -> bytes:
    source = FlowSet(path)
    out = io.BytesIO()
    version = f"8.{source.agg_method}" if source.export_version == 8 else source.export_version
    with FlowSet(out, "w", version=version, compress=source.compressed, byte_order=source.byte_order,  # type: ignore[arg-type]
                 streaming=True, hostname=source.hostname, comments=source.comments) as fs:  # fmt: skip
        for record in source:
            fs.write(record)
    return out.getvalue()


GEN_FILES = [p for p in BUNDLED_FILES + SHARED_FILES if p.name.startswith("gen-")]


@pytest.mark.parametrize("path", GEN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rewrite_equals_flow_gen(path: Path) -> None:
    """flow-gen's records read and written again: header and records byte-equal (after decompression)."""
    reference = path.read_bytes()
    assert _records_bytes(_rewrite(path)) == _records_bytes(reference)


def test_write_batch_of_a_capture_file_holds_flow_exports_records() -> None:
    """flow-capture's file rewritten in the other byte order, uncompressed, batch by batch: every
    record still equal to what flow-export printed for the original."""
    path = BUNDLED / "capture-softflowd-v5.ft"
    out = io.BytesIO()
    with FlowSet(out, "w", version=5, compress=False, byte_order="big") as fs:
        for batch in FlowSet(path).batches():
            fs.write_batch(batch)
        assert fs.records_written == 115
    back = FlowSet(io.BytesIO(out.getvalue()))
    assert (back.flow_count, back.byte_order, back.compressed, back.streaming) == (115, "big", False, False)
    assert back.flags & 1  # done
    assert [r.to_dict() for r in back] == [r.to_dict() for r in FlowSet(path)]
    rows = export_rows(path.with_name(path.name + ".csv"))
    again = FlowSet(io.BytesIO(out.getvalue()))
    got = [{n: getattr(r, n + "_raw" if n in _ADDRS else n) for n in want} for r, want in zip(again, rows, strict=True)]
    assert got == rows


_U32 = st.integers(0, 2**32 - 1)
_U16 = st.integers(0, 2**16 - 1)
_U8 = st.integers(0, 255)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.fixed_dictionaries({
        "unix_secs": _U32, "unix_nsecs": _U32, "sysUpTime": _U32, "exaddr_raw": _U32, "srcaddr_raw": _U32,
        "dstaddr_raw": _U32, "nexthop_raw": _U32, "input": _U16, "output": _U16, "dPkts": _U32, "dOctets": _U32,
        "first_raw": _U32, "last_raw": _U32, "srcport": _U16, "dstport": _U16, "prot": _U8, "tos": _U8,
        "tcp_flags": _U8, "engine_type": _U8, "engine_id": _U8, "src_mask": _U8, "dst_mask": _U8, "src_as": _U16,
        "dst_as": _U16, "src_tag": _U32, "dst_tag": _U32, "in_encaps": _U8, "out_encaps": _U8,
        "peer_nexthop_raw": _U32, "router_sc": _U32, "dFlows": _U32, "extra_pkts": _U32, "marked_tos": _U8,
        "flags": _U8,
    }), max_size=40),
    version=st.sampled_from(["1", "5", "6", "7", "1005", *(f"8.{i}" for i in range(1, 15))]),
    order=st.sampled_from(["little", "big"]),
    compress=st.booleans(),
)  # fmt: skip
def test_round_trip_random_records(rows: list[dict[str, int]], version: str, order: str, compress: bool) -> None:
    out = io.BytesIO()
    with FlowSet(out, "w", version=version, compress=compress, byte_order=order) as fs:  # type: ignore[arg-type]
        for row in rows:
            fs.write(SimpleNamespace(**row))
    back = FlowSet(io.BytesIO(out.getvalue()))
    assert back.flow_count == len(rows)
    got = list(back)
    assert len(got) == len(rows)
    names = [n for n in back.fields if not n.startswith(("pad", "reserved"))]
    for record, row in zip(got, rows, strict=True):
        for name in names:
            attr = {"First": "first_raw", "Last": "last_raw"}.get(name, name)
            attr = attr + "_raw" if attr in ("exaddr", "srcaddr", "dstaddr", "nexthop", "peer_nexthop") else attr
            want = row[attr]
            if version == "1005" and order == "big" and name.endswith("_tag"):
                want &= 0xFFFF  # flow-tools swaps the tags as 16-bit fields: big-endian files keep 16 bits
            assert getattr(record, attr) == want, (version, name)


# --- reading: sources, damage, memory ---


def test_stdin_and_file_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (BUNDLED / "gen-v5-le-z6.ft").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert len(list(FlowSet("-"))) == 50
    assert len(list(aioflow.FlowSet(io.BytesIO(data)))) == 50


@pytest.fixture(params=["zlib", "zlib-ng"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reading with Python's zlib and with zlib-ng (used when installed): the same records, the same damage."""
    from aioflow.netflow import _ftread

    if request.param == "zlib":
        monkeypatch.setattr(_ftread, "DECOMPRESSOBJ", zlib.decompressobj)
        monkeypatch.setattr(_ftread, "INFLATE_ERRORS", (zlib.error,))
    else:
        zlib_ng = pytest.importorskip("zlib_ng.zlib_ng", reason="zlib-ng is not installed (pip install zlib-ng)")
        monkeypatch.setattr(_ftread, "DECOMPRESSOBJ", zlib_ng.decompressobj)
        monkeypatch.setattr(_ftread, "INFLATE_ERRORS", (zlib_ng.error, zlib.error))
    return str(request.param)


def test_both_inflaters_read_flow_exports_records(inflater: str) -> None:
    compressed = [p for p in BUNDLED_FILES if FlowSet(p).compressed]
    assert len(compressed) >= 3
    for path in compressed:
        _check_records(path)


def _gen(compress: bool) -> bytes:
    return (BUNDLED / ("gen-v5-le-z6.ft" if compress else "gen-v5-be-z0.ft")).read_bytes()


def test_not_a_flow_tools_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.ft"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(40))
    with pytest.raises(aioflow.FlowFileFormatError, match="not a flow-tools file"):
        FlowSet(bad)
    with pytest.raises(aioflow.FlowFileNotFoundError):
        FlowSet(tmp_path / "missing.ft")


@pytest.mark.parametrize("cut", [3, 7, 20])
def test_truncated_header_is_a_format_error(cut: int) -> None:
    with pytest.raises(aioflow.FlowFileFormatError, match=r"cut short|damaged"):
        FlowSet(io.BytesIO(_gen(False)[:cut]))


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_record_warns_after_the_whole_records(compress: bool, inflater: str) -> None:
    data = _gen(compress)
    if compress:
        header, records = _records_bytes(data)
        data = header + zlib.compress(records[: 64 * 7 + 30])  # a complete zlib stream holding 7.5 records
    else:
        data = data[: 48 + 64 * 7 + 30]
    fs = FlowSet(io.BytesIO(data))
    with pytest.warns(aioflow.CaptureDamagedWarning, match="after record 7: the last record is cut short"):
        got = list(fs)
    assert [r.dPkts for r in got] == [1, 2, 3, 4, 5, 6, 7]
    assert fs.damage is not None


def test_cut_and_corrupt_zlib_stream_warn(inflater: str) -> None:
    data = _gen(True)
    size = 48
    fs = FlowSet(io.BytesIO(data[: size + (len(data) - size) // 2]))
    with pytest.warns(aioflow.CaptureDamagedWarning, match="zlib stream is cut short"):
        cut = list(fs)
    assert 0 < len(cut) < 50 and [r.dPkts for r in cut] == list(range(1, len(cut) + 1))
    corrupt = bytearray(data)
    corrupt[size + 40 : size + 60] = bytes(20)
    fs = FlowSet(io.BytesIO(bytes(corrupt)))
    with pytest.warns(aioflow.CaptureDamagedWarning, match=r"corrupt zlib stream|cut short"):
        got = list(fs)
    assert len(got) < 50


def test_reading_a_large_file_keeps_memory_flat(tmp_path: Path) -> None:
    """2M records compressed: the peak of Python allocations while reading is bounded by the chunk, not
    the file (a whole-file read would hold 128 MB of records)."""
    path = tmp_path / "big.ft"
    one = next(FlowSet(BUNDLED / "capture-softflowd-v5.ft").batches())
    block = np.resize(one.array, 65536)
    with FlowSet(path, "w", version=5, compress=True) as fs:
        batch = type(one)(5, "x", 0, one.template, 0, None, 0, block)
        for _ in range(32):
            fs.write_batch(batch)
    n = 0
    tracemalloc.start()
    try:
        for rs in FlowSet(path, chunk_records=16384).batches():
            n += len(rs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 32 * 65536
    assert peak < 8 * 2**20, peak  # 16384 records are 1 MB; the file's records are 128 MB


def test_no_warnings_on_intact_files() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in BUNDLED_FILES:
            assert FlowSet(path).damage is None
            list(FlowSet(path))


def test_stream_version_1_is_read_as_flow_tools_maps_it() -> None:
    """Stream version 1 (flow-tools before 0.50): a fixed 368-byte header and fts1rec_compat records,
    read as flow-tools' ftio_read maps them (sysUpTime 0, unix_nsecs from ms, tcp_flags from flags)."""
    header = struct.pack("<BBBBHxxIIIIIIIII68s256s", 0xCF, 0x10, 1, 1, 5, 1_000_000_000, 1_000_000_060, 1, 0, 2, 0,
                         0, 0, 0, b"oldbox", b"an old capture")  # fmt: skip
    record = struct.pack("<IIIIIHHIIIIHHHBBBBBBHHBBH", 1_000_000_030, 250, 0x0A000001, 0x0A000002, 0, 3, 4, 5, 600,
                         7, 8, 1234, 80, 0, 6, 16, 0x12, 0, 0, 0, 64512, 65001, 24, 16, 0)  # fmt: skip
    fs = FlowSet(io.BytesIO(header + record * 2))
    assert (fs.stream_version, fs.export_version, fs.hostname, fs.comments, fs.flow_count) == (
        1, 5, "oldbox", "an old capture", 2)  # fmt: skip
    assert (fs.capture_start, fs.capture_end) == (1_000_000_000, 1_000_000_060)
    (r, _) = list(fs)
    assert (r.unix_secs, r.unix_nsecs, r.sysUpTime, r.srcaddr, r.dstaddr, r.input, r.output) == (
        1_000_000_030, 250_000_000, 0, "10.0.0.1", "10.0.0.2", 3, 4)  # fmt: skip
    assert (r.dPkts, r.dOctets, r.first_raw, r.last_raw, r.srcport, r.dstport, r.prot, r.tos, r.tcp_flags) == (
        5, 600, 7, 8, 1234, 80, 6, 16, 0x12)  # fmt: skip
    assert (r.src_as, r.dst_as, r.src_mask, r.dst_mask) == (64512, 65001, 24, 16)


def test_to_arrow_and_the_parquet_example(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    folder = tmp_path / "archive"
    folder.mkdir()
    names = {"capture-softflowd-v5.ft": "ft-v05.2024-07-09.074500+0000",
             "gen-v5-le-z6.ft": "ft-v05.2024-07-09.080000+0000"}  # fmt: skip
    for source, name in names.items():
        (folder / name).write_bytes((BUNDLED / source).read_bytes())
    (folder / "tmp-v05.2024-07-09.081500+0000").write_bytes(b"being written")  # flow-capture's open file: skipped
    out = tmp_path / "flows.parquet"
    example = Path(__file__).resolve().parents[1] / "examples" / "flowtools_to_parquet.py"
    proc = subprocess.run([sys.executable, str(example), str(folder), str(out)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("165 records")
    table = pq.read_table(out)
    want = [FlowSet(BUNDLED / s).to_arrow() for s in names]
    assert table.num_rows == sum(t.num_rows for t in want) == 165
    assert table.column("dOctets").to_pylist() == [v for t in want for v in t.column("dOctets").to_pylist()]
    capture = list(FlowSet(BUNDLED / "capture-softflowd-v5.ft"))
    assert table.column("first").to_pylist()[:3] == [r.first for r in capture[:3]]
    assert set(table.column("file").to_pylist()) == set(names.values())


def test_bundled_files_are_the_manifests() -> None:
    """tests/data/flowtools/MANIFEST.tsv gives each bundled flow-tools file's source, how it was made,
    its licence and checksum (the oracle texts beside each were printed by flow-tools for it)."""
    import csv
    import hashlib

    with (BUNDLED / "MANIFEST.tsv").open(newline="") as fh:
        rows = {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
    assert sorted(rows) == [p.name for p in BUNDLED_FILES]
    for p in BUNDLED_FILES:
        row = rows[p.name]
        assert row["source"] and row["made_with"] and row["licence"], row
        assert hashlib.sha256(p.read_bytes()).hexdigest() == row["sha256"], f"{p.name} differs from its source"


@pytest.mark.parametrize("order", ["<", ">"])
def test_header_fields_no_corpus_file_carries(order: str) -> None:
    """The TLVs none of flow-tools' files here hold (exporter, misordered, rotation, interface names
    and aliases), laid out by hand as ftlib.h numbers them (ftio.c writes each as {u16 type, u16
    length, value} in the file's byte order; addresses as u32): read as flow-header would show them."""

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack(order + "HH", kind, len(value)) + value

    u32 = struct.Struct(order + "I").pack
    exporter = 0xC0000201  # 192.0.2.1
    tlvs = (tlv(2, struct.pack(order + "H", 5)) + tlv(5, u32(exporter)) + tlv(8, u32(0)) + tlv(9, u32(288))
            + tlv(12, u32(7)) + tlv(17, struct.pack(order + "IH", exporter, 3) + b"ge-0/0/1\0")
            + tlv(17, struct.pack(order + "IH", exporter, 65535) + b"lo0\0")
            + tlv(18, struct.pack(order + "IHHH", exporter, 2, 4, 5) + b"uplinks\0"))  # fmt: skip
    size = 8 + len(tlvs) + (-(8 + len(tlvs)) % 4)
    head = b"\xcf\x10" + bytes([1 if order == "<" else 2, 3]) + u32(size)
    fs = FlowSet(io.BytesIO((head + tlvs).ljust(size, b"\xaa")))  # padding not zeroed, as flow-capture's
    assert (fs.exporter, fs.misordered, fs.header.rotation, fs.export_version) == ("192.0.2.1", 7, 288, 5)
    assert fs.interfaces == {("192.0.2.1", 3): "ge-0/0/1", ("192.0.2.1", 65535): "lo0"}
    assert fs.header.aliases == [(exporter, (4, 5), "uplinks")]
    assert list(fs) == []
