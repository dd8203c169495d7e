"""Independent test-side flow reference, written with dpkt only (no aioflow code).

It reads a pcap/pcapng file, decodes each frame down to the outer IP header and the transport
ports, and groups packets into bidirectional flows with the key and fragment semantics of the
aioflow contract, but without any timeout: a flow only ends at the end of the file, or when a TCP
SYN without ACK arrives on a 5-tuple that already saw FIN from both sides or a RST (port reuse).

Record reading uses dpkt's header and block classes with an explicit loop, because dpkt's Readers
skip rules libpcap applies and aioflow's reader (capfile.c) keeps: caplen is clamped to the file's
(pcapng: the interface's) snapshot length, pcap 2.0-2.2 files store caplen/len swapped, a truncated
last record is an error (not a short packet), pcapng interfaces are per section, each with its own
link type and snaplen (libpcap itself stops at an interface that differs from the first).

Also `parse_tshark_conversations(text)`: tshark's TCP/UDP conversation table, per unordered endpoint pair.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import dpkt.pcap
import dpkt.pcapng

from support.files import identity

# libpcap's MAXIMUM_SNAPLEN: larger records are refused, 0 or larger snaplens mean this.
MAX_SNAPLEN = 262144

ASIDE_REASONS = ("non_ip", "truncated", "bad_header", "unsupported_link", "fragment_orphan")


class CaptureRefused(Exception):
    """libpcap would refuse to open this file (bad magic, version, damaged header)."""


# --- declarative headers (dpkt.Packet subclasses: fields only, payload decoding is ours) ---


class _Hdr(dpkt.Packet):
    """Fixed header only; `unpack` raises dpkt.NeedData when the buffer is too short."""

    __hdr__: tuple[tuple[str, str, object], ...] = ()


class IP4Hdr(_Hdr):
    __hdr__ = (
        ("v_hl", "B", 0x45),
        ("tos", "B", 0),
        ("len", "H", 20),
        ("id", "H", 0),
        ("off", "H", 0),
        ("ttl", "B", 64),
        ("p", "B", 0),
        ("sum", "H", 0),
        ("src", "4s", b"\x00" * 4),
        ("dst", "4s", b"\x00" * 4),
    )


class IP6Hdr(_Hdr):
    __hdr__ = (
        ("v_fc_flow", "I", 0x60000000),
        ("plen", "H", 0),
        ("nxt", "B", 0),
        ("hlim", "B", 64),
        ("src", "16s", b"\x00" * 16),
        ("dst", "16s", b"\x00" * 16),
    )


class IP6FragHdr(_Hdr):
    __hdr__ = (("nxt", "B", 0), ("resv", "B", 0), ("frag_off", "H", 0), ("id", "I", 0))


class TCPHdr(_Hdr):
    __hdr__ = (
        ("sport", "H", 0),
        ("dport", "H", 0),
        ("seq", "I", 0),
        ("ack", "I", 0),
        ("off_x2", "B", 0x50),
        ("flags", "B", 0),
        ("win", "H", 0),
        ("sum", "H", 0),
        ("urp", "H", 0),
    )


class UDPHdr(_Hdr):
    __hdr__ = (("sport", "H", 0), ("dport", "H", 0), ("ulen", "H", 8), ("sum", "H", 0))


class SCTPHdr(_Hdr):
    __hdr__ = (("sport", "H", 0), ("dport", "H", 0), ("vtag", "I", 0), ("sum", "I", 0))


class ICMPHdr(_Hdr):
    __hdr__ = (("type", "B", 0), ("code", "B", 0), ("sum", "H", 0), ("id", "H", 0), ("seq", "H", 0))


class SLLHdr(_Hdr):
    __hdr__ = (("pkttype", "H", 0), ("hatype", "H", 0), ("halen", "H", 0), ("addr", "8s", b""),
               ("proto", "H", 0))


class SLL2Hdr(_Hdr):
    __hdr__ = (("proto", "H", 0), ("resv", "H", 0), ("ifindex", "I", 0), ("hatype", "H", 0),
               ("pkttype", "B", 0), ("halen", "B", 0), ("addr", "8s", b""))


class PPPoEHdr(_Hdr):
    __hdr__ = (("v_type", "B", 0x11), ("code", "B", 0), ("session", "H", 0), ("len", "H", 0),
               ("ppp_proto", "H", 0))


TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10

# Transport headers we need whole before the packet can join a flow; shorter is "truncated".
_TRANSPORT = {6: TCPHdr, 17: UDPHdr, 132: SCTPHdr, 1: ICMPHdr, 58: ICMPHdr}
# ICMP query types carrying an identifier (both "ports" = identifier).
_ICMP4_ID_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
_ICMP6_ID_TYPES = frozenset({128, 129})
_IP6_EXT = frozenset({0, 43, 44, 51, 60})

ETH_IP4, ETH_IP6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_SHIMS = {0x8926: 4, 0x893F: 6}  # Cisco VN-Tag, IEEE 802.1BR E-Tag: bytes before the inner type
_MPLS = frozenset({0x8847, 0x8848})
_AF_INET6 = frozenset({10, 24, 28, 30})  # Linux, OpenBSD/NetBSD, FreeBSD, macOS

# LINKTYPE values handled (pcap header / pcapng IDB).
LT_NULL, LT_ETHERNET, LT_PPP, LT_RAW, LT_LOOP, LT_SLL, LT_IPV4, LT_IPV6, LT_NFLOG, LT_SLL2 = (
    0, 1, 9, 101, 108, 113, 228, 229, 239, 276)
_RAW_LINKTYPES = frozenset({LT_RAW, 12, 14})


# --- record reading ---


@dataclass
class Capture:
    """Records as libpcap would deliver them: (link type, frame bytes, timestamp in ns).

    The timestamp is None where the file gives it no meaning: a sub-second field of a second or
    more, or a time past 2**63 ns (year 2262).
    """

    records: list[tuple[int, bytes, int | None]]
    link_types: list[int]
    read_error: str = ""  # why reading stopped early ("" = clean end of file)


def _snapshot(snaplen: int) -> int:
    # pcap_adjust_snapshot(): 0, negative or oversized snaplens become the maximum.
    return snaplen if 0 < snaplen <= MAX_SNAPLEN else MAX_SNAPLEN


def read_capture(path: str | Path) -> Capture:
    with open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4:
        raise CaptureRefused("file shorter than a capture header")
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(raw)
    return _read_pcap(raw)


def _read_pcap(raw: bytes) -> Capture:
    if len(raw) < 24:
        raise CaptureRefused("short pcap file header")
    magic = struct.unpack(">I", raw[:4])[0]  # dpkt names magics as read big-endian
    little = magic in (dpkt.pcap.PMUDPCT_MAGIC, dpkt.pcap.PMUDPCT_MAGIC_NANO, dpkt.pcap.PACPDOM_MAGIC)
    fhdr = dpkt.pcap.LEFileHdr(raw[:24]) if little else dpkt.pcap.FileHdr(raw[:24])
    if magic not in dpkt.pcap.MAGIC_TO_PKT_HDR:
        raise CaptureRefused(f"bad pcap magic {magic:#x}")
    if fhdr.v_major != 2:
        raise CaptureRefused(f"pcap version {fhdr.v_major}.{fhdr.v_minor} unsupported")
    phdr_cls = dpkt.pcap.MAGIC_TO_PKT_HDR[magic]
    hlen = phdr_cls.__hdr_len__
    # LT_LINKTYPE(): the upper bits carry FCS info, not the link type.
    linktype = fhdr.linktype & 0x03FFFFFF
    snapshot = _snapshot(struct.unpack("i", struct.pack("I", fhdr.snaplen))[0])
    records: list[tuple[int, bytes, int | None]] = []
    # Nanosecond magics carry ns in the sub-second field, the others us (libpcap scales, and does
    # not normalise a sub-second field over one second).
    frac_scale = 1 if magic in (dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO) else 1000
    pos, error = 24, ""
    while pos < len(raw):
        if len(raw) - pos < hlen:
            error = "truncated record header"
            break
        phdr = phdr_cls(raw[pos:pos + hlen])
        caplen, wirelen = phdr.caplen, phdr.len
        # Versions before 2.3 wrote (len, caplen); 2.3 files may have either order.
        if fhdr.v_minor < 3 or (fhdr.v_minor == 3 and caplen > wirelen):
            caplen, wirelen = wirelen, caplen
        pos += hlen
        if caplen > MAX_SNAPLEN:
            error = f"record caplen {caplen} over the maximum"
            break
        if len(raw) - pos < caplen:
            error = "truncated record data"
            break
        ts_ns: int | None = phdr.tv_sec * 1_000_000_000 + phdr.tv_usec * frac_scale
        if phdr.tv_usec * frac_scale >= 1_000_000_000 or ts_ns >= 2**63:
            ts_ns = None
        records.append((linktype, raw[pos:pos + min(caplen, snapshot)], ts_ns))
        pos += caplen
    return Capture(records, [linktype], error)


def _read_pcapng(raw: bytes) -> Capture:
    records: list[tuple[int, bytes, int | None]] = []
    interfaces: list[tuple[int, int, int, int]] = []  # (link type, ticks per second, offset in s, snapshot)
    link_types: list[int] = []  # of every interface, in file order, without repeats
    seen_interface = False
    little = True
    pos, error = 0, ""
    blocks = {
        True: (dpkt.pcapng.SectionHeaderBlockLE, dpkt.pcapng.InterfaceDescriptionBlockLE,
               dpkt.pcapng.EnhancedPacketBlockLE, dpkt.pcapng.PacketBlockLE),
        False: (dpkt.pcapng.SectionHeaderBlock, dpkt.pcapng.InterfaceDescriptionBlock,
                dpkt.pcapng.EnhancedPacketBlock, dpkt.pcapng.PacketBlock),
    }
    while pos < len(raw):
        if len(raw) - pos < 12:
            error = "truncated block header"
            break
        btype = struct.unpack("<I", raw[pos:pos + 4])[0]
        if btype == dpkt.pcapng.PCAPNG_BT_SHB:
            bom = raw[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                little = True
            elif bom == b"\x1a\x2b\x3c\x4d":
                little = False
            else:
                if pos == 0:
                    raise CaptureRefused("bad pcapng byte-order magic")
                error = "bad byte-order magic in a later section"
                break
        end = "<" if little else ">"
        btype, blen = struct.unpack(end + "II", raw[pos:pos + 8])
        if blen < 12 or blen % 4 or pos + blen > len(raw) or \
                struct.unpack(end + "I", raw[pos + blen - 4:pos + blen])[0] != blen:
            if pos == 0:
                raise CaptureRefused("damaged section header block")
            error = "damaged block"
            break
        buf = raw[pos:pos + blen]
        shb_cls, idb_cls, epb_cls, pb_cls = blocks[little]
        try:
            if btype == dpkt.pcapng.PCAPNG_BT_SHB:
                shb = shb_cls(buf)
                if shb.v_major != 1 or shb.v_minor not in (0, 2):
                    raise CaptureRefused(f"pcapng version {shb.v_major}.{shb.v_minor} unsupported")
                interfaces = []
            elif pos == 0:
                raise CaptureRefused("pcapng file does not start with a section header")
            elif btype == dpkt.pcapng.PCAPNG_BT_IDB:
                idb = idb_cls(buf)
                lt, snap = idb.linktype, _snapshot(idb.snaplen)
                seen_interface = True
                if lt not in link_types:
                    link_types.append(lt)
                per_s, offset = 1_000_000, 0
                for opt in idb.opts:
                    if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL:
                        res = opt.data[0]
                        per_s = 2 ** (res & 0x7F) if res & 0x80 else 10 ** res
                    elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET:
                        offset = struct.unpack(end + "q", opt.data[:8])[0]
                interfaces.append((lt, per_s, offset, snap))
            elif btype in (dpkt.pcapng.PCAPNG_BT_EPB, dpkt.pcapng.PCAPNG_BT_PB):
                blk = (epb_cls if btype == dpkt.pcapng.PCAPNG_BT_EPB else pb_cls)(buf)
                if blk.iface_id >= len(interfaces):
                    error = "packet on an undeclared interface"
                    break
                lt, per_s, offset, snap = interfaces[blk.iface_id]
                ticks = (blk.ts_high << 32) | blk.ts_low
                ts_ns = (offset + ticks // per_s) * 1_000_000_000 + (ticks % per_s) * 1_000_000_000 // per_s
                records.append((lt, bytes(blk.pkt_data[:snap]), ts_ns if ts_ns < 2**63 else None))
            elif btype == dpkt.pcapng.PCAPNG_BT_SPB:
                if not interfaces:
                    error = "packet before any interface"
                    break
                wirelen = struct.unpack(end + "I", buf[8:12])[0]
                # A simple packet block has no timestamp.
                records.append((interfaces[0][0], buf[12:12 + min(wirelen, blen - 16, interfaces[0][3])], None))
        except (dpkt.UnpackError, struct.error) as exc:
            if pos == 0:
                raise CaptureRefused(f"damaged section header block: {exc}") from exc
            error = f"damaged block: {exc}"
            break
        pos += blen
    if not seen_interface and not error:
        raise CaptureRefused("no interface description block")
    return Capture(records, link_types, error)


# --- decoding ---


@dataclass(slots=True)
class Decoded:
    version: int
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    vlan: int
    ip_len: int  # IP-layer bytes (IPv4 total length, IPv6 payload length + 40)
    ttl: int  # IPv4 TTL or IPv6 hop limit
    tcp_flags: int
    frag_key: tuple[object, ...] | None  # set for fragments (first and later ones)
    first_fragment: bool


def _ethertype_walk(data: bytes, off: int, etype: int, vlan: int) -> Decoded | str:
    """Walk VLAN tags, MPLS and PPPoE from an ethertype at `off` to the IP header."""
    while etype in _VLAN_TPIDS or etype in _SHIMS:
        if etype in _SHIMS:  # VN-Tag, E-Tag: a tag of fixed length, then the next type
            n = _SHIMS[etype]
            if len(data) - off < n + 2:
                return "truncated"
            etype = struct.unpack("!H", data[off + n:off + n + 2])[0]
            off += n + 2
            continue
        if len(data) - off < 4:
            return "truncated"
        tci, etype = struct.unpack("!HH", data[off:off + 4])
        vlan = tci & 0x0FFF  # innermost tag wins
        off += 4
    if etype in _MPLS:
        return _mpls_walk(data, off, vlan)
    if etype == 0x8864:
        try:
            pppoe = PPPoEHdr(data[off:])
        except dpkt.NeedData:
            return "truncated"
        off += PPPoEHdr.__hdr_len__
        return _ppp_proto(data, off, pppoe.ppp_proto, vlan)
    if etype == ETH_IP4:
        return decode_ip4(data, off, vlan)
    if etype == ETH_IP6:
        return decode_ip6(data, off, vlan)
    return "non_ip"


def _mpls_walk(data: bytes, off: int, vlan: int) -> Decoded | str:
    while True:
        if len(data) - off < 4:
            return "truncated"
        label = struct.unpack("!I", data[off:off + 4])[0]
        off += 4
        if label & 0x100:  # bottom of stack
            break
    return _by_nibble(data, off, vlan, "non_ip")


def _by_nibble(data: bytes, off: int, vlan: int, other: str) -> Decoded | str:
    if len(data) <= off:
        return "truncated"
    version = data[off] >> 4
    if version == 4:
        return decode_ip4(data, off, vlan)
    if version == 6:
        return decode_ip6(data, off, vlan)
    return other


def _ppp_proto(data: bytes, off: int, proto: int, vlan: int) -> Decoded | str:
    if proto == 0x0021:
        return decode_ip4(data, off, vlan)
    if proto == 0x0057:
        return decode_ip6(data, off, vlan)
    if proto in (0x0281, 0x0283):
        return _mpls_walk(data, off, vlan)
    return "non_ip"


def decode_frame(linktype: int, data: bytes) -> Decoded | str:
    """Decode one frame; a str result is the reason it is put aside."""
    if linktype == LT_ETHERNET:
        if len(data) < 14:
            return "truncated"
        return _ethertype_walk(data, 14, struct.unpack("!H", data[12:14])[0], 0)
    if linktype == LT_SLL:
        try:
            return _ethertype_walk(data, SLLHdr.__hdr_len__, SLLHdr(data).proto, 0)
        except dpkt.NeedData:
            return "truncated"
    if linktype == LT_SLL2:
        try:
            return _ethertype_walk(data, SLL2Hdr.__hdr_len__, SLL2Hdr(data).proto, 0)
        except dpkt.NeedData:
            return "truncated"
    if linktype == LT_IPV4:
        # LINKTYPE_IPV4/IPV6 promise one version; IPv6 where IPv4 was said is still IPv6 (tshark's
        # IPv4 dissector hands it over; decode_ip4), IPv4 where IPv6 was said a bad header.
        return decode_ip4(data, 0, 0)
    if linktype == LT_IPV6:
        return decode_ip6(data, 0, 0)
    if linktype in _RAW_LINKTYPES:
        return _by_nibble(data, 0, 0, "bad_header")
    if linktype in (LT_NULL, LT_LOOP):
        if len(data) < 4:
            return "truncated"
        if linktype == LT_LOOP:
            family = struct.unpack("!I", data[:4])[0]
        else:
            # DLT_NULL is in the writer's byte order: a small value tells which.
            family = struct.unpack("<I", data[:4])[0]
            if family > 0xFFFF:
                family = struct.unpack(">I", data[:4])[0]
        if family == 2:
            return decode_ip4(data, 4, 0)
        if family in _AF_INET6:
            return decode_ip6(data, 4, 0)
        return "non_ip"
    if linktype == LT_PPP:
        off = 2 if data[:2] == b"\xff\x03" else 0
        if len(data) - off < 1:
            return "truncated"
        if data[off] & 1:  # protocol field compression: one byte
            return _ppp_proto(data, off + 1, data[off], 0)
        if len(data) - off < 2:
            return "truncated"
        return _ppp_proto(data, off + 2, struct.unpack("!H", data[off:off + 2])[0], 0)
    if linktype == LT_NFLOG:
        return _decode_nflog(data)
    return "unsupported_link"


def _decode_nflog(data: bytes) -> Decoded | str:
    if len(data) < 4:
        return "truncated"
    family = data[0]
    off = 4
    while len(data) - off >= 4:
        # TLV length and type are in host byte order (little-endian in practice).
        tlen, ttype = struct.unpack("<HH", data[off:off + 4])
        if tlen < 4 or off + tlen > len(data):
            return "truncated"
        if ttype == 9:  # NFULA_PAYLOAD
            payload = data[off + 4:off + tlen]
            if family == 2:
                return decode_ip4(payload, 0, 0)
            if family in _AF_INET6:
                return decode_ip6(payload, 0, 0)
            return _by_nibble(payload, 0, 0, "non_ip")
        off += (tlen + 3) & ~3
    return "non_ip"


def decode_ip4(data: bytes, off: int, vlan: int) -> Decoded | str:
    avail = len(data) - off
    # The version nibble first: IPv6 is decoded as such (as tshark does), another version is a
    # bad header whatever its length.
    if avail >= 1 and data[off] >> 4 == 6:
        return decode_ip6(data, off, vlan)
    if avail >= 1 and data[off] >> 4 != 4:
        return "bad_header"
    if avail < 20:
        return "truncated"
    ip = IP4Hdr(data[off:off + 20])
    ihl = (ip.v_hl & 0x0F) * 4
    if ihl < 20:
        return "bad_header"
    if avail < ihl:
        return "truncated"
    ip_len = ip.len
    if ip_len == 0:
        # Total length 0 is what TCP segmentation offload leaves in captures made on the sender
        # (Wireshark presumes the same): the datagram is what was captured.
        ip_len = avail
    if ip_len < ihl:
        return "bad_header"
    frag_off, more = ip.off & 0x1FFF, bool(ip.off & 0x2000)
    frag_key = (4, ip.src, ip.dst, ip.p, ip.id) if (frag_off or more) else None
    if frag_off:
        return Decoded(4, ip.p, ip.src, ip.dst, 0, 0, vlan, ip_len, ip.ttl, 0, frag_key, False)
    # The transport header lies within the IP datagram: trailing link padding is not part of it.
    end = off + min(avail, ip_len)
    return _transport(4, ip.p, ip.src, ip.dst, data[off + ihl:end], vlan, ip_len, ip.ttl, frag_key,
                      short=_short(avail, ip_len))


def decode_ip6(data: bytes, off: int, vlan: int) -> Decoded | str:
    avail = len(data) - off
    if avail >= 1 and data[off] >> 4 != 6:
        return "bad_header"
    if avail < 40:
        return "truncated"
    ip = IP6Hdr(data[off:off + 40])
    ip_len = ip.plen + 40
    buf = data[off + 40:off + min(avail, ip_len)]
    short = _short(avail, ip_len)
    nxt, pos = ip.nxt, 0
    frag_key: tuple[object, ...] | None = None
    while nxt in _IP6_EXT:
        if len(buf) - pos < 8:
            return short
        if nxt == 44:
            frag = IP6FragHdr(buf[pos:pos + 8])
            offset, more = frag.frag_off >> 3, bool(frag.frag_off & 1)
            if offset or more:  # an atomic fragment (0, M=0) is a whole datagram
                frag_key = (6, ip.src, ip.dst, frag.id)
            if offset:
                return Decoded(6, frag.nxt, ip.src, ip.dst, 0, 0, vlan, ip_len, ip.hlim, 0, frag_key, False)
            hlen = 8
        elif nxt == 51:
            hlen = (buf[pos + 1] + 2) * 4
        else:
            hlen = (buf[pos + 1] + 1) * 8
        if len(buf) - pos < hlen:
            return short
        nxt = buf[pos]
        pos += hlen
    return _transport(6, nxt, ip.src, ip.dst, buf[pos:], vlan, ip_len, ip.hlim, frag_key, short=short)


def _short(captured: int, declared: int) -> str:
    """Why a header is missing past the end of the buffer: the capture ended first ("truncated")
    or the datagram's own length says it is not there ("bad_header")."""
    return "truncated" if captured < declared else "bad_header"


