"""`aioflow grep` against ngrep (which greps packet by packet) on the real captures, and on
crafted captures where a match is split across segments (ngrep misses it, reassembly must not).
Every test runs twice: with the default search (native, in the C engine, where it can) and with
--search python (Python's re over stream chunks); the two must also select the same flows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest
from support.corpus import ABSENT, CORPUS
from support.crafted import CLIENT, SERVER, ether, ip4, split_session, udp, write
from support.files import identity
from support.tcpflow_ref import TcpFlow
from support.tools import TOOL_ENV
from support.tshark import TShark

needs_ngrep = pytest.mark.skipif(shutil.which("ngrep") is None, reason="ngrep is not installed (apt install ngrep)")
NO_NATIVE = "aioflow was built without Vectorscan (libvectorscan-dev): only the Python search can run"
SEARCH = ["auto"]  # what grep() passes to --search: set by the search fixture


@pytest.fixture(params=["auto", "python"], autouse=True)
def search(request: pytest.FixtureRequest) -> str:
    SEARCH[0] = request.param
    return str(request.param)


def grep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioflow", "grep", "--search", SEARCH[0], *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def grep_json(*args: str) -> list[dict[str, object]]:
    done = grep("--format", "json", *args)
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


Conversation = tuple[str, frozenset[tuple[str, int]]]


def conversation(proto: str, a: tuple[str, int], b: tuple[str, int]) -> Conversation:
    return proto, frozenset((a, b))


def _split_endpoint(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    return address.strip("[]"), int(port)


_NGREP_RUNS: dict[tuple[object, ...], str] = {}


def ngrep(capture: Path, pattern: str, bpf: str) -> str:
    """What `ngrep -q -I capture pattern bpf` prints, kept for the session (every test here runs
    once per search mode, and ngrep's answer does not depend on it)."""
    key = (identity(capture), pattern, bpf)
    if key not in _NGREP_RUNS:
        _NGREP_RUNS[key] = subprocess.run(["ngrep", "-q", "-I", str(capture), pattern, bpf], capture_output=True,
                                          text=True, env=TOOL_ENV, timeout=120).stdout  # fmt: skip
    return _NGREP_RUNS[key]


def ngrep_conversations(capture: Path, pattern: str, bpf: str) -> set[Conversation]:
    """Conversations with at least one packet whose payload ngrep matched."""
    found = set()
    for line in ngrep(capture, pattern, bpf).splitlines():
        m = re.match(r"^([TU]) (\S+) -> (\S+)", line)
        if m:
            proto = "tcp" if m.group(1) == "T" else "udp"
            found.add(conversation(proto, _split_endpoint(m.group(2)), _split_endpoint(m.group(3))))
    return found


def aioflow_conversations(records: list[dict[str, object]]) -> set[Conversation]:
    return {
        conversation(str(r["protocol"]), (str(r["src_ip"]), int(r["src_port"])),  # type: ignore[call-overload]
                     (str(r["dst_ip"]), int(r["dst_port"])))  # type: ignore[call-overload]
        for r in records
    }


def payloads_by_conversation(tshark: TShark, capture: Path) -> dict[Conversation, list[bytes]]:
    """Each TCP/UDP packet's own payload, as tshark dissects it (no reassembly)."""
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "tcp.payload", "udp.payload"]  # fmt: skip
    text = tshark.output(capture, "-T", "fields", "-E", "separator=\t", *(a for f in fields for a in ("-e", f)))
    out: dict[Conversation, list[bytes]] = {}
    for line in text.splitlines():
        src4, src6, dst4, dst6, tsp, tdp, usp, udp_, tpay, upay = (line.split("\t") + [""] * 10)[:10]
        proto = "tcp" if tsp else "udp" if usp else None
        if proto is None:
            continue
        src, dst = (src4 or src6).split(",")[-1], (dst4 or dst6).split(",")[-1]  # innermost of tunnels
        key = conversation(proto, (src, int((tsp or usp).split(",")[-1])), (dst, int((tdp or udp_).split(",")[-1])))
        out.setdefault(key, []).append(bytes.fromhex((tpay or upay).split(",")[-1].replace(":", "")))
    return out


