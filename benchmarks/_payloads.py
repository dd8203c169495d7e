"""Application payloads for the benchmark capture (make_capture.py --payloads apps).

capgen.c fills packets with random bytes, which nDPI never recognises: every flow then spends the
whole dissection budget, the worst case and not what real traffic does. With ``--payloads apps``
each flow's first data packets are a "script" (direction and bytes of its first payload packets)
taken from a real flow of the public capture corpus (../shared/pcaps, read at run time: nothing of
it is copied into the repository), the rest of the flow random bytes as before (encrypted bulk).

Scripts are grouped by application, and each group gets a share of the TCP or UDP flows (MIX). A
corpus flow joins a group by its server port and its first payload bytes (a TLS ClientHello, an
HTTP request line, an SSH banner, a QUIC long header, a DNS message on port 53); only flows whose
start was captured (a TCP SYN) are used. Without the corpus, SYNTHETIC scripts written here stand
in (TLS 1.3 hellos with SNI, HTTP/1.1, DNS, SSH; QUIC's share goes to unknown UDP), and the capture's
sidecar says which source was used.

The scripts go to capgen in a small binary file (FORMAT below); capgen picks one per flow from a
random stream seeded by (seed, flow), so the same corpus and seed give the same capture.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
MAX_SCRIPT_PACKETS = 10  # payload packets kept per flow: nDPI decides within these for nearly all
MAX_SEGMENT = 1440  # capgen's IPv6 MSS: longer TCP payloads are cut into segments of this size
MAX_DATAGRAM = 1440  # a longer UDP payload ends a script (it would not fit capgen's IPv6 frames)

# Share of TCP / UDP flows per group (each sums to 1). Our reading of what a network edge carries by
# flow count, not a measurement: most TCP connections are TLS, a minority plain HTTP, a few SSH and
# mail; most UDP flows are DNS lookups, a good part QUIC. "unknown" flows carry random bytes on ports
# that no dissector claims by their payload (nDPI gives up on them after max_dissections packets).
MIX: dict[str, dict[str, float]] = {
    "tcp": {"tls": 0.70, "http": 0.12, "ssh": 0.02, "mail": 0.01, "unknown": 0.15},
    "udp": {"dns": 0.70, "quic": 0.20, "unknown": 0.10},
}
UNKNOWN_PORTS = {"tcp": (5223, 8883, 9000, 4443, 6881), "udp": (3478, 51820, 5004, 27015, 9993)}

# FORMAT (little-endian): b"AFPAYLD1", u32 scripts; a script: u8 protocol (6, 17), u8 packets,
# u16 server port, f64 weight; a packet: u8 direction (0: client to server), u16 length, bytes.
MAGIC = b"AFPAYLD1"


@dataclass(frozen=True)
class Script:
    group: str
    protocol: int  # 6 or 17
    port: int  # the server's
    packets: tuple[tuple[int, bytes], ...]  # (direction, payload), first payload packets in order
    origin: str  # corpus file or "synthetic"


def _frames(path: Path) -> Iterator[tuple[int, bytes]]:
    """(link type, frame) of every packet of a pcap or pcapng file."""
    import dpkt

    with path.open("rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except (ValueError, dpkt.NeedData):
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        link = reader.datalink()
        for _ts, frame in reader:
            yield link, frame


def _ip(link: int, frame: bytes) -> object | None:
    import dpkt

    try:
        if link == 1:
            eth = dpkt.ethernet.Ethernet(frame)
            return eth.data if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None
        if link == 113:
            return dpkt.sll.SLL(frame).data
        if link in (101, 12, 14):
            return dpkt.ip.IP(frame) if frame[:1] and frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
    except (dpkt.UnpackError, IndexError, struct.error):
        return None
    return None


def _classify(protocol: int, port: int, first: bytes) -> str | None:
    if first.startswith(b"SSH-"):
        return "ssh"
    if protocol == 6:
        if first[:2] == b"\x16\x03" and len(first) > 5 and first[5] == 1:
            return "tls"
        method = first.split(b" ", 1)[0]
        if method in (b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS") and b" HTTP/1." in first[:2048]:
            return "http"
        if port in (25, 587, 110, 143):
            return "mail"
        return None
    if port == 53 and len(first) >= 12:
        return "dns"
    if port == 443 and first[0] & 0xC0 == 0xC0 and len(first) >= 1200:
        return "quic"
    return None


def _flows(path: Path) -> Iterator[Script]:
    """The corpus file's flows that start in it, as scripts (unclassified ones left out)."""
    import dpkt

    flows: dict[tuple[object, ...], dict[str, object]] = {}
    for link, frame in _frames(path):
        ip = _ip(link, frame)
        if ip is None:
            continue
        l4 = ip.data  # type: ignore[attr-defined]
        if isinstance(ip, dpkt.ip.IP) and (ip.mf or ip.offset):  # fragments: skip
            continue
        if not isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP):
            continue
        protocol = 6 if isinstance(l4, dpkt.tcp.TCP) else 17
        a, b = (ip.src, l4.sport), (ip.dst, l4.dport)  # type: ignore[attr-defined]
        key = (protocol, *sorted((a, b)))
        f = flows.get(key)
        if f is None:
            if protocol == 6 and not (l4.flags & dpkt.tcp.TH_SYN and not l4.flags & dpkt.tcp.TH_ACK):
                flows[key] = {"skip": True}  # its start was not captured
                continue
            f = flows[key] = {"client": a, "port": l4.dport, "packets": [], "next": {}, "skip": False}
        if f["skip"] or len(f["packets"]) >= MAX_SCRIPT_PACKETS:  # type: ignore[arg-type]
            continue
        direction = 0 if a == f["client"] else 1
        data = bytes(l4.data)
        if protocol == 6:
            nxt: dict[int, int] = f["next"]  # type: ignore[assignment]
            seq = l4.seq + (1 if l4.flags & dpkt.tcp.TH_SYN else 0)
            if direction not in nxt or l4.flags & dpkt.tcp.TH_SYN:
                nxt[direction] = seq
            ahead = (seq - nxt[direction] + 2**31) % 2**32 - 2**31
            if ahead > 0:  # a segment missing: the script ends before it
                f["done"] = True
                continue
            data = data[-ahead:] if ahead < 0 else data  # a retransmission: its new bytes only
            nxt[direction] = (nxt[direction] + len(data)) % 2**32
        if not data or f.get("done"):
            continue
        packets: list[tuple[int, bytes]] = f["packets"]  # type: ignore[assignment]
        if protocol == 17 and len(data) > MAX_DATAGRAM:
            f["done"] = True
            continue
        for at in range(0, len(data), MAX_SEGMENT):
            packets.append((direction, data[at : at + MAX_SEGMENT]))
        del packets[MAX_SCRIPT_PACKETS:]
    for (protocol, *_), f in sorted(flows.items(), key=lambda kv: repr(kv[0])):
        packets = f.get("packets") or []  # type: ignore[assignment]
        if f["skip"] or not packets:
            continue
        group = _classify(protocol, int(f["port"]), packets[0][1])  # type: ignore[call-overload]
        if group:
            yield Script(group, protocol, int(f["port"]), tuple(packets), path.name)  # type: ignore[call-overload]