def _transport(version: int, proto: int, src: bytes, dst: bytes, buf: bytes, vlan: int, ip_len: int,
               ttl: int, frag_key: tuple[object, ...] | None, short: str) -> Decoded | str:
    sport = dport = flags = 0
    hdr_cls = _TRANSPORT.get(proto)
    if hdr_cls is ICMPHdr and (proto == 1) != (version == 4):
        hdr_cls = None  # ICMPv4 in IPv6 or ICMPv6 in IPv4: just an IP protocol
    if hdr_cls is not None and len(buf) < hdr_cls.__hdr_len__:
        # A first fragment whose datagram cuts its TCP or SCTP header still has its ports.
        if frag_key is None or short != "bad_header" or hdr_cls not in (TCPHdr, SCTPHdr) or len(buf) < 4:
            return short
        sport, dport = struct.unpack("!HH", buf[:4])
        hdr_cls = None
    if hdr_cls is not None:
        hdr = hdr_cls(buf[:hdr_cls.__hdr_len__])
        if hdr_cls is ICMPHdr:
            if hdr.type in (_ICMP4_ID_TYPES if version == 4 else _ICMP6_ID_TYPES):
                sport = dport = hdr.id
            else:
                sport, dport = hdr.type, hdr.code
        else:
            sport, dport = hdr.sport, hdr.dport
            if hdr_cls is TCPHdr and hdr.off_x2 >> 4 >= 5:  # under 20 bytes: only the ports are trusted
                flags = hdr.flags
    return Decoded(version, proto, src, dst, sport, dport, vlan, ip_len, ttl, flags, frag_key,
                   frag_key is not None)