# (capture, pattern) pairs from the corpus whose streams hold text protocols
CORPUS_CASES = [
    ("ndpi_1kxun.pcap", "Host:"),
    ("ndpi_1kxun.pcap", "HTTP/1\\.[01] [0-9]{3}"),
    ("nfstream_aimini-http.pcap", "Content-Type"),
    ("ndpi_rtsp.pcap", "RTSP/1\\.0"),
    ("zeek_http_206_example_b.pcap", "Content-Range"),
    ("ndpi_smtp-starttls.pcap", "STARTTLS"),
    ("tcpreplay_test.pcap", "GET /"),
    ("zeek_tcp_reassembly.pcap", "HTTP"),
    ("ndpi_log4j-webapp-exploit.pcap", "jndi"),
    ("ndpi_sip.pcap", "SIP/2\\.0"),
]


@needs_ngrep
@pytest.mark.parametrize(("name", "pattern"), CORPUS_CASES)
def test_every_flow_ngrep_matches_is_matched(name: str, pattern: str, corpus: Path, tshark: TShark) -> None:
    capture = corpus / name
    bpf = "tcp or udp"
    expected = ngrep_conversations(capture, pattern, bpf)
    got = aioflow_conversations(grep_json("-a", pattern, "-r", str(capture), bpf))
    assert expected, f"ngrep found no {pattern!r} in {name}: the case tests nothing"
    assert expected <= got, f"ngrep matched, aioflow did not: {sorted(expected - got, key=str)[:5]}"
    # what aioflow matches beyond ngrep must be matches no single packet holds (split across segments)
    compiled = re.compile(pattern.encode(), re.MULTILINE)
    payloads = payloads_by_conversation(tshark, capture)
    for extra in got - expected:
        assert not any(compiled.search(p) for p in payloads.get(extra, [])), (name, extra)


# --- ICMP (and any IP protocol but TCP): each packet's data, searched alone, as ngrep does ---


def ngrep_icmp_pairs(capture: Path, pattern: str) -> set[frozenset[str]]:
    """Host pairs with at least one ICMP packet whose data (after the 8-byte header) ngrep matched."""
    lines = ngrep(capture, pattern, "icmp").splitlines()
    return {frozenset(m.groups()) for line in lines if (m := re.match(r"^I (\S+) -> (\S+)", line))}


def icmp_pairs(records: list[dict[str, object]]) -> set[frozenset[str]]:
    assert all(r["protocol"] == "icmp" for r in records), records
    return {frozenset((str(r["src_ip"]), str(r["dst_ip"]))) for r in records}


@needs_ngrep
@pytest.mark.parametrize("pattern", ["ssh-rsa", "diffie-hellman-group-exchange-sha256", "aes128-ctr"])
def test_an_icmp_tunnel_matches_where_ngrep_does(pattern: str) -> None:
    """SSH carried in ICMP echo data (nDPI's icmp-tunnel capture)."""
    capture = CORPUS / "ndpi_icmp-tunnel.pcap"
    if not capture.exists():
        pytest.skip(ABSENT)
    expected = ngrep_icmp_pairs(capture, pattern)
    assert expected, f"ngrep found no {pattern!r}: the case tests nothing"
    assert icmp_pairs(grep_json("-a", pattern, "-r", str(capture), "icmp")) == expected


def echo(t: float, src: str, dst: str, ident: int, data: bytes, reply: bool = False) -> tuple[float, bytes]:
    body = dpkt.icmp.ICMP.Echo(id=ident, seq=1, data=data)
    return t, ether(ip4(src, dst, 1, dpkt.icmp.ICMP(type=0 if reply else 8, data=body)))


