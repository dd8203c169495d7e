"""check_checksums=True against tshark's checksum validation on real captures with bad checksums
(captured at a sender that offloads checksums to its NIC, or damaged): the bad_checksum decode
events equal the frames tshark marks bad, the conn_state meter's C/c letters are Zeek's scaled
count of each direction's bad TCP/UDP segments, and a bad packet changes nothing else in conn_state
(Zeek ignores it beyond the letter): the same records as the capture without those frames."""

from __future__ import annotations

import asyncio
import subprocess
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.corpus import CORPUS, DATA, params
from support.tshark import TShark

import aioflow
from aioflow import _zeek

CHECKS = ("-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")
STATUS = ("ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", "icmp.checksum.status",
          "icmpv6.checksum.status")  # fmt: skip
ENDS = ("ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport")
ANY_BAD = " || ".join(f"{s} == 0" for s in STATUS)  # tshark's checksum.status: 0 bad, 1 good, 2 unverified
# Bundled captures with bad checksums: IPv4 headers and TCP (smtp-starttls), TCP (mysql), IPv6 TCP
# and UDP (http_ipv6), one TCP segment (Zeek's own checksum trace).
CASES = ["ndpi_smtp-starttls.pcap", "ndpi_mysql.pcapng", "ndpi_http_ipv6.pcap", "zeek_chksums_ip4-tcp-bad-chksum.pcap"]
# the corpus's captures (its malformed/ folder holds files tshark refuses; its checksum one is bundled)
CORPUS_FILES = sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []


def tshark_frames(tshark: TShark, path: Path) -> list[dict[str, str]]:
    """Each frame's checksum statuses and endpoints (the first occurrence: the outer headers of an
    ICMP error's quoted packet are not the frame's own)."""
    fields = [a for f in (*STATUS, *ENDS) for a in ("-e", f)]
    text = tshark.output(path, *CHECKS, "-T", "fields", "-E", "occurrence=f", *fields)
    return [dict(zip((*STATUS, *ENDS), line.split("\t"), strict=True)) for line in text.splitlines()]


# An IP packet longer than its frame (cut on the wire, not by the snap length): tshark sums what
# there is and calls it bad; Zeek (caplen >= len) and aioflow check nothing they do not have whole.
CUT_ON_THE_WIRE = '_ws.expert.message contains "exceeds packet length"'
# An ICMP error whose own checksum is good, in a good IP header: tshark also checks the packet it
# quotes (bad when its sender offloads checksums); Zeek and aioflow check no quoted packet.
QUOTED = "(icmp.checksum.status == 1 || icmpv6.checksum.status == 1) && !(ip.checksum.status#1 == 0)"
NO_DEFRAGMENT = ("-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE")


def bad_frames_all_layers(tshark: TShark, path: Path) -> int:
    """Frames with a checksum tshark marks bad at any layer (a tunnel's inner headers too), without
    reassembling fragments, but those cut on the wire and ICMP errors bad only in what they quote."""
    cut = f"({CUT_ON_THE_WIRE}) && !(ip.checksum.status#1 == 0)"  # (its IPv4 header is whole: checked)
    wanted = f"({ANY_BAD}) && !({cut}) && !({QUOTED})"
    return len(tshark.output(path, *CHECKS, *NO_DEFRAGMENT, "-Y", wanted, "-T", "fields", "-e", "frame.number").split())


def scaled(n: int) -> int:
    """How many times Zeek's ScaledHistoryEntry writes a letter seen n times (at 1, 10, 100, ...)."""
    return sum(1 for k in range(19) if n >= 10**k)


