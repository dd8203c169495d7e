"""Decode fidelity where tshark keeps a packet by its ports: TCP segments with an impossible data
offset, first fragments too short for their transport header, VN-Tag and E-Tag shims, IPv6 on an
IPv4 link, and later fragments that come before their first (held until it comes). Each crafted
capture is read by tshark, frame by frame (its IP addresses and ports, fragments given the ports
of their datagram's first fragment as aioflow documents it), and the packets per conversation
must equal aioflow's flows; every oddity is a decode event (README "Decode events")."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pytest
from support.corpus import CORPUS
from support.crafted import A6, B6, MAC_A, MAC_B, SYN, A, B, C, ether, frags4, ip4, ip6, run, tcp, udp
from support.tshark import TShark

import aioflow
from aioflow._engine import DECODE_EVENTS, Engine, EngineConfig

Convs = Counter[tuple[int, frozenset[tuple[str, int]]]]

FIELDS = ("ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "ip.proto", "ipv6.nxt", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport", "sctp.srcport", "sctp.dstport", "ip.id", "ip.flags.mf",
          "ip.frag_offset")  # fmt: skip


def tshark_conversations(tshark: TShark, path: Path) -> Convs:
    """Packets per conversation as tshark decodes each frame (no reassembly); a later IPv4
    fragment gets the ports of its datagram's first fragment: the latest before it, else the next."""
    out = tshark.output(path, "-n", "-o", "ip.defragment:FALSE", "-T", "fields", "-E", "occurrence=f",
                        *[a for f in FIELDS for a in ("-e", f)])  # fmt: skip
    frames = []
    for line in out.splitlines():
        c = dict(zip(FIELDS, line.split("\t"), strict=True))
        src, dst = c["ip.src"] or c["ipv6.src"], c["ip.dst"] or c["ipv6.dst"]
        proto = int(c["ip.proto"] or c["ipv6.nxt"])
        ports = tuple(c[f"tcp.{e}"] or c[f"udp.{e}"] or c[f"sctp.{e}"] for e in ("srcport", "dstport"))
        later = bool(c["ip.frag_offset"]) and int(c["ip.frag_offset"]) > 0
        first = not later and c["ip.flags.mf"] in ("1", "True")
        frames.append((src, dst, proto, c["ip.id"], later, first, ports))
    firsts: dict[tuple[Any, ...], list[tuple[int, tuple[str, str]]]] = {}
    for i, (src, dst, proto, ident, _, first, ports) in enumerate(frames):
        if first:
            firsts.setdefault((src, dst, proto, ident), []).append((i, ports))
    convs: Convs = Counter()
    for i, (src, dst, proto, ident, later, _, ports) in enumerate(frames):
        if later:
            known = firsts.get((src, dst, proto, ident), [])
            before = [p for at, p in known if at < i]
            after = [p for at, p in known if at > i]
            if not before and not after:
                continue  # an orphan for tshark too
            ports = before[-1] if before else after[0]
        convs[(proto, frozenset({(src, int(ports[0])), (dst, int(ports[1]))}))] += 1
    return convs


def aioflow_conversations(recs: list[Any]) -> Convs:
    convs: Convs = Counter()
    for (src, sport, dst, dport, proto), _, up, down in recs:
        convs[(proto, frozenset({(src, sport), (dst, dport)}))] += up + down
    return convs


def write(path: Path, frames: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB, step: float = 0.01) -> Path:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=linktype)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=1.0 + i * step)
    return path


def tcp_header(sport: int, dport: int, offset_words: int, flags: int = SYN, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, offset_words << 4, flags, 65535, 0, 0) + payload


async def check(tshark: TShark, path: Path, **opts: Any) -> aioflow.ParserInfo:
    recs, _, info = await run(path, **opts)
    want = tshark_conversations(tshark, path)
    assert aioflow_conversations(recs) == want
    assert info.packets_in_flows == sum(want.values())
    return info


def events(info: aioflow.ParserInfo) -> dict[str, int]:
    return {k: v for k, v in info.decode_events.items() if v}


@pytest.mark.anyio
async def test_tcp_data_offset_impossible_keeps_the_ports(tmp_path: Path, tshark: TShark) -> None:
    frames = [
        ether(ip4(A, B, 6, tcp_header(1111, 80, 3, payload=b"abcdefgh"))),  # offset 12 bytes
        ether(ip4(B, A, 6, tcp_header(80, 1111, 0))),  # offset 0
        ether(ip4(A, B, 6, tcp_header(1111, 80, 15, payload=b"abcd"))),  # 60 bytes, past the segment
        ether(ip4(A, C, 6, tcp(2222, 443, SYN))),  # an ordinary one beside them
    ]
    info = await check(tshark, write(tmp_path / "offset.pcap", frames))
    assert info.aside["bad_header"] == 0
    assert events(info) == {"tcp_bad_data_offset": 3}