@needs_ngrep
def test_icmp_echo_flows_match_what_ngrep_matches(tmp_path: Path) -> None:
    """Echo sessions of four host pairs: the word in a request, in a reply, nowhere, and split
    over two requests (each packet is searched alone: neither tool may match that one)."""
    server = "10.2.0.9"
    packets = [
        echo(1.0, "10.2.0.1", server, 11, b"xx SECRET-TOKEN xx"), echo(1.1, server, "10.2.0.1", 11, b"ok", True),
        echo(2.0, "10.2.0.2", server, 22, b"ask"), echo(2.1, server, "10.2.0.2", 22, b"SECRET-TOKEN", True),
        echo(3.0, "10.2.0.3", server, 33, b"nothing here"), echo(3.1, server, "10.2.0.3", 33, b"no", True),
        echo(4.0, "10.2.0.4", server, 44, b"SECRET-"), echo(4.1, "10.2.0.4", server, 44, b"TOKEN"),
    ]  # fmt: skip
    capture = write(tmp_path, "echo.pcap", packets)
    pair = {n: frozenset((f"10.2.0.{n}", server)) for n in (1, 2)}
    assert ngrep_icmp_pairs(capture, "SECRET-TOKEN") == {pair[1], pair[2]}
    assert icmp_pairs(grep_json("-a", "SECRET-TOKEN", "-r", str(capture))) == {pair[1], pair[2]}
    # the client is who sent the request: -c finds the first pair only, -s the second
    assert icmp_pairs(grep_json("-c", "SECRET-TOKEN", "-r", str(capture))) == {pair[1]}
    assert icmp_pairs(grep_json("-s", "SECRET-TOKEN", "-r", str(capture))) == {pair[2]}
    # -l: one file per direction, named from its sender, holding its packets' data
    logged = tmp_path / "logged"
    logged.mkdir()
    assert grep("-c", "SECRET-TOKEN", "-l", str(logged), "-r", str(capture)).returncode == 0
    files = {p.name.split("-", 1)[1]: p.read_bytes() for p in logged.iterdir()}
    assert files == {f"10.2.0.1-{server}-proto1": b"xx SECRET-TOKEN xx", f"{server}-10.2.0.1-proto1": b"ok"}


# --- crafted: a pattern split across segments ---


@needs_ngrep
@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1]], ids=["in-order", "out-of-order"])
def test_a_match_split_across_segments_is_found_where_ngrep_misses_it(tmp_path: Path, order: list[int]) -> None:
    capture = write(tmp_path, "split.pcap", split_session([b"USER bob\r\nPASS", b"WO", b"RD hunter2\r\n"], order))
    assert ngrep_conversations(capture, "PASSWORD", "tcp") == set()
    records = grep_json("-c", "PASSWORD", "-r", str(capture))
    assert [(r["src_ip"], r["dst_port"], r["side"], r["offset"], r["match"]) for r in records] == [
        (CLIENT, 80, "client", 10, "PASSWORD")
    ]
    # the server did not send it: a server-side pattern does not match
    assert grep_json("-s", "PASSWORD", "-r", str(capture)) == []
    assert [r["side"] for r in grep_json("-s", "230 OK", "-r", str(capture))] == ["server"]


def test_udp_datagrams_match_alone(tmp_path: Path) -> None:
    frames = [
        (1.0, ether(ip4(CLIENT, SERVER, 17, udp(5000, 53, b"xxPASS")))),
        (1.1, ether(ip4(CLIENT, SERVER, 17, udp(5000, 53, b"WORDxx")))),
        (2.0, ether(ip4(CLIENT, SERVER, 17, udp(5001, 53, b"a PASSWORD b")))),
    ]
    capture = write(tmp_path, "udp.pcap", frames)
    records = grep_json("-a", "PASSWORD", "-r", str(capture))
    assert [(r["protocol"], r["src_port"], r["offset"]) for r in records] == [("udp", 5001, 2)]


