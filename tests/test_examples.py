"""The examples run as a newcomer would run them, and print what tshark sees in the same capture."""

from __future__ import annotations

import ipaddress
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from support.nfdump_peer import free_udp_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CAPTURE = EXAMPLES / "data" / "ndpi_telegram_videocall.pcapng"

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

Pair = tuple[str, frozenset[tuple[str, int]]]


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


def tshark_fields(display_filter: str, *fields: str) -> list[list[str]]:
    # occurrence=f: the outer header only, not the copy quoted inside an ICMP error.
    cmd = ["tshark", "-n", "-r", str(CAPTURE), "-T", "fields", "-E", "occurrence=f"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def conversations() -> tuple[int, Counter[Pair]]:
    """tshark's TCP/UDP conversations (stream indexes) and packets per (protocol, endpoint pair)."""
    fields = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "tcp.stream", "udp.stream")
    rows = tshark_fields("(tcp || udp) && !icmp && !icmpv6", *fields)
    streams = set()
    packets: Counter[Pair] = Counter()
    for ip_src, ip_dst, ip6_src, ip6_dst, tsport, tdport, usport, udport, tstream, ustream in rows:
        proto, sport, dport, stream = ("tcp", tsport, tdport, tstream) if tstream else (
            "udp", usport, udport, ustream)
        streams.add((proto, stream))
        packets[(proto, frozenset({(_ip(ip_src or ip6_src), int(sport)),
                                   (_ip(ip_dst or ip6_dst), int(dport))}))] += 1
    return len(streams), packets


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          check=False, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def split_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return _ip(host.strip("[]")), int(port)


def test_async_consumer(conversations: tuple[int, Counter[Pair]]) -> None:
    out = run_example("async_consumer.py").splitlines()
    line = re.compile(r"(\S+)\s+(\S+) -> (\S+)  (\d+) packets  (\d+) bytes  ([\d.]+)s  (\w+)")
    flows = [line.fullmatch(text) for text in out[:-1]]
    assert all(flows), out
    ours: Counter[Pair] = Counter()
    count = 0
    for m in flows:
        assert m is not None
        if m[1] in ("tcp", "udp"):
            count += 1
            ours[(m[1], frozenset({split_endpoint(m[2]), split_endpoint(m[3])}))] += int(m[4])
    assert (count, ours) == conversations
    frames = len(tshark_fields("", "frame.number"))
    assert out[-1] == f"{len(flows)} flows from {frames} packets"


def test_async_consumer_takes_a_path(tmp_path: Path) -> None:
    copy = tmp_path / "copy.pcapng"
    shutil.copyfile(CAPTURE, copy)
    assert run_example("async_consumer.py", str(copy)) == run_example("async_consumer.py")


def test_find_flow_during_read(conversations: tuple[int, Counter[Pair]]) -> None:
    out = run_example("find_flow_during_read.py")
    expected = conversations[1][("tcp", frozenset({("192.168.12.169", 37950), ("149.154.167.91", 443)}))]
    assert expected > 0
    assert f"total: {expected} packets in 1 record(s)" in out
    found = re.search(r"found during the read .*: (\d+) packets, \d+ bytes so far", out)
    if found:  # the lookup may lose the race against a fast read; the final count must not
        assert 0 < int(found[1]) <= expected
        assert re.search(r"snapshot: [1-9]\d* active flows", out)
    else:
        assert "was read before the flow was looked up" in out


def test_find_flow_of_a_given_udp_flow(conversations: tuple[int, Counter[Pair]]) -> None:
    # The busiest UDP conversation, named in the reverse direction: lookups work either way round.
    (proto, ends), packets = max(((k, v) for k, v in conversations[1].items() if k[0] == "udp"),
                                 key=lambda kv: kv[1])
    (ip_a, port_a), (ip_b, port_b) = sorted(ends)
    out = run_example("find_flow_during_read.py", str(CAPTURE), ip_b, str(port_b), ip_a, str(port_a), proto)
    assert f"total: {packets} packets in 1 record(s)" in out


def tshark_sent() -> tuple[Counter[str], Counter[str]]:
    """IP-layer bytes and packets sent per host, as tshark decodes them: IPv4 total length, IPv6 payload
    length + 40."""
    sent: Counter[str] = Counter()
    packets: Counter[str] = Counter()
    for ip_src, ip_len, ip6_src, ip6_plen in tshark_fields("ip || ipv6", "ip.src", "ip.len", "ipv6.src",
                                                            "ipv6.plen"):
        host = _ip(ip_src or ip6_src)
        sent[host] += int(ip_len) if ip_src else int(ip6_plen) + 40
        packets[host] += 1
    return sent, packets


def assert_top_ten(printed: dict[str, int], sent: Counter[str]) -> None:
    """The printed hosts are the top ten senders, with what they sent."""
    assert len(printed) == min(10, len(sent))
    assert all(sent[host] == total for host, total in printed.items())
    # Nobody left out sent more than the smallest printed.
    assert all(total <= min(printed.values()) for host, total in sent.items() if host not in printed)


