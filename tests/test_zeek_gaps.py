"""Zeek's content gaps (history G/g, conn.log's missed_bytes) from the conn_state meter, checked by
arithmetic: a corpus capture with data segments removed (dpkt, here) must report exactly the
removed bytes as missed, and a G (originator) or g (responder) in its history, and nothing else
may change but the packet counts. The baselines with gaps (test_zeek_conn.py) check the same
against Zeek itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dpkt
import pytest
from support.corpus import DATA
from test_zeek_conn import BASELINES, NOT_COMPARED, capture_of, key, zeek_rows

import aioflow
from aioflow import _zeek

CAPTURE = DATA / "ndpi_log4j-webapp-exploit.pcap"
PORTS = (55408, 9001)  # a clean connection (SF, ShAdDaFf, 178 + 176 packets): client, server


def segments(path: Path) -> list[tuple[int, bool, int, int, int, int]]:
    """(index, from the client, seq, payload length, ack, IP length) of the connection's packets."""
    out = []
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = {dpkt.pcap.DLT_EN10MB: dpkt.ethernet.Ethernet, dpkt.pcap.DLT_LINUX_SLL: dpkt.sll.SLL}[reader.datalink()]
        for i, (_, buf) in enumerate(reader):
            ip = link(buf).data
            tcp = getattr(ip, "data", None)  # non-IP frames (ARP) have none
            if isinstance(tcp, dpkt.tcp.TCP) and {tcp.sport, tcp.dport} == set(PORTS):
                out.append((i, tcp.sport == PORTS[0], tcp.seq, len(tcp.data), tcp.ack, ip.len))
    return out


def after(a: int, b: int) -> bool:
    """Sequence number a is at or after b (mod 2^32)."""
    return (a - b) % 2**32 < 2**31


def removable(segs: list[tuple[int, bool, int, int, int, int]], client: bool) -> list[tuple[int, int, int]]:
    """(index, payload length, IP length) of data segments of one side that no other packet of it
    covers again (no retransmission), not its first, and that the peer later acknowledges."""
    mine = [s for s in segs if s[1] == client and s[3]]
    out = []
    for k, (i, _, seq, n, _, ip_len) in enumerate(mine[1:], 1):
        end = seq + n
        others = mine[:k] + mine[k + 1 :]
        again = any(after(o[2] + o[3] - 1, seq) and after(end - 1, o[2]) for o in others)
        acked = any(s[0] > i and s[1] != client and after(s[4], end) for s in segs)
        if not again and acked:
            out.append((i, n, ip_len))
    return out


