"""End reasons and key semantics on captures crafted here (dpkt.pcap.Writer) with chosen timestamps.

Each test writes a small Ethernet capture whose timing forces one end reason (or one key rule) and
asserts the exact records aioflow must emit: keys, end reasons, packets per direction and order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest
from support import reference
from support.crafted import (
    A6,
    ACK,
    B6,
    BIG,
    FIN,
    MAC_A,
    MAC_B,
    PSH,
    RST,
    SYN,
    A,
    B,
    C,
    Packet,
    Rec,
    T,
    ether,
    ip4,
    ip6,
    run,
    tcp4,
    udp,
    udp4,
    write,
)

import aioflow

# --- end reasons ---


@pytest.mark.anyio
async def test_idle(tmp_path: Path) -> None:
    path = write(tmp_path, "idle.pcap", [
        udp4(100.0, A, 1000, B, 53),
        udp4(101.0, B, 53, A, 1000),
        udp4(120.0, B, 53, A, 1000),  # 19 s of silence > idle_timeout: a new flow, B its first sender
    ])
    recs, details, _ = await run(path, idle_timeout=10.0)
    assert recs == [
        (T(A, 1000, B, 53, 17), "idle", 1, 1),
        (T(B, 53, A, 1000, 17), "eof", 1, 0),
    ]
    assert details[0]["first_seen"] == pytest.approx(100.0) and details[0]["last_seen"] == pytest.approx(101.0)


@pytest.mark.anyio
async def test_active(tmp_path: Path) -> None:
    # One packet a second for 12 s, A->B on even seconds, B->A on odd ones; active_timeout 5.5 s
    # cuts a record at 0..5, another at 6..11, and the packet at 12 s is left for the end of file.
    pkts = [udp4(1000.0 + s, A, 5000, B, 6000) if s % 2 == 0 else udp4(1000.0 + s, B, 6000, A, 5000)
            for s in range(13)]
    recs, details, _ = await run(write(tmp_path, "active.pcap", pkts), active_timeout=5.5)
    k = T(A, 5000, B, 6000, 17)
    assert recs == [(k, "active", 3, 3), (k, "active", 3, 3), (k, "eof", 1, 0)]
    assert sum(r[2] + r[3] for r in recs) == len(pkts)
    assert [(d["first_seen"], d["last_seen"]) for d in details] == [
        pytest.approx((1000.0, 1005.0)), pytest.approx((1006.0, 1011.0)), pytest.approx((1012.0, 1012.0))]


def _handshake_and_close(t0: float, sport: int = 40000) -> list[Packet]:
    return [
        tcp4(t0 + 0.0, A, sport, B, 80, SYN),
        tcp4(t0 + 0.1, B, 80, A, sport, SYN | ACK),
        tcp4(t0 + 0.2, A, sport, B, 80, ACK),
        tcp4(t0 + 0.3, A, sport, B, 80, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"),
        tcp4(t0 + 1.0, B, 80, A, sport, FIN | ACK),
        tcp4(t0 + 1.1, A, sport, B, 80, FIN | ACK),
        tcp4(t0 + 1.2, B, 80, A, sport, ACK),
    ]


@pytest.mark.anyio
async def test_fin(tmp_path: Path) -> None:
    pkts = [
        *_handshake_and_close(10.0),
        # FIN from one side only: not closed, so it stays until the end of the file.
        tcp4(10.5, A, 40001, B, 443, SYN),
        tcp4(10.6, B, 443, A, 40001, SYN | ACK),
        tcp4(11.0, A, 40001, B, 443, FIN | ACK),
        udp4(20.0, C, 1234, B, 53),  # packet time moves past last packet + fin_timeout
    ]
    recs, _, _ = await run(write(tmp_path, "fin.pcap", pkts), fin_timeout=2.0, idle_timeout=100.0)
    assert recs[0] == (T(A, 40000, B, 80), "fin", 4, 3)
    assert sorted(recs[1:]) == sorted([(T(A, 40001, B, 443), "eof", 2, 1), (T(C, 1234, B, 53, 17), "eof", 1, 0)])


@pytest.mark.anyio
async def test_rst(tmp_path: Path) -> None:
    pkts = [
        tcp4(10.0, A, 40000, B, 81, SYN),
        tcp4(10.1, B, 81, A, 40000, RST | ACK),
        udp4(20.0, C, 1234, B, 53),
    ]
    recs, _, _ = await run(write(tmp_path, "rst.pcap", pkts), fin_timeout=2.0, idle_timeout=100.0)
    assert recs == [(T(A, 40000, B, 81), "rst", 1, 1), (T(C, 1234, B, 53, 17), "eof", 1, 0)]


@pytest.mark.anyio
async def test_eof(tmp_path: Path) -> None:
    pkts = [tcp4(5.0, A, 40000, B, 22, SYN), tcp4(5.1, B, 22, A, 40000, SYN | ACK), tcp4(5.2, A, 40000, B, 22, ACK)]
    recs, _, info = await run(write(tmp_path, "eof.pcap", pkts))
    assert recs == [(T(A, 40000, B, 22), "eof", 2, 1)]
    assert info.packets == 3 and info.finished


@pytest.mark.anyio
async def test_evicted_least_recently_seen(tmp_path: Path) -> None:
    pkts = [
        udp4(1.0, A, 1001, B, 53),
        udp4(2.0, A, 1002, B, 53),
        udp4(2.5, B, 53, A, 1001),  # 1001 seen again: 1002 is now the least recently seen
        udp4(3.0, A, 1003, B, 53),  # a third flow with max_flows=2
        udp4(4.0, A, 1003, B, 53),
    ]
    recs, _, info = await run(write(tmp_path, "evict.pcap", pkts), max_flows=2)
    assert recs[0] == (T(A, 1002, B, 53, 17), "evicted", 1, 0)
    assert sorted(recs[1:]) == [(T(A, 1001, B, 53, 17), "eof", 1, 1), (T(A, 1003, B, 53, 17), "eof", 2, 0)]
    assert info.flows_created == 3 and info.packets_in_flows == 5


@pytest.mark.anyio
async def test_stop_flushes_active_flows(tmp_path: Path) -> None:
    # 250k packets: a long flow L with a packet every 10 ms, and every 1000th packet a one-packet
    # UDP flow that idles out 50 s later. Every pump of the file ends some flows, so the reader
    # cannot run far ahead of a consumer that stops at the first flow it sees.
    idle = 50.005  # off the 10 ms grid: no packet lands exactly on a deadline
    template_l = ether(ip4(A, B, 17, udp(7000, 7001)))
    pkts: list[Packet] = []
    shorts: dict[int, float] = {}
    for i in range(250_000):
        t = 1_000_000.0 + i * 0.01
        if i % 1000 == 999:
            port = 10000 + i // 1000
            shorts[port] = t
            pkts.append((t, ether(ip4(C, B, 17, udp(port, 53)))))
        else:
            pkts.append((t, template_l))
    path = write(tmp_path, "long.pcap", pkts)
    recs: list[tuple[Rec, float]] = []
    async with aioflow.FlowParser(path, idle_timeout=idle, active_timeout=BIG, fin_timeout=BIG) as parser:
        async for f in parser.terminated():
            if not recs:
                parser.stop()
            recs.append(((f.key, f.end_reason, f.src2dst_packets, f.dst2src_packets), f.last_seen))
        info = parser.info()
    n = info.packets
    assert 0 < n < len(pkts), f"stop() did not end the read mid-file ({n} of {len(pkts)} packets)"
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    t_last = pkts[n - 1][0]
    assert recs[0][0][1] == "idle"
    assert all(r[1] != "eof" for r, _ in recs), "a stopped parse has no end-of-file flows"
    long_flow = [r for r, _ in recs if r[0] == T(A, 7000, B, 7001, 17)]
    l_read = sum(1 for _, frame in pkts[:n] if frame is template_l)
    assert long_flow == [(T(A, 7000, B, 7001, 17), "stop", l_read, 0)]
    # Every short flow read so far comes out exactly once: idle if its deadline is well past, stop
    # if not yet due.
    read_shorts = {p: t for p, t in shorts.items() if t <= t_last}
    by_port = {r[0][1]: r for r, _ in recs if r[0][0] == C}
    assert sorted(by_port) == sorted(read_shorts)
    assert len([r for r, _ in recs if r[0][0] == C]) == len(by_port)
    for port, t in read_shorts.items():
        reason = by_port[port][1]
        assert by_port[port][2:] == (1, 0)
        if t + idle < t_last - 1.0:
            assert reason == "idle", (port, t, t_last)
        elif t + idle > t_last:
            assert reason == "stop", (port, t, t_last)


# --- key rules ---


@pytest.mark.anyio
async def test_synack_first_orientation(tmp_path: Path) -> None:
    pkts = [
        tcp4(1.0, B, 80, A, 40000, SYN | ACK),  # capture starts mid-handshake
        tcp4(1.1, A, 40000, B, 80, ACK),
        tcp4(1.2, A, 40000, B, 80, PSH | ACK, b"hello"),
    ]
    recs, _, _ = await run(write(tmp_path, "synack.pcap", pkts))
    assert recs == [(T(A, 40000, B, 80), "eof", 2, 1)]


@pytest.mark.anyio
async def test_port_reuse_after_fin_and_rst(tmp_path: Path) -> None:
    pkts = [
        *_handshake_and_close(1.0),
        tcp4(3.0, A, 40000, B, 80, SYN),  # same 5-tuple, new connection
        tcp4(3.1, B, 80, A, 40000, SYN | ACK),
        tcp4(4.0, A, 40002, B, 80, SYN),
        tcp4(4.1, B, 80, A, 40002, RST | ACK),
        tcp4(4.2, A, 40002, B, 80, SYN),  # retry after the RST
    ]
    # fin_timeout far away: only the SYN can split the flows.
    recs, _, _ = await run(write(tmp_path, "reuse.pcap", pkts))
    assert sorted(recs) == sorted([
        (T(A, 40000, B, 80), "fin", 4, 3),
        (T(A, 40000, B, 80), "eof", 1, 1),
        (T(A, 40002, B, 80), "rst", 1, 1),
        (T(A, 40002, B, 80), "eof", 1, 0),
    ])
    # The closed connections end when the new SYN arrives, before the end of file.
    assert [r[1] for r in recs[:2]] != ["eof", "eof"]


@pytest.mark.anyio
async def test_icmp_keyed_by_echo_identifier(tmp_path: Path) -> None:
    def echo(t: float, src: str, dst: str, typ: int, ident: int, seq: int) -> Packet:
        icmp = dpkt.icmp.ICMP(type=typ, code=0, data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=b"ping"))
        return (t, ether(ip4(src, dst, 1, icmp)))

    quoted = ip4(A, B, 17, udp(1000, 33434))[:28]
    unreach = dpkt.icmp.ICMP(type=3, code=1, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    echo6 = [
        (5.0, ether(ip6(A6, B6, 58, dpkt.icmp6.ICMP6(type=128, code=0, data=struct.pack("!HH", 7, 1) + b"x")),
                    ethertype=0x86DD)),
        (5.1, ether(ip6(B6, A6, 58, dpkt.icmp6.ICMP6(type=129, code=0, data=struct.pack("!HH", 7, 1) + b"x")),
                    ethertype=0x86DD)),
    ]
    pkts = [
        echo(1.0, A, B, 8, 0x1234, 1), echo(1.1, B, A, 0, 0x1234, 1),
        echo(2.0, A, B, 8, 0x1234, 2), echo(2.1, B, A, 0, 0x1234, 2),
        echo(3.0, A, B, 8, 0x4321, 1),  # another identifier: another flow
        (4.0, ether(ip4(B, A, 1, unreach))),  # no identifier: ports are type and code
        *echo6,
    ]
    path = write(tmp_path, "icmp.pcap", pkts)
    recs, _, _ = await run(path)
    assert sorted(recs) == sorted([
        (T(A, 0x1234, B, 0x1234, 1), "eof", 2, 2),
        (T(A, 0x4321, B, 0x4321, 1), "eof", 1, 0),
        (T(B, 3, A, 1, 1), "eof", 1, 0),
        (T(A6, 7, B6, 7, 58), "eof", 1, 1),
    ])
    assert sorted(r.key for r in reference.reference_flows(path).flows) == sorted(r[0] for r in recs)


@pytest.mark.anyio
async def test_vlan_id_separates_flows(tmp_path: Path) -> None:
    pkts = [
        udp4(1.0, A, 1000, B, 53),
        udp4(1.1, A, 1000, B, 53, vlans=(10,)),
        udp4(1.2, B, 53, A, 1000, vlans=(30, 10)),  # QinQ: the innermost id (10) keys the flow
        udp4(1.3, A, 1000, B, 53, vlans=(20,)),
    ]
    path = write(tmp_path, "vlan.pcap", pkts)
    recs, details, _ = await run(path)
    by_vlan = {d["vlan_id"] or 0: r for r, d in zip(recs, details, strict=True)}
    k = T(A, 1000, B, 53, 17)
    assert by_vlan == {0: (k, "eof", 1, 0), 10: (k, "eof", 1, 1), 20: (k, "eof", 1, 0)}
    assert len(recs) == 3
    assert sorted(f.vlan_id for f in reference.reference_flows(path).flows) == [0, 10, 20]


@pytest.mark.anyio
async def test_fragments_join_their_flow_and_orphans_go_aside(tmp_path: Path) -> None:
    payload = bytes(udp(5353, 9999, b"z" * 40))  # 48 bytes of UDP datagram, cut in three fragments
    frag6_first = struct.pack("!BBHI", 17, 0, 0 | 1, 0xBEEF) + payload[:24]
    frag6_last = struct.pack("!BBHI", 17, 0, 24 << 3, 0xBEEF) + payload[24:]
    pkts = [
        (1.0, ether(ip4(A, B, 17, payload[:16], ident=77, mf=True, offset=0))),
        (1.1, ether(ip4(A, B, 17, payload[16:40], ident=77, mf=True, offset=16))),
        (1.2, ether(ip4(A, B, 17, payload[40:], ident=77, mf=False, offset=40))),
        udp4(1.3, B, 9999, A, 5353),
        (1.4, ether(ip4(A, B, 17, payload[16:40], ident=99, mf=True, offset=16))),  # first never seen
        (2.0, ether(ip6(A6, B6, 44, frag6_first), ethertype=0x86DD)),
        (2.1, ether(ip6(A6, B6, 44, frag6_last), ethertype=0x86DD)),
    ]
    path = write(tmp_path, "frags.pcap", pkts)
    recs, details, info = await run(path)
    assert sorted(recs) == sorted([
        (T(A, 5353, B, 9999, 17), "eof", 3, 1),
        (T(A6, 5353, B6, 9999, 17), "eof", 2, 0),
    ])
    by_key = {d["key"]: d for d in details}
    assert by_key[T(A, 5353, B, 9999, 17)]["bytes"] == (36 + 44 + 28, 29)
    assert by_key[T(A6, 5353, B6, 9999, 17)]["bytes"] == (40 + 32 + 40 + 32, 0)
    assert info.aside.get("fragment_orphan") == 1
    assert info.packets_in_flows == 6 and info.packets == 7
    ref = reference.reference_flows(path)
    assert ref.aside == {"fragment_orphan": 1}
    assert sorted((f.key, f.src2dst_packets, f.dst2src_packets) for f in ref.flows) == sorted(
        (r[0], r[2], r[3]) for r in recs)


@pytest.mark.anyio
async def test_fragment_before_its_first_waits_for_it(tmp_path: Path) -> None:
    payload = bytes(udp(5353, 9999, b"z" * 40))
    pkts = [
        (1.0, ether(ip4(A, B, 17, payload[16:40], ident=5, mf=True, offset=16))),  # first not seen yet
        (2.0, ether(ip4(A, B, 17, payload[:16], ident=5, mf=True, offset=0))),
        (3.0, ether(ip4(A, B, 17, payload[40:], ident=5, mf=False, offset=40))),
    ]
    recs, details, info = await run(write(tmp_path, "frag-order.pcap", pkts))
    assert recs == [(T(A, 5353, B, 9999, 17), "eof", 3, 0)]
    assert info.aside.get("fragment_orphan") == 0 and info.packets_in_flows == 3
    assert info.decode_events["fragment_early"] == 1 and details[0]["first_seen"] == 1.0


@pytest.mark.anyio
async def test_ipv4_fragments_keyed_by_protocol_too(tmp_path: Path) -> None:
    # Two datagrams between the same hosts with the same IP id but different protocols.
    u = bytes(udp(1111, 2222, b"u" * 24))
    i = bytes(dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=0x77, seq=1, data=b"i" * 24)))
    pkts = [
        (1.0, ether(ip4(A, B, 17, u[:16], ident=9, mf=True))),
        (1.1, ether(ip4(A, B, 1, i[:16], ident=9, mf=True))),
        (1.2, ether(ip4(A, B, 17, u[16:], ident=9, offset=16))),
        (1.3, ether(ip4(A, B, 1, i[16:], ident=9, offset=16))),
        (1.4, ether(ip4(A, B, 1, i[16:], ident=9, offset=16))),  # a duplicate last fragment
    ]
    recs, details, info = await run(write(tmp_path, "frag-proto.pcap", pkts))
    assert sorted(recs) == sorted([(T(A, 1111, B, 2222, 17), "eof", 2, 0), (T(A, 0x77, B, 0x77, 1), "eof", 3, 0)])
    by_key = {d["key"]: d["bytes"] for d in details}
    assert by_key[T(A, 1111, B, 2222, 17)] == (36 + 36, 0)
    assert by_key[T(A, 0x77, B, 0x77, 1)] == (36 + 36 + 36, 0)
    assert sum(info.aside.values()) == 0


@pytest.mark.anyio
async def test_syn_after_one_sided_fin_does_not_split(tmp_path: Path) -> None:
    pkts = [
        tcp4(1.0, A, 40000, B, 80, SYN),
        tcp4(1.1, B, 80, A, 40000, SYN | ACK),
        tcp4(1.2, A, 40000, B, 80, FIN | ACK),  # only A closed
        tcp4(1.3, A, 40000, B, 80, SYN),  # not a reuse: B never sent FIN and nobody reset
    ]
    recs, _, _ = await run(write(tmp_path, "half-close.pcap", pkts))
    assert recs == [(T(A, 40000, B, 80), "eof", 3, 1)]


# --- link layers the corpus has little or none of: one UDP packet each, or a non-IP frame ---

_V4 = ip4(A, B, 17, udp(1000, 53))
_V6 = ip6(A6, B6, 17, udp(1000, 53))
_K4, _K6 = T(A, 1000, B, 53, 17), T(A6, 1000, B6, 53, 17)


def _mpls(*labels: int) -> bytes:
    return b"".join(struct.pack("!I", (lab << 12) | (0x100 if i == len(labels) - 1 else 0) | 64)
                    for i, lab in enumerate(labels))


def _nflog(family: int, packet: bytes) -> bytes:
    prefix = struct.pack("<HH", 8, 10) + b"ab\x00\x00"  # NFULA_PREFIX, padded to 4 bytes
    payload = struct.pack("<HH", 4 + len(packet), 9) + packet
    return struct.pack("!BBH", family, 0, 0) + prefix + payload + b"\x00" * (-len(payload) % 4)


_SLL = struct.pack("!HHH8s", 0, 1, 6, MAC_A + b"\x00\x00")
_SLL2_V6 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, MAC_A + b"\x00\x00")
LINK_CASES: list[tuple[str, int, bytes, list[tuple[tuple[str, int, str, int, int], int]], str]] = [
    ("ethernet-9100-tag", 1, MAC_B + MAC_A + struct.pack("!HHH", 0x9100, 7, 0x0800) + _V4, [(_K4, 7)], ""),
    ("ethernet-mpls2-ipv6", 1, MAC_B + MAC_A + b"\x88\x47" + _mpls(100, 200) + _V6, [(_K6, 0)], ""),
    ("ethernet-mpls-multicast", 1, MAC_B + MAC_A + b"\x88\x48" + _mpls(300) + _V4, [(_K4, 0)], ""),
    ("ethernet-vlan-mpls", 1, MAC_B + MAC_A + struct.pack("!HHH", 0x8100, 12, 0x8847) + _mpls(5) + _V4,
     [(_K4, 12)], ""),
    ("pppoe-ipv6", 1, MAC_B + MAC_A + b"\x88\x64" + struct.pack("!BBHHH", 0x11, 0, 1, len(_V6) + 2, 0x57) + _V6,
     [(_K6, 0)], ""),
    ("ethernet-arp", 1, bytes(dpkt.ethernet.Ethernet(dst=MAC_B, src=MAC_A, type=0x0806, data=b"\x00" * 28)),
     [], "non_ip"),
    ("ethernet-802.3-llc", 1, MAC_B + MAC_A + struct.pack("!H", 38) + b"\xaa\xaa\x03" + b"\x00" * 35, [], "non_ip"),
    ("sll-ipv4", 113, _SLL + b"\x08\x00" + _V4, [(_K4, 0)], ""),
    ("sll2-ipv6", 276, _SLL2_V6 + _V6, [(_K6, 0)], ""),
    ("raw-101-ipv6", 101, _V6, [(_K6, 0)], ""),
    ("raw-101-ipv4", 101, _V4, [(_K4, 0)], ""),
    ("raw-12-ipv4", 12, _V4, [(_K4, 0)], ""),
    ("linktype-ipv4", 228, _V4, [(_K4, 0)], ""),
    ("linktype-ipv6", 229, _V6, [(_K6, 0)], ""),
    # 48 bytes: long enough for an IPv6 header, so only the version can make it a bad header.
    ("linktype-ipv6-holding-ipv4", 229, ip4(A, B, 17, udp(1000, 53, b"q" * 20)), [], "bad_header"),
    ("linktype-ipv4-holding-ipv6", 228, _V6, [(_K6, 0)], ""),  # decoded as IPv6, as tshark does
    ("null-af2", 0, struct.pack("<I", 2) + _V4, [(_K4, 0)], ""),
    ("null-af2-big-endian-writer", 0, struct.pack(">I", 2) + _V4, [(_K4, 0)], ""),
    ("null-af24", 0, struct.pack("<I", 24) + _V6, [(_K6, 0)], ""),
    ("null-af28", 0, struct.pack("<I", 28) + _V6, [(_K6, 0)], ""),
    ("null-af30", 0, struct.pack("<I", 30) + _V6, [(_K6, 0)], ""),
    ("loop-af2", 108, struct.pack(">I", 2) + _V4, [(_K4, 0)], ""),
    ("loop-af24", 108, struct.pack(">I", 24) + _V6, [(_K6, 0)], ""),
    ("ppp-ff03-ipv4", 9, b"\xff\x03\x00\x21" + _V4, [(_K4, 0)], ""),
    ("ppp-ipv6-no-address", 9, b"\x00\x57" + _V6, [(_K6, 0)], ""),
    ("ppp-mpls", 9, b"\xff\x03\x02\x81" + _mpls(16, 17) + _V4, [(_K4, 0)], ""),
    ("ppp-lcp", 9, b"\xff\x03\xc0\x21" + b"\x01\x01\x00\x04", [], "non_ip"),
    ("nflog-ipv4", 239, _nflog(2, _V4), [(_K4, 0)], ""),
    ("nflog-ipv6", 239, _nflog(10, _V6), [(_K6, 0)], ""),
    ("unsupported-link-user0", 147, _V4, [], "unsupported_link"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "linktype", "frame", "flows", "aside"), LINK_CASES,
                         ids=[c[0] for c in LINK_CASES])
async def test_link_layers(tmp_path: Path, name: str, linktype: int, frame: bytes,
                           flows: list[tuple[tuple[str, int, str, int, int], int]], aside: str) -> None:
    path = tmp_path / f"{name}.pcap"
    with path.open("wb") as fh:
        dpkt.pcap.Writer(fh, snaplen=65535, linktype=linktype).writepkt(frame, ts=1.5)
    recs, details, info = await run(path)
    assert [(r[0], d["vlan_id"] or 0) for r, d in zip(recs, details, strict=True)] == flows
    assert [r[1:] for r in recs] == [("eof", 1, 0)] * len(flows)
    assert {k: v for k, v in info.aside.items() if v} == ({aside: 1} if aside else {})
    ref = reference.reference_flows(path)
    assert [(f.key, f.vlan_id) for f in ref.flows] == flows and dict(ref.aside) == ({aside: 1} if aside else {})
