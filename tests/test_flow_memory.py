"""Memory per active flow (issue 13: at most 200 bytes with headers off), from the engine's own
sizes: af_flow_table_bytes is what the flow table takes for one more active flow of a kind (its
slot, the side entries such a flow takes, its hash buckets at their worst: two a flow just after
they doubled). benchmarks/flow_memory.py measures the same in RSS, plus the end-of-file flush's
batches (benchmarks/README.md). Then every kind of flow is counted right: IPv4 and IPv6 (whose
addresses are in a side store), TCP (whose rare flag counters are in another) and UDP, many at
once so the side stores' entries are reused, against the packets that made them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from support.crafted import B6, B, ether, ip4, ip6, tcp, udp, write

import aioflow
from aioflow._engine import ffi, lib

LIMIT = 200


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("is_tcp", [0, 1])
def test_flow_table_bytes_per_active_flow_at_most_200(version: int, is_tcp: int) -> None:
    assert lib.af_flow_table_bytes(version, is_tcp) <= LIMIT


def test_side_entries_are_only_for_the_flows_that_need_them() -> None:
    """An IPv4 UDP flow is its slot and buckets; TCP and IPv6 each add their own entry."""
    base = lib.af_flow_table_bytes(4, 0)
    assert lib.af_flow_table_bytes(4, 1) > base and lib.af_flow_table_bytes(6, 0) > base
    assert lib.af_flow_table_bytes(6, 1) - lib.af_flow_table_bytes(6, 0) == lib.af_flow_table_bytes(4, 1) - base


def test_statistics_state_at_most_the_flow_tables_bytes() -> None:
    """Memory per active flow with statistics on at most 2x flows only (issue 14), from the
    engine's own sizes: the meter's state per flow (af_meter_state_bytes, as the engine reserves
    it) is at most what the flow table takes for the smallest flow (IPv4 UDP), in every
    accounting mode; and it is whole cache lines where it can be (128 bytes: two)."""
    flow = lib.af_flow_table_bytes(4, 0)
    infos = [lib.af_meter_info_of(i) for i in range(64)]
    index = next(i for i, m in enumerate(infos) if m != ffi.NULL and ffi.string(m.name) == b"statistics")
    sizes = {}
    for mode in range(4):
        cfg = ffi.new("af_config *", {"statistics": 1, "accounting_mode": mode})
        sizes[mode] = lib.af_meter_state_bytes(index, cfg)
        assert 0 < sizes[mode] <= flow, (mode, sizes[mode], flow)
    assert sizes[0] == sizes[1] == sizes[2] == sizes[3] == 128


def test_every_kind_of_flow_counts_right_with_side_entries_reused(tmp_path: Path) -> None:
    """Waves of flows (IPv4/IPv6 x TCP/UDP) that end by idle timeout while the next wave starts, so
    side entries are freed and taken again; each record must hold its own addresses, ports and
    flag counts, whatever entry it had."""
    packets = []
    want = {}
    t = 1.0
    for wave in range(3):
        for i in range(40):
            sport = 1000 + wave * 100 + i
            a4, a6 = f"10.{wave + 1}.0.{i + 1}", str(ipaddress.ip_address(f"2001:db8:{wave + 1:x}::{i + 1:x}"))
            syn, fin_ack = 0x02, 0x11
            for kind, frames in (
                ("udp4", [ether(ip4(a4, B, 17, udp(sport, 53)))]),
                ("tcp4", [ether(ip4(a4, B, 6, tcp(sport, 80, syn))), ether(ip4(a4, B, 6, tcp(sport, 80, fin_ack)))]),
                ("udp6", [ether(ip6(a6, B6, 17, udp(sport, 53)), 0x86DD)]),
                ("tcp6", [ether(ip6(a6, B6, 6, tcp(sport, 80, syn)), 0x86DD),
                          ether(ip6(a6, B6, 6, tcp(sport, 80, fin_ack)), 0x86DD)]),
            ):
                src = a4 if kind.endswith("4") else a6
                for frame in frames:
                    packets.append((t, frame))
                    t += 0.001
                want[(src, sport, kind[:3])] = (len(frames), 1 if kind.startswith("tcp") else 0)
        t += 100.0  # past the idle timeout: this wave ends before the next one's flows come
    got = {}
    for f in aioflow.read(write(tmp_path, "waves.pcap", packets), idle_timeout=50):
        assert f.dst_ip in (B, B6) and f.dst_port in (53, 80)
        got[(f.src_ip, f.src_port, "tcp" if f.protocol == 6 else "udp")] = (f.packets, f.src2dst_syn_packets)
        if f.protocol == 6:
            assert f.src2dst_fin_packets == 1 and f.src2dst_ack_packets == 1
    assert got == want
