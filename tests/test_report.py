"""`aioflow report`: its numbers against tshark's own tables, and the page in a real browser.

tshark is the reference for every number the report shows: top talkers against
``-z endpoints,ip``/``endpoints,ipv6`` (packets and bytes, in all and each way), conversations
against ``-z conv,tcp``/``conv,udp`` (frames each way; bytes, which that table rounds to kB, against
tshark's own per-frame dissection summed per conversation), traffic over time against
``-z io,stat`` buckets of the report's interval. Where tshark and aioflow do not count alike, the
capture is left out by a rule stated in `_not_comparable`, not by name.
"""

from __future__ import annotations

import functools
import html.parser
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from support import reference
from support.corpus import ABSENT, CORPUS, name_of
from support.tools import TOOL_ENV

import aioflow

plotly = pytest.importorskip("plotly", reason="the report extra (plotly) is not installed")

from aioflow._report import _aggregate as agg  # noqa: E402  (after the plotly check)
from aioflow._report._gather import ReportData, gather  # noqa: E402

DATA = Path(__file__).parent / "data"
BUNDLED = Path(__file__).parent.parent / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
LOCAL = [BUNDLED, *sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))]
# A sample of the corpus (every 4th capture under 1 MB that tshark and aioflow define alike):
# enough link types and protocols, in a few minutes.
SAMPLE = [
    p for p in (reference.iter_corpus(CORPUS) if CORPUS.is_dir() else [])
    if name_of(p) not in reference.EXCLUDED and p.stat().st_size < 2**20
][::4]  # fmt: skip
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (make test installs it)")


def _tshark(path: Path, *args: str) -> str:
    return subprocess.run(["tshark", "-n", "-r", str(path), *args], capture_output=True, text=True, check=True,
                          env=TOOL_ENV).stdout  # fmt: skip


@functools.cache
def _read(path: Path) -> ReportData:
    return anyio.run(gather, [path], {})


@functools.cache
def _frames(path: Path) -> list[list[str]]:
    """tshark's per-frame dissection: time, lengths, IP addresses, ports (the innermost ones)."""
    fields = ["frame.time_epoch", "frame.len", "frame.cap_len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
              "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.proto", "ipv6.nxt", "frame.protocols",
              "ip.flags.mf", "ip.frag_offset"]  # fmt: skip
    out = _tshark(path, "-T", "fields", "-E", "occurrence=l", *[a for f in fields for a in ("-e", f)])
    return [line.split("\t") for line in out.splitlines()]


def _not_comparable(data: ReportData, frames: list[list[str]]) -> str | None:
    """Why tshark's tables and this capture's flows do not count the same packets, or None."""
    info = data.sources[0].info
    ip_aside = {k: v for k, v in info.aside.items() if v and k != "non_ip"}
    if ip_aside:
        return f"aioflow set IP packets aside ({ip_aside}) that tshark's IP tables count"
    if info.read_errors:
        return "damaged capture: tshark and aioflow stop at different places"
    tunnelled = sum(1 for f in frames if _ip_layers(f[13]) > 1)
    if tunnelled:
        return f"{tunnelled} frames carry IP in IP: tshark's tables count the inner addresses"
    fragments = sum(1 for f in frames if f[14] == "1" or f[15] not in ("", "0") or "ipv6.fraghdr" in f[13])
    if fragments:
        return f"{fragments} IP fragments: tshark reassembles them and counts a datagram once"
    ip_frames = sum(1 for f in frames if f[3] or f[5])
    if ip_frames != info.packets_in_flows:
        return f"tshark sees {ip_frames} IP frames, aioflow {info.packets_in_flows} packets in flows"
    return None


def _ip_layers(protocols: str) -> int:
    """IP headers of a frame before any ICMP (whose errors quote one)."""
    layers = 0
    for name in protocols.split(":"):
        if name in ("icmp", "icmpv6"):
            break
        layers += name in ("ip", "ipv6")
    return layers


