"""The bulk path: read_frame() and read_arrow() columns, built per batch from the C records in
numpy, equal Flow.to_dict() of the same flows, on every capture of tests/data."""

from __future__ import annotations

import ipaddress
import math
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.crafted import A, B, C, ether, ip4, ip6, udp, write

import aioflow
import aioflow._read
from aioflow._frame import RECORD_DTYPE, object_text, records_to_columns
from aioflow._frame_targets import arrow_text

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
NO_TIMEOUTS: dict[str, Any] = {"idle_timeout": 1e6, "active_timeout": 1e6, "fin_timeout": 1e6}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_frame_and_arrow_equal_flow_dicts(path: Path) -> None:
    flows = {f.id: f.to_dict() for f in aioflow.read(path, **NO_TIMEOUTS)}
    frame = aioflow.read_frame(path, **NO_TIMEOUTS)
    table = aioflow.read_arrow(path, **NO_TIMEOUTS)
    assert len(frame) == table.num_rows == len(flows)
    assert table.column_names == list(frame.columns) == list(next(iter(flows.values()), frame.columns))
    for row, arrow_row in zip(frame.to_dict("records"), table.to_pylist(), strict=True):
        expected = flows[row["id"]]
        for column, value in expected.items():
            assert _same(row[column], value), (column, row[column], value)
            assert _same(arrow_row[column], value), (column, arrow_row[column], value)


def test_integer_columns_are_int64() -> None:
    frame = aioflow.read_frame(DATA / "ndpi_ocs.pcap")
    assert frame["packets"].dtype == np.int64 and frame["first_seen_ns"].dtype == np.int64
    table = aioflow.read_arrow(DATA / "ndpi_ocs.pcap")
    assert str(table.schema.field("bytes").type) == "int64"


def test_no_flow_still_has_every_column(tmp_path: Path) -> None:
    empty = DATA / "tcpdump_LINKTYPE_IPV4.pcap"
    frame = aioflow.read_frame(empty, filter="tcp")  # its one packet is DNS over UDP
    table = aioflow.read_arrow(empty, filter="tcp")
    assert len(frame) == table.num_rows == 0
    assert table.column_names == list(frame.columns) and "bidirectional_id" in table.column_names


def test_no_flow_has_the_types_of_flows() -> None:
    """A capture with no flow: the frame's dtypes and the table's schema are those of one with
    flows (text, splt lists, meters' fields), not what pandas or Arrow guess of empty columns."""
    options: dict[str, Any] = {"statistics": True, "splt": 3, "meters": ("mac",)}
    empty, full = DATA / "tcpdump_LINKTYPE_IPV4.pcap", DATA / "ndpi_ocs.pcap"
    assert aioflow.read_arrow(empty, filter="tcp", **options).schema == aioflow.read_arrow(full, **options).schema
    frame, flows = aioflow.read_frame(empty, filter="tcp", **options), aioflow.read_frame(full, **options)
    assert len(frame) == 0 < len(flows) and frame.dtypes.to_dict() == flows.dtypes.to_dict()


ODD_ADDRESSES = ["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:0", "64:ff9b::1.2.3.4", "2001:db8::1",
                 "2001:db8:0:1:1:1:1:1", "fe80::1:0:0:1", "1::", "2001:0:0:1::1"]  # fmt: skip


def test_record_text_is_flow_text() -> None:
    """read_frame's src_ip, dst_ip and bidirectional_id (written in C, inet_ntop, with Python's
    ipaddress for the first-80-bits-zero forms) are what Flow writes (ipaddress), also for the
    forms where glibc's text differs, and in the endpoint order Flow sorts them by."""
    v6 = [ipaddress.IPv6Address(a) for a in ODD_ADDRESSES]
    rng = random.Random(5)  # and addresses with zero groups anywhere: runs, ties, at either end

    def group() -> tuple[int, int]:
        return (0, 0) if rng.random() < 0.5 else (rng.choice((0, 1, 0x12, 0xAB)), rng.randrange(256))

    v6 += [ipaddress.IPv6Address(bytes(b for _ in range(8) for b in group())) for _ in range(300)]
    pairs = [(a, b) for a in v6 for b in v6[:4] + v6[-3:]] + [(ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address(
        "255.255.255.255")), (ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("10.0.0.2"))]  # fmt: skip
    rec = np.zeros(len(pairs), dtype=RECORD_DTYPE)
    for i, (a, b) in enumerate(pairs):
        rec[i]["src_ip"][: len(a.packed)] = np.frombuffer(a.packed, dtype=np.uint8)
        rec[i]["dst_ip"][: len(b.packed)] = np.frombuffer(b.packed, dtype=np.uint8)
        rec[i]["ip_version"], rec[i]["protocol"], rec[i]["vlan_id"] = a.version, 17, i % 3
        rec[i]["src_port"], rec[i]["dst_port"] = 1000 + i % 7, 1003
    cols = records_to_columns(rec)
    assert cols["src_ip"].tolist() == [str(a) for a, _ in pairs]
    assert cols["dst_ip"].tolist() == [str(b) for _, b in pairs]
    expected = []
    for i, (a, b) in enumerate(pairs):
        lo, hi = sorted([(a.packed.ljust(16, b"\0"), 1000 + i % 7, a), (b.packed.ljust(16, b"\0"), 1003, b)])
        expected.append(f"17-{i % 3}-{lo[2]}:{lo[1]}-{hi[2]}:{hi[1]}")
    assert cols["bidirectional_id"].tolist() == expected


