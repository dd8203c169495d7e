"""Per-flow Python plugins (aioflow.FlowPlugin): hooks, their order, udps fields in every output.

Packet counts and sizes a per-packet hook sees are checked against dpkt's decoding of the same
capture (support.conversations), not against aioflow's own counters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.conversations import Key, ip_packets

import aioflow

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "ndpi_ocs.pcap"
NO_TIMEOUTS: dict[str, Any] = {"idle_timeout": 1e6, "active_timeout": 1e6, "fin_timeout": 1e6}
SMALL_FLOWS = 120  # headers=N that keeps every packet of the small captures' flows


def key_of(f: aioflow.Flow) -> Key:
    return (f.protocol, frozenset({(f.src_ip, f.src_port), (f.dst_ip, f.dst_port)}))


class Sizes(aioflow.FlowPlugin):
    """nfstream's NFPlugin shape: state set in on_init, grown per packet, finished in on_expire."""

    def on_init(self, flow: aioflow.Flow) -> None:
        flow.udps.seen = 0
        flow.udps.sizes = []

    def on_update(self, packet: aioflow.PacketHeader, flow: aioflow.Flow) -> None:
        flow.udps.seen += 1
        flow.udps.sizes.append(packet.ip_length)

    def on_expire(self, flow: aioflow.Flow) -> None:
        flow.udps.largest = max(flow.udps.sizes, default=0)
        del flow.udps.sizes


class Journal(aioflow.FlowPlugin):
    """Writes each hook call into a shared list."""

    def __init__(self, name: str, log: list[tuple[str, str, int]], per_packet: bool = False) -> None:
        self.name, self.log = name, log
        if per_packet:
            self.on_update = self._update  # type: ignore[method-assign]

    def on_init(self, flow: aioflow.Flow) -> None:
        self.log.append((self.name, "init", flow.id))

    def _update(self, packet: aioflow.PacketHeader, flow: aioflow.Flow) -> None:
        self.log.append((self.name, "update", flow.id))

    def on_expire(self, flow: aioflow.Flow) -> None:
        self.log.append((self.name, "expire", flow.id))


class PerPacketJournal(Journal):
    def on_update(self, packet: aioflow.PacketHeader, flow: aioflow.Flow) -> None:
        self.log.append((self.name, "update", flow.id))


@pytest.mark.parametrize("name", ["ndpi_smtp-starttls.pcap", "tcpflow_test4.pcap", "tcpdump_quic_handshake.pcap"])
def test_per_packet_hook_sees_every_packet_dpkt_sees(name: str) -> None:
    conversations = ip_packets(DATA / name)
    assert max(map(len, conversations.values())) <= SMALL_FLOWS  # every packet's header is kept
    opts = {"plugins": [Sizes()], "headers": SMALL_FLOWS, **NO_TIMEOUTS}
    flows = [f for f in aioflow.read(DATA / name, **opts) if f.protocol in (6, 17)]
    got = Counter((key_of(f), f.udps.seen, f.udps.largest) for f in flows)
    assert got == Counter((k, len(v), max(v)) for k, v in conversations.items())


def test_per_packet_hook_sees_the_kept_headers_only() -> None:
    flows = list(aioflow.read(CAPTURE, plugins=[Sizes()], headers=3, **NO_TIMEOUTS))
    assert any(f.headers_dropped for f in flows)
    assert all(f.udps.seen == min(f.packets, 3) == f.packets - f.headers_dropped for f in flows)


def test_hook_order_per_flow() -> None:
    log: list[tuple[str, str, int]] = []
    flows = list(aioflow.read(CAPTURE, plugins=[PerPacketJournal("a", log), Journal("b", log)], headers=2,
                              max_packets=5, **NO_TIMEOUTS))  # fmt: skip
    expected = []
    for f in flows:
        updates = [("a", "update", f.id)] * min(f.packets, 2)
        expected += [("a", "init", f.id), ("b", "init", f.id), *updates, ("a", "expire", f.id), ("b", "expire", f.id)]
    assert log == expected


def test_udps_in_to_dict_frame_and_arrow() -> None:
    class Mark(aioflow.FlowPlugin):
        def on_expire(self, flow: aioflow.Flow) -> None:
            flow.udps.twice = 2 * flow.packets
            if flow.protocol == 17:
                flow.udps.udp_only = "yes"

    flows = list(aioflow.read(CAPTURE, plugins=[Mark()], **NO_TIMEOUTS))
    assert {f.protocol for f in flows} >= {6, 17}
    rows = {f.id: f.to_dict() for f in flows}
    assert all(r["udps.twice"] == 2 * r["packets"] for r in rows.values())
    frame = aioflow.read_frame(CAPTURE, plugins=[Mark()], **NO_TIMEOUTS)
    assert list(frame.columns[-2:]) == ["udps.twice", "udps.udp_only"]
    for row in frame.to_dict("records"):
        assert row["udps.twice"] == rows[row["id"]]["udps.twice"]
        udp_only = rows[row["id"]].get("udps.udp_only")  # a field a flow lacks: missing (pandas: NaN)
        assert row["udps.udp_only"] == udp_only if udp_only else pd.isna(row["udps.udp_only"])
    table = aioflow.read_arrow(CAPTURE, plugins=[Mark()], **NO_TIMEOUTS)
    assert table.column("udps.twice").to_pylist() == frame["udps.twice"].tolist()
    assert table.column("udps.udp_only").to_pylist() == [rows[i].get("udps.udp_only") for i in frame["id"]]


def test_without_plugins_udps_is_empty_and_not_kept() -> None:
    flow = next(iter(aioflow.read(CAPTURE)))
    flow.udps.x = 1
    assert vars(flow.udps) == {} and not any(k.startswith("udps.") for k in flow.to_dict())


@pytest.mark.anyio
@pytest.mark.parametrize("thread", [False, True])
async def test_parser_runs_plugins_before_callbacks_and_consumers(thread: bool) -> None:
    seen_by_callback: list[int] = []

    def on_tcp_end(flow: aioflow.Flow) -> None:
        seen_by_callback.append(flow.udps.seen)

    path = DATA / "ndpi_smtp-starttls.pcap"
    async with aioflow.FlowParser(path, plugins=[Sizes()], headers=SMALL_FLOWS, plugin_thread=thread,
                                  on_tcp_end=on_tcp_end, **NO_TIMEOUTS) as parser:  # fmt: skip
        flows = [f async for f in parser.terminated()]
    assert [f.udps.seen for f in flows] == [f.packets for f in flows]
    assert seen_by_callback == [f.packets for f in flows if f.protocol == 6]


def test_configuration_errors() -> None:
    with pytest.raises(aioflow.ConfigError, match="headers=N"):
        aioflow.FlowParser(CAPTURE, plugins=[Sizes()])
    with pytest.raises(aioflow.ConfigError, match=r"not an aioflow\.FlowPlugin"):
        aioflow.FlowParser(CAPTURE, plugins=[object()])  # type: ignore[list-item]


def test_a_hook_error_propagates() -> None:
    class Broken(aioflow.FlowPlugin):
        def on_init(self, flow: aioflow.Flow) -> None:
            raise ValueError("plugin bug")

    with pytest.raises(ValueError, match="plugin bug"):
        list(aioflow.read(CAPTURE, plugins=[Broken()]))
