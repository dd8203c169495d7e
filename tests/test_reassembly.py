"""TCP stream reassembly and UDP payloads (FlowParser(reassemble=True)) against tools nobody here wrote.

Streams are compared byte for byte with what `tcpflow -r` writes (tests/support/tcpflow_ref.py), holes put
back as zeros as tcpflow's sparse files read: on crafted captures (in-order, out-of-order,
retransmitted, overlapping, lost, mid-stream), on the bundled captures and over the TCP flows of
the ../shared/pcaps corpus. Where tcpflow and aioflow differ by design, the capture direction is in
EXCLUDED with the reason, each reason is proven on a crafted capture below, and each excluded
direction is checked to still differ. UDP datagrams are compared with dpkt's decoding.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import struct
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import dpkt
import pytest
from support import reference, tcpflow_ref
from support.corpus import ABSENT, CORPUS, DATA, name_of, params
from support.tcpflow_ref import TcpFlow

import aioflow
from aioflow._engine import Engine, EngineConfig

NO_TIMEOUTS = {"idle_timeout": 1e9, "active_timeout": 1e9, "fin_timeout": 1e9}
UNBOUNDED = {"max_stream_bytes": 1 << 30, "max_reassembly_memory": 1 << 30}

# Why tcpflow's files differ from aioflow's streams; each is shown on a crafted capture below.
OVERLAP = "overlapping retransmission with other bytes: tcpflow keeps the last copy, aioflow the first"
BEFORE_ISN = "segment starting before ISN+1: tcpflow drops it whole, aioflow keeps the part after the SYN"
TSO = "IP total length 0 (offload captures): tcpflow takes the segment as empty (zeros), aioflow the captured bytes"
AFTER_FIN = "data after a FIN: tcpflow opens a new connection file for it, aioflow keeps one stream"
CUT = "frames cut shorter than their IP length: tcpflow writes the announced bytes (not in the capture), aioflow a hole"
NOT_DECODED = "tcpflow does not decode this encapsulation (NFLOG / MPLS / IPv6 extension headers): no file"
VLAN = "one 4-tuple in several VLANs: tcpflow merges them into one file, aioflow's flow key has the VLAN id"
BAD_HEADER = "TCP header cut short: tcpflow writes a 65496-byte stream for ports 0, aioflow puts the packet aside"
FRAGMENTS = "IP fragments: tcpflow writes the first fragment's bytes as the segment; aioflow needs the datagram"
ALL = "*"

Direction = tuple[str, int, str, int]

EXCLUDED: dict[str, dict[Direction | str, str]] = {
    "malformed/ndpi_fuzz-2006-06-26-2594.pcap": {("192.168.1.2", 2720, "147.234.1.253", 21): OVERLAP},
    "malformed/zeek_trunc_ipv4-internally-truncated-header.pcap": {ALL: BAD_HEADER},
    "ndpi_heuristic_tcp_ack_payload.pcap": {ALL: f"{BEFORE_ISN}; {AFTER_FIN}; {OVERLAP}"},
    "nfstream_anydesk-2.pcap": {("192.168.1.187", 54164, "192.168.1.178", 7070): TSO},
    "zeek_ipv4_fragmented-4.pcap": {ALL: FRAGMENTS},
    "zeek_ipv6-http-atomic-frag.pcap": {ALL: NOT_DECODED},
    "zeek_mixed-vlan-mpls.pcap": {("10.1.2.1", 11001, "10.34.0.1", 23): NOT_DECODED},
    "zeek_nflog-http.pcap": {ALL: NOT_DECODED},
    "zeek_tcp_reassembly.pcap": {("63.193.213.194", 2564, "128.3.97.175", 80): CUT},
    "zeek_vlan-collisions.pcap": {ALL: VLAN},
}


def _ip(raw: str) -> str:
    return str(ipaddress.ip_address(raw))


def aioflow_streams(path: Path, **options: Any) -> dict[Direction, list[bytes]]:
    """Per direction, the TCP streams of aioflow's flows (first seen first), holes as zeros."""
    found: dict[Direction, list[tuple[int, bytes]]] = defaultdict(list)
    for f in aioflow.read(path, reassemble=True, **NO_TIMEOUTS, **UNBOUNDED, **options):
        if f.protocol != 6:
            continue
        for key, stream, holes in (
            ((_ip(f.src_ip), f.src_port, _ip(f.dst_ip), f.dst_port), f.client_stream, f.client_holes),
            ((_ip(f.dst_ip), f.dst_port, _ip(f.src_ip), f.src_port), f.server_stream, f.server_holes),
        ):
            assert stream is not None
            if stream or holes:  # tcpflow writes no file for a direction without data
                found[key].append((f.first_seen_ns, tcpflow_ref.zero_filled(stream, holes)))
    return {k: [s for _, s in sorted(v)] for k, v in found.items()}