@pytest.mark.anyio
async def test_short_first_fragment_names_its_datagram(tmp_path: Path, tshark: TShark) -> None:
    segment = tcp_header(3333, 80, 5, payload=bytes(range(40)))  # 60 bytes of TCP
    frames = frags4(segment, [16, 32, 48], ident=7, proto=6)  # the first fragment: 16 bytes of TCP header
    frames += frags4(segment, [8], ident=8, proto=6, src=C)  # 8 bytes: the ports and sequence number
    info = await check(tshark, write(tmp_path / "short.pcap", frames))
    assert info.aside["fragment_orphan"] == 0 and info.aside["bad_header"] == 0
    assert info.packets_in_flows == len(frames)
    assert events(info) == {"first_fragment_short": 2}


@pytest.mark.anyio
async def test_vn_tag_and_e_tag_shims(tmp_path: Path, tshark: TShark) -> None:
    inner = ip4(A, B, 17, udp(53, 5353))
    frames = [
        MAC_B + MAC_A + struct.pack("!HIH", 0x8926, 0x00010002, 0x0800) + inner,  # VN-Tag: 4 bytes
        MAC_B + MAC_A + struct.pack("!H6sH", 0x893F, b"\x00\x01\x00\x02\x00\x03", 0x0800) + inner,  # E-Tag: 6
        MAC_B + MAC_A + struct.pack("!HIHHH", 0x8926, 1, 0x8100, 12, 0x86DD) + ip6(A6, B6, 17, udp(1, 2)),
    ]
    info = await check(tshark, write(tmp_path / "shims.pcap", frames))
    assert info.packets_in_flows == 3 and sum(info.aside.values()) == 0


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (228, lambda v6: v6),  # LINKTYPE_IPV4
        (dpkt.pcap.DLT_EN10MB, lambda v6: ether(v6, 0x0800)),  # an EtherType saying IPv4
        (dpkt.pcap.DLT_NULL, lambda v6: struct.pack("<I", 2) + v6),  # BSD loopback, AF_INET
    ],
    ids=["linktype_ipv4", "ethertype_ipv4", "null_af_inet"],
)
@pytest.mark.anyio
async def test_ipv6_on_a_link_that_says_ipv4(tmp_path: Path, tshark: TShark, linktype: int, frame: Any) -> None:
    frames = [frame(ip6(A6, B6, 17, udp(53, 5353))), frame(ip6(B6, A6, 6, tcp(80, 1234, SYN)))]
    frames.append(ip4(A, B, 17, udp(1, 2)) if linktype == 228 else frame(ip4(A, B, 17, udp(1, 2))))
    info = await check(tshark, write(tmp_path / "v6.pcap", frames, linktype))
    assert info.packets_in_flows == 3
    assert events(info) == {"ipv6_in_ipv4": 2}


def early_capture(tmp_path: Path) -> tuple[Path, int]:
    """Datagrams whose later fragments come first, interleaved with others in order, and one
    datagram whose first fragment never comes. Returns the path and its orphan count."""
    payload = bytes(udp(4000, 53, bytes(range(200))))
    d1 = frags4(payload, [64, 128], ident=1, proto=17)
    d2 = frags4(payload, [104], ident=2, proto=17, src=C)
    d3 = frags4(payload, [64], ident=3, proto=17, dst=C)
    lost = frags4(payload, [64], ident=4, proto=17)[1:]
    frames = [d1[2], d2[1], d1[1], *lost, d3[0], d3[1], d1[0], ether(ip4(A, B, 17, udp(4000, 53))), d2[0]]
    return write(tmp_path / "early.pcap", frames), len(lost)


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.anyio
async def test_later_fragments_before_their_first_are_held(tmp_path: Path, tshark: TShark, read_ahead: bool) -> None:
    path, lost = early_capture(tmp_path)
    info = await check(tshark, path, read_ahead=read_ahead)
    assert info.aside["fragment_orphan"] == lost and info.fragments_held == 0
    assert events(info) == {"fragment_early": 3 + lost, "fragment_early_unfinished": lost}


@pytest.mark.anyio
async def test_held_fragments_in_time_order(tmp_path: Path) -> None:
    """Counted before their first fragment, the held ones give the flow its first time."""
    path, _ = early_capture(tmp_path)
    _, details, _ = await run(path)
    flow = next(d for d in details if d["key"] == (A, 4000, B, 53, 17))
    assert flow["first_seen"] == pytest.approx(1.0)


