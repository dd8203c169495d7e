"""conn_state's sizes past 32 bits. The meter keeps an endpoint's sequence numbers in a 64-byte hot
line as their low 32 bits and leaves the high ones to its cold block (conn_state.c, "Layout"): a
packet whose sequence or acknowledgement would carry out of the low half goes to the slow path,
which must keep the full number. These connections move a relative sequence number past 2^32 with
pure ACKs (the fast path's packets) and acknowledgements; the sizes are Zeek's TCP_Endpoint::Size()
worked out by hand: the highest of the last sequence sent and the last acknowledged, relative to
the initial sequence number, less the SYN and the FIN."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dpkt

import aioflow
from aioflow import _zeek

S, A, F, P = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


def frame(src: str, dst: str, ports: tuple[int, int], seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=ports[0], dport=ports[1], seq=seq % 2**32, ack=ack % 2**32, flags=flags, win=8192,
                       data=data)  # fmt: skip
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, ttl=64, data=tcp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x01" * 6, type=0x0800, data=ip))


def capture(path: Path, packets: list[tuple[bool, int, int, int, bytes]], port: int) -> Path:
    """packets: (from the client, seq, ack, flags, payload), 10 ms apart."""
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, (client, seq, ack, flags, data) in enumerate(packets):
            src, dst, ports = (CLIENT, SERVER, (port, 80)) if client else (SERVER, CLIENT, (80, port))
            writer.writepkt(frame(src, dst, ports, seq, ack, flags, data), 1000.0 + i / 100)
    return path


def conn_state(path: Path) -> Mapping[str, Any]:
    (flow,) = aioflow.read(path, meters=_zeek.METERS, **_zeek.ZEEK_OPTIONS)
    return flow.meters["conn_state"]


def test_sequence_past_32_bits_by_pure_acks(tmp_path: Path) -> None:
    isn, server = 4_000_000_000, 7  # the client's relative sequence wraps its 32-bit hot copy
    packets = [(True, isn, 0, S, b""), (False, server, isn + 1, S | A, b""), (True, isn + 1, server + 1, A, b"")]
    seq = isn + 1
    for k in range(8):  # pure ACKs moving the client's last sequence, each jump under 2^31
        seq += 1_500_000_000 if k % 2 == 0 else 1_000_000
        packets += [(True, seq, server + 1, A, b""), (False, server + 1, seq, A, b"")]
    packets += [(True, seq, server + 1, A | P, b"x" * 100), (False, server + 1, seq + 100, A | P, b"y" * 50),
                (True, seq + 100, server + 51, A | F, b""), (False, server + 51, seq + 101, A | F, b""),
                (True, seq + 101, server + 52, A, b"")]  # fmt: skip
    got = conn_state(capture(tmp_path / "wide.pcap", packets, 40000))
    # last = seq + 100 + FIN - isn; less the SYN and the FIN: 4 * 1.5e9 + 4 * 1e6 + 100
    assert (got["orig_bytes"], got["resp_bytes"], got["state"]) == (6_004_000_100, 50, "SF")


def test_acknowledgement_past_32_bits(tmp_path: Path) -> None:
    isn = 4_294_967_000  # the server's sequence numbers wrap
    packets = [(True, 10, 0, S, b""), (False, isn, 11, S | A, b""), (True, 11, isn + 1, A, b"")]
    seq = isn + 1
    for k in range(12):  # in-order data (the fast path), each acknowledged; one ack far ahead
        packets.append((False, seq, 11, A, b"d" * 500))
        seq += 500
        packets.append((True, 11, seq + (1_200_000_000 if k == 8 else 0), A, b""))
    got = conn_state(capture(tmp_path / "ack.pcap", packets, 40002))
    # the highest acknowledgement, relative: 1 + 9 * 500 + 1.2e9; less the SYN
    assert (got["orig_bytes"], got["resp_bytes"]) == (0, 1_200_004_500)
