"""`aioflow apps` (traffic by application and category) against ndpiReader's "Detected protocols"
(Debian's libndpi-bin, the same nDPI 4.2): packets, bytes and flows per protocol, equal, or the
difference has one of the causes named in _CAUSES, each checked on the capture (tshark counts the
packets ndpiReader sets aside)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from support.ndpi_ref import NDPI_READER, ndpi_reader_protocols
from support.reference import TSHARK

import aioflow
from aioflow._engine import dissect_unavailable
from aioflow.cli._main import main

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.skipif(bool(dissect_unavailable()), reason=dissect_unavailable() or "")
needs_reader = pytest.mark.skipif(NDPI_READER is None, reason="ndpiReader is not installed (apt install libndpi-bin)")
# ndpiReader keeps one flow per 5-tuple for a whole file: aioflow's timeouts made as long
ONE_FLOW_PER_TUPLE = ("--idle-timeout", "1e9", "--active-timeout", "1e9", "--fin-timeout", "1e9")
Totals = dict[str, tuple[int, int, int]]


def apps(*args: str) -> tuple[int, str, str]:
    """`aioflow apps ARGS` in this process (the comparisons run it on 170 captures): exit code,
    standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["apps", "--no-progress", *args])
    return code, out.getvalue(), err.getvalue()


def apps_rows(capture: Path, *options: str) -> list[dict[str, Any]]:
    code, out, err = apps(str(capture), "--format", "json", *options)
    assert code in (0, 1), err  # 1: a damaged capture, its totals up to the damage
    return [json.loads(line) for line in out.splitlines()]


