"""`aioflow flows` with the feature options (README, "Command line"): --statistics, --splt N,
--accounting-mode, --decode-tunnels, --mac and --plugin MODULE:CLASS. Every column csv and json
write is checked against read_frame with the same options; the table's chosen few columns too;
the flows --decode-tunnels gives against tshark's inner conversations."""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.cli_plugins import Shape
from support.corpus import DATA
from support.tshark import TShark
from support.tunnels import Convs, tshark_inner

import aioflow
from aioflow import cli as _cli
from aioflow.cli import _flows

# 25 flows: IPv4 and IPv6, TCP, UDP, ICMP, one in an MPLS pseudowire
MIXED = DATA / "tcpreplay_test.pcap"
TUNNELS = (DATA / "zeek_tunnels_vxlan-encapsulated-http.pcap",
           DATA / "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap", MIXED)  # fmt: skip
FEATURES = ("--statistics", "--splt", "5", "--accounting-mode", "1", "--decode-tunnels", "--mac", "--defragment",
            "--plugin", "support.cli_plugins:Shape")  # fmt: skip
OPTIONS: dict[str, Any] = {"statistics": True, "splt": 5, "accounting_mode": 1, "decode_tunnels": True,
                           "meters": ("mac",), "defragment": True}  # fmt: skip
Capture = pytest.CaptureFixture[str]