# --- flows ---


@dataclass
class RefFlow:
    ip_version: int
    protocol: int
    vlan_id: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    # False when a packet's time went back, or one had no meaningful time (see Capture).
    times_comparable: bool = True
    # Per direction (0 = src->dst, 1 = dst->src): OR of TCP flags, SYN/FIN/RST packets, TTL range.
    tcp_flags: list[int] = field(default_factory=lambda: [0, 0])
    syn_fin_rst: list[list[int]] = field(default_factory=lambda: [[0, 0, 0], [0, 0, 0]])
    ttl_range: list[tuple[int, int] | None] = field(default_factory=lambda: [None, None])
    src2dst_packets: int = 0
    src2dst_bytes: int = 0
    src2dst_captured_bytes: int = 0
    dst2src_packets: int = 0
    dst2src_bytes: int = 0
    dst2src_captured_bytes: int = 0
    # TCP state for the port-reuse rule.
    fin_src: bool = False
    fin_dst: bool = False
    rst: bool = False
    _src: tuple[bytes, int] = field(default=(b"", 0), repr=False)

    @property
    def key(self) -> tuple[str, int, str, int, int]:
        return (self.src_ip, self.src_port, self.dst_ip, self.dst_port, self.protocol)

    @property
    def packets(self) -> int:
        return self.src2dst_packets + self.dst2src_packets

    @property
    def bytes(self) -> int:
        return self.src2dst_bytes + self.dst2src_bytes

    def add(self, from_src: bool, ip_len: int, caplen: int, ts_ns: int | None, ttl: int, flags: int) -> None:
        way = 0 if from_src else 1
        self.tcp_flags[way] |= flags
        for i, bit in enumerate((TH_SYN, TH_FIN, TH_RST)):
            self.syn_fin_rst[way][i] += bool(flags & bit)
        lo_hi = self.ttl_range[way]
        self.ttl_range[way] = (min(lo_hi[0], ttl), max(lo_hi[1], ttl)) if lo_hi else (ttl, ttl)
        if ts_ns is None or (self.packets and ts_ns < self.last_seen_ns):
            self.times_comparable = False
        if ts_ns is not None:
            if self.packets == 0:
                self.first_seen_ns = ts_ns
            self.last_seen_ns = max(ts_ns, self.last_seen_ns)
        if from_src:
            self.src2dst_packets += 1
            self.src2dst_bytes += ip_len
            self.src2dst_captured_bytes += caplen
        else:
            self.dst2src_packets += 1
            self.dst2src_bytes += ip_len
            self.dst2src_captured_bytes += caplen