def without(path: Path, drop: set[int], out: Path) -> Path:
    with path.open("rb") as f, out.open("wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(g, linktype=reader.datalink())
        for i, (ts, buf) in enumerate(reader):
            if i not in drop:
                writer.writepkt(buf, ts)
    return out


def row(path: Path) -> dict[str, Any]:
    flows = [f for f in aioflow.read(path, meters=_zeek.METERS, **_zeek.ZEEK_OPTIONS)
             if {f.src_port, f.dst_port} == set(PORTS)]  # fmt: skip
    assert len(flows) == 1
    out = _zeek.conn_record(flows[0])
    out["gaps_inexact"] = flows[0].meter("conn_state")["gaps_inexact"]
    return out


@pytest.mark.parametrize(("client", "holes"), [(True, 1), (False, 1), (False, 2)])
def test_removed_segments_are_missed_bytes(tmp_path: Path, client: bool, holes: int) -> None:
    segs = segments(CAPTURE)
    assert len(segs) == 178 + 176
    before = row(CAPTURE)
    assert (before["conn_state"], before["missed_bytes"]) == ("SF", 0) and "g" not in before["history"].lower()
    candidates = removable(segs, client)
    picked = candidates[::2][:holes]  # every other one: holes apart
    assert len(picked) == holes, candidates
    got = row(without(CAPTURE, {i for i, _, _ in picked}, tmp_path / "gap.pcap"))
    letter = "G" if client else "g"
    assert got["missed_bytes"] == sum(n for _, n, _ in picked) > 0
    assert got["history"].count(letter) == 1 and got["history"].replace(letter, "") == before["history"]
    assert not got["gaps_inexact"]
    side = "orig" if client else "resp"
    assert got[f"{side}_pkts"] == before[f"{side}_pkts"] - holes
    assert got[f"{side}_ip_bytes"] == before[f"{side}_ip_bytes"] - sum(ip for _, _, ip in picked)
    changed = {"missed_bytes", "history", f"{side}_pkts", f"{side}_ip_bytes", "uid"}
    assert {k: v for k, v in got.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}


def test_segments_cut_short_are_missed(tmp_path: Path) -> None:
    """A segment captured short of its length (snaplen) is not content either: Zeek's reassembler
    takes only whole payloads, so its bytes are missed once acknowledged."""
    segs = segments(CAPTURE)
    i, n, _ = removable(segs, False)[len(removable(segs, False)) // 2]
    out = tmp_path / "cut.pcap"
    with CAPTURE.open("rb") as f, out.open("wb") as g:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(g, linktype=reader.datalink())
        for k, (ts, buf) in enumerate(reader):
            if k == i:  # the frame's last payload byte not captured; its lengths still say n
                writer.writepkt(buf[:-1], ts)
            else:
                writer.writepkt(buf, ts)
    got = row(out)
    assert got["missed_bytes"] == n and "g" in got["history"]


def test_gap_inside_a_tunnel_equals_zeek() -> None:
    """Zeek's baseline row with gaps inside a GTP tunnel (its inner HTTP connection: ShADadfgF,
    5760 missed bytes), which test_zeek_conn skips for want of decapsulation, read here with
    decode_tunnels=True: every compared column equal."""
    name = "zeek_tunnels_gtp_gtp1_gn_normal_incl_fragmentation.pcap.conn.log"
    if not (BASELINES / name).is_file():
        pytest.skip(f"Zeek baseline {name} absent")
    theirs = [r for r in zeek_rows(BASELINES / name) if r["missed_bytes"] != "0"]
    assert len(theirs) == 1 and "g" in theirs[0]["history"]
    capture = capture_of(name)
    flows = aioflow.read(capture, meters=_zeek.METERS, decode_tunnels=True, **_zeek.ZEEK_OPTIONS)
    nets = _zeek.local_networks(_zeek.ZEEK_LOCAL_NETS)
    ours = [_zeek.conn_record(f, nets) for f in flows]
    mine = [{k: _zeek._tsv_value(r[k], t) for k, t in zip(_zeek.FIELDS, _zeek.TYPES, strict=True)} for r in ours]
    match = [o for o in mine if key(o) == key(theirs[0])]
    assert len(match) == 1
    columns = [c for c in theirs[0] if c in _zeek.FIELDS and c not in NOT_COMPARED and c != "ts"]
    assert {c: match[0][c] for c in columns} == {c: theirs[0][c] for c in columns}


def synthetic(path: Path, sent: list[int]) -> Path:
    """A connection whose server sends 100-byte segments number `sent` (1-based) of nine, then the
    client acknowledges all nine and both close: the segments left out are holes."""
    client, server = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    cseq, sseq = 1000, 5000

    def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:  # noqa: E501
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=8192, data=data)
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
        ip.len = 20 + len(bytes(tcp))
        return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))

    c2s = (client, server, 40000, 8080)
    s2c = (server, client, 8080, 40000)
    syn, ack_f, fin, psh = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
    frames = [frame(*c2s, cseq, 0, syn), frame(*s2c, sseq, cseq + 1, syn | ack_f),
              frame(*c2s, cseq + 1, sseq + 1, ack_f), frame(*c2s, cseq + 1, sseq + 1, ack_f | psh, b"x" * 10),
              frame(*s2c, sseq + 1, cseq + 11, ack_f)]  # fmt: skip
    frames += [frame(*s2c, sseq + 1 + 100 * (k - 1), cseq + 11, ack_f, b"y" * 100) for k in sent]
    end = sseq + 1 + 900
    frames += [frame(*c2s, cseq + 11, end, ack_f), frame(*c2s, cseq + 11, end, fin | ack_f),
               frame(*s2c, end, cseq + 12, fin | ack_f), frame(*c2s, cseq + 12, end + 1, ack_f)]  # fmt: skip
    with path.open("wb") as g:
        writer = dpkt.pcap.Writer(g)
        for i, buf in enumerate(frames):
            writer.writepkt(buf, 1_700_000_000 + i / 1000)
    return path


def test_holes_up_to_the_ranges_kept_are_exact(tmp_path: Path) -> None:
    """Three holes at once (segments 2, 4, 6 of nine left out, 7 to 9 sent): 300 bytes missed;
    with segment 8 left out too there are four ranges of data above the first hole, one more
    than the meter keeps: the two nearest merge, the hole between them (100 bytes) counts as seen,
    and the record says so."""
    flows = list(aioflow.read(synthetic(tmp_path / "three.pcap", [1, 3, 5, 7, 8, 9]), meters=("conn_state",)))
    assert len(flows) == 1
    z = flows[0].meter("conn_state")
    assert (z["state"], z["history"], z["missed_bytes"], z["gaps_inexact"]) == ("SF", "ShADadgFf", 300, 0)
    flows = list(aioflow.read(synthetic(tmp_path / "four.pcap", [1, 3, 5, 7, 9]), meters=("conn_state",)))
    z = flows[0].meter("conn_state")
    assert (z["state"], z["missed_bytes"], z["gaps_inexact"]) == ("SF", 300, 1)  # Zeek: 400
