"""decode_tunnels=True (README "Tunnels"): flows keyed on the innermost IP plus a tunnel id.

Checked against tshark, which opens every tunnel here by default: per frame, its innermost IP
layer and the TCP/UDP header right after it name a conversation; the packets per conversation
must equal aioflow's (flows of one 5-tuple summed). Crafted captures check what tshark cannot say:
the tunnel id separating one inner 5-tuple in two tunnels, the outer endpoints and type, and that
malformed or too deeply nested tunnels are decode events, the packet kept in its carrier's flow."""

from __future__ import annotations

import ipaddress
import re
import struct
from collections import Counter
from pathlib import Path

import anyio
import pytest
from support.corpus import ABSENT, CORPUS, DATA, params
from support.crafted import ACK, MAC_A, MAC_B, SYN, A, B, C, ether, ip4, ip6, tcp, udp, write
from support.tshark import TShark
from support.tunnels import Convs, innermost, tshark_frames, tshark_inner

import aioflow

TUNNELLED = re.compile(r"protos:[^}]*\b(gre|vxlan|gtp|geneve|erspan|teredo|mpls|pweth\w*)\b")


def tunnel_captures() -> list[Path]:
    """Corpus captures whose MANIFEST notes list a tunnel protocol (tshark's names)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:]]
    names = [r[0] for r in rows if len(r) > 7 and TUNNELLED.search(r[7])]
    ipip = ("zeek_tunnels_4in4.pcap", "zeek_tunnels_6in6in6.pcap", "nfstream_6in4tunnel.pcap")
    return [CORPUS / n for n in sorted({*names, *ipip}) if (CORPUS / n).exists()]


CORPUS_TUNNELS = tunnel_captures()
# and the tunnel each holds
BUNDLED_TUNNELS = {DATA / "zeek_tunnels_vxlan-encapsulated-http.pcap": "vxlan",
                   DATA / "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap": "gtp",
                   DATA / "tcpreplay_test.pcap": "mpls"}  # fmt: skip


def aioflow_inner(path: Path, **options: object) -> Convs:
    out: Convs = Counter()
    for f in aioflow.read(path, decode_tunnels=True, defragment=True, **options):
        if f.protocol in (6, 17):
            ends = frozenset({(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)})
            out[("tcp" if f.protocol == 6 else "udp", ends)] += f.packets
    return out


def check_against_tshark(tshark: TShark, path: Path) -> Convs:
    want = tshark_inner(tshark, path)
    got = aioflow_inner(path)
    assert set(got) == set(want), (set(want) - set(got), set(got) - set(want))
    assert got == want
    return got


@pytest.mark.parametrize("path", BUNDLED_TUNNELS, ids=lambda p: p.name)
def test_bundled_tunnel_captures_give_tsharks_inner_conversations(tshark: TShark, path: Path) -> None:
    assert check_against_tshark(tshark, path)
    on = list(aioflow.read(path, decode_tunnels=True, defragment=True))
    assert {f.tunnel_type for f in on} - {""} == {BUNDLED_TUNNELS[path]}
    # tunnels off: the same packets keyed otherwise (outer headers; a pseudowire's frames aside)
    off = list(aioflow.read(path, defragment=True))
    assert Counter((f.key, f.packets) for f in off) != Counter((f.key, f.packets) for f in on)
    assert all(f.tunnel_type == "" for f in off)


@pytest.mark.parametrize("path", params(CORPUS_TUNNELS))
def test_corpus_tunnel_captures_give_tsharks_inner_conversations(tshark: TShark, path: Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    check_against_tshark(tshark, path)


def test_tunnel_fields_are_the_outermost_carrier(tshark: TShark) -> None:
    """tunnel_src_ip/tunnel_dst_ip: the outermost IP of the flow's first frame, oriented src->dst;
    tunnel_type: what tshark names the layer after it."""
    path = DATA / "zeek_tunnels_vxlan-encapsulated-http.pcap"
    frames = tshark_frames(tshark, path)
    [flow] = [f for f in aioflow.read(path, decode_tunnels=True, meters=("mac",))]
    first = next(c for c in frames if innermost(c) and innermost(c)[1] in (flow.src_ip, flow.dst_ip))  # type: ignore[index]
    outer_src, outer_dst = first[1].split(",")[0], first[2].split(",")[0]
    inner = innermost(first)
    assert inner is not None
    forward = inner[1] == flow.src_ip
    assert (flow.tunnel_src_ip, flow.tunnel_dst_ip) == ((outer_src, outer_dst) if forward else (outer_dst, outer_src))
    assert "vxlan" in first[0].split(":") and flow.tunnel_type == "vxlan"
    assert flow.tunnel_id != 0
    eth_src, eth_dst = first[9].split(",")[0], first[10].split(",")[0]
    assert (flow.src_mac, flow.dst_mac) == ((eth_src, eth_dst) if forward else (eth_dst, eth_src))
    assert flow.src_oui == flow.src_mac[:8]
    frame = aioflow.read_frame(path, decode_tunnels=True, meters=("mac",))
    row = frame.iloc[0]
    assert (row.tunnel_id, row.tunnel_type, row.tunnel_src_ip, row.tunnel_dst_ip, row.src_mac, row.dst_oui) == (
        flow.tunnel_id,
        flow.tunnel_type,
        flow.tunnel_src_ip,
        flow.tunnel_dst_ip,
        flow.src_mac,
        flow.dst_oui,
    )


# --- crafted ---

INNER_A, INNER_B = "192.168.1.1", "192.168.1.2"


def vxlan(vni: int, inner: bytes, flags: int = 0x08) -> bytes:
    return struct.pack("!B3xI", flags, vni << 8) + inner


def vxlan_frame(outer_src: str, outer_dst: str, vni: int, sport: int, flags: int = 0x08) -> bytes:
    inner = ether(ip4(INNER_A, INNER_B, 17, udp(sport, 53)))
    return ether(ip4(outer_src, outer_dst, 17, udp(40000, 4789, vxlan(vni, inner, flags))))


def test_the_same_inner_conversation_in_two_tunnels_is_two_flows(tmp_path: Path) -> None:
    path = write(tmp_path, "two.pcap", [
        (1.0, vxlan_frame(A, B, 100, 5000)),
        (1.1, vxlan_frame(A, B, 200, 5000)),     # another VNI
        (1.2, vxlan_frame(A, C, 100, 5000)),     # another carrier
        (1.3, vxlan_frame(B, A, 100, 5000)),     # the first tunnel, the other way round
    ])  # fmt: skip
    flows = list(aioflow.read(path, decode_tunnels=True))
    assert sorted(f.packets for f in flows) == [1, 1, 2]
    assert len({f.tunnel_id for f in flows}) == 3
    assert {(f.src_ip, f.dst_ip, f.tunnel_type) for f in flows} == {(INNER_A, INNER_B, "vxlan")}
    assert {(f.tunnel_src_ip, f.tunnel_dst_ip) for f in flows} == {(A, B), (A, C)}
    # tunnels off: today's outer keying, by the carriers' 5-tuples (the reply's source port is 40000 too)
    off = list(aioflow.read(path))
    assert sorted((f.src_ip, f.dst_ip, f.dst_port, f.packets) for f in off) == [(A, B, 4789, 2), (A, C, 4789, 1),
                                                                                (B, A, 4789, 1)]  # fmt: skip
    assert all(f.tunnel_id == 0 and f.tunnel_type == "" for f in off)


def test_a_malformed_tunnel_is_a_decode_event_in_its_carriers_flow(tmp_path: Path) -> None:
    short_gtp = ether(ip4(A, B, 17, udp(2152, 2152, b"\x30\xff\x00")))  # 3 of GTP-U's 8 bytes
    no_vni = vxlan_frame(A, B, 7, 5000, flags=0)  # VXLAN's I flag clear
    bad_gre = ether(ip4(A, B, 47, struct.pack("!HH", 0x0007, 0x0800) + b"x" * 20))  # GRE version 7
    path = write(tmp_path, "bad.pcap", [(1.0, short_gtp), (1.1, no_vni), (1.2, bad_gre)])
    flows = []

    async def main() -> aioflow.ParserInfo:
        async with aioflow.FlowParser(path, decode_tunnels=True) as parser:
            async for f in parser.terminated():
                flows.append(f)
            return parser.info()

    info = anyio.run(main)
    assert info.decode_events["tunnel_malformed"] == 3
    assert sorted((f.protocol, f.dst_port) for f in flows) == [(17, 2152), (17, 4789), (47, 0)]
    assert all(f.tunnel_type == "" and (f.src_ip, f.dst_ip) == (A, B) for f in flows)


def test_nesting_past_the_bound_is_counted(tmp_path: Path) -> None:
    inner = ip6("2001:db8::1", "2001:db8::2", 17, udp(1, 2))
    packet = inner
    for depth in range(6):  # six IPv6-in-IPv6 levels around the UDP packet
        packet = ip6(f"2001:db8:{depth + 1}::1", f"2001:db8:{depth + 1}::2", 41, packet)
    path = write(tmp_path, "deep.pcap", [(1.0, ether(packet, 0x86DD))])

    async def main() -> tuple[list[aioflow.Flow], aioflow.ParserInfo]:
        async with aioflow.FlowParser(path, decode_tunnels=True) as parser:
            return [f async for f in parser.terminated()], parser.info()

    flows, info = anyio.run(main)
    assert info.decode_events["tunnel_too_deep"] == 1
    [flow] = flows
    # four tunnels opened (AF_MAX_TUNNELS): the fifth carrier (levels counted from the outside) is the flow
    assert (flow.protocol, flow.src_ip, flow.tunnel_type, flow.tunnel_src_ip) == (41, "2001:db8:2::1", "ipip",
                                                                                   "2001:db8:6::1")  # fmt: skip


def test_mac_addresses_follow_the_flows_orientation(tmp_path: Path) -> None:
    """src_mac is the first packet's Ethernet source when it went src->dst; a SYN+ACK seen first
    makes its receiver the flow's src, and the addresses swap with it."""
    synack = ether(ip4(B, A, 6, tcp(80, 1234, SYN | ACK)))  # MAC_A -> MAC_B, B -> A
    plain = ether(ip4(A, C, 17, udp(1, 2)))
    path = write(tmp_path, "mac.pcap", [(1.0, synack), (1.1, plain)])
    by_proto = {f.protocol: f for f in aioflow.read(path, meters=("mac",))}
    a, b = (":".join(f"{x:02x}" for x in m) for m in (MAC_A, MAC_B))
    assert (by_proto[17].src_mac, by_proto[17].dst_mac) == (a, b)
    assert (by_proto[6].src_ip, by_proto[6].src_mac, by_proto[6].dst_mac) == (A, b, a)
    # off: zero addresses, as on a link without Ethernet
    assert {f.src_mac for f in aioflow.read(path)} == {"00:00:00:00:00:00"}