def corpus_scripts(corpus: Path = CORPUS) -> list[Script]:
    """Scripts from every capture of the corpus (not malformed/), in file-name order."""
    out: list[Script] = []
    for path in sorted(p for p in corpus.glob("*.pcap*") if p.is_file()):
        try:
            out.extend(_flows(path))
        except Exception:
            continue
    return out


# ---- synthetic stand-ins (no corpus) ----


def _tls_client_hello(sni: str, seed: int) -> bytes:
    rnd = hashlib.sha256(b"hello%d" % seed).digest()
    name = sni.encode()
    ext = b""
    ext += struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name  # server_name
    ext += struct.pack("!HHH", 10, 8, 6) + bytes.fromhex("001d00170018")  # supported_groups
    ext += struct.pack("!HHB", 11, 2, 1) + b"\x00"  # ec_point_formats
    ext += struct.pack("!HHH", 13, 8, 6) + bytes.fromhex("040308040401")  # signature_algorithms
    alpn = b"\x02h2\x08http/1.1"
    ext += struct.pack("!HHH", 16, len(alpn) + 2, len(alpn)) + alpn
    ext += struct.pack("!HHB", 43, 5, 4) + bytes.fromhex("03040303")  # supported_versions
    ext += struct.pack("!HHHHH", 51, 38, 36, 0x1D, 32) + rnd  # key_share x25519
    ciphers = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    body = b"\x03\x03" + rnd + b"\x20" + rnd + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _tls_server_hello(seed: int) -> bytes:
    rnd = hashlib.sha256(b"server%d" % seed).digest()
    ext = struct.pack("!HHH", 43, 2, 0x0304) + struct.pack("!HHHH", 51, 36, 0x1D, 32) + rnd
    body = b"\x03\x03" + rnd + b"\x20" + rnd + b"\x13\x01\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    ccs = b"\x14\x03\x03\x00\x01\x01"
    app = b"\x17\x03\x03" + struct.pack("!H", 600) + hashlib.sha512(rnd).digest() * 9 + bytes(24)
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + ccs + app