def test_dataframe_top_talkers() -> None:
    out = run_example("dataframe.py").splitlines()
    sent, _ = tshark_sent()
    summary = re.fullmatch(r"(\d+) flows, (\d+) IP bytes", out[0])
    assert summary and int(summary[2]) == sum(sent.values())
    assert out[1].split() == ["host", "bytes", "sent"]
    assert_top_ten({host: int(total) for host, total in (row.split() for row in out[2:])}, sent)


def test_stream_grep_finds_what_tshark_finds() -> None:
    """Every datagram or segment tshark sees containing the host name is one match, per direction."""
    want: Counter[tuple[tuple[str, int], tuple[str, int]]] = Counter()
    for src, src6, tsport, usport, dst, dst6, tdport, udport in tshark_fields(
        'frame contains "telegram.org"', "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport",
        "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
    ):  # fmt: skip
        want[((_ip(src or src6), int(tsport or usport)), (_ip(dst or dst6), int(tdport or udport)))] += 1
    out = run_example("stream_grep.py", str(CAPTURE), r"telegram\.org").splitlines()
    got: Counter[tuple[tuple[str, int], tuple[str, int]]] = Counter()
    for line in out[:-1]:
        a, _, rest = line.partition(" -> ")
        b = rest.split(" offset ")[0]
        got[(split_endpoint(a), split_endpoint(b))] += 1
    assert want and got == want
    assert re.fullmatch(r"\d+ bytes searched in \d+ chunks", out[-1])


def test_stream_patterns_matches_the_flows_tshark_finds() -> None:
    """One line per conversation that has a frame containing the host name (tshark), no other."""
    from aioflow._engine import stream_patterns_available

    if not stream_patterns_available():
        pytest.skip("aioflow was built without Vectorscan (apt-get install libvectorscan-dev, then make dev)")
    want = set()
    for src, src6, tsport, usport, dst, dst6, tdport, udport in tshark_fields(
        'frame contains "telegram.org"', "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport",
        "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
    ):  # fmt: skip
        want.add(frozenset({(_ip(src or src6), int(tsport or usport)), (_ip(dst or dst6), int(tdport or udport))}))
    out = run_example("stream_patterns.py", str(CAPTURE), r"telegram\.org").splitlines()
    got = [frozenset(split_endpoint(e) for e in line.split(" ", 3)[::2][:2]) for line in out[:-1]]
    assert want and len(got) == len(set(got)) and set(got) == want
    assert re.fullmatch(rf"{len(want)} of \d+ flows matched", out[-1])


def test_collector_prints_the_top_talkers_tshark_counts() -> None:
    """aioflow's exporter sends the capture's flows to the collector example on loopback; its report
    ranks the hosts by what tshark counts they sent (bytes and packets: both biflow directions)."""
    sent, packets = tshark_sent()
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "collector.py"), f"127.0.0.1:{port}", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()  # read in a thread: a stalled example fails the test, not hangs it
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    try:
        assert lines.get(timeout=10) == f"collecting on 127.0.0.1:{port} (Ctrl-C to stop)\n"
        export = subprocess.run([sys.executable, "-m", "aioflow", "export", str(CAPTURE), "--to", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        records = int(re.search(r"(\d+) records in", export.stderr)[1])  # type: ignore[index]
        header = re.compile(r"\[[\d:]+\] (\d+) records from 1 exporters \(127\.0\.0\.1: \1\)\n")
        while not ((m := header.fullmatch(lines.get(timeout=10))) and int(m[1]) == records):
            pass  # an earlier report, or one of its rows
        assert lines.get(timeout=1).split() == ["host", "bytes", "sent", "packets"]
        rows = [row.split() for row in iter(lambda: lines.get(timeout=1), "\n")]
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a last report, then a clean exit
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == ""
    assert_top_ten({host: int(octets) for host, octets, _ in rows}, sent)
    assert all(int(n) == packets[host] for host, _, n in rows)


def test_features_to_pandas_counts_every_ip_packet(tmp_path: Path) -> None:
    out = run_example("features_to_pandas.py", str(CAPTURE), str(tmp_path / "features.csv")).splitlines()
    summary = re.fullmatch(r"(\d+) flows, (\d+) features", out[0])
    assert summary and int(summary[2]) >= 24 + 3 * 10   # the ps and piat_ms statistics, 3 splt series
    packets = {row.split()[0]: int(row.split()[-1]) for row in out[1:]}
    assert sum(packets.values()) == len(tshark_fields("ip or ipv6", "frame.number"))
    assert packets["https"] <= len(tshark_fields("tcp.port == 443 or udp.port == 443", "frame.number"))
    import csv

    with open(tmp_path / "features.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == int(summary[1]) and "bidirectional_stddev_piat_ms" in rows[0] and "splt_ps_9" in rows[0]
