"""Meters loaded from shared libraries: the example meter (examples/size_histogram_meter.c) built
with the system compiler against aioflow.meter_include_dir(), its histograms checked against the
IP lengths dpkt decodes; ABI and loading errors."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from support.conversations import Key, ip_packets

import aioflow

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CC = shutil.which("cc")
UPPER = (64, 128, 256, 512, 1024, 1280, 1500)
BINS = ("lt64", "lt128", "lt256", "lt512", "lt1024", "lt1280", "lt1500", "ge1500")
NO_TIMEOUTS = {"idle_timeout": 1e6, "active_timeout": 1e6, "fin_timeout": 1e6}

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to build a meter library")


def build(tmp: Path, source: Path | str, name: str) -> Path:
    """Compiles a meter library with the system compiler, as a user would."""
    src = source if isinstance(source, Path) else tmp / f"{name}.c"
    if isinstance(source, str):
        src.write_text(source)
    out = tmp / f"lib{name}.so"
    subprocess.run([str(CC), "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    f"-I{aioflow.meter_include_dir()}", "-o", str(out), str(src)], check=True)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def histogram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("meter"), ROOT / "examples" / "size_histogram_meter.c", "size_histogram")


def _bins(lengths: list[int]) -> tuple[int, ...]:
    counts = [0] * len(BINS)
    for n in lengths:
        counts[sum(n >= u for u in UPPER)] += 1
    return tuple(counts)


@pytest.mark.parametrize("name", ["ndpi_ocs.pcap", "ndpi_smtp-starttls.pcap", "tcpflow_test4.pcap"])
def test_histogram_matches_dpkt(histogram: Path, name: str) -> None:
    path = DATA / name
    flows = [f for f in aioflow.read(path, meters=[str(histogram)], **NO_TIMEOUTS) if f.protocol in (6, 17)]
    got: Counter[tuple[Key, tuple[int, ...]]] = Counter()
    for f in flows:
        fields = f.meter("size_histogram")
        key = (f.protocol, frozenset({(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)}))
        got[(key, tuple(fields[b] for b in BINS))] += 1
    expected = Counter((k, _bins(v)) for k, v in ip_packets(path).items())
    assert got == expected
    assert sum(sum(bins) for _, bins in got) == sum(len(v) for v in ip_packets(path).values())


def test_histogram_columns_with_builtin_meters(histogram: Path) -> None:
    path = DATA / "ndpi_ocs.pcap"
    frame = aioflow.read_frame(path, meters=["low_ttl", str(histogram)], max_packets=7)
    hist = frame[[f"size_histogram_{b}" for b in BINS]].sum(axis=1)
    assert (hist == frame["packets"]).all()  # every record's own packets, split records too
    assert "low_ttl_src2dst_packets" in frame.columns and (frame["end_reason"] == "custom").any()
    table = aioflow.read_arrow(path, meters=[str(histogram)])
    assert table.column("size_histogram_lt64").to_pylist() == aioflow.read_frame(
        path, meters=[str(histogram)])["size_histogram_lt64"].tolist()


DESCRIPTOR = """
#include "aioflow_meter.h"
static void on_packet(void *state, const aioflow_packet *packet) { (void)state; (void)packet; }
static const aioflow_meter meter = {.abi_version = %s, .name = "%s", .on_packet = on_packet};
const aioflow_meter *aioflow_meter_entry(void) { return &meter; }
"""


@pytest.mark.parametrize(("abi", "name", "message"), [
    ("AIOFLOW_METER_ABI_VERSION + 1", "future", r"built for ABI 2, this aioflow has ABI 1 .*meter_include_dir"),
    ("AIOFLOW_METER_ABI_VERSION", "low_ttl", "a meter named low_ttl is already there"),
])  # fmt: skip
def test_refused_libraries(tmp_path: Path, abi: str, name: str, message: str) -> None:
    lib = build(tmp_path, DESCRIPTOR % (abi, name), name)
    with pytest.raises(aioflow.ConfigError, match=message):
        list(aioflow.read(DATA / "ndpi_ocs.pcap", meters=[str(lib)]))


def test_missing_library_and_missing_entry(tmp_path: Path) -> None:
    with pytest.raises(aioflow.ConfigError, match="cannot load the meter library"):
        list(aioflow.read(DATA / "ndpi_ocs.pcap", meters=[str(tmp_path / "libnone.so")]))
    lib = build(tmp_path, "int unrelated(void) { return 1; }\n", "empty")
    with pytest.raises(aioflow.ConfigError, match="exports no aioflow_meter_entry"):
        list(aioflow.read(DATA / "ndpi_ocs.pcap", meters=[str(lib)]))


def test_header_ships_with_the_package() -> None:
    header = Path(aioflow.meter_include_dir()) / "aioflow_meter.h"
    assert "AIOFLOW_METER_ABI_VERSION" in header.read_text()


def test_no_flows_still_gives_the_loaded_meters_columns(histogram: Path, tmp_path: Path) -> None:
    """A capture without flows: the frame and table have the library's columns, empty, in the
    order a capture with flows gives them, as built-in meters' do."""
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    options = {"meters": ["low_ttl", str(histogram)], "statistics": True, "splt": 3}
    frame = aioflow.read_frame(empty, **options)
    assert len(frame) == 0
    assert list(frame.columns) == list(aioflow.read_frame(DATA / "ndpi_ocs.pcap", **options).columns)
    assert {f"size_histogram_{b}" for b in BINS} <= set(frame.columns)
    assert all(frame[f"size_histogram_{b}"].dtype == "int64" for b in BINS)
    assert aioflow.read_arrow(empty, **options).column_names == list(frame.columns)
