"""JA4 (FoxIO's TLS client fingerprint, computed by aioflow's C in the dissect meter) against FoxIO's
own expected outputs: their Python reference (`ja4.py -r`) and their Rust CLI, on their captures.
Core tests use the three copied into tests/data (with their expected files in tests/data/ja4); the whole
FoxIO set is compared when ../shared/ja4 is there. Crafted sessions check the bounds: a ClientHello
split across segments, retransmitted, out of order, too big, or cut by the flow's end."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import dpkt
import pytest
from support.crafted import ACK, CLIENT, PSH, SERVER, segment, split_session, write

import aioflow
from aioflow._engine import dissect_unavailable

DATA = Path(__file__).parent / "data"
# FoxIO's expected outputs for the bundled captures: a folder of their own, so that the
# `*.pcap*` globs of other tests over tests/data find captures only
JA4_EXPECTED = DATA / "ja4"
FOXIO = Path(os.environ.get("AIOFLOW_JA4_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "ja4")
CORE = ["foxio_tls12.pcap", "foxio_quic-with-several-tls-frames.pcapng", "foxio_tls-non-ascii-alpn.pcapng"]

pytestmark = pytest.mark.skipif(bool(dissect_unavailable()), reason=dissect_unavailable() or "")

Key = tuple[str, str, int, str, int]  # transport, client address and port, server address and port


def python_expected(path: Path) -> dict[Key, tuple[str, str]]:
    """FoxIO's Python reference: each stream's first ClientHello (JA4.1, JA4_r.1). Its JSON says no
    transport; QUIC streams have no JA4 there (only the Rust tool opens QUIC)."""
    out: dict[Key, tuple[str, str]] = {}
    for stream in json.loads(path.read_text()):
        if "JA4.1" in stream:
            key = ("tcp", stream["src"], int(stream["srcport"]), stream["dst"], int(stream["dstport"]))
            out[key] = (stream["JA4.1"], stream["JA4_r.1"])
    return out


def rust_expected(path: Path) -> dict[Key, list[str]]:
    """FoxIO's Rust CLI (an insta snapshot of its YAML list): ja4 of each stream with one, by 5-tuple
    (a 5-tuple reused by several streams has several)."""
    entries: list[dict[str, str]] = []
    for line in path.read_text().split("---", 2)[2].splitlines():
        m = re.match(r"^(- |  )(\w+): (.*)$", line)  # top-level scalars of each list entry
        if m:
            if m.group(1) == "- ":
                entries.append({})
            entries[-1][m.group(2)] = m.group(3)
    out: dict[Key, list[str]] = defaultdict(list)
    for e in entries:
        if "ja4" in e:
            out[(e["transport"], e["src"], int(e["src_port"]), e["dst"], int(e["dst_port"]))].append(e["ja4"])
    return out


def ours(path: Path, **options: Any) -> tuple[dict[Key, list[dict[str, Any]]], dict[str, int]]:
    """aioflow's flows of a capture by 5-tuple (in order), with their dissect fields; and the
    dissection counters."""
    flows: dict[Key, list[dict[str, Any]]] = defaultdict(list)

    async def run() -> dict[str, int]:
        async with aioflow.FlowParser(path, dissect=True, **options) as parser:
            async for f in parser.terminated():
                transport = {6: "tcp", 17: "udp"}.get(f.protocol)
                if transport:
                    flows[(transport, f.src_ip, f.src_port, f.dst_ip, f.dst_port)].append(f.meter("dissect"))
            return parser.info().dissection

    import anyio

    return flows, anyio.run(run)


def compare(capture: Path, python: Path | None, rust: Path | None) -> tuple[int, list[str], list[str]]:
    """Values compared and equal; unexplained differences; differences the proxy-tunnel rule explains."""
    flows, _ = ours(capture)
    expected: dict[Key, set[str]] = defaultdict(set)
    compared = 0
    unexplained: list[str] = []
    tunnelled: list[str] = []

    def differ(key: Key, text: str) -> None:
        (tunnelled if _tunnelled(capture, key, flows) else unexplained).append(f"{capture.name} {key}: {text}")

    if python is not None and python.exists():
        for key, (ja4, ja4_r) in python_expected(python).items():
            expected[key].add(ja4)
            got = [(d["ja4"], d["ja4_r"]) for d in flows.get(key, [])]
            compared += 1
            if (ja4, ja4_r) not in got:
                differ(key, f"FoxIO Python {ja4} {ja4_r}, aioflow {got}")
    if rust is not None and rust.exists():
        for key, values in rust_expected(rust).items():
            expected[key].update(values)
            got_ja4 = [d["ja4"] for d in flows.get(key, [])]
            for value in values:  # each of FoxIO's streams with this 5-tuple: one of aioflow's flows
                compared += 1
                if value not in got_ja4:
                    differ(key, f"FoxIO Rust {value}, aioflow {got_ja4}")
    # and no flow has a JA4 FoxIO's tools did not give (expected holds every value they gave)
    for key, records in flows.items():
        for d in records:
            if d["ja4"] and d["ja4"] not in expected.get(key, set()):
                unexplained.append(f"{capture.name} {key}: aioflow {d['ja4']}, FoxIO none")
    return compared, unexplained, tunnelled


PROXIES = ("SOCKS", "HTTP_Connect", "HTTP_Proxy")  # nDPI's names of the proxies the dissection waits past


def _tunnelled(capture: Path, key: Key, flows: dict[Key, list[dict[str, Any]]]) -> bool:
    """The rule for the only differences allowed: TLS inside a proxy tunnel nDPI did not name as a
    proxy's. On a flow nDPI names SOCKS or HTTP CONNECT the dissection goes on, after nDPI is done,
    for the ClientHello that follows the proxy exchange; on one nDPI names something else (nDPI 4.2
    calls a SOCKS 4 exchange of socks-https-example "Cassandra") it ends there, before the
    ClientHello comes, so JA4 (which rides on the dissection) never sees it. Proven per flow: the
    client's first payload (read with dpkt) is no TLS handshake, nDPI named neither TLS nor a proxy,
    and the flow has no ja4."""
    records = flows.get(key, [])
    if key[0] != "tcp" or len(records) != 1 or records[0]["ja4"]:
        return False
    name = str(records[0]["application_name"])
    if "TLS" in name or any(proxy in name for proxy in PROXIES):
        return False
    first = _first_client_payload(capture, key)
    return first is not None and first[:1] != b"\x16"


def _first_client_payload(capture: Path, key: Key) -> bytes | None:
    import socket

    with capture.open("rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        for _, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
            src = socket.inet_ntop(family, ip.src)
            if (src, ip.data.sport, ip.data.dport) == (key[1], key[2], key[4]) and ip.data.data:
                return bytes(ip.data.data)
    return None


@pytest.mark.parametrize("name", CORE)
def test_core_captures_match_foxio(name: str) -> None:
    capture = DATA / name
    expected = JA4_EXPECTED / name
    compared, unexplained, tunnelled = compare(capture, Path(f"{expected}.python.json"), Path(f"{expected}.rust.snap"))
    assert compared, f"{name}: FoxIO's files hold no JA4: the test compared nothing"
    assert not unexplained and not tunnelled, unexplained + tunnelled


def test_quic_initial_opened_and_counted() -> None:
    flows, counters = ours(DATA / "foxio_quic-with-several-tls-frames.pcapng")
    (records,) = flows.values()
    assert records[0]["ja4"].startswith("q13d")
    assert counters["dissect_ja4_quic"] == 1 and counters["dissect_ja4_tcp"] == 0
    assert counters["dissect_ja4_quic_unopened"] == 0


def test_raw_form_and_fields() -> None:
    frame = aioflow.read_frame(DATA / "foxio_tls12.pcap", dissect=True)
    assert {"ja4", "ja4_r"} <= set(frame.columns)
    (ja4,) = frame["ja4"]
    (raw,) = frame["ja4_r"]
    assert raw.split("_")[0] == ja4.split("_")[0]  # the same first part, the lists unhashed after it
    assert len(ja4) == 36


NO_FOXIO = f"FoxIO's JA4 captures are not at {FOXIO} (set AIOFLOW_JA4_DATA)"


@pytest.mark.skipif(not (FOXIO / "pcap").is_dir(), reason=NO_FOXIO)
def test_every_foxio_capture_matches() -> None:
    """Every JA4 FoxIO's Python and Rust tools give, on every capture of theirs, is aioflow's for the
    same 5-tuple, and aioflow gives none they do not; the only differences allowed are the proxy
    tunnels of _tunnelled (socks-https-example's second stream, Python's value and Rust's), each
    proven. The SOCKS and HTTP CONNECT flows nDPI names (socks-https-example's first and third,
    https-connect) are compared like any other."""
    compared = 0
    unexplained: list[str] = []
    tunnelled: list[str] = []
    for capture in sorted((FOXIO / "pcap").iterdir()):
        python = FOXIO / "expected" / "python" / f"{capture.name}.json"
        rust = FOXIO / "expected" / "rust" / f"ja4__insta@{capture.name}.snap"
        n, u, t = compare(capture, python, rust)
        compared += n
        unexplained += u
        tunnelled += t
    assert not unexplained, "\n".join(unexplained)
    assert compared >= 300, compared  # 150 Python values and 203 Rust ones at FoxIO's commit 0e54bc8
    assert len(tunnelled) <= 2, tunnelled


# --- crafted: the bounds ---


def _client_hello_record() -> bytes:
    """The TLS record holding foxio_tls12.pcap's ClientHello (the capture's one packet)."""
    with (DATA / "foxio_tls12.pcap").open("rb") as fh:
        ((_, frame),) = list(dpkt.pcap.Reader(fh))
    record = bytes(dpkt.ethernet.Ethernet(frame).data.data.data)
    assert record[0] == 0x16 and record[5] == 1
    return record


def _expected_tls12() -> str:
    (value,) = python_expected(JA4_EXPECTED / "foxio_tls12.pcap.python.json").values()
    return value[0]


def _session(tmp_path: Path, parts: list[bytes], order: list[int] | None = None, **options: Any) -> tuple[
        list[dict[str, Any]], dict[str, int]]:  # fmt: skip
    flows, counters = ours(write(tmp_path, "hello.pcap", split_session(parts, order)), **options)
    (records,) = flows.values()
    return records, counters


def test_client_hello_across_segments_and_retransmitted(tmp_path: Path) -> None:
    """The record in four segments, one cut inside the record header, with the second segment
    sent twice: the same JA4 as FoxIO's for the whole packet."""
    r = _client_hello_record()
    parts = [r[:3], r[3:200], r[200:450], r[450:]]
    packets = split_session(parts)
    packets.insert(5, packets[4])  # segment r[3:200] again, right after itself
    flows, counters = ours(write(tmp_path, "hello.pcap", packets))
    (records,) = flows.values()
    assert records[0]["ja4"] == _expected_tls12()
    assert counters["dissect_ja4_tcp"] == 1