def _truncated(frames: list[list[str]]) -> bool:
    """Frames cut by a snapshot length: tshark's bytes are wire lengths, the report's captured ones."""
    return any(f[1] != f[2] for f in frames)


def _tshark_endpoints(path: Path) -> dict[str, tuple[int, ...]]:
    """{address: (packets, bytes, tx packets, tx bytes, rx packets, rx bytes)} of IPv4 and IPv6."""
    out = _tshark(path, "-q", "-z", "endpoints,ip", "-z", "endpoints,ipv6")
    table: dict[str, tuple[int, ...]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 7 and all(p.isdigit() for p in parts[1:]):
            table[str(__import__("ipaddress").ip_address(parts[0]))] = tuple(int(p) for p in parts[1:])
    return table


def _compare_or_skip(path: Path) -> tuple[ReportData, list[list[str]]]:
    data = _read(path)
    frames = _frames(path)
    why = _not_comparable(data, frames)
    if why:
        pytest.skip(f"{path.name}: {why}")
    return data, frames


def _check_endpoints(path: Path) -> None:
    data, frames = _compare_or_skip(path)
    table = agg.endpoints(data.columns, top=10**9)
    got = {row[0]: row[1:] for row in table.rows}
    want = _tshark_endpoints(path)
    # tshark saw IP frames, so its table has rows: an empty one is a parse that found none
    assert want or not any(f[3] or f[5] for f in frames)
    if _truncated(frames):  # packets only: tshark's bytes are on-the-wire lengths
        got = {k: v[0::2] for k, v in got.items()}
        want = {k: v[0::2] for k, v in want.items()}
    assert got == want


def _check_conversations(path: Path) -> None:
    data, frames = _compare_or_skip(path)
    table = agg.conversations(data.columns, top=10**9)
    got_frames: Counter[tuple[str, frozenset[str]]] = Counter()
    got_bytes: Counter[tuple[str, frozenset[str]]] = Counter()
    for row in table.rows:
        proto, a, b = row[0], row[1].replace("[", "").replace("]", ""), row[2].replace("[", "").replace("]", "")
        if proto in ("tcp", "udp"):
            key = (proto, frozenset({_endpoint(a), _endpoint(b)}))
            got_frames[key] += row[7]
            got_bytes[key] += row[8]
    want_frames = reference.parse_tshark_conversations(_tshark(path, *reference.TSHARK_CONVERSATION_ARGS[1:]))
    # frames with TCP/UDP ports (not quoted in an ICMP error) make rows: none parsed is an error
    assert want_frames or not any((f[7] or f[9]) and "icmp" not in f[13] for f in frames)
    assert dict(got_frames) == want_frames
    if _truncated(frames):
        return
    want_bytes: Counter[tuple[str, frozenset[str]]] = Counter()
    for f in frames:
        if "icmp" in f[13]:  # an ICMP error quotes a UDP/TCP header: not that conversation's frame
            continue
        src, dst = f[3] or f[5], f[4] or f[6]
        for proto, sport, dport in (("tcp", f[7], f[8]), ("udp", f[9], f[10])):
            if sport and dport:
                want_bytes[(proto, frozenset({f"{_address(src)}:{sport}", f"{_address(dst)}:{dport}"}))] += int(f[1])
    assert dict(got_bytes) == {k: v for k, v in want_bytes.items() if k in want_frames}


def _address(text: str) -> str:
    import ipaddress

    return str(ipaddress.ip_address(text))


def _endpoint(text: str) -> str:
    address, _, port = text.rpartition(":")
    return f"{_address(address)}:{int(port)}"


def _check_io_stat(path: Path) -> None:
    data, frames = _compare_or_skip(path)
    timeline = data.timeline
    if not frames:  # nothing to count: no timeline, and tshark prints no interval
        assert timeline is None
        return
    assert timeline is not None
    times = [float(f[0]) for f in frames]
    if times != sorted(times) or times[-1] == times[0]:
        pytest.skip(f"{path.name}: timestamps out of order or all equal: tshark's io,stat counts from the"
                    " first frame's time and prints no interval for a capture without duration")
    first_frame_ns = round(times[0] * 1e9)
    if abs(first_frame_ns - timeline.origin_ns) > 1000:
        pytest.skip(f"{path.name}: its first frame is not in a flow, and tshark's io,stat counts from it")
    seconds = timeline.interval_ns / 1e9
    out = _tshark(path, "-q", "-z", f"io,stat,{seconds:.9f},ip or ipv6")
    rows = [tuple(int(x) for x in re.findall(r"\|\s*(\d+)\s*", line.split("<>", 1)[1])[-2:])
            for line in out.splitlines() if "<>" in line]  # fmt: skip
    want = np.array(rows, dtype=np.int64).reshape(-1, 2)
    got = np.stack([timeline.packets.sum(1), timeline.bytes.sum(1)], axis=1)
    # tshark prints every interval to the capture's end; the timeline stops at its last packet
    extra = want[len(got):]
    assert not extra.any()
    want = want[: len(got)]
    if _truncated(frames):
        got, want = got[:, :1], want[:, :1]
    assert got.tolist() == want.tolist()


@needs_tshark
@pytest.mark.parametrize("path", LOCAL, ids=lambda p: p.name)
@pytest.mark.parametrize("check", [_check_endpoints, _check_conversations, _check_io_stat],
                         ids=["endpoints", "conversations", "io_stat"])  # fmt: skip
def test_numbers_match_tshark(path: Path, check: Any) -> None:
    check(path)


@needs_tshark
@pytest.mark.corpus
@pytest.mark.parametrize("rel", [name_of(p) for p in SAMPLE] or [None])
@pytest.mark.parametrize("check", [_check_endpoints, _check_conversations, _check_io_stat],
                         ids=["endpoints", "conversations", "io_stat"])  # fmt: skip
def test_numbers_match_tshark_on_corpus(rel: str | None, check: Any) -> None:
    if rel is None:
        pytest.skip(ABSENT)
    check(CORPUS / rel)


def _ns(epoch: str) -> int:
    """tshark's frame.time_epoch ('1234.000567000') as integer nanoseconds."""
    seconds, _, fraction = epoch.partition(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9])