@dataclass
class RefResult:
    records: int
    flows: list[RefFlow]  # in creation order
    aside: Counter[str]
    link_types: list[int]
    read_error: str

    @property
    def packets_in_flows(self) -> int:
        return sum(f.packets for f in self.flows)


def _ip_str(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def reference_flows(path: str | Path) -> RefResult:
    """Flows of a capture by the contract's key, without timeouts. Raises CaptureRefused."""
    cap = read_capture(path)
    table: dict[tuple[object, ...], RefFlow] = {}
    flows: list[RefFlow] = []
    frags: dict[tuple[object, ...], RefFlow] = {}
    # later fragments before their first: counted in its flow, before it, when it comes
    early: dict[tuple[object, ...], list[tuple[Decoded, int, int]]] = {}
    aside: Counter[str] = Counter()
    for linktype, data, ts_ns in cap.records:
        d = decode_frame(linktype, data)
        if isinstance(d, str):
            aside[d] += 1
            continue
        a, b = (d.src, d.sport), (d.dst, d.dport)
        if d.frag_key is not None and not d.first_fragment:
            owner = frags.get(d.frag_key)
            if owner is None:
                early.setdefault(d.frag_key, []).append((d, len(data), ts_ns))
            else:
                # A later fragment has no ports: its source address gives the direction.
                owner.add(d.src == owner._src[0], d.ip_len, len(data), ts_ns, d.ttl, 0)
            continue
        key = (d.version, d.proto, min(a, b), max(a, b), d.vlan)
        flow = table.get(key)
        syn_only = d.proto == 6 and d.tcp_flags & (TH_SYN | TH_ACK) == TH_SYN
        if flow is not None and syn_only and ((flow.fin_src and flow.fin_dst) or flow.rst):
            flow = None  # port reuse: a new connection on a closed 5-tuple
        if flow is None:
            synack = d.proto == 6 and d.tcp_flags & (TH_SYN | TH_ACK) == (TH_SYN | TH_ACK)
            s, t = (b, a) if synack else (a, b)
            flow = RefFlow(d.version, d.proto, d.vlan, _ip_str(s[0]), s[1], _ip_str(t[0]), t[1], _src=s)
            table[key] = flow
            flows.append(flow)
        from_src = a == flow._src
        for e, caplen, e_ts in early.pop(d.frag_key, []) if d.first_fragment else []:
            flow.add(e.src == flow._src[0], e.ip_len, caplen, e_ts, e.ttl, 0)
        flow.add(from_src, d.ip_len, len(data), ts_ns, d.ttl, d.tcp_flags)
        if d.proto == 6:
            if d.tcp_flags & TH_FIN:
                if from_src:
                    flow.fin_src = True
                else:
                    flow.fin_dst = True
            if d.tcp_flags & TH_RST:
                flow.rst = True
        if d.first_fragment and d.frag_key is not None:
            frags[d.frag_key] = flow
    if early:
        aside["fragment_orphan"] += sum(len(held) for held in early.values())
    return RefResult(len(cap.records), flows, aside, cap.link_types, cap.read_error)


# --- tshark ---

TSHARK = shutil.which("tshark")

_CONV_RE = re.compile(
    r"^(?P<a>\S+)\s+<->\s+(?P<b>\S+)\s+"
    r"(?P<f1>\d+)\s+\S+\s+\S+\s+(?P<f2>\d+)\s+\S+\s+\S+\s+(?P<tot>\d+)\s+\S+\s+\S+\s+\S+\s+\S+\s*$"
)


def _endpoint(text: str) -> str:
    # "addr:port" where an IPv6 address contains ':' itself: the port follows the last one.
    addr, _, port = text.rpartition(":")
    return f"{ipaddress.ip_address(addr)}:{int(port)}"


# -n: no name resolution, so endpoints stay numeric whatever the local configuration.
TSHARK_CONVERSATION_ARGS = ("-n", "-q", "-z", "conv,tcp", "-z", "conv,udp")


def parse_tshark_conversations(text: str) -> dict[tuple[str, frozenset[str]], int]:
    """tshark's TCP and UDP conversations, from the table it prints for TSHARK_CONVERSATION_ARGS
    (the `tshark` fixture runs it): {(proto, {'ip:port', 'ip:port'}): total frames}.

    Rows of the same endpoint pair (tshark splits TCP streams on port reuse) are summed.
    """
    convs: Counter[tuple[str, frozenset[str]]] = Counter()
    proto = ""
    for line in text.splitlines():
        if line.startswith("TCP Conversations"):
            proto = "tcp"
        elif line.startswith("UDP Conversations"):
            proto = "udp"
        elif "<->" in line:
            m = _CONV_RE.match(line.strip())
            if m is None or not proto:
                raise RuntimeError(f"unparsed tshark conversation line: {line!r}")
            key = (proto, frozenset({_endpoint(m["a"]), _endpoint(m["b"])}))
            convs[key] += int(m["tot"])
    return dict(convs)


def reference_conversations(result: RefResult) -> dict[tuple[str, frozenset[str]], int]:
    """The reference's TCP/UDP flows aggregated like tshark's table (no VLAN, splits summed)."""
    convs: Counter[tuple[str, frozenset[str]]] = Counter()
    for f in result.flows:
        if f.protocol in (6, 17):
            proto = "tcp" if f.protocol == 6 else "udp"
            convs[(proto, frozenset({f"{f.src_ip}:{f.src_port}", f"{f.dst_ip}:{f.dst_port}"}))] += f.packets
    return dict(convs)


def iter_corpus(root: Path) -> Iterator[Path]:
    """Every capture file under the corpus root (top level and malformed/)."""
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".pcap", ".pcapng"):
            yield p


