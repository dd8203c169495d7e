"""Plugins the command-line tests name with --plugin support.cli_plugins:CLASS (tests/ is on
sys.path), and give to read_frame(plugins=...) to compare."""

from __future__ import annotations

import aioflow


class Shape(aioflow.FlowPlugin):
    """Fields of each kind a CSV or JSON cell holds: float, int, bool, text, None."""

    def on_init(self, flow: aioflow.Flow) -> None:
        flow.udps.bytes_per_packet = flow.bytes / flow.packets
        flow.udps.both_ways = flow.src2dst_packets > 0 and flow.dst2src_packets > 0

    def on_expire(self, flow: aioflow.Flow) -> None:
        flow.udps.label = f"p{flow.protocol}"
        flow.udps.tcp_syns = flow.src2dst_syn_packets if flow.protocol == 6 else None


class LateField(aioflow.FlowPlugin):
    """A field only some flows set (not the first): it cannot join a header written before."""

    def on_init(self, flow: aioflow.Flow) -> None:
        flow.udps.packets = flow.packets
        if flow.id == 3:
            flow.udps.late = 1


class WantsPackets(aioflow.FlowPlugin):
    """on_update: needs --headers N."""

    def on_update(self, packet: aioflow.PacketHeader, flow: aioflow.Flow) -> None:
        flow.udps.seen = getattr(flow.udps, "seen", 0) + 1