@pytest.mark.anyio
async def test_held_fragments_are_bounded_and_time_out(tmp_path: Path) -> None:
    payload = bytes(udp(4000, 53, bytes(range(200))))
    datagrams = [frags4(payload, [64, 128], ident=i, proto=17) for i in range(3)]
    # 6 later fragments wait at once with room for 4: the 2 oldest go
    frames = [f for d in datagrams for f in d[1:]] + [d[0] for d in datagrams]
    _, _, info = await run(write(tmp_path / "full.pcap", frames), max_fragment_datagrams=4)
    assert events(info) == {"fragment_early": 6, "fragment_early_full": 2}
    assert info.aside["fragment_orphan"] == 2 and info.packets_in_flows == 7
    # the first fragment 60 s after its later ones (fragment_timeout 30 s): they went aside
    frames = [datagrams[0][1], datagrams[0][2], datagrams[0][0]]
    _, _, info = await run(write(tmp_path / "late.pcap", frames, step=60.0))
    assert events(info) == {"fragment_early": 2, "fragment_early_timeout": 2}
    assert info.aside["fragment_orphan"] == 2 and info.packets_in_flows == 1
    # defragment=True: the defragmenter holds them itself, no early fragment event
    _, _, info = await run(write(tmp_path / "defrag.pcap", datagrams[0][::-1]), defragment=True)
    assert events(info) == {} and info.datagrams_reassembled == 1


def test_early_fragment_flood_is_bounded_and_conserves_at_every_step(tmp_path: Path) -> None:
    """Later fragments of n datagrams from many sources, one in 100 followed by its first: held at
    most max_fragment_datagrams at once, the counters balanced after every few packets."""
    n, bound = 3000, 256
    payload = bytes(udp(4000, 53, bytes(range(200))))
    frames = []
    for i in range(n):
        d = frags4(payload, [104], ident=i, proto=17, src=f"10.{i >> 8 & 255}.{i & 255}.1")
        frames.append(d[1])
        if i % 100 == 99:
            frames.append(d[0])
    config = EngineConfig(max_fragment_datagrams=bound, idle_timeout_ns=10**15, active_timeout_ns=10**15,
                          fin_timeout_ns=10**15)  # fmt: skip
    engine = Engine(write(tmp_path / "flood.pcap", frames), config)
    held_seen = 0
    try:
        while True:
            state, _ = engine.pump_some(37)
            s = engine.stats()
            assert s["packets_read"] == s["packets_in_flows"] + sum(s["aside"].values()) + s["defrag_fragments_held"]
            assert s["defrag_fragments_held"] <= bound
            held_seen = max(held_seen, s["defrag_fragments_held"])
            if state == "done":
                break
    finally:
        engine.close()
    completed = n // 100
    ev = s["decode_events"]
    # the ring's places are the bound; released fragments keep theirs until the oldest passes them
    assert bound * 9 // 10 < held_seen <= bound and s["defrag_fragments_held"] == 0
    assert s["packets_read"] == n + completed and s["packets_in_flows"] == 2 * completed
    assert ev["fragment_early"] == n and ev["fragment_early_full"] + ev["fragment_early_unfinished"] == n - completed
    assert 0 < ev["fragment_early_unfinished"] <= bound and s["aside"]["fragment_orphan"] == n - completed


def test_event_names_come_from_the_compiled_module() -> None:
    assert DECODE_EVENTS[0] == "tcp_bad_data_offset" and len(set(DECODE_EVENTS)) == len(DECODE_EVENTS)
    assert all(DECODE_EVENTS)


def test_cli_summary_lists_decode_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aioflow.cli._main import main

    path = write(tmp_path / "v6.pcap", [ip6(A6, B6, 17, udp(53, 5353))], 228)
    assert main(["flows", str(path)]) == 0
    assert "decode events: ipv6_in_ipv4 1" in capsys.readouterr().err


GARBAGE = CORPUS / "nfstream_ip_fragmented_garbage.pcap"


@pytest.mark.anyio
async def test_corpus_short_first_fragments_keep_their_later_fragments(tshark: TShark) -> None:
    """29 first fragments carry 8-28 bytes of TCP (tshark: "Bogus TCP header length"); their 9,048
    later fragments were all fragment_orphan before."""
    if not GARBAGE.exists():
        pytest.skip(f"capture corpus absent: {GARBAGE} not found (set AIOFLOW_PCAPS)")
    info = await check(tshark, GARBAGE)
    assert info.aside["fragment_orphan"] == 0 and info.aside["bad_header"] == 0
    assert info.packets_in_flows == info.packets == 9077
    assert events(info) == {"first_fragment_short": 29}