def differing(
    tcpflow: TcpFlow, path: Path, excluded: dict[Direction | str, str]
) -> dict[Direction, tuple[list[int], list[int]]]:
    """Directions whose streams differ from tcpflow's (lengths of each side), exclusions left out."""
    if ALL in excluded:
        return {}
    ours, theirs = aioflow_streams(path), tcpflow.streams(path)
    return {
        k: ([len(s) for s in ours.get(k, [])], [len(s) for s in theirs.get(k, [])])
        for k in set(ours) | set(theirs)
        if k not in excluded and ours.get(k, []) != theirs.get(k, [])
    }


# --- crafted captures ---

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)
ISN_C, ISN_S = 1000, 900_000
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def tcp(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, data: bytes = b"",
        pad: bytes = b"") -> bytes:  # fmt: skip
    """One Ethernet/IPv4/TCP frame, checksums computed by dpkt; `pad` after the IP datagram."""
    seg = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq % 2**32, ack=ack % 2**32, flags=flags, data=data)
    ip = dpkt.ip.IP(src=ipaddress.ip_address(src[0]).packed, dst=ipaddress.ip_address(dst[0]).packed,
                    p=6, ttl=64, data=seg)  # fmt: skip
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    return bytes(eth) + pad


def udp(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes:
    u = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=data)
    u.ulen = 8 + len(data)
    ip = dpkt.ip.IP(src=ipaddress.ip_address(src[0]).packed, dst=ipaddress.ip_address(dst[0]).packed,
                    p=17, ttl=64, data=u)  # fmt: skip
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def write_pcap(path: Path, frames: list[bytes]) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, snaplen=65535)
        for i, frame in enumerate(frames):
            w.writepkt(frame, ts=1_700_000_000 + i * 0.001)
    return path


def handshake() -> list[bytes]:
    return [tcp(CLIENT, SERVER, ISN_C, 0, SYN), tcp(SERVER, CLIENT, ISN_S, ISN_C + 1, SYN | ACK),
            tcp(CLIENT, SERVER, ISN_C + 1, ISN_S + 1, ACK)]  # fmt: skip


def c2s(off: int, data: bytes, flags: int = ACK | PSH, pad: bytes = b"") -> bytes:
    return tcp(CLIENT, SERVER, ISN_C + 1 + off, ISN_S + 1, flags, data, pad)


def s2c(off: int, data: bytes, ack: int = 0, flags: int = ACK | PSH) -> bytes:
    return tcp(SERVER, CLIENT, ISN_S + 1 + off, ISN_C + 1 + ack, flags, data)


def the_flow(path: Path, **options: Any) -> aioflow.Flow:
    flows = [f for f in aioflow.read(path, reassemble=True, **{**NO_TIMEOUTS, **options}) if f.protocol == 6]
    assert len(flows) == 1, flows
    return flows[0]


CLIENT_KEY: Direction = (CLIENT[0], CLIENT[1], SERVER[0], SERVER[1])
SERVER_KEY: Direction = (SERVER[0], SERVER[1], CLIENT[0], CLIENT[1])
TEXT = bytes(range(32, 127)) * 40  # 3800 distinct-ish bytes: any misplacement shows


def test_in_order_out_of_order_retransmitted_and_lost(tmp_path: Path) -> None:
    """Reordering, exact retransmissions and a lost segment: tcpflow's files, byte for byte."""
    frames = [
        *handshake(),
        c2s(0, TEXT[0:100]), c2s(200, TEXT[200:300]), c2s(100, TEXT[100:200]),  # reordered
        c2s(100, TEXT[100:200]),  # retransmitted
        c2s(400, TEXT[400:500]),  # 300..400 never seen
        s2c(0, TEXT[:50], 100), s2c(50, TEXT[50:1500], 100),
        c2s(500, b"", FIN | ACK), s2c(1500, b"", 501, FIN | ACK),
    ]
    path = write_pcap(tmp_path / "t.pcap", frames)
    f = the_flow(path)
    assert f.client_stream == TEXT[:300] + TEXT[400:500]
    assert f.client_holes == ((300, 100),)
    assert f.server_stream == TEXT[:1500] and f.server_holes == ()
    assert not f.client_truncated and not f.server_truncated
    info = _info(path)
    assert info.reassembly["stream_retransmitted_bytes"] == 100
    assert info.reassembly["stream_holes"] == 1 and info.reassembly["stream_hole_bytes"] == 100
    if tcpflow_ref.TCPFLOW is not None:
        assert aioflow_streams(path) == tcpflow_ref.tcpflow_streams(path)