@needs_tshark
def test_timeline_counts_packets_stamped_before_the_first(tmp_path: Path) -> None:
    """A capture whose first packet is stamped after the next ten: those are counted in bucket 0
    and in before_origin, as many as tshark's frame times say; none is lost."""
    data = (DATA / "nfstream_google_ssl.pcap").read_bytes()  # classic little-endian pcap, all IP, 7 s
    records, at = [], 24
    while at < len(data):
        end = at + 16 + int.from_bytes(data[at + 8 : at + 12], "little")
        records.append(data[at:end])
        at = end
    late_first = tmp_path / "late_first.pcap"
    late_first.write_bytes(data[:24] + records[10] + b"".join(records[:10] + records[11:]))
    ns = [_ns(f[0]) for f in _frames(late_first)]
    timeline = anyio.run(gather, [late_first], {}).timeline
    assert timeline is not None and timeline.origin_ns == ns[0]
    assert timeline.before_origin == sum(t < ns[0] for t in ns) > 0
    assert timeline.packets.sum() == len(ns)
    assert timeline.packets[0].sum() == sum(t < ns[0] + timeline.interval_ns for t in ns)


def test_comparable_captures_are_most_of_them() -> None:
    """The rules above leave out few bundled captures (fragments, tunnels): the checks compare most."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    compared = [p for p in LOCAL if _not_comparable(_read(p), _frames(p)) is None]
    assert len(compared) >= 0.75 * len(LOCAL), [p.name for p in LOCAL if p not in compared]


# --- the page itself ---

ARTEFACTS = Path(__file__).parent.parent / "build" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioflow", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    done = _cli("report", str(BUNDLED), "-o", str(out), "--title", "bundled capture")
    assert done.returncode == 0, done.stderr
    assert f"report written to {out}" in done.stderr
    return out


def test_report_is_self_contained_and_small(bundled_report: Path) -> None:
    text = bundled_report.read_text(encoding="utf-8")
    fetched = _Fetches()
    fetched.feed(text)
    assert fetched.urls == []  # opens offline: nothing loaded from elsewhere
    assert "Plotly.newPlot" in text
    assert bundled_report.stat().st_size < 5.5e6


class _Fetches(html.parser.HTMLParser):
    """What a page would load: src of scripts, images and frames, href of stylesheets."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.urls.append(a["src"] or "")
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"] or "")