def _dns(name: str, seed: int, answer: bool) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    head = struct.pack("!HHHHHH", seed & 0xFFFF, 0x8180 if answer else 0x0100, 1, 1 if answer else 0, 0, 0)
    msg = head + qname + struct.pack("!HH", 1, 1)
    if answer:
        msg += struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([93, 184, seed % 250, 34])
    return msg


def synthetic_scripts() -> list[Script]:
    """Stand-ins written here (no corpus needed): 64 names per group."""
    out: list[Script] = []
    for n in range(64):
        host = f"www.site{n}.example.com"
        out.append(Script("tls", 6, 443, ((0, _tls_client_hello(host, n)), (1, _tls_server_hello(n))), "synthetic"))
        request = f"GET /page{n} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"
        response = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {900 + n}\r\n\r\n"
        out.append(
            Script("http", 6, 80, ((0, request.encode()), (1, response.encode() + b"<html>" * 150)), "synthetic")
        )
        query = (0, _dns(host, n, False)), (1, _dns(host, n, True))
        out.append(Script("dns", 17, 53, query, "synthetic"))
    banner_s, banner_c = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", b"SSH-2.0-OpenSSH_9.6\r\n"
    out.append(Script("ssh", 6, 22, ((1, banner_s), (0, banner_c)), "synthetic"))
    out.append(
        Script("mail", 6, 25, ((1, b"220 mail.example.com ESMTP Postfix\r\n"), (0, b"EHLO client\r\n")), "synthetic")
    )
    return out


def scripts(corpus: Path = CORPUS) -> tuple[str, list[Script]]:
    """("corpus", its scripts) when the corpus has some for every group, else ("synthetic", ...)."""
    if corpus.is_dir():
        found = corpus_scripts(corpus)
        groups = {s.group for s in found}
        if all(g in groups for mix in MIX.values() for g in mix if g != "unknown"):
            return "corpus", found
    return "synthetic", synthetic_scripts()


def encode(found: list[Script]) -> bytes:
    """The FORMAT file for capgen: every script with weight (its group's share / scripts in the
    group), plus one empty script (random bytes) per unknown port; a group without scripts (QUIC in
    the synthetic set) adds its share to unknown."""
    by_group: dict[tuple[int, str], list[Script]] = {}
    for s in found:
        by_group.setdefault((s.protocol, s.group), []).append(s)
    out = bytearray()
    count = 0
    for name, protocol in (("tcp", 6), ("udp", 17)):
        mix = dict(MIX[name])
        for group in [g for g in mix if g != "unknown" and (protocol, g) not in by_group]:
            mix["unknown"] += mix.pop(group)
        for group, share in mix.items():
            if group == "unknown":
                ports = UNKNOWN_PORTS[name]
                for port in ports:
                    out += struct.pack("<BBHd", protocol, 0, port, share / len(ports))
                    count += 1
                continue
            members = by_group[(protocol, group)]
            for s in members:
                out += struct.pack("<BBHd", protocol, len(s.packets), s.port, share / len(members))
                for direction, data in s.packets:
                    out += struct.pack("<BH", direction, len(data)) + data
                count += 1
    return MAGIC + struct.pack("<I", count) + bytes(out)


def summary(found: list[Script]) -> dict[str, dict[str, int]]:
    """Scripts per group and the corpus files they came from (for the sidecar)."""
    out: dict[str, dict[str, int]] = {}
    for s in found:
        g = out.setdefault(s.group, {})
        g[s.origin] = g.get(s.origin, 0) + 1
    return out