def by_protocol(rows: list[dict[str, Any]]) -> Totals:
    """The rows as ndpiReader sums them: by nDPI's application protocol, else its master (the last
    part of "TLS.YouTube"); packets, captured bytes (whole frames, as ndpiReader's), flows."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        s = sums[row["application_name"].rpartition(".")[2]]
        s[0] += row["src2dst_packets"] + row["dst2src_packets"]
        s[1] += row["src2dst_captured_bytes"] + row["dst2src_captured_bytes"]
        s[2] += row["flows"]
    return {name: (p, b, f) for name, (p, b, f) in sums.items()}


def _left_out(report: str) -> int:
    """The packets ndpiReader says it left out of its flows: "IP packets: N of M packets total"
    (non-IP frames, IP fragments after the first, IPv4 packets shorter than their total length)."""
    m = re.search(r"IP packets:\s+(\d+)\s+of (\d+) packets total", report)
    assert m, "ndpiReader's report has no packet count"
    return int(m[2]) - int(m[1])


def _cause(capture: Path, theirs: Totals, ours: Totals, report: str) -> str | None:
    """Why ndpiReader's totals differ from aioflow's on this capture, or None when no stated cause
    accounts for the difference."""
    if not theirs:
        # a link type (or encapsulation) it skips: "Unsupported datalink", or no IP packet found
        return "ndpiReader read no IP packet" if sum(p for p, _, _ in ours.values()) else None
    differ = {name for name in theirs.keys() | ours.keys() if theirs.get(name) != ours.get(name)}
    if all(n in theirs and n in ours and theirs[n][:2] == ours[n][:2] and theirs[n][2] < ours[n][2] for n in differ):
        # ICMP: aioflow's key has the echo id (or type and code); TCP: a SYN after the end of a
        # connection starts a new flow in aioflow (whatever the timeouts), ndpiReader keeps one
        return "same packets and bytes, aioflow split a 5-tuple ndpiReader kept as one flow (ICMP ids, TCP reuse)"
    extra = sum(p for p, _, _ in ours.values()) - sum(p for p, _, _ in theirs.values())
    if 0 < extra <= _left_out(report):
        return "packets ndpiReader leaves out (its report's count: fragments, truncated IPv4, non-IP)"
    if extra:
        return None
    moved = sum(abs(ours.get(n, (0, 0, 0))[0] - theirs.get(n, (0, 0, 0))[0]) for n in differ) // 2
    unknown = ours.get("Unknown", (0, 0, 0))[0] - theirs.get("Unknown", (0, 0, 0))[0]
    if TSHARK is not None:
        run = [
            TSHARK,
            "-n",
            "-r",
            str(capture),
            "-Y",
            "ip.proto == 4 or ip.proto == 41",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]
        if 0 < moved <= len(subprocess.run(run, capture_output=True, text=True, check=False).stdout.split()):
            # ndpiReader decodes 6in4 and classifies the inner flow, and leaves 4in4 Unknown;
            # aioflow classifies the outer flow (IP_in_IP, or by what nDPI sees in it)
            return "IP-in-IP (protocols 4, 41): the outer flow (aioflow) or the inner one (ndpiReader)"
    if moved == unknown and sum(f for _, _, f in ours.values()) > sum(f for _, _, f in theirs.values()):
        # e.g. a SYN reusing a 5-tuple after a RST: ndpiReader keeps one flow, aioflow starts a
        # second one, dissected on its own (too few packets: Unknown)
        return "aioflow split a 5-tuple ndpiReader kept as one flow; the part alone is Unknown"
    return None


def _compare(captures: list[Path]) -> tuple[int, dict[str, list[str]], list[str]]:
    """Captures whose totals are equal; the others by cause; the unexplained ones."""
    equal = 0
    explained: dict[str, list[str]] = defaultdict(list)
    unexplained: list[str] = []
    for capture in captures:
        theirs, report = ndpi_reader_protocols(capture)
        ours = by_protocol(apps_rows(capture, *ONE_FLOW_PER_TUPLE))
        if theirs == ours:
            equal += 1
            continue
        cause = _cause(capture, theirs, ours, report)
        if cause is None:
            unexplained.append(f"{capture.name}: ndpiReader {theirs}, aioflow apps {ours}")
        else:
            explained[cause].append(capture.name)
    return equal, explained, unexplained


@needs_reader
def test_bundled_captures_agree_with_ndpi_reader() -> None:
    captures = sorted(p for p in DATA.glob("*.pcap*") if p.is_file())
    equal, explained, unexplained = _compare(captures)
    assert not unexplained, "\n".join(unexplained)
    assert equal * 100 >= 60 * len(captures), dict(explained)  # most captures: every total equal


@needs_reader
def test_corpus_agrees_with_ndpi_reader(corpus: Path) -> None:
    captures = sorted(p for p in corpus.glob("*.pcap*") if p.is_file())
    equal, explained, unexplained = _compare(captures)
    assert not unexplained, "\n".join(unexplained)
    assert equal * 100 >= 60 * len(captures), {cause: len(names) for cause, names in explained.items()}


def test_totals_are_read_frames_grouped() -> None:
    """The batch-wise numpy grouping equals pandas' groupby of read_frame(dissect=True) (rows,
    order: most bytes first), and the table prints those rows."""
    capture = DATA / "ndpi_ocs.pcap"
    frame = aioflow.read_frame(capture, dissect=True)
    sums = ["src2dst_packets", "dst2src_packets", "src2dst_bytes", "dst2src_bytes", "src2dst_captured_bytes",
            "dst2src_captured_bytes"]  # fmt: skip
    grouped = frame.groupby(["application_name", "application_category_name"])
    expected = grouped[sums].sum().assign(flows=grouped.size()).reset_index()
    rows = apps_rows(capture)
    assert len(rows) == len(expected) > 5
    for row in rows:
        match = expected[(expected.application_name == row["application_name"])
                         & (expected.application_category_name == row["application_category_name"])]  # fmt: skip
        assert {k: int(match.iloc[0][k]) for k in [*sums, "flows"]} == {k: row[k] for k in [*sums, "flows"]}
    totals = [r["src2dst_bytes"] + r["dst2src_bytes"] for r in rows]
    assert totals == sorted(totals, reverse=True)
    code, table, err = apps(str(capture))
    assert code == 0 and "flows dissected" in err
    lines = table.splitlines()
    assert lines[0].split() == ["APPLICATION", "CATEGORY", "FLOWS", "PKTS>", "BYTES>", "<PKTS", "<BYTES", "BYTES%"]
    assert [line.split()[0] for line in lines[1:]] == [r["application_name"] for r in rows]


def test_csv_has_the_json_fields() -> None:
    import csv

    capture = DATA / "ndpi_smtp-starttls.pcap"
    code, out, _ = apps(str(capture), "--format", "csv")
    assert code == 0
    assert [{k: int(v) if v.isdigit() else v for k, v in r.items()} for r in csv.DictReader(io.StringIO(out))] == \
        apps_rows(capture)  # fmt: skip


def test_without_ndpi_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioflow import _engine

    monkeypatch.setattr(_engine, "dissect_unavailable", lambda: "built without nDPI: install libndpi-dev")
    code, out, err = apps(str(DATA / "ndpi_ocs.pcap"))
    assert code == 2 and out == "" and "libndpi-dev" in err


def test_app_breakdown_example_on_the_bundled_capture() -> None:
    """examples/app_breakdown.py on its bundled capture: per minute (UTC, the minute each flow
    record ended) and application, the IP bytes pandas sums from read_frame with the example's
    options; every minute of the capture is there."""
    import datetime as dt

    example = Path(__file__).resolve().parents[1] / "examples" / "app_breakdown.py"
    run = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["MINUTE", "(UTC)", "APPLICATION", "BYTES"]
    printed = {(f"{line[:16]}", line[18:44].strip()): int(line[44:]) for line in lines[1:]}
    frame = aioflow.read_frame(example.parent / "data" / "ndpi_telegram_videocall.pcapng", dissect=True,
                               active_timeout=60.0)  # fmt: skip
    minute = (frame["last_seen_ns"] // 60_000_000_000).map(
        lambda m: dt.datetime.fromtimestamp(m * 60, dt.UTC).strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    expected = frame.groupby([minute, frame["application_name"]])["bytes"].sum()
    assert printed == {key: int(v) for key, v in expected.items()}
    assert len({m for m, _ in printed}) >= 2, "one minute only: the per-minute split was not exercised"