def test_log_files_hold_the_streams_and_x_prints_their_names(tmp_path: Path) -> None:
    capture = write(tmp_path, "split.pcap", split_session([b"USER bob\r\nPASS", b"WORD hunter2\r\n"]))
    logs = tmp_path / "logs"
    logs.mkdir()
    done = grep("-a", "hunter2", "-l", str(logs), "-x", "-r", str(capture))
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    assert sorted(Path(n).name for n in names) == [f"1-{CLIENT}-40000-{SERVER}-80-tcp",
                                                    f"1-{SERVER}-80-{CLIENT}-40000-tcp"]
    files = {Path(n).name.split("-")[1]: Path(n).read_bytes() for n in names}
    assert files[CLIENT] == b"USER bob\r\nPASSWORD hunter2\r\n"
    assert files[SERVER] == b"230 OK\r\n"


def test_invert_case_and_pattern_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.pcap", split_session([b"hello WORLD"]))
    patterns = tmp_path / "patterns.txt"
    patterns.write_text("nothing here\nworld\n")
    assert grep_json("-f", str(patterns), "-r", str(first)) == []  # case matters without -i
    assert len(grep_json("-i", "-f", str(patterns), "-r", str(first))) == 1
    assert len(grep_json("-F", str(patterns), "-i", "-r", str(first))) == 0  # server patterns: the server said 230 OK
    inverted = grep_json("-v", "-a", "nothing", "-r", str(first))
    assert [(r["src_ip"], r["dst_port"]) for r in inverted] == [(CLIENT, 80)] and "match" not in inverted[0]


def test_distance_matching(tmp_path: Path) -> None:
    capture = write(tmp_path, "d.pcap", split_session([b"login: PASSW0RD", b"D"]))
    assert grep_json("-E", "hamming", "-e", "PASSWORD", "-r", str(capture)) == []
    for algorithm in ("levenshtein", "damerau", "hamming"):
        (record,) = grep_json("-E", algorithm, "-e", "PASSWORD", "-D", "1", "-r", str(capture))
        assert record["offset"] == 7 and record["side"] == "client", algorithm


def test_distance_matching_a_big_chunk_off_the_event_loop(tmp_path: Path) -> None:
    """Past THREAD_CHUNK_BYTES a chunk is compared in a worker thread: same result."""
    from aioflow.grep._search import THREAD_CHUNK_BYTES

    data = b"x" * (THREAD_CHUNK_BYTES + 5000) + b"PASSW0RD"
    capture = write(tmp_path, "big.pcap", split_session([data[i : i + 1400] for i in range(0, len(data), 1400)]))
    (record,) = grep_json("-E", "hamming", "-e", "PASSWORD", "-D", "1", "-r", str(capture))
    assert record["offset"] == len(data) - 8 and record["side"] == "client"