# IPv6 carriers whose text needs each case of RFC 5952's compression (runs at the start, the end,
# two runs of which the longer or the first wins, a lone zero group kept, none at all)
CARRIERS6 = ("::1", "2001:db8::", "2001:0:0:1:0:0:0:1", "2001:db8:0:0:1:0:0:1", "2001:db8:0:1:1:1:1:1",
             "fe80::abcd:ef01:2345:6789", "1:2:3:4:5:6:7:8", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")  # fmt: skip


def test_tunnel_endpoint_text_is_ipaddress_text(tmp_path: Path) -> None:
    """The tunnel meter writes carrier addresses as text in C, as Python's ipaddress writes them;
    its columns keep nfstream's names (tunnel_id, tunnel_type, tunnel_src_ip, tunnel_dst_ip)."""
    inner = ip4(A, B, 17, udp(1, 2))
    packets = [(1.0 + i, ether(ip6(src, "::", 4, inner), 0x86DD)) for i, src in enumerate(CARRIERS6)]
    packets.append((20.0, ether(ip4("10.255.0.1", "192.0.2.254", 4, ip4(A, C, 17, udp(1, 2))))))
    path = write(tmp_path, "carriers.pcap", packets)
    flows = list(aioflow.read(path, decode_tunnels=True))
    want = {(str(ipaddress.ip_address(s)), "::") for s in CARRIERS6} | {("10.255.0.1", "192.0.2.254")}
    assert {(f.tunnel_src_ip, f.tunnel_dst_ip) for f in flows} == want
    assert {f.tunnel_type for f in flows} == {"ipip"} and len({f.tunnel_id for f in flows}) == len(flows)
    frame = aioflow.read_frame(path, decode_tunnels=True, meters=("mac",))
    extras = ["tunnel_id", "tunnel_type", "tunnel_src_ip", "tunnel_dst_ip", "src_mac", "dst_mac", "src_oui",
              "dst_oui"]  # fmt: skip
    assert [c for c in frame.columns if c not in aioflow.read_frame(path).columns] == extras
    assert frame[extras[:4]].values.tolist() == [[getattr(f, c) for c in extras[:4]] for f in flows]
    sender, receiver = (":".join(f"{b:02x}" for b in mac) for mac in (MAC_A, MAC_B))
    assert frame[extras[4:]].drop_duplicates().values.tolist() == [[sender, receiver, sender[:8], receiver[:8]]]
