"""tshark's view of tunnelled captures (it opens every tunnel there by default): per frame, the
innermost IP layer and the TCP/UDP header right after it name the inner conversation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support.tshark import TShark

Convs = Counter[tuple[str, frozenset[tuple[str, int]]]]

FIELDS = ("frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport", "eth.src", "eth.dst")  # fmt: skip


def tshark_frames(tshark: TShark, path: Path) -> list[list[str]]:
    args = ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        args += ["-e", f]
    return [line.split("\t") for line in tshark.output(path, *args).splitlines()]


def innermost(cols: list[str]) -> tuple[str, str, int, str, int] | None:
    """(transport, src, sport, dst, dport) of a frame's innermost IP layer when a TCP or UDP header
    follows it; None otherwise (and for ICMP, whose quoted packet is no tunnel)."""
    layers = cols[0].split(":")
    if "icmp" in layers or "icmpv6" in layers:
        return None
    ips = [i for i, name in enumerate(layers) if name in ("ip", "ipv6")]
    if not ips or ips[-1] + 1 >= len(layers) or layers[ips[-1] + 1] not in ("tcp", "udp"):
        return None
    kind, transport = layers[ips[-1]], layers[ips[-1] + 1]
    nth = sum(1 for i in ips if layers[i] == kind) - 1
    src = cols[1 if kind == "ip" else 3].split(",")[nth]
    dst = cols[2 if kind == "ip" else 4].split(",")[nth]
    sport = cols[5 if transport == "tcp" else 7].split(",")[-1]
    dport = cols[6 if transport == "tcp" else 8].split(",")[-1]
    return transport, src, int(sport), dst, int(dport)


def tshark_inner(tshark: TShark, path: Path) -> Convs:
    out: Convs = Counter()
    for cols in tshark_frames(tshark, path):
        found = innermost(cols)
        if found:
            t, src, sport, dst, dport = found
            out[(t, frozenset({(src, sport), (dst, dport)}))] += 1
    return out
