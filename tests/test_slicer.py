"""FlowSlicer in C: max_packets / max_bytes end a flow with end reason "custom".

The expected records come from dpkt alone: each capture's packets grouped by their bidirectional
5-tuple in file order, with their IP lengths, and cut where the rule says (nfstream's FlowSlicer:
the flow ends with its N-th packet; the next packet of the endpoints starts a new flow).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.conversations import Key, ip_packets

import aioflow

DATA = Path(__file__).parent / "data"
# Ethernet, raw-IP and loopback captures without IP fragments, TCP and UDP, IPv4 and IPv6.
CAPTURES = ("ndpi_ocs.pcap", "ndpi_smtp-starttls.pcap", "tcpflow_test4.pcap", "tcpdump_quic_handshake.pcap")
NO_TIMEOUTS = {"idle_timeout": 1e6, "active_timeout": 1e6, "fin_timeout": 1e6}
def _sliced(lengths: list[int], max_packets: int = 0, max_bytes: int = 0) -> list[tuple[int, int, bool]]:
    """(packets, IP bytes, ended by the rule) of each record FlowSlicer makes of one conversation."""
    out: list[tuple[int, int, bool]] = []
    packets = size = 0
    for n in lengths:
        packets, size = packets + 1, size + n
        if (max_packets and packets >= max_packets) or (max_bytes and size >= max_bytes):
            out.append((packets, size, True))
            packets = size = 0
    if packets:
        out.append((packets, size, False))
    return out


def _records(path: Path, **opts: object) -> Counter[tuple[Key, int, int, bool]]:
    return Counter(
        ((f.protocol, frozenset({(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)})), f.packets, f.bytes,
         f.end_reason == "custom")
        for f in aioflow.read(path, **NO_TIMEOUTS, **opts)  # type: ignore[arg-type]
        if f.protocol in (6, 17)
    )  # fmt: skip


RULES = [{"max_packets": 1}, {"max_packets": 3}, {"max_packets": 10}, {"max_bytes": 1500}, {"max_bytes": 200},
         {"max_packets": 4, "max_bytes": 3000}]  # fmt: skip


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("rule", RULES)
def test_slices_match_dpkt(name: str, rule: dict[str, int]) -> None:
    path = DATA / name
    conversations = ip_packets(path)
    # without a rule, one record per conversation: the capture has no port reuse aioflow would split
    assert _records(path) == Counter((k, len(v), sum(v), False) for k, v in conversations.items())
    expected = Counter((k, *cut) for k, v in conversations.items() for cut in _sliced(v, **rule))
    got = _records(path, **rule)
    assert got == expected
    assert sum(n for (_, _, _, custom), n in got.items() if custom) > 0


def test_custom_is_counted_and_named() -> None:
    path = DATA / "ndpi_ocs.pcap"
    flows = list(aioflow.read(path, max_packets=2, **NO_TIMEOUTS))  # type: ignore[arg-type]
    custom = sum(f.end_reason == "custom" for f in flows)
    assert custom and all(f.packets == 2 for f in flows if f.end_reason == "custom")
    frame = aioflow.read_frame(path, max_packets=2, **NO_TIMEOUTS)  # type: ignore[arg-type]
    assert (frame["end_reason"] == "custom").sum() == custom


@pytest.mark.anyio
async def test_parser_info_counts_custom() -> None:
    path = DATA / "ndpi_ocs.pcap"
    async with aioflow.FlowParser(path, max_bytes=1000, **NO_TIMEOUTS) as parser:  # type: ignore[arg-type]
        ended = [f.end_reason async for f in parser.terminated()]
        info = parser.info()
    assert info.ended_by["custom"] == ended.count("custom") > 0


@pytest.mark.parametrize("option", ["max_packets", "max_bytes"])
def test_bad_limits_are_config_errors(option: str) -> None:
    with pytest.raises(aioflow.ConfigError, match=option):
        list(aioflow.read(DATA / "ndpi_ocs.pcap", **{option: -1}))  # type: ignore[arg-type]
