"""Captures crafted in a test: Ethernet/IP/TCP/UDP builders (dpkt), a pcap writer with chosen
timestamps, IPv4 fragments, a TCP session split across segments, random damage to frames, and the
runner that reads a crafted capture back with aioflow's timeouts out of the way."""

from __future__ import annotations

import itertools
import random
import socket
import struct
from pathlib import Path
from typing import Any

import dpkt

import aioflow

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
A6, B6 = "2001:db8::1", "2001:db8::2"
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"
SYN, ACK, FIN, RST, PSH = (dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST,
                           dpkt.tcp.TH_PUSH)
BIG = 1e6  # a timeout that never fires in these captures

Packet = tuple[float, bytes]


# --- crafting ---


def ether(payload: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    if not vlans:
        return bytes(dpkt.ethernet.Ethernet(dst=MAC_B, src=MAC_A, type=ethertype, data=payload))
    # Tags outermost first: an 802.1ad TPID for an outer tag, 802.1Q for a single one; each TCI is
    # followed by the type of what comes next (another tag or the payload).
    out = MAC_B + MAC_A + struct.pack("!H", 0x88A8 if len(vlans) > 1 else 0x8100)
    for i, vid in enumerate(vlans):
        out += struct.pack("!HH", vid, ethertype if i == len(vlans) - 1 else 0x8100)
    return out + payload


def ip4(src: str, dst: str, proto: int, payload: bytes | dpkt.Packet, ident: int = 0, mf: bool = False,
        offset: int = 0) -> bytes:
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, id=ident, ttl=64,
                    data=payload)
    ip.mf = int(mf)
    ip.offset = offset // 8
    ip.len = 20 + len(bytes(payload))
    return bytes(ip)


def ip6(src: str, dst: str, nxt: int, payload: bytes | dpkt.Packet) -> bytes:
    body = bytes(payload)
    ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                      nxt=nxt, hlim=64, plen=len(body), data=body)
    return bytes(ip)


def tcp(sport: int, dport: int, flags: int, data: bytes = b"") -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if flags & ACK else 0,
                        win=65535, data=data)


def udp(sport: int, dport: int, data: bytes = b"q") -> dpkt.udp.UDP:
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data)


def tcp4(t: float, src: str, sport: int, dst: str, dport: int, flags: int, data: bytes = b"") -> Packet:
    return (t, ether(ip4(src, dst, 6, tcp(sport, dport, flags, data))))


def udp4(t: float, src: str, sport: int, dst: str, dport: int, vlans: tuple[int, ...] = ()) -> Packet:
    return (t, ether(ip4(src, dst, 17, udp(sport, dport)), vlans=vlans))


def write(tmp_path: Path, name: str, packets: list[Packet]) -> Path:
    path = tmp_path / name
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in packets:
            writer.writepkt(frame, ts=ts)
    return path


# --- running ---

Rec = tuple[tuple[str, int, str, int, int], str, int, int]


async def run(path: Path, **opts: Any) -> tuple[list[Rec], list[dict[str, Any]], aioflow.ParserInfo]:
    """(key, end_reason, src2dst_packets, dst2src_packets) per record in end order, details, info()."""
    opts = {"idle_timeout": BIG, "active_timeout": BIG, "fin_timeout": BIG, **opts}
    recs: list[Rec] = []
    details: list[dict[str, Any]] = []
    async with aioflow.FlowParser(path, **opts) as parser:
        async for f in parser.terminated():
            recs.append((f.key, f.end_reason, f.src2dst_packets, f.dst2src_packets))
            details.append({"vlan_id": f.vlan_id, "first_seen": f.first_seen, "last_seen": f.last_seen,
                            "bytes": (f.src2dst_bytes, f.dst2src_bytes), "ip_version": f.ip_version,
                            "key": f.key})
        info = parser.info()
    assert info.packets == info.packets_in_flows + sum(info.aside.values()) + info.fragments_held
    return recs, details, info


def T(src: str, sport: int, dst: str, dport: int, proto: int = 6) -> tuple[str, int, str, int, int]:
    return (src, sport, dst, dport, proto)


# --- fragments ---


def frags4(payload: bytes, cuts: list[int], ident: int, proto: int = 17, src: str = A, dst: str = B) -> list[bytes]:
    """Ethernet frames of an IPv4 datagram cut at the given payload offsets (multiples of 8)."""
    bounds = [0, *cuts, len(payload)]
    return [ether(ip4(src, dst, proto, payload[a:b], ident=ident, mf=b < len(payload), offset=a))
            for a, b in itertools.pairwise(bounds)]


UDP_PAYLOAD = bytes(udp(5353, 9999, bytes(range(256)) * 4))  # 1032 bytes


def fragment_flood(tmp_path: Path, n: int) -> Path:
    """n datagrams that never complete (first halves of 1032-byte UDP datagrams, distinct ids,
    from many sources), with a real datagram every 100 packets that does complete."""
    rng = random.Random(1)
    pkts: list[tuple[float, bytes]] = []
    for i in range(n):
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        pkts.append((1.0 + i * 1e-4, frags4(UDP_PAYLOAD, [512], ident=i & 0xFFFF, src=src)[0]))
        if i % 100 == 99:
            for frame in frags4(UDP_PAYLOAD, [512], ident=i & 0xFFFF, src="192.0.2.1"):
                pkts.append((1.0 + i * 1e-4, frame))
    return write(tmp_path, "flood.pcap", pkts)


# --- a TCP session whose client data is split across segments ---

CLIENT, SERVER = "10.1.0.1", "10.1.0.2"


def segment(t: float, src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int,
            data: bytes = b"") -> tuple[float, bytes]:  # fmt: skip
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=65535, data=data)
    return t, ether(ip4(src, dst, 6, tcp))


def split_session(parts: list[bytes], order: list[int] | None = None) -> list[tuple[float, bytes]]:
    """A TCP session whose client sends parts as separate segments (in `order`), then the server answers."""
    c_isn, s_isn = 1000, 5000
    packets = [
        segment(1.0, CLIENT, 40000, SERVER, 80, SYN, c_isn, 0),
        segment(1.1, SERVER, 80, CLIENT, 40000, SYN | ACK, s_isn, c_isn + 1),
        segment(1.2, CLIENT, 40000, SERVER, 80, ACK, c_isn + 1, s_isn + 1),
    ]
    offsets = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]
    for n, i in enumerate(order or range(len(parts))):
        packets.append(segment(2.0 + n / 10, CLIENT, 40000, SERVER, 80, PSH | ACK, c_isn + 1 + offsets[i],
                               s_isn + 1, parts[i]))  # fmt: skip
    total = sum(len(p) for p in parts)
    packets.append(segment(3.0, SERVER, 80, CLIENT, 40000, PSH | ACK, s_isn + 1, c_isn + 1 + total, b"230 OK\r\n"))
    return packets


# --- damage ---


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(0, 6)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.5:
        data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)