class _Tables(html.parser.HTMLParser):
    """Every sortable table's rows, as the cells' data-value attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and "sortable" in (a.get("class") or ""):
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag == "td" and self.tables and "data-value" in a:
            self.tables[-1][-1].append(a["data-value"] or "")


def test_tables_show_the_compared_numbers(bundled_report: Path) -> None:
    """What the page shows is what the tshark checks compared (same aggregation, same rows)."""
    parser = _Tables()
    parser.feed(bundled_report.read_text(encoding="utf-8"))
    talkers, convs, states = ([r for r in t if r] for t in parser.tables)
    want = agg.endpoints(_read(BUNDLED).columns, top=100)
    assert talkers == [[str(v) for v in row] for row in want.rows]
    want_convs = agg.conversations(_read(BUNDLED).columns, top=100)
    assert len(convs) == want_convs.total  # every conversation shown: the bundled capture has < 100
    assert convs == [[str(v) for v in row] for row in want_convs.rows]
    # TCP states: as the conn_state meter gives them (checked against Zeek's logs in test_zeek_conn)
    frame = aioflow.read_frame(BUNDLED, meters=("conn_state",))
    want_states = frame[frame.protocol == 6].conn_state_state.value_counts().to_dict()
    assert {r[0]: int(r[1]) for r in states} == want_states


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")
def test_report_renders_in_a_browser(bundled_report: Path) -> None:
    """Headless Chromium: no console error, every chart drew its traces, a table sorts on click;
    a screenshot is kept in build/test-artifacts/."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (the dev extra)")
    with playwright.sync_playwright() as p:
        # not under `make sanitize`'s preloaded ASan runtime: Chromium is not built for it
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env=TOOL_ENV)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(bundled_report.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 6")
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('.js-plotly-plot'))"
                ".map(g => [g.data.length, g.querySelectorAll('.trace').length])"
            )
            assert len(drawn) == 6 and all(traces > 0 and rendered >= traces for traces, rendered in drawn), drawn
            column = "tx_packets"
            header = page.locator("table.sortable").first.locator("th", has_text=column).first
            index = page.evaluate(f"Array.from(document.querySelector('table.sortable').rows[0].cells)"
                                  f".findIndex(c => c.textContent === '{column}')")  # fmt: skip
            values = (f"Array.from(document.querySelector('table.sortable').tBodies[0].rows)"
                      f".map(r => Number(r.cells[{index}].dataset.value))")  # fmt: skip
            header.click()
            descending = page.evaluate(values)
            assert descending == sorted(descending, reverse=True) and descending != page.evaluate(values + ".sort()")
            header.click()
            assert page.evaluate(values) == sorted(descending)
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTEFACTS / "report.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()


def test_report_of_flows_estimates_traffic(tmp_path: Path) -> None:
    """aioflow.report() of a frame: no per-packet counts, so traffic over time is spread over each
    flow and says so; the totals still equal the flows'."""
    frame = aioflow.read_frame(BUNDLED)
    out = aioflow.report(frame, tmp_path / "flows.html")
    text = out.read_text(encoding="utf-8")
    assert "estimated" in text
    timeline = agg.estimated_timeline({k: frame[k].to_numpy() for k in frame.columns})
    assert timeline is not None
    assert timeline.packets.sum() == frame["packets"].sum()
    assert timeline.bytes.sum() == frame["captured_bytes"].sum()