EVERY_METER: dict[str, Any] = {"meters": aioflow.available_meters(), "decode_tunnels": True, "statistics": True,
                               "splt": 4, **NO_TIMEOUTS}  # fmt: skip


def _ipv6_tunnels(tmp_path: Path) -> Path:
    """IPv6-in-IPv6 and IPv4-in-IPv6 (the tunnel meter's 16-byte addresses), beside an untunnelled flow."""
    inner4, inner6 = ip4(A, B, 17, udp(1, 2)), ip6("2001:db8::1", "2001:db8::2", 17, udp(3, 4))
    return write(tmp_path, "v6.pcap", [(1.0, ether(ip6("2001:db8:1::1", "2001:db8:1::2", 41, inner6), 0x86DD)),
                                       (1.1, ether(ip6("::ffff:0:1", "fe80::1:0:0:1", 4, inner4), 0x86DD)),
                                       (1.2, ether(ip4(A, C, 17, udp(5, 6))))])  # fmt: skip


@pytest.mark.parametrize("name", ["zeek_tunnels_vxlan-encapsulated-http.pcap", "zeek_tunnels_Teredo.pcap",
                                  "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap", "ndpi_ocs.pcap",
                                  "crafted IPv6 tunnels"])  # fmt: skip
def test_frame_meter_columns_are_flow_meter_columns(name: str, tmp_path: Path) -> None:
    """Every meter on: read_frame's columns and values are Flow.to_dict() | Flow.meter_columns()
    (what `aioflow flows --format json` writes), the tunnel and mac meters under nfstream's
    names in both (the tunnel addresses themselves are checked against tshark in test_tunnels)."""
    path = _ipv6_tunnels(tmp_path) if name.startswith("crafted") else DATA / name
    flows = {f.id: f.to_dict() | f.meter_columns() for f in aioflow.read(path, **EVERY_METER)}
    frame = aioflow.read_frame(path, **EVERY_METER)
    assert len(frame) == len(flows) > 0
    assert list(frame.columns) == list(next(iter(flows.values())))
    assert {"tunnel_src_ip", "src_mac", "splt_ps", "community_id_value"} <= set(frame.columns)
    for row in frame.to_dict("records"):
        for column, value in flows[row["id"]].items():
            got = row[column].tolist() if isinstance(row[column], np.ndarray) else row[column]
            assert _same(got, value), (column, got, value)


class _TwoFlows(aioflow.FlowPlugin):
    def on_expire(self, flow: aioflow.Flow) -> None:
        if flow.id in (3, 4):  # the other batches lack the field: None in their rows
            flow.udps.two = flow.packets