def test_usage_errors_say_what_to_do(tmp_path: Path) -> None:
    capture = write(tmp_path, "a.pcap", split_session([b"x"]))
    cases = [
        (["-r", str(capture)], "nothing to match"),
        (["-a", "(", "-r", str(capture)], "not a valid regular expression"),
        (["-k", "-a", "x", "-r", str(capture)], "needs an interface"),
        (["-x", "-a", "x", "-r", str(capture)], "needs -l DIR"),
        (["-a", "x", "-l", str(tmp_path / "missing"), "-r", str(capture)], "no such directory"),
        (["-e", "x", "-a", "x", "-r", str(capture)], "needs -E ALGO"),
        (["-a", "x", "-r", str(tmp_path / "none.pcap")], "none.pcap"),
        (["-a", "x", "-r", str(capture), "tcp", "port"], "filter"),
    ]
    for args, message in cases:
        done = grep(*args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert grep("-V").stdout.startswith("aioflow grep")


# --- the native search (C engine, Vectorscan) against the Python one ---

NATIVE_CASES = [
    ("ndpi_1kxun.pcap", "^Host: [a-z0-9.]+\\r$"),
    ("ndpi_1kxun.pcap", "\\bkeep-alive\\b"),
    ("nfstream_aimini-http.pcap", "content-type: text/[a-z]+"),
    ("zeek_tcp_reassembly.pcap", "^SEARCH /A{260}"),
    ("ndpi_log4j-webapp-exploit.pcap", "HTTP/1\\.[01] 200 ?\\r\\n"),
    ("ndpi_sip.pcap", "^(INVITE|REGISTER) sip:"),
    ("ndpi_smtp-starttls.pcap", "^250[- ]"),
    ("tcpflow_test5-lines-randomized.pcap", "line [0-9]+\\n.*line"),
    ("ndpi_log4j-webapp-exploit.pcap", "jndi:[a-z]+://"),
]


def _native_available() -> bool:
    from aioflow._engine import stream_patterns_available

    return stream_patterns_available()


def _native_case(name: str, search: str) -> Path:
    """The capture of a NATIVE_CASES case (tests/data, else the corpus); skips what cannot run."""
    if search != "auto":
        pytest.skip("these cases choose their searches themselves: one run is enough")
    if not _native_available():
        pytest.skip(NO_NATIVE)
    capture = Path(__file__).parent / "data" / name
    if not capture.exists():
        capture = CORPUS / name
        if not capture.exists():
            pytest.skip(ABSENT)
    return capture


@pytest.mark.parametrize(("name", "pattern"), NATIVE_CASES)
def test_native_and_python_search_select_the_same_flows(name: str, pattern: str, search: str) -> None:
    capture = _native_case(name, search)
    results: dict[str, set[tuple[object, ...]]] = {"native": set(), "python": set()}
    for mode in results:
        for side in ("-c", "-s"):  # each side alone: with -a, which side matches first may differ
            done = subprocess.run([sys.executable, "-m", "aioflow", "grep", "--search", mode, "--format", "json",
                                   "-i", side, pattern, "-r", str(capture)], capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            assert done.returncode in (0, 1) and f"({mode} search)" in done.stderr, done.stderr
            results[mode] |= {(r["flow_id"], r["side"]) for r in map(json.loads, done.stdout.splitlines())}
    assert results["python"], f"{pattern!r} matches nothing in {name}: the case tests nothing"
    assert results["native"] == results["python"]


@pytest.mark.parametrize(("name", "pattern"), NATIVE_CASES)
def test_native_search_matches_the_tcp_streams_tcpflow_writes(
    name: str, pattern: str, search: str, tcpflow: TcpFlow
) -> None:
    """The judge is outside aioflow: tcpflow's reassembled files, searched whole with Python's re."""
    capture = _native_case(name, search)
    regex = re.compile(pattern.encode(), re.MULTILINE | re.IGNORECASE)
    written = tcpflow.streams(capture)
    if not written:
        pytest.skip(f"{name} holds no TCP for tcpflow to write")
    want = {d for d, streams in written.items() if any(regex.search(s) for s in streams)}
    assert want, f"{pattern!r} matches no tcpflow stream of {name}: the case tests nothing"
    got = set()
    for side in ("-c", "-s"):
        for r in grep_json("--search", "native", "-i", side, pattern, "-r", str(capture)):
            if r["protocol"] != "tcp":  # tcpflow writes TCP only
                continue
            client, server = (r["src_ip"], r["src_port"]), (r["dst_ip"], r["dst_port"])
            sender, receiver = (client, server) if r["side"] == "client" else (server, client)
            got.add((*sender, *receiver))
    assert got == want


def test_auto_uses_python_for_what_vectorscan_cannot_run(tmp_path: Path, search: str) -> None:
    if search != "auto":
        pytest.skip("about the auto choice")
    capture = write(tmp_path, "b.pcap", split_session([b"say abab and", b" ab"]))
    done = grep("--format", "json", "-c", "(ab)\\1", "-r", str(capture))  # a backreference
    assert "(python search)" in done.stderr and json.loads(done.stdout)["offset"] == 4
    if not _native_available():
        pytest.skip(NO_NATIVE)
    assert "(native search)" in grep("-c", "abab", "-r", str(capture)).stderr
    refused = subprocess.run([sys.executable, "-m", "aioflow", "grep", "--search", "native", "-c", "(ab)\\1", "-r",
                              str(capture)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "--search native" in refused.stderr and "(ab)\\1" in refused.stderr