# --- where tshark's conversations and the contract's flows are not defined alike ---

# Whole captures left out of the tshark comparison (paths relative to the corpus root).
EXCLUDED: dict[str, str] = {
    "malformed/libpcap_linktype-reserved-field-not-zero.pcap":
        "tshark refuses it (reserved link-type bits); libpcap 1.10 opens it (no packets)",
    "malformed/libpcap_pcap-invalid-version-1.pcap": "neither tshark nor libpcap opens it (pcap 1.4)",
    "malformed/libpcap_pcapng-invalid-vers-1.pcapng": "neither tshark nor libpcap opens it (SHB 0.1)",
    "malformed/libpcap_shb-option-too-long.pcapng": "neither tshark nor libpcap opens it (damaged SHB)",
    "malformed/ndpi_fuzz-2021-10-13.pcap":
        "tshark refuses the cut-short file; libpcap delivers the first record, then stops",
    "malformed/zeek_tcp_truncated-header.pcap":
        "the SYN's TCP options are cut by the 68-byte snaplen: tshark's TCP dissector throws before its"
        " conversation tap, so tshark counts 23 of the 24 frames",
    "nfstream_6in4tunnel.pcap": "6in4 tunnel (IP proto 41): tshark counts the inner IPv6 TCP/UDP conversations",
    "nfstream_ip_fragmented_garbage.pcap":
        "9077 IPv4 fragments: tshark reassembles (count once, in the last fragment's frame); the"
        " contract counts every fragment in the flow of its first (test_decode_events compares it"
        " with tshark frame by frame)",
    "zeek_erspan.pcap": "ERSPAN (GRE) mirror: tshark counts the inner conversations",
    "zeek_ipv4_fragmented-1.pcap": "IPv4 fragments: tshark reassembles and counts the datagram once",
    "zeek_ipv4_fragmented-2.pcap": "IPv4 fragments: tshark reassembles and counts the datagram once",
    "zeek_tunnels_4in4.pcap": "IPv4-in-IPv4 tunnel: tshark counts the inner UDP conversation",
    "zeek_tunnels_6in6in6.pcap": "IPv6-in-IPv6 tunnel: tshark counts the inner UDP conversation",
    "zeek_tunnels_gre-aruba.pcap": "GRE tunnel: tshark counts the inner TCP conversations",
    "zeek_tunnels_gre-sample.pcap": "GRE tunnel: tshark counts the inner TCP/UDP conversations",
    "zeek_tunnels_gre-within-gre.pcap": "nested GRE: tshark counts the inner UDP conversations",
    "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap":
        "GTP-U tunnel over fragmented outer IPv4: tshark counts the inner TCP and reassembles the outer UDP",
}