def test_client_hello_in_two_records(tmp_path: Path) -> None:
    """The handshake message split over two TLS records (RFC 8446 5.1 allows it)."""
    r = _client_hello_record()
    body = r[5:]
    cut = 100
    rec1 = r[:3] + struct.pack("!H", cut) + body[:cut]
    rec2 = r[:3] + struct.pack("!H", len(body) - cut) + body[cut:]
    records, _ = _session(tmp_path, [rec1 + rec2])
    assert records[0]["ja4"] == _expected_tls12()


def test_client_hello_in_syn_data(tmp_path: Path) -> None:
    """TCP Fast Open: the ClientHello begins in the SYN (its data follows the SYN's number)."""
    r = _client_hello_record()
    c, s = 1000, 5000
    packets = [
        segment(1.0, CLIENT, 40000, SERVER, 443, 0x02, c, 0, r[:200]),
        segment(1.1, SERVER, 443, CLIENT, 40000, 0x02 | ACK, s, c + 201),
        segment(1.2, CLIENT, 40000, SERVER, 443, PSH | ACK, c + 201, s + 1, r[200:]),
    ]
    flows, _ = ours(write(tmp_path, "tfo.pcap", packets))
    (records,) = flows.values()
    assert records[0]["ja4"] == _expected_tls12()