def test_report_of_several_captures(tmp_path: Path) -> None:
    """Two captures years apart: one report, flows of both, the timeline still bounded."""
    other = DATA / "ndpi_mysql.pcapng"
    data = anyio.run(gather, [BUNDLED, other], {})
    assert len(data.sources) == 2
    flows = sum(s.info.flows_ended for s in data.sources)
    assert len(data.columns["packets"]) == flows
    assert data.timeline is not None and len(data.timeline.packets) <= 2048
    assert data.timeline.packets.sum() == sum(s.info.packets_in_flows for s in data.sources)
    done = _cli("report", str(BUNDLED), str(other), "-o", str(tmp_path / "two.html"), "--no-progress")
    assert done.returncode == 0, done.stderr


def test_everyday_mistakes_are_one_line(tmp_path: Path) -> None:
    missing = _cli("report", str(tmp_path / "nope.pcap"), "-o", str(tmp_path / "r.html"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.pcap" in missing.stderr
    no_dir = _cli("report", str(BUNDLED), "-o", str(tmp_path / "no" / "r.html"))
    assert no_dir.returncode == 2 and "no such directory" in no_dir.stderr
    bad_filter = _cli("report", str(BUNDLED), "-o", str(tmp_path / "r.html"), "--filter", "tcp and and")
    assert bad_filter.returncode == 2 and "--filter" in bad_filter.stderr


def test_without_plotly_the_command_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['plotly'] = None; from aioflow.cli import main; "
            f"sys.exit(main(['report', {str(BUNDLED)!r}, '-o', {str(tmp_path / 'r.html')!r}]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "aioflow-pcap[report]" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_damaged_capture_still_reported(tmp_path: Path) -> None:
    """A capture cut mid-packet: the report of what was read is written, and the command exits 1
    saying where reading stopped (as `aioflow flows` does)."""
    cut = tmp_path / "cut.pcapng"
    data = BUNDLED.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    done = _cli("report", str(cut), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 1, done.stderr
    assert "damaged" in done.stderr or "cut" in done.stderr
    assert "damage" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_dissect_stacks_traffic_by_application(tmp_path: Path) -> None:
    """--dissect: traffic by application and an applications table whose flows, per name, are
    those read_frame(dissect=True) gives (nDPI's names, checked against ndpiReader in test_dissect)."""
    from aioflow._engine import dissect_unavailable

    if dissect_unavailable():
        pytest.skip(f"no application detection in this build: {dissect_unavailable()}")
    out = tmp_path / "apps.html"
    done = _cli("report", "--dissect", str(BUNDLED), "-o", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert "Traffic over time by application" in text
    parser = _Tables()
    parser.feed(text)
    apps = [r for r in parser.tables[0] if r]
    frame = aioflow.read_frame(BUNDLED, dissect=True)
    want = frame.groupby("application_name").size()
    assert {r[0]: int(r[1]) for r in apps} == {(k or "unknown"): int(v) for k, v in want.items()}


def test_live_interface_for_some_seconds(net: Any, tmp_path: Path) -> None:
    """`aioflow report IFACE --seconds N`: the HTTP exchanges made with the test host while it
    captures are in the report's tables (at least those that completed before it stopped)."""
    from support.livenet import http_get

    out = tmp_path / "live.html"
    report = subprocess.Popen([sys.executable, "-m", "aioflow", "report", net.host_if, "--seconds", "3", "-o",
                               str(out)], stderr=subprocess.PIPE, text=True)  # fmt: skip
    done = 0
    while report.poll() is None:
        http_get(net.peer_ip)
        done += 1
    _, err = report.communicate(timeout=60)
    assert report.returncode == 0, err
    parser = _Tables()
    parser.feed(out.read_text(encoding="utf-8"))
    talkers = {row[0]: int(row[1]) for row in parser.tables[0] if row}
    convs = [row for row in parser.tables[1] if row and row[0] == "tcp" and f"{net.peer_ip}:8080" in row[1:3]]
    assert net.peer_ip in talkers and talkers[net.peer_ip] > 0
    assert 0 < len(convs) <= done  # one conversation per exchange, the last may have been cut
