"""Every output of a capture's flows has the same columns and trustworthy integer types: the CSV and
JSON of `aioflow flows`, read_frame() and the Parquet file of `aioflow export --write` (issue 13, 4).
Counters are signed 64-bit in the frame and in Parquet, so a difference of two columns is right."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aioflow
from aioflow._flow import SCALAR_FIELDS

DATA = Path(__file__).resolve().parent / "data"
# TCP, UDP and ICMPv6 flows, IPv4 and IPv6: some send more one way, some the other
CAPTURE = DATA / "zeek_ipv6-http-atomic-frag.pcap"


def cli(*args: str | Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "aioflow", *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_output_has_the_same_columns_and_signed_counters(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    csv_rows = list(csv.DictReader(io.StringIO(cli("flows", CAPTURE, "--format", "csv", "--no-progress"))))
    json_rows = [json.loads(line) for line in cli("flows", CAPTURE, "--format", "json", "--no-progress").splitlines()]
    frame = aioflow.read_frame(CAPTURE)
    cli("export", CAPTURE, "--write", tmp_path / "flows.parquet")
    table = pq.read_table(tmp_path / "flows.parquet")

    assert len(csv_rows) == len(json_rows) == len(frame) == table.num_rows > 1
    columns = list(SCALAR_FIELDS)
    assert "bidirectional_id" in columns
    assert list(csv_rows[0]) == columns
    assert all(list(row) == columns for row in json_rows)
    assert list(frame.columns) == columns
    assert table.column_names == columns

    # integers are signed 64-bit everywhere they are typed (frame, Parquet); none unsigned
    ints = [c for c in columns if frame[c].dtype.kind in "iu"]
    assert "src2dst_bytes" in ints and "dst2src_packets" in ints and "duration_ns" in ints
    assert {str(frame[c].dtype) for c in ints} == {"int64"}
    assert {str(table.schema.field(c).type) for c in ints} == {"int64"}
    parquet = table.to_pandas()
    assert {str(parquet[c].dtype) for c in ints} == {"int64"}

    # the values agree with the per-flow view, bidirectional_id included
    by_id = {row["id"]: row for row in json_rows}
    for row in frame.to_dict("records"):
        want = by_id[row["id"]]
        assert row["bidirectional_id"] == want["bidirectional_id"]
        assert (row["src2dst_bytes"], row["dst2src_bytes"]) == (want["src2dst_bytes"], want["dst2src_bytes"])
    assert sorted(parquet["bidirectional_id"]) == sorted(frame["bidirectional_id"])

    # a difference of counters is a plain signed number: negative where the reply was bigger
    for df in (frame, parquet):
        diff = df.src2dst_bytes - df.dst2src_bytes
        assert diff.dtype == np.int64
        assert (diff < 0).any() and (diff > 0).any()
        assert diff.abs().max() < 2**32
        want_diff = sorted(int(r["src2dst_bytes"]) - int(r["dst2src_bytes"]) for r in csv_rows)
        assert sorted(diff.tolist()) == want_diff


def test_an_empty_frame_has_the_columns_and_types() -> None:
    frame = aioflow.read_frame(CAPTURE, filter="port 1", meters=("low_ttl",))  # no packet passes
    assert len(frame) == 0
    assert list(frame.columns)[: len(SCALAR_FIELDS)] == list(SCALAR_FIELDS)
    assert str(frame["src2dst_bytes"].dtype) == "int64"
    assert str(frame["low_ttl_src2dst_packets"].dtype) == "int64"