def test_many_batches_equal_flow_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of a few flows (each column grown or chunked batch by batch, joined once): the frame
    and the table are Flow.to_dict() | Flow.meter_columns() of every flow, in order, and the
    table has a chunk per batch."""
    path = DATA / "ndpi_ocs.pcap"
    flows = [f.to_dict() | f.meter_columns() for f in aioflow.read(path, plugins=[_TwoFlows()], **EVERY_METER)]
    monkeypatch.setattr(aioflow._read, "BATCH_RECORDS", 5)  # the least the engine takes: 4
    frame = aioflow.read_frame(path, plugins=[_TwoFlows()], **EVERY_METER)
    table = aioflow.read_arrow(path, plugins=[_TwoFlows()], **EVERY_METER)
    assert len(flows) == 20 and table.column("id").num_chunks >= 4
    assert list(frame.columns) == table.column_names == [*flows[0], "udps.two"]
    _assert_rows(frame, flows)
    for arrow_row, flow in zip(table.to_pylist(), flows, strict=True):
        for column in frame.columns:
            assert _same(arrow_row[column], flow.get(column)), (column, arrow_row[column], flow.get(column))


def _assert_rows(frame: pd.DataFrame, flows: list[dict[str, Any]]) -> None:
    """The frame's rows are these flows' dicts, in order (None where a flow lacks a udps field)."""
    assert len(frame) == len(flows)
    for row, flow in zip(frame.to_dict("records"), flows, strict=True):
        for column in frame.columns:
            want = flow.get(column)
            got = row[column].tolist() if isinstance(row[column], np.ndarray) else row[column]
            assert _same(got, want) or (want is None and pd.isna(got)), (column, got, want)


@pytest.mark.parametrize("expected", [0, 1, 7, 19, 10_000])
def test_columns_written_in_place_whatever_the_estimate(expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without plugins, each batch's numeric columns are written in place into the columns
    read_frame grows, sized at the first batch by expected_records: an estimate too small (the
    columns grow, copied), exact or too large (trimmed at the end) gives the same frame,
    Flow.to_dict() | Flow.meter_columns() of every flow in order, over batches of a few flows."""
    path = DATA / "ndpi_ocs.pcap"
    flows = [f.to_dict() | f.meter_columns() for f in aioflow.read(path, **EVERY_METER)]
    asked: list[int] = []

    def estimate(stats: dict[str, Any], taken: int) -> int:
        asked.append(taken)
        return expected

    monkeypatch.setattr(aioflow._read, "BATCH_RECORDS", 5)  # the least the engine takes: 4
    monkeypatch.setattr(aioflow._read, "expected_records", estimate)
    monkeypatch.setattr(aioflow._read, "_PANDAS_FRAGMENTED", 10**6)  # the columns as written, not joined by dtype
    frame = aioflow.read_frame(path, **EVERY_METER)
    assert len(asked) == 1 and 0 < asked[0] <= 5  # once, at the first batch
    assert list(frame.columns) == list(flows[0])
    _assert_rows(frame, flows)
    base = frame["bytes"].to_numpy()
    while isinstance(base.base, np.ndarray):  # pandas gives a read-only view
        base = base.base
    assert base.size == len(flows)  # trimmed in place, not a view of a larger array


def test_expected_records_scales_flows_by_the_file_read() -> None:
    stats = {"file_offset": 250, "file_size": 1000, "flows_created": 8}
    assert aioflow._read.expected_records(stats, 5) == 40  # 8 flows in a quarter of the file, plus a quarter
    assert aioflow._read.expected_records(stats, 9) == 45  # a batch of more records than flows counted
    assert aioflow._read.expected_records({**stats, "file_size": 0}, 5) == 5  # a pipe: no size


def test_text_columns_stop_at_the_first_nul_and_replace_what_is_not_utf8() -> None:
    """The text of a "char[N]" field as Flow reads it (bytes up to the first NUL, UTF-8 with
    replacement) in all three forms: C-packed Arrow buffers, Python's fallback for non-ASCII,
    str objects."""
    fixed = np.array([b"abc", b"ab\0cd", b"", b"abcdefgh", "é".encode(), b"\xff\xfeok"], dtype="S8")
    want = [v.partition(b"\0")[0].decode("utf-8", "replace") for v in fixed.tolist()]
    assert object_text(fixed).tolist() == want
    assert arrow_text(fixed).to_pylist() == arrow_text(fixed, large=True).to_pylist() == want
    assert arrow_text(fixed[:4]).to_pylist() == want[:4]  # ASCII only: the C-packed buffers
    assert str(arrow_text(fixed[:4]).type) == "string" and str(arrow_text(fixed[:4], large=True).type) == "large_string"


@pytest.mark.parametrize("options", [{}, {"statistics": True}, {"statistics": True, "splt": 5}])
def test_a_user_adds_a_column_without_a_fragmentation_warning(options: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """pandas warns "highly fragmented" when a column is added to a frame of over 100 blocks:
    statistics' frame (116 columns) is joined into a block per dtype first, with the same values
    and dtypes as the frame of one block a column."""
    path = DATA / "nfstream_google_ssl.pcap"
    frame = aioflow.read_frame(path, **options)
    monkeypatch.setattr(aioflow._read, "_PANDAS_FRAGMENTED", 10**6)
    pd.testing.assert_frame_equal(frame, aioflow.read_frame(path, **options))
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        frame["label"] = "benign"
    assert frame._mgr.nblocks <= 100  # the warning's own condition, whatever pandas' options say