@pytest.mark.parametrize("order", [[0, 2, 1], [1, 0, 2], [2, 1, 0], [1, 2, 0]])
def test_client_hello_segments_out_of_order(tmp_path: Path, order: list[int]) -> None:
    """Segments that come ahead of a missing one (also ahead of the one that begins the
    ClientHello: the SYN gives their place) wait until it comes: FoxIO's JA4 for the whole packet,
    as tshark's out-of-order reassembly gives the ClientHello."""
    r = _client_hello_record()
    path = write(tmp_path, "hello.pcap", split_session([r[:200], r[200:400], r[400:]], order))
    flows, counters = ours(path)
    (records,) = flows.values()
    assert records[0]["ja4"] == _expected_tls12()
    assert counters["dissect_ja4_tcp"] == 1 and counters["dissect_ja4_gap"] == 0
    tshark = ["tshark", "-n", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE", "-d", "tcp.port==80,tls",
              "-Y", "tls.handshake.type == 1"]
    hellos = subprocess.run([*tshark, "-T", "fields", "-e", "tls.handshake.ciphersuite"],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert len(hellos) == 1  # tshark reassembles the ClientHello from the same packets (port 80 read as TLS)


def test_client_hello_with_a_segment_never_sent_counted(tmp_path: Path) -> None:
    """The middle segment never comes: the last one waits to the end, no JA4, counted as a gap."""
    r = _client_hello_record()
    records, counters = _session(tmp_path, [r[:200], r[200:400], r[400:]], order=[0, 2])
    assert records[0]["ja4"] == ""
    assert counters["dissect_ja4_gap"] == 1 and counters["dissect_ja4_tcp"] == 0


def test_client_hello_beyond_the_buffer_counted(tmp_path: Path) -> None:
    """A padding extension takes the ClientHello past AF_JA4_HELLO_MAX (4096 bytes): no JA4, counted."""
    r = _client_hello_record()
    hs = bytearray(r[5:])
    pad = b"\x00\x15" + struct.pack("!H", 4000) + bytes(4000)
    ext_at = _extensions_offset(bytes(hs))
    ext_len = struct.unpack_from("!H", hs, ext_at)[0]
    struct.pack_into("!H", hs, ext_at, ext_len + len(pad))
    hs += pad
    hs[1:4] = (len(hs) - 4).to_bytes(3, "big")
    big = r[:3] + struct.pack("!H", len(hs)) + bytes(hs)
    records, counters = _session(tmp_path, [big[i:i + 1400] for i in range(0, len(big), 1400)])
    assert records[0]["ja4"] == ""
    assert counters["dissect_ja4_too_big"] == 1


def test_client_hello_cut_by_the_budget_counted(tmp_path: Path) -> None:
    """max_dissections=4: the SYN, SYN-ACK, ACK and the first of two segments; the rest never comes
    to JA4, so the ClientHello is incomplete when the dissection ends, and counted."""
    r = _client_hello_record()
    records, counters = _session(tmp_path, [r[:300], r[300:]], max_dissections=4)
    assert records[0]["ja4"] == ""
    assert counters["dissect_ja4_incomplete"] == 1


def test_not_tls_gives_nothing(tmp_path: Path) -> None:
    records, counters = _session(tmp_path, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert records[0]["ja4"] == "" and records[0]["ja4_r"] == ""
    assert sum(v for k, v in counters.items() if k.startswith("dissect_ja4_")) == 0


def _extensions_offset(hs: bytes) -> int:
    """Offset of the extensions' length field in a ClientHello handshake message."""
    at = 4 + 2 + 32
    at += 1 + hs[at]
    at += 2 + struct.unpack_from("!H", hs, at)[0]
    at += 1 + hs[at]
    return at


def test_server_segments_are_not_taken(tmp_path: Path) -> None:
    """Only the client's bytes are fingerprinted: a ClientHello-looking server segment is not."""
    r = _client_hello_record()
    packets = split_session([b"hello\r\n"])
    packets.insert(3, segment(1.5, SERVER, 80, CLIENT, 40000, PSH | ACK, 5001, 1001, r))
    flows, counters = ours(write(tmp_path, "hello.pcap", packets))
    (records,) = flows.values()
    assert records[0]["ja4"] == "" and counters["dissect_ja4_tcp"] == 0


# --- tshark (Wireshark >= 4.2 has its own tls.handshake.ja4) ---


def _tshark_has_ja4() -> bool:
    import shutil
    import subprocess

    if shutil.which("tshark") is None:
        return False
    fields = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True, check=False).stdout
    return "\ttls.handshake.ja4\t" in fields


@pytest.mark.skipif(not _tshark_has_ja4(), reason="this tshark has no tls.handshake.ja4 field (Wireshark 4.2 added it)")
@pytest.mark.parametrize("name", CORE)
def test_tshark_agrees(name: str) -> None:
    """tshark's own JA4 of each ClientHello (the first of each 5-tuple) is aioflow's."""
    import subprocess

    capture = DATA / name
    columns = ["ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
               "tls.handshake.ja4"]  # fmt: skip
    out = subprocess.run(
        ["tshark", "-n", "-r", str(capture), "-Y", "tls.handshake.type == 1", "-T", "fields",
         *[arg for c in columns for arg in ("-e", c)]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    flows, _ = ours(capture)
    seen: set[Key] = set()
    for line in out.splitlines():
        src4, src6, tsport, usport, dst4, dst6, tdport, udport, ja4 = line.split("\t")
        key = ("tcp" if tsport else "udp", src4 or src6, int(tsport or usport), dst4 or dst6, int(tdport or udport))
        if key in seen or not ja4:
            continue
        seen.add(key)
        assert ja4 in [d["ja4"] for d in flows.get(key, [])], (key, ja4)
    assert seen, f"tshark found no ClientHello in {name}"


def test_cli_flows_dissect_csv_and_json_carry_ja4() -> None:
    """`aioflow flows --dissect --format csv|json`: the ja4 and ja4_r columns, FoxIO's values."""
    import csv
    import subprocess
    import sys

    capture = DATA / "foxio_tls12.pcap"
    (expected,) = python_expected(JA4_EXPECTED / "foxio_tls12.pcap.python.json").values()
    run = [sys.executable, "-m", "aioflow", "flows", "--dissect", "--no-progress", str(capture), "--format"]

    def output(fmt: str) -> str:
        return subprocess.run([*run, fmt], capture_output=True, text=True, check=True).stdout

    (row,) = csv.DictReader(output("csv").splitlines())
    assert (row["ja4"], row["ja4_r"]) == expected
    text = output("json")  # JSON lines, or one array
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]
    assert [(r["ja4"], r["ja4_r"]) for r in records] == [expected]


# --- tshark's dissection, JA4's formula: every ClientHello of the corpus ---


@pytest.mark.parametrize("name", CORE)
def test_tshark_dissection_oracle_matches_foxio(name: str) -> None:
    """The oracle below (tests/support/ja4_tshark.py) gives FoxIO's values on their captures."""
    from support.ja4_tshark import client_hellos

    got = {key: hello.ja4 for key, hello in client_hellos(DATA / name).items()}
    want = {key[1:]: values[0] for key, values in rust_expected(JA4_EXPECTED / f"{name}.rust.snap").items()}
    assert {key[1:]: ja4 for key, ja4 in got.items()} == want


def test_corpus_matches_tshark_dissection(corpus: Path) -> None:
    """Every ClientHello tshark finds in the corpus (the first per 5-tuple, innermost headers; read
    with decode_tunnels=True), fingerprinted from tshark's fields, is the JA4 of aioflow's flow.
    Not fingerprinted by design, each proven from tshark's own dissection: TLS over UDP that is not
    QUIC (OpenVPN's control channel: JA4 is defined for TCP and QUIC here, DTLS is not done), and
    SSLv2-format ClientHellos (the payload's first byte has its top bit set; Skype's)."""
    from support.ja4_tshark import client_hellos

    compared = equal = 0
    unexplained: list[str] = []
    excluded: dict[str, int] = defaultdict(int)
    for capture in sorted(p for p in corpus.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap")):
        hellos = client_hellos(capture)
        if not hellos:
            continue
        flows, _ = ours(capture, decode_tunnels=True)
        for key, hello in hellos.items():
            got = [d["ja4"] for d in flows.get(key, [])]
            if key[0] == "udp" and not hello.quic:
                excluded["TLS over UDP, not QUIC"] += 1
                assert got == [""] * len(got), (capture.name, key)
                continue
            if hello.sslv2_record:
                excluded["SSLv2-format ClientHello"] += 1
                assert got == [""] * len(got), (capture.name, key)
                continue
            compared += 1
            if hello.ja4 in got:
                equal += 1
            else:
                unexplained.append(f"{capture.name} {key}: tshark's fields {hello.ja4}, aioflow {got}")
    assert not unexplained, "\n".join(unexplained)
    print(f"JA4 vs tshark's fields: {compared} compared, {equal} equal, not fingerprinted: {dict(excluded)}")
    assert compared >= 250, (compared, dict(excluded))  # 280 at the corpus of 2026-12-03
