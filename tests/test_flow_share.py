"""flow_share=(index, count) (FlowParser; aioflow.dask's shares_per_capture): each share of a file
counts the flows its hash picks, as worker `index` of `workers=count` would, reading the file
whole. The shares of a file, read one after another in separate parsers, give together the records
of one reader (every meter that supports workers on; test_workers' comparison and its two
documented exceptions), with ids unique among them; errors say what to change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.corpus import ABSENT, params
from test_workers import ALL_METERS, BUNDLED, DISSECT_COLUMNS, IDLE_TIMEOUT, NDPI_CACHES, _corpus, _run
from test_workers import _time_goes_back as time_goes_back

import aioflow
from aioflow import ConfigError
from aioflow._frame import batches_to_columns
from aioflow._read import read_batches

DATA = Path(__file__).parent / "data"
SHARES = 3


@pytest.mark.parametrize("read_ahead", [False, True], ids=["one thread", "reading ahead"])
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_the_shares_together_give_the_records_of_one_reader(path: Path, read_ahead: bool) -> None:
    _assert_shares_are_one_reader(path, read_ahead=read_ahead)


@pytest.mark.parametrize("path", params(_corpus()))
def test_corpus_shares_together_give_the_records_of_one_reader(path: Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    try:
        _assert_shares_are_one_reader(path)
    except aioflow.CaptureFormatError:
        pytest.skip("not a capture aioflow opens (the corpus keeps damaged headers on purpose)")


def _assert_shares_are_one_reader(path: Path, **more: Any) -> None:
    leave_out = DISSECT_COLUMNS if path.name in NDPI_CACHES else ()
    options = {"hash_seed": 7, **ALL_METERS, **more}
    one_rows, one = _run(path, 1, leave_out, **options)
    shares = [_run(path, 1, leave_out, flow_share=(k, SHARES), **options) for k in range(SHARES)]
    # what every share sets aside is the same: the file's non-flow packets, each share decoding all
    aside = [sum(stats["aside"].values()) for _, stats in shares]
    assert aside == [sum(one["aside"].values())] * SHARES
    in_flows = [stats["packets_in_flows"] for _, stats in shares]
    assert sum(in_flows) == one["packets_in_flows"]
    if time_goes_back(path, IDLE_TIMEOUT):  # test_workers' first exception: records may be cut otherwise
        return
    rows = sorted((r for share_rows, _ in shares for r in share_rows), key=repr)
    assert len(rows) == len(one_rows)
    assert rows == one_rows, f"{path.name}: e.g. {[r for r in one_rows if r not in set(rows)][:2]}"
    assert sum(stats["flows_created"] for _, stats in shares) == one["flows_created"]


def test_ids_are_unique_among_the_shares_and_the_flows_are_spread() -> None:
    path = DATA / "tcpreplay_test.pcap"
    ids: list[int] = []
    for k in range(SHARES):
        layouts: list[Any] = []
        columns = batches_to_columns(read_batches(path, layouts=layouts, hash_seed=1, flow_share=(k, SHARES)), layouts)
        assert len(columns["id"]) > 0, f"share {k} of {SHARES} counted no flow"
        ids += [int(i) for i in columns["id"]]
    assert len(set(ids)) == len(ids) == len(list(aioflow.read(path)))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"flow_share": (0, 2)}, "same hash_seed"),
        ({"flow_share": (2, 2), "hash_seed": 1}, "0 <= index < count"),
        ({"flow_share": (0, 99), "hash_seed": 1}, "count <= 16"),
        ({"flow_share": 3, "hash_seed": 1}, r"expected \(index, count\)"),
        ({"flow_share": (0, 2), "hash_seed": 1, "workers": 2}, "drop workers=2"),
        ({"flow_share": (0, 2), "hash_seed": 1, "meters": ("timeline",)}, "timeline"),
    ],
)
def test_refused_shares_say_why(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        list(aioflow.read(DATA / "tcpreplay_test.pcap", **options))


def test_a_live_capture_is_refused() -> None:
    with pytest.raises(ConfigError, match="PACKET_FANOUT"):
        aioflow.FlowParser("lo", live=True, flow_share=(0, 2), hash_seed=1)