def _conv(proto: str, a: str, b: str) -> tuple[str, frozenset[str]]:
    return (proto, frozenset({_endpoint(a), _endpoint(b)}))


_FRAG = "IPv4/IPv6 fragments: tshark reassembles the datagram and counts it once"
# Single conversations left out of an otherwise compared capture.
EXCLUDED_CONVERSATIONS: dict[str, dict[tuple[str, frozenset[str]], str]] = {
    "malformed/ndpi_fuzz-2006-06-26-2594.pcap": {
        _conv("udp", "192.168.1.1:53", "192.168.1.2:2823"):
            "fuzzed MF flag on a whole DNS query: tshark waits for fragments that never come, the"
            " contract counts a first fragment in its flow",
    },
    "ndpi_syslog.pcap": {
        _conv("udp", "2001:470:6c:a1::2:38159", "2001:470:765b::b15:22:514"): "6in4: inner IPv6 UDP",
    },
    "ndpi_zoom.pcap": {
        _conv("udp", "10.140.117.35:45634", "193.122.35.237:8801"): "GTP-U: inner UDP",
    },
    "nfstream_dns_fragmented.pcap": {
        _conv("udp", "172.217.40.76:56680", "193.24.227.238:53"): _FRAG,
        _conv("udp", "173.194.169.104:59464", "193.24.227.238:53"): _FRAG,
        _conv("udp", "193.24.227.238:53", "74.125.47.136:59330"): _FRAG,
        _conv("udp", "193.24.227.238:53", "194.247.5.6:51791"): _FRAG,
        _conv("udp", "2001:470:1f0b:16b0:20c:29ff:fe7c:a4cb:55729", "2001:470:765b::a25:53:53"): _FRAG,
        _conv("udp", "2001:470:765b::a25:53:53", "2a00:1450:4013:c03::10a:46433"): _FRAG,
        _conv("udp", "2001:470:765b::a25:53:53", "2a00:1450:4013:c06::105:63369"): _FRAG,
    },
    "tcpdump_afs.pcap": {
        _conv("udp", "131.151.1.146:7000", "131.151.32.21:7001"): _FRAG,
    },
    "zeek_dns-edns-ecs.pcap": {
        _conv("udp", "172.217.40.76:56680", "193.24.227.238:53"): _FRAG,
        _conv("udp", "173.194.169.104:59464", "193.24.227.238:53"): _FRAG,
        _conv("udp", "193.24.227.238:53", "74.125.47.136:59330"): _FRAG,
        _conv("udp", "193.24.227.238:53", "194.247.5.6:51791"): _FRAG,
    },
    "zeek_ipv4_fragmented-4.pcap": {
        _conv("tcp", "10.0.0.1:80", "128.32.46.142:7790"): _FRAG,
    },
    "zeek_tunnels_ayiya3.pcap": {
        _conv("tcp", "2001:4860:b002::68:80", "2001:4978:f:4c::2:53382"): "AYIYA tunnel: inner IPv6 TCP",
    },
    "zeek_tunnels_geneve-47101.pcap": {
        _conv("tcp", "145.40.68.75:443", "192.168.0.107:45474"): "Geneve tunnel: inner TCP",
    },
    "zeek_tunnels_vxlan-encapsulated-http.pcap": {
        _conv("tcp", "172.16.11.201:40354", "54.86.237.188:80"): "VXLAN tunnel: inner TCP",
    },
}


def comparable(rel: str, convs: dict[tuple[str, frozenset[str]], int]) -> dict[tuple[str, frozenset[str]], int]:
    """`convs` without the conversations excluded for capture `rel`."""
    skip = EXCLUDED_CONVERSATIONS.get(rel, {})
    return {k: v for k, v in convs.items() if k not in skip}


class ReferenceFlows:
    """reference_flows(path), each capture's result kept for the session: several comparisons (with
    aioflow, with tshark, the exclusion checks) ask about the same corpus capture, and the pure
    Python reference is the slow side of each."""

    def __init__(self) -> None:
        self._results: dict[tuple[str, int, int], RefResult] = {}

    def __call__(self, path: Path) -> RefResult:
        key = identity(path)
        if key not in self._results:
            self._results[key] = reference_flows(path)
        return self._results[key]