async def parse(path: Path, **options: Any) -> tuple[list[aioflow.Flow], int]:
    """The flows (conn_state meter on) and the bad_checksum count of a read with Zeek's options."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", aioflow.CaptureDamagedWarning)
        async with aioflow.FlowParser(path, meters=("conn_state",), **{**_zeek.ZEEK_OPTIONS, **options}) as parser:
            flows = [f async for f in parser.terminated()]
    return flows, parser.info().decode_events["bad_checksum"]


def letters(flow: aioflow.Flow) -> tuple[int, int]:
    history = str(flow.meter("conn_state")["history"])
    return history.count("C"), history.count("c")


def orig_resp(flow: aioflow.Flow) -> tuple[tuple[str, int], tuple[str, int]]:
    ends = (flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port)
    return ends if flow.meter("conn_state")["orig_is_src"] else (ends[1], ends[0])


@pytest.mark.parametrize("name", CASES)
def test_bad_checksums_as_tshark_and_zeek(name: str, tshark: TShark) -> None:
    """bad_checksum events: one per frame tshark marks bad. C/c: for each TCP/UDP flow and direction,
    Zeek's scaled count of tshark's bad transport checksums (with a good IP header: Zeek drops a bad
    one before the connection sees it). Off, nothing is checked."""
    path = DATA / name
    frames = tshark_frames(tshark, path)
    bad = [f for f in frames if any(f[s] == "0" for s in STATUS)]
    flows, events = asyncio.run(parse(path, check_checksums=True))
    assert events == len(bad) > 0
    per_direction: Counter[tuple[tuple[str, int], tuple[str, int]]] = Counter()
    for f in bad:
        if f["ip.checksum.status"] != "0" and "0" in (f["tcp.checksum.status"], f["udp.checksum.status"]):
            src, dst = f["ip.src"] or f["ipv6.src"], f["ip.dst"] or f["ipv6.dst"]
            sport, dport = int(f["tcp.srcport"] or f["udp.srcport"]), int(f["tcp.dstport"] or f["udp.dstport"])
            per_direction[(src, sport), (dst, dport)] += 1
    keys = Counter(frozenset(orig_resp(f)) for f in flows)
    compared = 0
    for flow in flows:
        orig, resp = orig_resp(flow)
        if flow.protocol not in (6, 17) or keys[frozenset((orig, resp))] > 1:
            assert flow.protocol in (6, 17) or letters(flow) == (0, 0)  # Zeek: TCP and UDP only
            continue
        assert letters(flow) == (scaled(per_direction[orig, resp]), scaled(per_direction[resp, orig])), flow
        compared += bool(per_direction[orig, resp] or per_direction[resp, orig])
    assert compared > 0 or all(f["ip.checksum.status"] == "0" for f in bad)
    flows, events = asyncio.run(parse(path))
    assert events == 0 and all(letters(f) == (0, 0) for f in flows)


def conn_fields(flow: aioflow.Flow, started_by_bad: bool = False) -> dict[str, Any]:
    """conn_state without C/c; for a connection a bad packet started, without what that packet set
    as in Zeek (its start time, so the duration; the originator, so a ^)."""
    z = dict(flow.meter("conn_state"))
    z["history"] = str(z["history"]).translate(str.maketrans("", "", "Cc^" if started_by_bad else "Cc"))
    if started_by_bad:
        del z["duration_ns"], z["orig_is_src"]
    return z


def by_ends(flows: list[aioflow.Flow]) -> dict[tuple[int, frozenset[tuple[str, int]]], aioflow.Flow]:
    """Flows by protocol and endpoints, those alone with theirs."""
    keys = Counter((f.protocol, frozenset(orig_resp(f))) for f in flows)
    return {k: f for f in flows if keys[k := (f.protocol, frozenset(orig_resp(f)))] == 1}


@pytest.mark.parametrize("name", CASES[:3])
def test_bad_packets_change_nothing_else(name: str, tshark: TShark, tmp_path: Path) -> None:
    """As in Zeek, a packet with a bad checksum is only its letter: conn_state (its state, history
    without C/c, sizes, duration, originator) is as if the frames tshark marks bad were not there,
    but that a bad first packet starts the connection (Zeek makes it before checking). aioflow still
    counts those packets in their flows' packets and bytes: every packet is in one flow."""
    path = DATA / name
    kept = tmp_path / "kept.pcap"
    subprocess.run([tshark.executable, "-r", str(path), *CHECKS, "-Y", f"!({ANY_BAD})", "-F", "pcap", "-w",
                    str(kept)], check=True, capture_output=True)  # fmt: skip
    checked, _ = asyncio.run(parse(path, check_checksums=True))
    without, _ = asyncio.run(parse(kept))
    theirs, ours = by_ends(without), by_ends(checked)
    assert theirs.keys() <= ours.keys() and len(theirs) == len(without) > 0
    for key, f in theirs.items():
        started_by_bad = ours[key].first_seen_ns < f.first_seen_ns
        assert conn_fields(ours[key], started_by_bad) == conn_fields(f, started_by_bad), key
    # the rest: connections of bad packets alone (no letter for a bad IPv4 header's)
    for key in ours.keys() - theirs.keys():
        assert set(str(ours[key].meter("conn_state")["history"])) <= {"C", "c", "^"}, ours[key]


@pytest.mark.parametrize("path", params(CORPUS_FILES))
def test_corpus_bad_checksums_are_tsharks(path: Path | None, tshark: TShark) -> None:
    """Every corpus capture: one bad_checksum event per frame tshark marks bad at any layer, read with
    decode_tunnels=True (tshark checks the headers inside tunnels too) and fragments left as they
    are (tshark checks a reassembled datagram's transport on its last fragment, and in
    zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap calls 36 inner TCP segments of
    reassembled outer datagrams bad that an independent sum over the reassembled bytes finds good)."""
    if path is None:
        pytest.skip("corpus absent")
    _, events = asyncio.run(parse(path, check_checksums=True, decode_tunnels=True, defragment=False))
    assert events == bad_frames_all_layers(tshark, path)