def run_cli(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = _cli.main(["flows", "--no-progress", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return aioflow.read_frame(MIXED, plugins=[Shape()], **OPTIONS).set_index("id", drop=False)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The columns the options add: every meter's (not the record's own) and the plugin's."""
    base = aioflow.read_frame(MIXED).columns
    columns = [c for c in frame.columns if c not in base]
    assert len(columns) > 70 and {"splt_ps", "tunnel_type", "src_mac", "udps.label"} <= set(columns)
    return columns


def same(cell: Any, want: Any) -> bool:
    """A JSON value (or a CSV cell, parsed) equals read_frame's."""
    if isinstance(want, np.ndarray):
        return bool(cell == want.tolist())
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return cell is None or cell == ""
    if isinstance(want, float | np.floating):
        return float(cell) == pytest.approx(float(want), rel=1e-12)
    return bool(cell == want)


def csv_cell(text: str, want: Any) -> Any:
    """A CSV cell as the type of read_frame's value."""
    if isinstance(want, np.ndarray):
        return json.loads(text)
    if isinstance(want, bool | np.bool_):
        return {"True": True, "False": False}[text]
    if isinstance(want, np.integer | int) and not isinstance(want, bool):
        return int(text)
    return text


def test_csv_columns_match_read_frame(capsys: Capture, frame: pd.DataFrame) -> None:
    code, out, err = run_cli(capsys, str(MIXED), "--format", "csv", *FEATURES)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    columns = feature_columns(frame)
    assert len(rows) == len(frame) == 25
    assert set(columns) <= set(rows[0])
    for row in rows:
        want = frame.loc[int(row["id"])]
        bad = [c for c in columns if not same(csv_cell(row[c], want[c]), want[c])]
        assert not bad, (row["id"], {c: (row[c], want[c]) for c in bad})
    # the plugin's None (tcp_syns of a UDP flow) is an empty cell
    assert any(row["udps.tcp_syns"] == "" for row in rows) and any(row["udps.tcp_syns"] for row in rows)


def test_json_columns_match_read_frame(capsys: Capture, frame: pd.DataFrame) -> None:
    code, out, err = run_cli(capsys, str(MIXED), "--format", "json", *FEATURES)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    columns = feature_columns(frame)
    assert len(records) == len(frame)
    for record in records:
        want = frame.loc[record["id"]]
        bad = [c for c in columns if not same(record[c], want[c])]
        assert not bad, (record["id"], {c: (record[c], want[c]) for c in bad})
    assert list(records[0])[-4:] == ["udps.bytes_per_packet", "udps.both_ways", "udps.label", "udps.tcp_syns"]


def table_rows(out: str) -> list[dict[str, str]]:
    """The table's rows as {title: cell}, cut at the widths the writer gives its columns (IPv4
    rows only: a long IPv6 endpoint pushes its row's cells past their columns)."""
    header, *lines = out.splitlines()
    widths = {title: width for title, width, _ in _flows._TableWriter.COLUMNS}
    widths |= {title: width for columns, _ in _flows._FEATURE_COLUMNS.values() for title, width, _ in columns}
    titles = header.split()  # a title with a space in it is joined back below
    for joined in ("START (UTC)", "SERVER NAME", "SRC MAC", "DST MAC", "MIN PS", "MEAN PS", "MAX PS",
                   "STDDEV PS", "MEAN PIAT"):  # fmt: skip
        titles = " ".join(titles).replace(joined, joined.replace(" ", "\0")).split()
    titles = [t.replace("\0", " ") for t in titles]
    spans, at = [], 0
    for t in titles:
        width = widths.get(t, max(len(t), 10)) or 10**6  # udps.<name>: its name or 10; SPLT: the rest
        spans.append((at, at + width))
        at += width + 2
    assert [header[a:b].strip() for a, b in spans] == titles
    rows = [line for line in lines if "[" not in line]
    return [{t: line[a:b].strip() for t, (a, b) in zip(titles, spans, strict=True)} for line in rows]


def test_table_shows_chosen_columns(capsys: Capture, frame: pd.DataFrame) -> None:
    code, out, err = run_cli(capsys, str(MIXED), *FEATURES)
    assert code == 0, err
    header = out.splitlines()[0].split()
    for title in ("TUNNEL", "MAC", "MEAN", "STDDEV", "PIAT", "udps.bytes_per_packet", "udps.label", "SPLT"):
        assert title in header
    rows = table_rows(out)
    v4 = frame[frame["ip_version"] == 4]
    assert len(rows) == len(v4) > 20
    by_endpoints = {(f"{r['src_ip']}:{r['src_port']}", f"{r['dst_ip']}:{r['dst_port']}",
                     r["first_seen_ns"] // 10**6 % 1000): r for r in v4.to_dict("records")}  # fmt: skip
    for row in rows:
        want = by_endpoints[(row["SOURCE"], row["DESTINATION"], int(row["START (UTC)"][-3:]))]
        assert row["TUNNEL"] == want["tunnel_type"]
        assert (row["SRC MAC"], row["DST MAC"]) == (want["src_mac"], want["dst_mac"])
        assert (int(row["MIN PS"]), int(row["MAX PS"])) == (want["bidirectional_min_ps"], want["bidirectional_max_ps"])
        assert float(row["MEAN PS"]) == pytest.approx(want["bidirectional_mean_ps"], abs=0.05)
        assert float(row["STDDEV PS"]) == pytest.approx(want["bidirectional_stddev_ps"], abs=0.05)
        assert float(row["MEAN PIAT"].removesuffix("ms")) == pytest.approx(want["bidirectional_mean_piat_ms"], abs=0.05)
        assert float(row["udps.bytes_per_packet"]) == pytest.approx(want["udps.bytes_per_packet"], abs=5e-4)
        assert (row["udps.label"], row["udps.both_ways"]) == (want["udps.label"], str(want["udps.both_ways"]))
        sizes = [int(s) for s in row["SPLT"].split()]
        directions, ps = want["splt_direction"], want["splt_ps"]
        assert sizes == [-p if d else p for d, p in zip(directions, ps, strict=True) if d >= 0]
        assert len(sizes) == min(5, want["packets"])


@pytest.mark.parametrize("path", TUNNELS, ids=lambda p: p.name)
def test_decode_tunnels_gives_tsharks_inner_conversations(capsys: Capture, tshark: TShark, path: Path) -> None:
    code, out, err = run_cli(capsys, str(path), "--format", "csv", "--decode-tunnels", "--defragment")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    got: Convs = Counter()
    for r in rows:
        if r["protocol"] in ("6", "17"):
            ends = frozenset({(r["src_ip"], int(r["src_port"])), (r["dst_ip"], int(r["dst_port"]))})
            got[("tcp" if r["protocol"] == "6" else "udp", ends)] += int(r["packets"])
    assert got == tshark_inner(tshark, path)
    types = {r["tunnel_type"] for r in rows}
    assert types - {""} and types <= {"", "vxlan", "gtp", "mpls"}
    # without the option, the same packets are keyed on the outer headers
    code, out, _ = run_cli(capsys, str(path), "--format", "csv", "--defragment")
    assert "tunnel_type" not in out.splitlines()[0]


def test_plugin_from_a_file_and_from_a_module(capsys: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myplugins.py").write_text(
        "import aioflow\n\nclass Ports(aioflow.FlowPlugin):\n"
        "    def on_init(self, flow):\n        flow.udps.port_sum = flow.src_port + flow.dst_port\n"
    )
    want = aioflow.read_frame(MIXED)
    for spec in (f"{tmp_path / 'myplugins.py'}:Ports", "myplugins:Ports"):
        monkeypatch.chdir(tmp_path)  # the module form finds a module in the current directory
        code, out, err = run_cli(capsys, str(MIXED), "--format", "csv", "--plugin", spec)
        assert code == 0, err
        rows = list(csv.DictReader(io.StringIO(out)))
        assert [int(r["udps.port_sum"]) for r in rows] == (want["src_port"] + want["dst_port"]).tolist()


@pytest.mark.parametrize(("argv", "message"), [
    (("--format", "zeek", "--statistics"), "--statistics: --format zeek has fixed columns"),
    (("--format", "zeek-json", "--plugin", "support.cli_plugins:Shape"), "--plugin: --format zeek-json"),
    (("--format", "flow-tools", "-o", "x.ft", "--mac"), "--mac: --format flow-tools"),
    (("--plugin", "Shape"), "give MODULE:CLASS"),
    (("--plugin", "no_such_module_here:Shape"), "no module no_such_module_here"),
    (("--plugin", "/no/such/file.py:Shape"), "no file /no/such/file.py"),
    (("--plugin", "support.cli_plugins:Nothing"), "has no aioflow.FlowPlugin subclass Nothing"),
    (("--plugin", "support.cli_plugins:aioflow"), "has no aioflow.FlowPlugin subclass aioflow"),
    (("--plugin", "support.cli_plugins:WantsPackets"), "its on_update needs the packets' headers: add --headers N"),
    (("--splt", "33"), "splt"),
])  # fmt: skip
def test_refused_options(capsys: Capture, argv: tuple[str, ...], message: str) -> None:
    code, out, err = run_cli(capsys, str(MIXED), *argv)
    assert code == 2 and out == ""
    assert message in err and err.startswith("aioflow: error: ") and err.count("\n") == 1


def test_on_update_plugin_with_headers(capsys: Capture) -> None:
    code, out, err = run_cli(capsys, str(MIXED), "--format", "csv", "--headers", "3",
                             "--plugin", "support.cli_plugins:WantsPackets")  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["udps.seen"]) for r in rows] == [min(3, int(r["packets"])) for r in rows]


@pytest.mark.parametrize("form", ["csv", "table"])
def test_field_set_after_the_header_is_reported(capsys: Capture, form: str) -> None:
    code, out, err = run_cli(capsys, str(MIXED), "--format", form, "--plugin", "support.cli_plugins:LateField")
    assert code == 0
    assert "udps.packets" in out.splitlines()[0] and "udps.late" not in out
    assert err.count("udps.late first set by flow 3") == 1 and "--format json has every field" in err
    assert len(out.splitlines()) == 1 + len(aioflow.read_frame(MIXED))


@pytest.mark.parametrize("form", ["csv", "table"])
def test_no_flows_still_gives_the_header(capsys: Capture, tmp_path: Path, form: str) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    code, out, _ = run_cli(capsys, str(empty), "--format", form, "--statistics", "--splt", "3", "--mac",
                           "--plugin", "support.cli_plugins:Shape")  # fmt: skip
    assert code == 0 and len(out.splitlines()) == 1
    head = out.splitlines()[0]
    assert ("bidirectional_stddev_ps" in head and "src_mac" in head) if form == "csv" else "STDDEV PS" in head