def _info(path: Path, **options: Any) -> aioflow.ParserInfo:
    async def run() -> aioflow.ParserInfo:
        async with aioflow.FlowParser(path, reassemble=True, **NO_TIMEOUTS, **options) as parser:  # type: ignore[arg-type]
            await parser.wait()
        return parser.info()

    import anyio

    return anyio.run(run)


def test_mid_stream_pick_up_and_data_before_it(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """No SYN: the stream starts at the first segment; earlier data (reordered) goes in front, with
    a hole for a gap, as tcpflow inserts it."""
    frames = [c2s(1000, TEXT[1000:1100]), c2s(800, TEXT[800:900]), c2s(900, TEXT[900:1000]), c2s(500, TEXT[500:600])]
    path = write_pcap(tmp_path / "mid.pcap", frames)
    f = the_flow(path)
    assert f.client_stream == TEXT[500:600] + TEXT[800:1100]
    assert f.client_holes == ((100, 200),)
    (theirs,) = tcpflow.streams(path)[CLIENT_KEY]
    # tcpflow moves its file's bytes to open the gap and leaves the old ones there, not zeros
    ours = tcpflow_ref.zero_filled(f.client_stream or b"", f.client_holes)
    assert len(theirs) == len(ours) and theirs[:100] == ours[:100] and theirs[300:] == ours[300:]
    assert theirs[100:300] != bytes(200)


def test_overlap_first_copy_wins_tcpflow_last(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """OVERLAP: a retransmission carrying other bytes. aioflow keeps the first copy (as most
    stacks and IDSes do); tcpflow writes the last one over it."""
    frames = [*handshake(), c2s(0, b"A" * 100), c2s(50, b"B" * 100), c2s(200, b"C" * 50), c2s(180, b"D" * 40)]
    path = write_pcap(tmp_path / "overlap.pcap", frames)
    f = the_flow(path)
    assert f.client_stream == b"A" * 100 + b"B" * 50 + b"D" * 20 + b"C" * 50
    assert f.client_holes == ((150, 30),)
    theirs = tcpflow.streams(path)[CLIENT_KEY]
    assert theirs == [b"A" * 50 + b"B" * 100 + b"\0" * 30 + b"D" * 40 + b"C" * 30]


def test_segment_before_isn_kept_after_syn(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """BEFORE_ISN: data at the SYN's own sequence number. aioflow keeps the part after it."""
    frames = [*handshake(), tcp(CLIENT, SERVER, ISN_C, ISN_S + 1, ACK | PSH, b"X" + TEXT[:99]), c2s(99, TEXT[99:200])]
    path = write_pcap(tmp_path / "isn.pcap", frames)
    assert the_flow(path).client_stream == TEXT[:200]
    theirs = tcpflow.streams(path)[CLIENT_KEY]
    assert theirs == [bytes(99) + TEXT[99:200]]


def test_tcpflow_takes_ethernet_padding_for_payload(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """Why tcpflow is given captures with link-layer trailers cut off: it counts them as data."""
    frames = [*handshake(), c2s(0, b"hi", pad=b"\xee" * 4), c2s(2, b"there"), c2s(7, b"", ACK, b"\xee" * 6)]
    path = write_pcap(tmp_path / "pad.pcap", frames)
    assert the_flow(path).client_stream == b"hithere"
    assert tcpflow.streams(path, strip=False)[CLIENT_KEY] != [b"hithere"]
    assert tcpflow.streams(path)[CLIENT_KEY] == [b"hithere"]


def test_ip_total_length_zero(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """TSO: senders capture their offloaded segments with IP total length 0; as Wireshark does,
    aioflow takes the captured bytes, tcpflow none."""
    big = bytearray(c2s(100, TEXT[100:3100]))
    big[16:18] = b"\0\0"
    frames = [*handshake(), c2s(0, TEXT[:100]), bytes(big), c2s(3100, TEXT[3100:3200])]
    path = write_pcap(tmp_path / "tso.pcap", frames)
    assert the_flow(path).client_stream == TEXT[:3200]
    assert tcpflow.streams(path)[CLIENT_KEY] == [TEXT[:100] + bytes(3000) + TEXT[3100:3200]]


def test_data_after_fin_tcpflow_splits(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """AFTER_FIN: a segment past the FIN (ACK-with-payload heuristics, broken stacks)."""
    frames = [*handshake(), c2s(0, TEXT[:100]), c2s(100, b"", FIN | ACK), c2s(101, TEXT[101:103], ACK)]
    path = write_pcap(tmp_path / "fin.pcap", frames)
    assert the_flow(path).client_stream == TEXT[:100] + TEXT[101:103]
    assert the_flow(path).client_holes == ((100, 1),)  # the FIN's sequence number carries no byte
    assert len(tcpflow.streams(path)[CLIENT_KEY]) == 2


def test_cut_frame_is_a_hole(tmp_path: Path, tcpflow: TcpFlow) -> None:
    """CUT: a frame captured shorter than its IP length: the missing bytes are a hole."""
    frames = [*handshake(), c2s(0, TEXT[:100]), c2s(100, TEXT[100:200])[:-30], c2s(200, TEXT[200:300])]
    path = write_pcap(tmp_path / "cut.pcap", frames)
    f = the_flow(path)
    assert f.client_stream == TEXT[:170] + TEXT[200:300] and f.client_holes == ((170, 30),)


# --- bounds ---


def test_max_stream_bytes_truncates_the_kept_stream_not_the_chunks(tmp_path: Path) -> None:
    frames = handshake() + [c2s(i * 100, TEXT[i * 100 : i * 100 + 100]) for i in range(30)]
    path = write_pcap(tmp_path / "long.pcap", frames)
    f = the_flow(path, max_stream_bytes=1000)
    assert f.client_stream == TEXT[:1000] and f.client_truncated and not f.server_truncated
    chunks, _ = _events(path, max_stream_bytes=1000)
    assert b"".join(c.data for c in chunks if c.direction == "client") == TEXT[:3000]
    assert _info(path, max_stream_bytes=1000).reassembly["stream_bytes_truncated"] == 2000


def test_active_timeout_hands_each_record_its_part(tmp_path: Path) -> None:
    """A flow split by active_timeout: each record carries what was kept since the previous one;
    together, and in chunks, they are the whole stream."""
    frames = [*handshake(), *(c2s(i * 100, TEXT[i * 100 : i * 100 + 100]) for i in range(30))]
    path = write_pcap(tmp_path / "active.pcap", frames)
    records = [f for f in aioflow.read(path, reassemble=True, active_timeout=0.005) if f.protocol == 6]
    assert len(records) > 3 and [f.end_reason for f in records[:-1]] == ["active"] * (len(records) - 1)
    assert b"".join(f.client_stream or b"" for f in records) == TEXT[:3000]
    chunks, _ = _events(path, active_timeout=0.005)
    assert b"".join(c.data for c in chunks) == TEXT[:3000]
    assert [c.offset for c in chunks] == sorted({c.offset for c in chunks})


def test_out_of_order_flood_stays_within_memory(tmp_path: Path) -> None:
    """Thousands of flows each sending segments after a gap that never fills: the arena stays
    within max_reassembly_memory, what did not fit is counted, every packet is still counted."""
    frames = []
    for n in range(400):
        src = (f"10.1.{n // 250}.{n % 250 + 1}", 1024 + n)
        frames.append(tcp(src, SERVER, 5000, 0, SYN))
        frames += [tcp(src, SERVER, 5001 + 100 + i * 1000, 1, ACK, TEXT[:1000]) for i in range(8)]
    path = write_pcap(tmp_path / "flood.pcap", frames)
    limit = 1 << 20
    info = _info(path, max_reassembly_memory=limit)
    r = info.reassembly
    assert 0 < r["stream_peak_memory"] <= limit
    assert r["stream_segments_dropped"] > 0  # 3.2 MB of out-of-order data cannot fit in 1 MiB
    assert r["stream_memory"] == 0  # everything handed back once the flows ended
    assert info.packets == len(frames) == info.packets_in_flows + sum(info.aside.values())
    kept = sum(len(f.client_stream or b"") for f in aioflow.read(path, reassemble=True, max_reassembly_memory=limit))
    assert 0 < kept < 400 * 8000


def _rss_anon_kib() -> int:
    """This process's anonymous resident memory as the kernel counts it."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssAnon:"))
    return int(line.split()[1])


def _idle_priority_threads_waiting() -> list[bool]:
    """For each SCHED_IDLE thread of this process (only prefault.c's thread runs at that priority):
    whether it sleeps waiting for work (in pthread_cond_wait, a futex wait) rather than working."""
    waiting = []
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            wchan = Path(f"/proc/self/task/{tid}/wchan").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on, see proc(5)
        if int(fields[41 - 3]) == os.SCHED_IDLE:  # field 41: policy
            # wchan names the futex wait (its name varies by kernel) unless the kernel hides it ("0")
            waiting.append(fields[0] == "S" and ("futex" in wchan or wchan == "0"))
    return waiting


async def _prefault_growth() -> tuple[int, int]:
    """How much this process's anonymous RSS grew over a reassembling parse, once the prefault
    thread has done all its work, and the streams' peak arena use (KiB both)."""
    import anyio

    before = _rss_anon_kib()
    async with aioflow.FlowParser(DATA / "ndpi_log4j-webapp-exploit.pcap", reassemble=True) as parser:
        await parser.wait()
        # Counted, not timed: the parse is over, so the thread's work no longer grows; wait
        # until it has done all of it (it sleeps on its condition variable). At idle priority
        # on a loaded machine that may take many seconds (a fixed 5 s wait fell short: grown
        # 55604 KiB), so the bound below is only a guard against a hang. The thread sets its
        # own priority first thing: until it has run at all, it is not seen as SCHED_IDLE.
        with anyio.fail_after(300):
            while not ((waiting := _idle_priority_threads_waiting()) and all(waiting)):  # noqa: ASYNC110 (no event)
                await anyio.sleep(0.05)
        assert len(waiting) == 1  # the arena's prefault thread, which also backs the batch buffers
        grown = _rss_anon_kib() - before
    return grown, parser.info().reassembly["stream_peak_memory"] >> 10


@pytest.mark.skipif(tuple(map(int, os.uname().release.split(".")[:2])) < (5, 14), reason="no MADV_POPULATE_WRITE")
def test_memory_is_backed_ahead_of_use_and_no_further() -> None:
    """The stream arena's pages are populated 32 MiB past what the streams used, and each of the
    4 batch buffers' first 8 MiB (prefault.h), by a thread of its own, and no more: the kernel's
    count of resident memory grows by that much, plus the parser's own few MiB."""
    ahead = (32 + 4 * 8) << 10  # KiB
    # In a fresh process: in this one, the malloc arenas hold what earlier tests freed (their
    # order is random), and calloc zeroes reused chunks, faulting them in: the parser's own
    # allocations then grew RSS by up to ~30 MiB more after tests/test_async_api.py.
    code = (
        f"import sys; sys.path[:0] = [{str(Path(__file__).parent)!r}]; "
        "import anyio, test_reassembly as t; print(*anyio.run(t._prefault_growth))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    grown, peak = map(int, proc.stdout.split())
    assert 0 < peak < 32 << 10  # the capture's streams need far less than the prefault distance
    # the rest: flow table, per-flow stream state, batch arrays (~12 MiB under ASan)
    slack = 16 << 10
    assert ahead - slack // 2 <= grown <= ahead + peak + slack, (grown, peak)


def test_needs_reassembly_for_events_and_checks_bounds() -> None:
    path = DATA / "tcpflow_test1-out-of-order.pcap"

    async def run() -> None:
        async with aioflow.FlowParser(path) as parser:
            with pytest.raises(aioflow.ConfigError):
                parser.stream_events()
            with pytest.raises(aioflow.ConfigError):
                parser.chunks()
            await parser.wait()

    import anyio

    anyio.run(run)
    with pytest.raises(aioflow.ConfigError):
        list(aioflow.read(path, reassemble=True, max_stream_bytes=0))
    with pytest.raises(aioflow.ConfigError):
        list(aioflow.read(path, reassemble=True, max_reassembly_memory=1000))
    plain = next(iter(aioflow.read(path)))
    assert plain.client_stream is None and plain.client_holes == () and plain.client_datagrams is None


# --- streaming events ---


def _events(path: Path, **options: Any) -> tuple[list[aioflow.StreamChunk], list[object]]:
    async def run() -> list[object]:
        async with aioflow.FlowParser(path, reassemble=True, **{**NO_TIMEOUTS, **options}) as parser:  # type: ignore[arg-type]
            return [e async for e in parser.stream_events()]

    import anyio

    events = anyio.run(run)
    return [e for e in events if isinstance(e, aioflow.StreamChunk)], events


@pytest.mark.parametrize("name", ["tcpflow_test5-lines-randomized.pcap", "zeek_tcp_reassembly.pcap",
                                  "ndpi_ocs.pcap", "ndpi_smtp-starttls.pcap", "ndpi_syslog.pcap"])  # fmt: skip
def test_chunks_add_up_to_the_streams(name: str) -> None:
    """Each flow's chunks, in order, are its streams; the flow comes after its chunks."""
    chunks, events = _events(DATA / name)
    got: dict[tuple[int, str], list[aioflow.StreamChunk]] = defaultdict(list)
    flows = 0
    for e in events:
        if isinstance(e, aioflow.StreamChunk):
            assert e.flow.end_reason == ""
            got[(e.flow.id, e.direction)].append(e)
            continue
        assert isinstance(e, aioflow.Flow)
        flows += 1
        for direction, stream, grams in (("client", e.client_stream, e.client_datagrams),
                                          ("server", e.server_stream, e.server_datagrams)):  # fmt: skip
            mine = got.pop((e.id, direction), [])
            assert b"".join(c.data for c in mine) == stream
            for a, b in itertools.pairwise(mine):
                assert b.offset >= a.offset + len(a.data)
            if e.protocol != 6:  # UDP and every other IP protocol: datagrams
                assert grams is not None
                assert [n for c in mine for n in c.datagram_lengths or ()] == [len(g) for g in grams]
            elif mine:
                assert mine[-1].next_seq is not None
    assert flows and chunks and not got  # no chunk after its flow or of a flow never ended


def test_at_most_one_chunk_per_flow_direction_per_batch() -> None:
    engine = Engine(DATA / "zeek_tcp_reassembly.pcap", EngineConfig(reassemble=True, stream_chunks=True))
    try:
        fd = engine.start(64, 2)
        import select

        batches = 0
        while True:
            state, batch = engine.take_ready()
            if state == "wait":
                select.select([fd], [], [])
                continue
            keys = Counter((batch.chunks[j].flow.id, batch.chunks[j].direction) for j in range(batch.chunk_count))
            assert all(n == 1 for n in keys.values())
            batches += batch.chunk_count > 0
            if state == "done":
                break
        assert batches >= 1
    finally:
        engine.close()


def test_no_chunks_without_a_stream_events_subscriber() -> None:
    """Chunks copy every byte once more: terminated()/read() consumers do not pay for them."""
    engine = Engine(DATA / "zeek_tcp_reassembly.pcap", EngineConfig(reassemble=True))
    try:
        fd = engine.start(64, 2)
        import select

        chunks = streams = 0
        while True:
            state, batch = engine.take_ready()
            if state == "wait":
                select.select([fd], [], [])
                continue
            chunks += batch.chunk_count
            streams += len(batch.stream_data)
            if state == "done":
                break
        assert chunks == 0 and streams > 0
    finally:
        engine.close()


def test_next_seq_and_last_ack_follow_the_sequence_numbers(tmp_path: Path) -> None:
    frames = [*handshake(), c2s(0, TEXT[:100]), s2c(0, TEXT[:300], 100), c2s(100, TEXT[100:150], ACK | PSH)]
    path = write_pcap(tmp_path / "seq.pcap", frames)
    chunks, _ = _events(path)
    last = {c.direction: c for c in chunks}
    assert last["client"].next_seq == ISN_C + 1 + 150
    assert last["client"].last_ack == ISN_S + 1  # what the client acknowledged: the server's next byte
    assert last["server"].next_seq == ISN_S + 1 + 300
    assert last["server"].last_ack == ISN_C + 1 + 100


def test_udp_datagrams_match_dpkt(tmp_path: Path) -> None:
    """UDP: each direction's payloads, as an independent decoder (dpkt) reads them."""
    path = DATA / "ndpi_syslog.pcap"
    want: dict[tuple[str, int, str, int], list[bytes]] = defaultdict(list)
    for lt, frame, _ in reference.read_capture(path).records:
        if lt != reference.LT_ETHERNET:
            continue
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
            want[(_ip_bytes(ip.src), ip.data.sport, _ip_bytes(ip.dst), ip.data.dport)].append(bytes(ip.data.data))
    got: dict[tuple[str, int, str, int], list[bytes]] = defaultdict(list)
    for f in aioflow.read(path, reassemble=True, **NO_TIMEOUTS):
        if f.protocol == 17:
            got[(f.src_ip, f.src_port, f.dst_ip, f.dst_port)] += list(f.client_datagrams or ())
            got[(f.dst_ip, f.dst_port, f.src_ip, f.src_port)] += list(f.server_datagrams or ())
            assert f.client_stream == b"".join(f.client_datagrams or ())
    # dpkt decodes Ethernet and 802.1Q frames; aioflow also has the PPPoE ones, which it lacks
    assert len(want) >= 5
    assert {k: got[k] for k in want} == want


def _ip_bytes(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


# What a datagram of another IP protocol keeps: the data after this many header bytes (ICMP and
# ICMPv6 8, as ngrep reads them; SCTP's common header 12), the whole IP payload for the rest.
OTHER_IP_HEADER = {1: 8, 58: 8, 132: 12}
OTHER_IP_CAPTURES = [DATA / "zeek_icmp_5-pings.pcap", DATA / "zeek_communityid_icmp6.pcap",
                     CORPUS / "ndpi_icmp-tunnel.pcap", CORPUS / "nfstream_6in4tunnel.pcap"]  # fmt: skip


def _dpkt_other_ip(path: Path) -> dict[tuple[str, str, int], Counter[bytes]]:
    """dpkt's reading: per (src, dst, protocol), the payloads of the whole (unfragmented) IP packets
    of every protocol but TCP and UDP."""
    want: dict[tuple[str, str, int], Counter[bytes]] = defaultdict(Counter)
    for lt, frame, _ in reference.read_capture(path).records:
        if lt != reference.LT_ETHERNET:
            continue
        ip = dpkt.ethernet.Ethernet(frame).data
        if isinstance(ip, dpkt.ip.IP):
            whole = not (ip.mf or ip.offset)
        elif isinstance(ip, dpkt.ip6.IP6):
            whole = ip.extension_hdrs.get(44) is None  # no fragment header
        else:
            continue
        if whole and ip.p not in (6, 17):
            want[(_ip_bytes(ip.src), _ip_bytes(ip.dst), ip.p)][bytes(ip.data)[OTHER_IP_HEADER.get(ip.p, 0) :]] += 1
    return want


@pytest.mark.parametrize("path", OTHER_IP_CAPTURES, ids=lambda p: p.name)
def test_other_ip_datagrams_match_dpkt(path: Path) -> None:
    """ICMP, ICMPv6, IPv6-in-IPv4...: each direction's packets kept as datagrams, as dpkt reads them."""
    if not path.exists():
        pytest.skip(ABSENT)
    want = _dpkt_other_ip(path)
    got: dict[tuple[str, str, int], Counter[bytes]] = defaultdict(Counter)
    for f in aioflow.read(path, reassemble=True, **NO_TIMEOUTS):
        if f.protocol in (6, 17):
            continue
        for src, dst, grams in ((f.src_ip, f.dst_ip, f.client_datagrams), (f.dst_ip, f.src_ip, f.server_datagrams)):
            got[(src, dst, f.protocol)].update(grams or ())
        assert f.client_stream == b"".join(f.client_datagrams or ())
        assert f.server_stream == b"".join(f.server_datagrams or ())
    assert want, f"{path.name} has no IP packet of another protocol than TCP/UDP: the case tests nothing"
    assert {k: got[k] for k in want} == want


# --- bundled and corpus captures against tcpflow ---

BUNDLED_TCP = ["tcpflow_test1-out-of-order.pcap", "tcpflow_test5-lines-randomized.pcap",
               "tcpflow_test5-lines-randomized2.pcap", "tcpflow_test4.pcap", "ndpi_ocs.pcap",
               "ndpi_smtp-starttls.pcap", "ndpi_mysql.pcapng", "zeek_tcp_handshake-reorder.pcap",
               "ndpi_log4j-webapp-exploit.pcap", "zeek_tcp_rst-inject-rae.pcap"]  # fmt: skip


@pytest.mark.parametrize("name", BUNDLED_TCP)
def test_bundled_streams_match_tcpflow(name: str, tcpflow: TcpFlow) -> None:
    path = DATA / name
    ours, theirs = aioflow_streams(path), tcpflow.streams(path)
    assert ours and ours == theirs


CORPUS_FILES = [p for p in reference.iter_corpus(CORPUS)] if CORPUS.is_dir() else []


def _readable(path: Path) -> bool:
    try:
        reference.read_capture(path)
    except reference.CaptureRefused:
        return False
    return True


@pytest.mark.corpus
@pytest.mark.parametrize("path", params(CORPUS_FILES))
def test_corpus_streams_match_tcpflow(path: Path | None, tcpflow: TcpFlow) -> None:
    """Every TCP direction of the corpus, byte for byte, but for the explained EXCLUDED ones."""
    if path is None:
        pytest.skip(ABSENT)
    if not _readable(path):
        pytest.skip("libpcap refuses this capture (test_vs_reference checks the error)")
    rel = name_of(path)
    diff = differing(tcpflow, path, EXCLUDED.get(rel, {}))
    assert not diff, f"{rel}: {len(diff)} direction(s) differ from tcpflow (aioflow, tcpflow lengths): " + str(
        sorted(diff.items())[:5]
    )


@pytest.mark.corpus
def test_large_segments_tcpflow_leaves_out(tcpflow: TcpFlow) -> None:
    """TSO, shown on its capture with dpkt: tcpflow's file holds zeros exactly where the segments
    with an IP total length of 0 go, and the bytes of every other segment; aioflow has them all."""
    path = CORPUS / "nfstream_anydesk-2.pcap"
    if not path.is_file():
        pytest.skip(ABSENT)
    key = ("192.168.1.187", 54164, "192.168.1.178", 7070)
    (theirs,) = tcpflow.streams(path)[key]
    (ours,) = aioflow_streams(path)[key]
    isn, big, small = None, 0, 0
    for _, frame, _ in reference.read_capture(path).records:
        ip = dpkt.ethernet.Ethernet(frame).data
        seg = ip.data if isinstance(ip, dpkt.ip.IP) else None
        if not isinstance(seg, dpkt.tcp.TCP) or (seg.sport, seg.dport) != key[1::2]:
            continue
        if seg.flags & SYN:
            isn = seg.seq + 1
            continue
        assert isn is not None
        at, n = (seg.seq - isn) % 2**32, len(seg.data)
        if not n:
            continue
        assert ours[at : at + n] == seg.data
        if ip.len == 0:
            big += 1
            assert theirs[at : at + n] == bytes(n)
        else:
            small += 1
            assert theirs[at : at + n] == seg.data
    assert big > 100 and small > 100


@pytest.mark.corpus
@pytest.mark.parametrize("rel", sorted(EXCLUDED))
def test_excluded_directions_do_differ(rel: str, tcpflow: TcpFlow) -> None:
    """No stale exclusion: each excluded capture or direction still differs from tcpflow."""
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(ABSENT)
    ours, theirs = aioflow_streams(path), tcpflow.streams(path)
    for key, reason in EXCLUDED[rel].items():
        if key == ALL:
            assert ours != theirs, f"{rel} agrees with tcpflow; drop '{reason}'"
        else:
            assert ours.get(key, []) != theirs.get(key, []), f"{rel} {key} agrees with tcpflow; drop '{reason}'"


def test_holes_are_sorted_and_inside_the_stream() -> None:
    f = next(f for f in aioflow.read(DATA / "zeek_tcp_reassembly.pcap", reassemble=True) if f.client_holes)
    offsets = [o for o, _ in f.client_holes]
    assert offsets == sorted(offsets)
    assert all(n > 0 for _, n in f.client_holes)
    end = len(f.client_stream or b"") + sum(n for _, n in f.client_holes)
    assert all(o + n < end for o, n in f.client_holes)  # data follows every hole


def test_frame_struct_sizes_stay_aligned() -> None:
    """The cffi view of the appended C structs: 8-aligned, so the batch copies stay exact."""
    from aioflow._engine import ffi

    assert ffi.sizeof("af_chunk") % 8 == 0 and ffi.sizeof("af_stream_info") % 8 == 0
    assert struct.calcsize("=Q") == 8
