"""IP defragmentation (defragment=True): against tshark's reassembly, on crafted edge cases, and
under a flood of fragments that never complete.

tshark (-o ip.defragment:TRUE -o ipv6.defragment:TRUE) shows a reassembled datagram once, in the
frame of its last fragment: per TCP/UDP conversation, the number of datagrams and the sum of
their IP lengths must equal aioflow's flows. Where aioflow's documented policy differs (overlaps
are dropped, tshark reassembles them), the capture is in EXCLUDED and a test proves it differs for
that reason.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from support import reference
from support.corpus import DATA
from support.crafted import (
    A6,
    B6,
    BIG,
    MAC_A,
    MAC_B,
    UDP_PAYLOAD,
    A,
    B,
    T,
    ether,
    fragment_flood,
    frags4,
    ip4,
    mutate,
    run,
    tcp,
    udp,
    write,
)
from support.tshark import TShark

import aioflow
from aioflow._engine import Engine, EngineConfig

Datagrams = dict[tuple[str, frozenset[str]], tuple[int, int]]

# Captures of ../shared/pcaps holding IP fragments (tshark -Y "ip.flags.mf==1 or ip.frag_offset>0
# or ipv6.fraghdr"), compared with tshark's reassembly.
FRAGMENTED = [
    "libpcap_filter_ipv6_ext_headers.pcap",
    "malformed/ndpi_fuzz-2006-06-26-2594.pcap",
    "malformed/tcpdump_ipv6_frag6_negative_len.pcap",
    "malformed/zeek_trunc_mpls-6in6-broken.pcap",
    "nfstream_dns_fragmented.pcap",
    "nfstream_ip_fragmented_garbage.pcap",
    "tcpdump_afs.pcap",
    "tcpdump_icmpv6-rfc7112.pcap",
    "zeek_dns-edns-ecs.pcap",
    "zeek_ipv4_fragmented-1.pcap",
    "zeek_ipv4_fragmented-2.pcap",
    "zeek_ipv4_fragmented-4.pcap",
    "zeek_ipv6-http-atomic-frag.pcap",
]
# Where tshark and aioflow define the datagrams differently, with the give-up reason that proves it.
EXCLUDED = {
    "zeek_ipv4_fragmented-1.pcap": (
        "inconsistent",
        "a fragment at offset 0 runs past the end the last fragment set: tshark reassembles (flagging"
        " an error), aioflow gives the datagram up as inconsistent and counts its fragments as"
        " fragments (test_given_up_datagrams_count_their_fragments_as_tshark_frames)",
    ),
    "zeek_ipv4_fragmented-4.pcap": (
        "overlap",
        "overlapping TCP fragments (an IDS evasion test): tshark reassembles them, aioflow's policy gives"
        " the datagram up and counts its fragments as fragments",
    ),
}
# Tunnels over fragmented IP: tshark counts the inner conversations (as in reference.EXCLUDED).
TUNNELS = {
    "zeek_erspan.pcap": "ERSPAN (GRE) mirror with fragmented outer IPv4: tshark counts the inner conversations",
    "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap": "GTP-U over fragmented IPv4: tshark counts inner TCP",
}
# nfstream_ip_fragmented_garbage has datagrams of 313 16-byte fragments: above the default bound.
COMPARE_OPTIONS: dict[str, Any] = {"max_fragments_per_datagram": 1024}

_FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
           "ip.len", "ip.hdr_len", "ip.reassembled.length", "ipv6.plen", "ipv6.reassembled.length")


def _ends(src: str, sport: str | int, dst: str, dport: str | int) -> frozenset[str]:
    return frozenset({f"{ipaddress.ip_address(src)}:{sport}", f"{ipaddress.ip_address(dst)}:{dport}"})


def tshark_datagrams(tshark: TShark, path: Path) -> Datagrams:
    """tshark's TCP/UDP packets after reassembly: {(proto, ends): (datagrams, sum of IP lengths)}.

    Frames whose TCP data offset tshark rejects (under 20 bytes) count by their ports, as tshark
    shows them and aioflow keeps them (decode event tcp_bad_data_offset; tshark's conversation
    table leaves them out); segments too short for a data offset are left out by both; ICMP errors
    quoting a datagram are not the datagram's. A reassembled datagram's IP length
    is its header plus the reassembled length (IPv6: 40 bytes; these captures have no
    unfragmentable extension headers in fragmented datagrams)."""
    args = ["-n", "-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE",
            "-Y", "(udp or tcp.hdr_len) and not icmp and not icmpv6", "-T", "fields", "-E", "occurrence=f"]
    for f in _FIELDS:
        args += ["-e", f]
    out: dict[tuple[str, frozenset[str]], list[int]] = {}
    for line in tshark.output(path, *args).splitlines():
        v = dict(zip(_FIELDS, line.split("\t"), strict=True))
        proto = "tcp" if v["tcp.srcport"] else "udp"
        ends = _ends(v["ip.src"] or v["ipv6.src"], v["tcp.srcport"] or v["udp.srcport"],
                     v["ip.dst"] or v["ipv6.dst"], v["tcp.dstport"] or v["udp.dstport"])
        if v["ip.reassembled.length"]:
            length = int(v["ip.hdr_len"]) + int(v["ip.reassembled.length"])
        elif v["ipv6.reassembled.length"]:
            length = 40 + int(v["ipv6.reassembled.length"])
        else:
            length = int(v["ip.len"]) if v["ip.len"] else 40 + int(v["ipv6.plen"])
        counts = out.setdefault((proto, ends), [0, 0])
        counts[0] += 1
        counts[1] += length
    return {k: (n, b) for k, (n, b) in out.items()}


def tshark_fragment_frames(tshark: TShark, path: Path, only: set[int] | None = None) -> Datagrams:
    """tshark's frames without reassembly, per TCP/UDP conversation, a later fragment joining the
    conversation of the first fragment of its datagram (addresses, protocol, identification) before
    it: {(proto, ends): (frames, sum of IP lengths)}, what defragment=False counts. `only`: these
    frame numbers (the others still make first fragments' ports known)."""
    fields = ("frame.number", "ip.src", "ip.dst", "ip.id", "ip.proto", "ip.len", "ip.flags.mf", "ip.frag_offset",
              "ipv6.src", "ipv6.dst", "ipv6.fraghdr.ident", "ipv6.fraghdr.more", "ipv6.fraghdr.offset", "ipv6.plen",
              "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport")  # fmt: skip
    args = ["-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-Y", "(ip or ipv6) and not icmp and"
            " not icmpv6", "-T", "fields", "-E", "occurrence=f"]  # fmt: skip
    for f in fields:
        args += ["-e", f]
    firsts: dict[tuple[str, ...], tuple[str, frozenset[str]]] = {}
    out: dict[tuple[str, frozenset[str]], tuple[int, int]] = {}
    for line in tshark.output(path, *args).splitlines():
        v = dict(zip(fields, line.split("\t"), strict=True))
        src, dst = v["ip.src"] or v["ipv6.src"], v["ip.dst"] or v["ipv6.dst"]
        datagram = (src, dst, v["ip.id"] or v["ipv6.fraghdr.ident"], v["ip.proto"])
        sport, dport = v["tcp.srcport"] or v["udp.srcport"], v["tcp.dstport"] or v["udp.dstport"]
        if sport:
            key = ("tcp" if v["tcp.srcport"] else "udp", _ends(src, sport, dst, dport))
            if v["ip.flags.mf"] in ("1", "True") or v["ipv6.fraghdr.more"] in ("1", "True"):
                firsts[datagram] = key  # a first fragment: its later ones join its flow
        elif int(v["ip.frag_offset"] or v["ipv6.fraghdr.offset"] or 0) and datagram in firsts:
            key = firsts[datagram]
        else:
            continue
        if only is not None and int(v["frame.number"]) not in only:
            continue
        n, b = out.get(key, (0, 0))
        out[key] = (n + 1, b + (int(v["ip.len"]) if v["ip.len"] else 40 + int(v["ipv6.plen"])))
    return out


def tshark_unreassembled(tshark: TShark, path: Path) -> Datagrams:
    """The fragments of datagrams tshark does not reassemble although it has their first and last
    fragments (two passes: a first fragment learns it was reassembled in a later frame), counted as
    frames (tshark_fragment_frames), and those of datagrams with a fragment RFC 791/8200 rule out
    (more to come, data not a multiple of 8 bytes): aioflow gives those up (inconsistent, overlap,
    ...) and counts their fragments so. Other datagrams missing an end never completed: neither
    tshark's reassembly nor aioflow (timeout, unfinished) counts them."""
    fields = ("frame.number", "ip.src", "ip.dst", "ip.id", "ip.flags.mf", "ip.frag_offset", "ip.len", "ip.hdr_len",
              "ipv6.src", "ipv6.dst", "ipv6.fraghdr.ident", "ipv6.fraghdr.more", "ipv6.fraghdr.offset",
              "ipv6.plen")  # fmt: skip
    args = ["-2", "-o", "ip.defragment:TRUE", "-o", "ipv6.defragment:TRUE", "-Y",
            "(ip.flags.mf==1 or ip.frag_offset>0 or ipv6.fraghdr.more==1 or ipv6.fraghdr.offset>0) and not"
            " ip.reassembled_in and not ip.reassembled.length and not ipv6.reassembled.in and not"
            " ipv6.reassembled.length", "-T", "fields", "-E", "occurrence=f"]  # fmt: skip
    for f in fields:
        args += ["-e", f]
    frames: dict[tuple[str, ...], list[int]] = {}
    ends: dict[tuple[str, ...], set[str]] = {}
    for line in tshark.output(path, *args).splitlines():
        v = dict(zip(fields, line.split("\t"), strict=True))
        datagram = (v["ip.src"] or v["ipv6.src"], v["ip.dst"] or v["ipv6.dst"], v["ip.id"] or v["ipv6.fraghdr.ident"])
        more = (v["ip.flags.mf"] or v["ipv6.fraghdr.more"]) in ("1", "True")
        offset = int(v["ip.frag_offset"] or v["ipv6.fraghdr.offset"] or 0)
        data = int(v["ip.len"]) - int(v["ip.hdr_len"]) if v["ip.len"] else int(v["ipv6.plen"] or 8) - 8
        frames.setdefault(datagram, []).append(int(v["frame.number"]))
        seen = ends.setdefault(datagram, set())
        seen.update({"first"} if offset == 0 else set(), set() if more else {"last"})
        seen.update({"ruled out"} if more and data % 8 else set())
    only = {n for d, ns in frames.items() if {"first", "last"} <= ends[d] or "ruled out" in ends[d] for n in ns}
    return tshark_fragment_frames(tshark, path, only) if only else {}


def _add(a: Datagrams, b: Datagrams) -> Datagrams:
    return {k: (a.get(k, (0, 0))[0] + b.get(k, (0, 0))[0], a.get(k, (0, 0))[1] + b.get(k, (0, 0))[1])
            for k in set(a) | set(b)}


def aioflow_datagrams(path: Path, **opts: Any) -> Datagrams:
    out: dict[tuple[str, frozenset[str]], tuple[int, int]] = {}
    for f in aioflow.read(path, defragment=True, idle_timeout=1e9, active_timeout=1e9, fin_timeout=1e9, **opts):
        if f.protocol in (6, 17):
            key = ("tcp" if f.protocol == 6 else "udp", _ends(f.src_ip, f.src_port, f.dst_ip, f.dst_port))
            n, b = out.get(key, (0, 0))
            out[key] = (n + f.packets, b + f.bytes)
    return out


async def parse(path: Path, **opts: Any) -> aioflow.ParserInfo:
    async with aioflow.FlowParser(path, **opts) as parser:
        async for _ in parser.terminated():
            pass
    return parser.info()


def _corpus_params(rels: list[str]) -> list[Any]:
    return [pytest.param(rel, id=rel) for rel in rels]


# --- against tshark ---


@pytest.mark.parametrize("name", ["nfstream_dns_fragmented.pcap", "zeek_ipv6-http-atomic-frag.pcap"])
def test_bundled_fragment_captures_match_tshark(name: str, tshark: TShark) -> None:
    """Runs anywhere tshark is: IPv4 and IPv6 fragmented DNS answers, IPv6 atomic fragments."""
    path = DATA / name
    want = _add(tshark_datagrams(tshark, path), tshark_unreassembled(tshark, path))
    assert want, "tshark saw no TCP/UDP datagram: the comparison would be vacuous"
    assert aioflow_datagrams(path) == want


@pytest.mark.corpus
@pytest.mark.parametrize("rel", _corpus_params([r for r in FRAGMENTED if r not in EXCLUDED]))
def test_corpus_fragment_captures_match_tshark(rel: str, corpus: Path, tshark: TShark) -> None:
    path = corpus / rel
    got = aioflow_datagrams(path, **COMPARE_OPTIONS)
    want = _add(tshark_datagrams(tshark, path), tshark_unreassembled(tshark, path))
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert not diff, f"{rel}: (aioflow, tshark) per conversation: {sorted(diff.items(), key=str)[:10]}"


@pytest.mark.anyio
@pytest.mark.parametrize("rel", _corpus_params(sorted(EXCLUDED)))
async def test_excluded_captures_differ_by_policy(rel: str, tshark: TShark) -> None:
    """Each exclusion is real (tshark's count differs) and is explained by the stated give-up."""
    path = DATA / rel  # both are small: bundled, so this runs without the corpus
    reason, _ = EXCLUDED[rel]
    assert aioflow_datagrams(path) != tshark_datagrams(tshark, path), f"{rel} agrees with tshark: drop its exclusion"
    info = await parse(path, defragment=True)
    assert info.defrag_gave_up[reason] >= 1, info.defrag_gave_up


@pytest.mark.anyio
@pytest.mark.parametrize("rel", _corpus_params(sorted(EXCLUDED)))
async def test_given_up_datagrams_count_their_fragments_as_tshark_frames(rel: str, tshark: TShark) -> None:
    """Where tshark keeps the packets of a datagram aioflow gives up (a second first fragment with
    other data; overlapping fragments), each fragment counts in its flow as without defragment: as
    tshark's frames, a later fragment with its first's ports; the same flows as defragment=False,
    record for record; a fragment_unmerged event for each, nothing set aside."""
    path = DATA / rel
    want = tshark_fragment_frames(tshark, path)
    assert want and sum(n for n, _ in want.values()) >= 3, want
    assert aioflow_datagrams(path) == want
    on = sorted(_record(f) for f in aioflow.read(path, defragment=True))
    assert on == sorted(_record(f) for f in aioflow.read(path))
    info = await parse(path, defragment=True)
    assert info.aside["fragment_dropped"] == info.aside["fragment_orphan"] == info.fragments_held == 0
    fragments = tshark.output(path, "-o", "ip.defragment:FALSE", "-Y", "ip.flags.mf==1 or ip.frag_offset>0",
                              "-T", "fields", "-e", "frame.number").split()
    assert info.decode_events["fragment_unmerged"] == len(fragments) > 0


def _record(f: aioflow.Flow) -> tuple[Any, ...]:
    """Every field of a record but its id (numbered in creation order)."""
    return tuple(sorted((k, str(v)) for k, v in f.to_dict().items() if k != "id"))


@pytest.mark.corpus
def test_fragmented_list_is_complete(corpus: Path) -> None:
    """Every capture of the corpus holding fragments aioflow sees is compared (or excluded)."""
    for path in reference.iter_corpus(corpus):
        rel = path.relative_to(corpus).as_posix()
        if rel in FRAGMENTED or rel in TUNNELS:
            continue
        try:
            seen = _fragments_seen(path)
        except aioflow.AioflowError:
            continue  # a file libpcap refuses
        assert seen == 0, f"{rel} holds {seen} fragments: add it to FRAGMENTED"
    assert set(TUNNELS) <= set(reference.EXCLUDED)


def _engine_stats(path: Path, **config: Any) -> dict[str, Any]:
    """The engine's final counters after reading the whole file (no flow objects made)."""
    engine = Engine(path, EngineConfig(**config))
    try:
        while engine.pump_some(1 << 16)[0] != "done":
            pass
        return engine.stats()
    finally:
        engine.close()


def _fragments_seen(path: Path) -> int:
    s = _engine_stats(path, defragment=True)
    return int(s["aside"]["fragment_merged"] + s["aside"]["fragment_dropped"] + s["defrag_datagrams"])


@pytest.mark.corpus
def test_corpus_conserves_and_unfragmented_captures_are_unchanged(corpus: Path) -> None:
    """Over the whole corpus: conservation holds with defragment=True, nothing stays held, and a
    capture without fragments gives exactly the flows it gives without defragmentation."""
    compared = 0
    for path in reference.iter_corpus(corpus):
        try:
            s = _engine_stats(path, defragment=True)
        except aioflow.AioflowError:
            continue
        assert s["packets_read"] == s["packets_in_flows"] + sum(s["aside"].values()), path
        assert s["defrag_fragments_held"] == s["defrag_in_progress"] == s["defrag_memory"] == 0, path
        if s["aside"]["fragment_merged"] + s["aside"]["fragment_dropped"] + s["defrag_datagrams"] == 0:
            flows_on = sorted(_summary(f) for f in aioflow.read(path, defragment=True))
            flows_off = sorted(_summary(f) for f in aioflow.read(path))
            assert flows_on == flows_off, path
            compared += 1
    assert compared > 50


def _summary(f: aioflow.Flow) -> tuple[Any, ...]:
    return (f.key, f.vlan_id, f.src2dst_packets, f.dst2src_packets, f.src2dst_bytes, f.dst2src_bytes, f.end_reason)


# --- crafted captures ---


def raw6(nxt: int, body: bytes) -> bytes:
    """An IPv6 packet built by hand (and framed by hand in frags6): dpkt would write a UDP checksum
    into a fragment's data."""
    return struct.pack("!IHBB", 0x60000000, len(body), nxt, 64) + socket.inet_pton(
        socket.AF_INET6, A6) + socket.inet_pton(socket.AF_INET6, B6) + body


HOP_BY_HOP = b"\x01\x04\x00\x00\x00\x00"  # a hop-by-hop header's PadN option (after next header, length)


def frags6(payload: bytes, cuts: list[int], ident: int, nxt: int = 17, hop_by_hop: bool = False) -> list[bytes]:
    """IPv6 fragments, optionally after a hop-by-hop header (unfragmentable: in every fragment)."""
    bounds = [0, *cuts, len(payload)]
    frames = []
    for a, b in itertools.pairwise(bounds):
        body = struct.pack("!BBHI", nxt, 0, a | (b < len(payload)), ident) + payload[a:b]
        packet = raw6(0, bytes([44, 0]) + HOP_BY_HOP + body) if hop_by_hop else raw6(44, body)
        frames.append(MAC_B + MAC_A + b"\x86\xdd" + packet)
    return frames


def raw4(payload: bytes, ident: int, offset: int = 0, mf: bool = False, options: bytes = b"") -> bytes:
    """An IPv4 packet A -> B (UDP) built by hand, with options and a correct checksum."""
    hl = 20 + len(options)
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, 0, hl + len(payload), ident,
                                   (0x2000 if mf else 0) | offset // 8, 64, 17, 0, socket.inet_aton(A),
                                   socket.inet_aton(B)) + options)
    total = sum(struct.unpack(f"!{hl // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(header) + payload


def timed(frames: list[bytes], t0: float = 1.0, step: float = 0.01) -> list[tuple[float, bytes]]:
    return [(t0 + i * step, f) for i, f in enumerate(frames)]


async def _one_flow(path: Path, **opts: Any) -> tuple[aioflow.Flow | None, aioflow.ParserInfo]:
    flows: list[aioflow.Flow] = []
    async with aioflow.FlowParser(path, defragment=True, idle_timeout=BIG, active_timeout=BIG, fin_timeout=BIG,
                                  headers=4, **opts) as parser:
        async for f in parser.terminated():
            flows.append(f)
    info = parser.info()
    assert info.packets == info.packets_in_flows + sum(info.aside.values()) + info.fragments_held
    assert len(flows) <= 1
    return (flows[0] if flows else None), info


@pytest.mark.anyio
@pytest.mark.parametrize("version", [4, 6])
async def test_out_of_order_fragments_make_the_original_datagram(tmp_path: Path, version: int) -> None:
    cuts = [256, 512, 768]
    frames = frags4(UDP_PAYLOAD, cuts, ident=7) if version == 4 else frags6(UDP_PAYLOAD, cuts, ident=0x1234567)
    order = [2, 0, 3, 1]
    path = write(tmp_path, "ooo.pcap", timed([frames[i] for i in order]))
    flow, info = await _one_flow(path)
    original = ip4(A, B, 17, UDP_PAYLOAD, ident=7) if version == 4 else raw6(17, UDP_PAYLOAD)
    assert flow is not None and flow.key == (T(A, 5353, B, 9999, 17) if version == 4 else T(A6, 5353, B6, 9999, 17))
    assert (flow.packets, flow.bytes) == (1, len(original))
    assert flow.captured_bytes == sum(len(f) for f in frames)
    (header,) = flow.headers
    # the reassembled IP + UDP header, byte for byte (IPv4: length, flags and checksum fixed up)
    assert header.raw == original[: len(header.raw)] and header.ip_frag == 0 and header.ip_length == len(original)
    assert header.ts == pytest.approx(1.03)  # the datagram is seen when its last fragment is
    assert info.datagrams_reassembled == 1 and info.aside["fragment_merged"] == 3
    assert info.packets_in_flows == 1 and info.peak_fragment_datagrams == 1


@pytest.mark.anyio
@pytest.mark.parametrize("version", [4, 6])
async def test_headers_before_the_fragmentable_part(tmp_path: Path, version: int) -> None:
    """IPv4 options only in the first fragment (NOPs are not copied); an IPv6 hop-by-hop header
    in every fragment: the datagram takes the first fragment's header, and the hop-by-hop
    header's next header then names UDP."""
    if version == 4:
        options = b"\x01\x01\x01\x00"
        frames = [ether(raw4(UDP_PAYLOAD[512:], ident=21, offset=512)),
                  ether(raw4(UDP_PAYLOAD[:512], ident=21, mf=True, options=options))]
        original = raw4(UDP_PAYLOAD, ident=21, options=options)
    else:
        frames = frags6(UDP_PAYLOAD, [512], ident=21, hop_by_hop=True)[::-1]
        original = raw6(0, bytes([17, 0]) + HOP_BY_HOP + UDP_PAYLOAD)
    flow, info = await _one_flow(write(tmp_path, "ext.pcap", timed(frames)))
    assert flow is not None and (flow.packets, flow.bytes) == (1, len(original))
    (header,) = flow.headers
    assert header.raw == original[: len(header.raw)] and len(header.raw) == len(original) - len(UDP_PAYLOAD) + 8
    assert info.datagrams_reassembled == 1


@pytest.mark.anyio
async def test_vlan_separates_datagrams(tmp_path: Path) -> None:
    """Same addresses and identification on two VLANs: two datagrams, interleaved, two flows."""
    def tagged(vlan: int) -> list[bytes]:
        return [ether(ip4(A, B, 17, UDP_PAYLOAD[a:b], ident=8, mf=b < len(UDP_PAYLOAD), offset=a), vlans=(vlan,))
                for a, b in ((0, 512), (512, len(UDP_PAYLOAD)))]
    ten, twenty = tagged(10), tagged(20)
    recs, details, info = await run(write(tmp_path, "vlan.pcap", timed([ten[0], twenty[0], twenty[1], ten[1]])),
                                    defragment=True)
    assert sorted((d["vlan_id"], r[2]) for r, d in zip(recs, details, strict=True)) == [(10, 1), (20, 1)]
    assert info.datagrams_reassembled == 2 and sum(info.defrag_gave_up.values()) == 0


@pytest.mark.anyio
async def test_interleaved_datagrams_and_flows_count_datagrams(tmp_path: Path) -> None:
    a, b = frags4(UDP_PAYLOAD, [512], ident=1), frags4(UDP_PAYLOAD, [256, 768], ident=2)
    reply = ether(ip4(B, A, 17, udp(9999, 5353, b"ok")))
    path = write(tmp_path, "mix.pcap", timed([a[0], b[0], b[2], reply, a[1], b[1]]))
    recs, details, info = await run(path, defragment=True)
    # the reply is the flow's first packet: the datagrams count when their last fragment comes
    assert recs == [(T(B, 9999, A, 5353, 17), "eof", 1, 2)]
    assert details[0]["bytes"] == (20 + 10, 2 * (20 + len(UDP_PAYLOAD)))
    assert info.datagrams_reassembled == 2 and info.aside["fragment_merged"] == 3


@pytest.mark.anyio
@pytest.mark.parametrize("version", [4, 6])
async def test_duplicate_fragment_is_ignored(tmp_path: Path, version: int) -> None:
    frames = frags4(UDP_PAYLOAD, [512], ident=3) if version == 4 else frags6(UDP_PAYLOAD, [512], ident=3)
    path = write(tmp_path, "dup.pcap", timed([frames[0], frames[0], frames[1]]))
    flow, info = await _one_flow(path)
    assert flow is not None and flow.packets == 1
    assert info.fragments_duplicate == 1 and info.aside["fragment_dropped"] == 1
    assert info.aside["fragment_merged"] == 1 and sum(info.defrag_gave_up.values()) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("version", [4, 6])
async def test_overlapping_fragments_give_the_datagram_up(tmp_path: Path, version: int) -> None:
    """RFC 5722 for IPv6; the same policy for IPv4 (as Linux): no datagram is made; its fragments,
    including one arriving after the give-up, count in the flow as without defragment."""
    make = frags4 if version == 4 else frags6
    first, _ = make(UDP_PAYLOAD, [512], ident=9)
    overlapping = make(UDP_PAYLOAD, [256], ident=9)[1]  # [256, end) overlaps [0, 512)
    late = make(UDP_PAYLOAD, [512], ident=9)[1]
    path = write(tmp_path, "overlap.pcap", timed([first, overlapping, late]))
    flow, info = await _one_flow(path)
    assert info.defrag_gave_up["overlap"] == 1 and sum(info.defrag_gave_up.values()) == 1
    assert info.aside["fragment_dropped"] == 0 and info.datagrams_reassembled == 0
    assert info.decode_events["fragment_unmerged"] == 3
    assert flow is not None and _packets_and_bytes([flow]) == _packets_and_bytes(aioflow.read(path)) == (3, sum(
        len(f) - 14 for f in (first, overlapping, late)))


def _packets_and_bytes(flows: Any) -> tuple[int, int]:
    flows = list(flows)
    return sum(f.packets for f in flows), sum(f.bytes for f in flows)


@pytest.mark.anyio
async def test_timeout_runs_on_packet_time(tmp_path: Path) -> None:
    a = frags4(UDP_PAYLOAD, [512], ident=4)
    b = frags4(UDP_PAYLOAD, [512], ident=5)
    other = ether(ip4(B, A, 17, udp(1, 2)))
    # a's halves 10 s apart (timeout 5 s): given up when `other` shows packet time has passed;
    # b completes within the timeout; a's second half then waits alone until the end. A datagram
    # that never completed hands nothing over (as tshark's reassembly and Zeek count none of it).
    pkts = [(0.0, a[0]), (1.0, b[0]), (2.0, b[1]), (10.0, other), (11.0, a[1])]
    flows, _, info = await run(write(tmp_path, "timeout.pcap", pkts), defragment=True, fragment_timeout=5.0)
    assert sorted(flows) == sorted([(T(A, 5353, B, 9999, 17), "eof", 1, 0), (T(B, 1, A, 2, 17), "eof", 1, 0)])
    assert info.defrag_gave_up["timeout"] == 1 and info.defrag_gave_up["unfinished"] == 1
    assert info.aside["fragment_dropped"] == 2 and info.datagrams_reassembled == 1
    assert info.decode_events["fragment_unmerged"] == 0


@pytest.mark.anyio
async def test_bounds_and_inconsistencies_are_counted(tmp_path: Path) -> None:
    many = frags4(UDP_PAYLOAD, [256, 512, 768], ident=10)
    big = frags4(UDP_PAYLOAD + UDP_PAYLOAD[:200], [512], ident=11, src="10.0.0.9")  # 1252 bytes
    two_ends = frags4(UDP_PAYLOAD, [512], ident=12)[1:] + frags4(UDP_PAYLOAD[:768], [512], ident=12)[1:]
    odd = frags4(UDP_PAYLOAD, [500], ident=13)[:1]  # not a multiple of 8 with more fragments to come
    tcp_frags = frags4(bytes(tcp(80, 81, 0x18, b"x" * 600)), [304], ident=14, proto=6)
    pkts = timed(many + big + two_ends + odd + tcp_frags)
    path = write(tmp_path, "bounds.pcap", pkts)
    recs, _, info = await run(path, defragment=True, max_fragments_per_datagram=3, max_datagram_size=1100)
    gave_up = {k: v for k, v in info.defrag_gave_up.items() if v}
    assert gave_up == {"too_many_fragments": 1, "too_big": 1, "inconsistent": 2}
    # too_many_fragments is a memory bound: its 4 fragments go aside. The others count as without
    # defragment: big's 2 fragments in their flow; two_ends' have no first fragment (the first held
    # is dropped, the second an orphan); odd's first fragment by its own ports.
    assert sorted(recs) == sorted([(T(A, 80, B, 81, 6), "eof", 1, 0), (T("10.0.0.9", 5353, B, 9999, 17), "eof", 2, 0),
                                   (T(A, 5353, B, 9999, 17), "eof", 1, 0)])
    assert info.aside["fragment_dropped"] == 4 + 1 and info.aside["fragment_orphan"] == 1
    assert info.aside["fragment_merged"] == 1 and info.decode_events["fragment_unmerged"] == 2 + 1 + 1


@pytest.mark.anyio
async def test_fragment_cut_by_the_snaplen_is_counted(tmp_path: Path) -> None:
    frames = frags4(UDP_PAYLOAD, [512], ident=15)
    path = tmp_path / "snap.pcap"
    with path.open("wb") as fh:  # the first fragment captured with 100 of its bytes
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            cut = frame[:100] if i == 0 else frame
            fh.write(struct.pack("<IIII", 1 + i, 0, len(cut), len(frame)) + cut)
    flow, info = await _one_flow(path)
    assert info.defrag_gave_up["truncated"] == 1 and info.aside["fragment_dropped"] == 0
    # as without defragment: the cut first fragment by its ports, the second by the first's
    assert flow is not None and _packets_and_bytes([flow]) == _packets_and_bytes(aioflow.read(path)) == (
        2, sum(len(f) - 14 for f in frames))


def test_flood_of_fragments_stays_within_bounds_and_conserves_at_every_step(tmp_path: Path) -> None:
    n, max_datagrams, memory = 20000, 256, 64 * 1024
    path = fragment_flood(tmp_path, n)
    config = EngineConfig(defragment=True, max_fragment_datagrams=max_datagrams, max_fragment_memory=memory,
                          idle_timeout_ns=10**15, active_timeout_ns=10**15, fin_timeout_ns=10**15)
    engine = Engine(path, config)
    steps = held_seen = 0
    try:
        while True:  # a few packets at a time: the counters must balance after every step
            state, _ = engine.pump_some(37)
            s = engine.stats()
            assert s["packets_read"] == s["packets_in_flows"] + sum(s["aside"].values()) + s["defrag_fragments_held"]
            assert s["defrag_in_progress"] <= max_datagrams and s["defrag_memory"] <= memory
            held_seen = max(held_seen, s["defrag_fragments_held"])
            steps += 1
            if state == "done":
                break
    finally:
        engine.close()
    assert steps > 100 and held_seen > 0
    completed = n // 100
    assert s["packets_read"] == n + 2 * completed
    assert s["defrag_peak_in_progress"] <= max_datagrams and s["defrag_peak_memory"] <= memory
    gave_up = s["defrag_gave_up"]
    # every never-completing datagram was given up, at a bound or at the end, and counted
    assert gave_up["table_full"] + gave_up["memory_full"] + gave_up["unfinished"] == n
    assert gave_up["table_full"] + gave_up["memory_full"] > n // 2
    assert s["defrag_datagrams"] == completed and s["packets_in_flows"] == completed
    assert s["aside"]["fragment_dropped"] == n and s["aside"]["fragment_merged"] == completed
    assert s["decode_events"]["fragment_unmerged"] == 0


@pytest.mark.anyio
async def test_default_is_per_frame_counting(tmp_path: Path) -> None:
    frames = frags4(UDP_PAYLOAD, [512], ident=16)
    path = write(tmp_path, "default.pcap", timed(frames))
    recs, _, info = await run(path)
    assert recs == [(T(A, 5353, B, 9999, 17), "eof", 2, 0)]
    assert info.datagrams_reassembled == 0 and info.fragments_held == 0 and sum(info.defrag_gave_up.values()) == 0
    assert info.aside["fragment_merged"] == info.aside["fragment_dropped"] == 0


@pytest.mark.parametrize("option", [{"max_fragment_datagrams": 0}, {"max_fragments_per_datagram": 0},
                                    {"max_datagram_size": 65576}, {"max_fragment_memory": 100},
                                    {"fragment_timeout": -1}])
def test_bad_bounds_are_config_errors(option: dict[str, int]) -> None:
    with pytest.raises(aioflow.ConfigError):
        list(aioflow.read(DATA / "nfstream_dns_fragmented.pcap", defragment=True, **option))


def test_cli_defragment(capsys: pytest.CaptureFixture[str]) -> None:
    from aioflow import cli as _cli

    path = DATA / "nfstream_dns_fragmented.pcap"
    assert _cli.main(["flows", str(path), "--format", "json", "--no-progress", "--defragment"]) == 0
    on = capsys.readouterr()
    assert _cli.main(["flows", str(path), "--format", "json", "--no-progress"]) == 0
    off = capsys.readouterr()
    packets_on = sum(json.loads(line)["packets"] for line in on.out.splitlines())
    packets_off = sum(json.loads(line)["packets"] for line in off.out.splitlines())
    info = _engine_stats(path, defragment=True)
    assert packets_off - packets_on == info["aside"]["fragment_merged"] > 0
    assert aioflow.read_frame(path, defragment=True)["packets"].sum() == packets_on  # the option reaches read_frame
    assert f"{info['defrag_datagrams']} datagrams reassembled" in on.err
    assert "reassembled" not in off.err


@pytest.mark.anyio
async def test_damaged_fragments_are_counted_never_fatal(tmp_path: Path) -> None:
    """Fragments of many datagrams, each shuffled, a third of them bit-flipped or cut (seeded), under
    small bounds: nothing crashes (run under `make sanitize`) and every packet is accounted for."""
    rng = random.Random(4)
    frames: list[bytes] = []
    for ident in range(300):
        payload = bytes(udp(1000 + ident % 7, 53, bytes(rng.randrange(256) for _ in range(rng.randrange(8, 3000)))))
        cuts = sorted(rng.sample(range(8, len(payload), 8), k=min(rng.randrange(1, 6), len(payload) // 8 - 1)))
        datagram = frags4(payload, cuts, ident=ident) if ident % 2 else frags6(payload, cuts, ident=ident)
        rng.shuffle(datagram)
        frames += datagram
    written = [mutate(rng, f) if rng.random() < 0.33 else f for f in frames]
    path = write(tmp_path, "damaged.pcap", timed(written, step=0.05))
    flows: list[aioflow.Flow] = []
    async with aioflow.FlowParser(path, defragment=True, headers=2, max_fragment_datagrams=16,
                                  max_fragments_per_datagram=4, max_fragment_memory=16 * 1024,
                                  fragment_timeout=2.0) as parser:
        async for f in parser.terminated():
            flows.append(f)
    info = parser.info()
    assert info.packets == len(written)
    assert info.packets == info.packets_in_flows + sum(info.aside.values()) and info.fragments_held == 0
    assert sum(f.packets for f in flows) == info.packets_in_flows
    assert info.datagrams_reassembled > 10 and info.peak_fragment_memory <= 16 * 1024
    assert info.peak_fragment_datagrams <= 16
