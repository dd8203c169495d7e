"""The collector on crafted messages (built here with struct, field by field from the RFCs):
templates, withdrawal, redefinition, options templates, variable-length and enterprise fields,
sequence gaps, expiry, restarts, malformed datagrams; hypothesis fuzzing; the UDP collector under
asyncio and trio; IPFIX files read back."""

from __future__ import annotations

import inspect
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.nfdump_peer import free_udp_port

import aioflow
from aioflow.netflow.collect import Collector, Decoder, parse_pdu, read_ipfix_file

DATA = Path(__file__).parent / "data"
EXPORTER = ("192.0.2.1", 4739)


# --- a tiny independent IPFIX / v9 writer ---
def ipfix(sets: list[bytes], seq: int = 0, domain: int = 7, export_time: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def a_set(set_id: int, body: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: list[tuple[int, int] | tuple[int, int, int]]) -> bytes:
    out = struct.pack("!HH", tid, len(fields))
    for f in fields:
        if len(f) == 3:
            out += struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack("!HH", *f)
    return out


# sourceIPv4Address, destinationIPv4Address, ports, protocol, packetDeltaCount, octetDeltaCount,
# flowStartMilliseconds, and an enterprise element (PEN 9, id 42, 2 octets), reverse octets (29305/1).
FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8), (152, 8), (42, 2, 9), (1, 8, 29305)]
RECORD = struct.Struct("!4s4sHHBQQQHQ")


def record(i: int) -> bytes:
    return RECORD.pack(bytes([10, 0, 0, i]), bytes([10, 0, 1, i]), 1000 + i, 80, 6, i + 1, 100 * (i + 1),
                       1_700_000_000_000 + i, 0xBEEF, 7 * i)  # fmt: skip


def flow_message(n: int, seq: int = 0, tid: int = 256, with_template: bool = True) -> bytes:
    sets = [a_set(2, template(tid, FIELDS))] if with_template else []
    return ipfix([*sets, a_set(tid, b"".join(record(i) for i in range(n)))], seq=seq)


def test_template_and_data_decode_every_field() -> None:
    decoder = Decoder()
    records = list(parse_pdu(EXPORTER, flow_message(3), decoder=decoder))
    assert [r.src_ip for r in records] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    r = records[2]
    assert (r.dst_ip, r.src_port, r.dst_port, r.protocol, r.packets, r.bytes) == ("10.0.1.2", 1002, 80, 6, 3, 300)
    assert r.sourceIPv4Address_raw == 0x0A000002 and r.srcaddr == "10.0.0.2" and r.dPkts == 3
    assert r[(9, 42)] == b"\xbe\xef" == r["ie9_42"]  # an unknown enterprise element: kept by number, as octets
    assert r.reverseOctetDeltaCount == 14 == r.reverse_bytes
    assert r.start_ns == (1_700_000_000_000 + 2) * 10**6
    assert r.flow_id() == "6-0-10.0.0.2:1002-10.0.1.2:80"
    assert r.flow_id(bidir=True) == "6-0-10.0.0.2:1002-10.0.1.2:80"
    assert decoder.stats.records == 3 and decoder.stats.templates == 1
    # the batch path: one numpy array per set
    (rs,) = parse_pdu(EXPORTER, flow_message(5), decoder=decoder).sets
    assert rs.column("octetDeltaCount").tolist() == [100, 200, 300, 400, 500]


def test_padding_after_records_is_ignored() -> None:
    decoder = Decoder()
    message = ipfix([a_set(2, template(256, FIELDS)), a_set(256, record(0) + record(1) + b"\0" * 5)])
    assert len(parse_pdu(EXPORTER, message, decoder=decoder)) == 2


def test_data_before_its_template_is_skipped_and_counted() -> None:
    decoder = Decoder()
    assert len(parse_pdu(EXPORTER, flow_message(2, with_template=False), decoder=decoder)) == 0
    assert decoder.stats.sets_without_template == 1 and decoder.stats.records == 0


def test_templates_are_per_exporter_and_domain() -> None:
    decoder = Decoder()
    parse_pdu(EXPORTER, flow_message(1), decoder=decoder)
    assert len(parse_pdu(("192.0.2.2", 4739), flow_message(1, with_template=False), decoder=decoder)) == 0
    other_domain = ipfix([a_set(256, record(0))], domain=8)
    assert len(parse_pdu(EXPORTER, other_domain, decoder=decoder)) == 0
    assert decoder.stats.sets_without_template == 2


def test_withdrawal_and_withdraw_all() -> None:
    decoder = Decoder()
    parse_pdu(EXPORTER, flow_message(1, seq=0), decoder=decoder)
    parse_pdu(EXPORTER, ipfix([a_set(2, struct.pack("!HH", 256, 0))], seq=1), decoder=decoder)
    assert len(parse_pdu(EXPORTER, flow_message(1, seq=1, with_template=False), decoder=decoder)) == 0
    parse_pdu(EXPORTER, flow_message(1, seq=1, tid=300), decoder=decoder)
    parse_pdu(EXPORTER, ipfix([a_set(2, struct.pack("!HH", 2, 0))], seq=2), decoder=decoder)  # all of them
    assert len(parse_pdu(EXPORTER, flow_message(1, seq=2, tid=300, with_template=False), decoder=decoder)) == 0
    assert decoder.stats.template_withdrawals == 2 and decoder.templates() == {}


def test_redefined_template_decodes_with_the_new_fields() -> None:
    decoder = Decoder()
    parse_pdu(EXPORTER, flow_message(1), decoder=decoder)
    narrow = ipfix([a_set(2, template(256, [(4, 1), (2, 4)])), a_set(256, struct.pack("!BI", 17, 9))], seq=1)
    (r,) = parse_pdu(EXPORTER, narrow, decoder=decoder)
    assert (r.protocol, r.packets, r.src_ip) == (17, 9, None)
    assert decoder.stats.template_redefinitions == 1


def test_options_records_are_apart_from_flows() -> None:
    decoder = Decoder()
    # scope observationDomainId (149), then exportedFlowRecordTotalCount (42) and samplingInterval (34)
    options = struct.pack("!HHH", 400, 3, 1) + struct.pack("!HHHHHH", 149, 4, 42, 8, 34, 4)
    message = ipfix([a_set(3, options), a_set(400, struct.pack("!IQI", 7, 1234, 100)), a_set(2, template(256, FIELDS)),
                     a_set(256, record(0))])  # fmt: skip
    pdu = parse_pdu(EXPORTER, message, decoder=decoder)
    assert len(pdu) == 1 and [r.src_ip for r in pdu] == ["10.0.0.0"]
    (opt,) = pdu.options()
    assert opt.is_options and opt.exportedFlowRecordTotalCount == 1234 and opt.samplingInterval == 100
    assert decoder.stats.options_records == 1


def test_v9_options_template_and_data() -> None:
    decoder = Decoder()
    header = struct.pack("!HHIIII", 9, 3, 5000, 1_700_000_000, 0, 3)
    tmpl = a_set(0, struct.pack("!HH", 260, 2) + struct.pack("!HHHH", 4, 1, 2, 4))
    opt = a_set(1, struct.pack("!HHH", 261, 4, 4) + struct.pack("!HHHH", 1, 4, 34, 4))
    data = a_set(260, struct.pack("!BI", 6, 42) + b"\0\0\0") + a_set(261, struct.pack("!II", 1, 64))
    pdu = parse_pdu(EXPORTER, header + tmpl + opt + data, decoder=decoder)
    assert [(r.protocol, r.packets) for r in pdu] == [(6, 42)]
    (o,) = pdu.options()
    assert o.scopeSystem == b"\0\0\0\x01" and o.samplingInterval == 64


def test_variable_length_fields() -> None:
    decoder = Decoder()
    fields = [(4, 1), (82, 65535), (2, 4)]  # protocolIdentifier, interfaceName (variable), packetDeltaCount
    long_name = b"x" * 300
    records = (struct.pack("!BB", 6, 4) + b"eth0" + struct.pack("!I", 5)
               + struct.pack("!BBH", 17, 255, 300) + long_name + struct.pack("!I", 6))  # fmt: skip
    message = ipfix([a_set(2, template(256, fields)), a_set(256, records)])
    got = [(r.protocol, r.interfaceName, r.packets) for r in parse_pdu(EXPORTER, message, decoder=decoder)]
    assert got == [(6, "eth0", 5), (17, "x" * 300, 6)]


def test_sequence_gaps_and_is_next() -> None:
    decoder = Decoder()
    first = parse_pdu(EXPORTER, flow_message(3, seq=0), decoder=decoder)
    second = parse_pdu(EXPORTER, flow_message(2, seq=3), decoder=decoder)
    assert second.is_next(first) and decoder.stats.sequence_gaps == 0
    third = parse_pdu(EXPORTER, flow_message(1, seq=10), decoder=decoder)  # 5 records lost
    assert not third.is_next(second)
    assert (decoder.stats.sequence_gaps, decoder.stats.sequence_lost) == (1, 5)
    parse_pdu(EXPORTER, flow_message(1, seq=4), decoder=decoder)  # late
    assert decoder.stats.sequence_backwards == 1


def test_v5_sequence_counts_flows() -> None:
    decoder = Decoder()

    def v5(seq: int, count: int) -> bytes:
        header = struct.pack("!HHIIIIBBH", 5, count, 10_000, 1_700_000_000, 0, seq, 0, 0, 0)
        rec = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), b"\0" * 4, 1, 2,
                          3, 120, 9_000, 9_500, 1234, 80, 0, 0x12, 6, 0, 0, 0, 24, 24, 0)  # fmt: skip
        return header + rec * count

    a = parse_pdu(EXPORTER, v5(0, 2), decoder=decoder)
    b = parse_pdu(EXPORTER, v5(2, 1), decoder=decoder)
    assert b.is_next(a) and decoder.stats.sequence_gaps == 0
    (r,) = b
    assert (r.srcaddr, r.dstaddr, r.srcport, r.dstport, r.prot, r.dPkts, r.dOctets, r.tcp_flags, r.input) == (
        "10.0.0.1",
        "10.0.0.2",
        1234,
        80,
        6,
        3,
        120,
        0x12,
        1,
    )
    assert (r.first_raw, r.last_raw) == (9_000, 9_500)  # router uptime ms
    # pyflowtools' first/last: Unix seconds, flow-tools' arithmetic (export ms - sysUpTime + First)
    assert (r.first, r.last) == (1_699_999_999.0, 1_699_999_999.5)
    assert (r.unix_secs, r.unix_nsecs, r.sysUpTime, r.engine_type, r.engine_id) == (1_700_000_000, 0, 10_000, 0, 0)
    assert r.start_ns == 1_700_000_000 * 10**9 - 1000 * 10**6  # 1 s before the header's uptime
    parse_pdu(EXPORTER, v5(9, 1), decoder=decoder)
    assert (decoder.stats.sequence_gaps, decoder.stats.sequence_lost) == (1, 6)


def test_templates_expire_and_stale_ones_are_never_used() -> None:
    now = [0.0]
    decoder = Decoder(template_timeout=60, clock=lambda: now[0])
    parse_pdu(EXPORTER, flow_message(1), decoder=decoder)
    now[0] = 61
    assert len(parse_pdu(EXPORTER, flow_message(1, seq=1, with_template=False), decoder=decoder)) == 0
    assert decoder.stats.templates_expired == 1


def test_v9_restart_drops_templates() -> None:
    decoder = Decoder()

    def v9(uptime: int, seq: int, with_template: bool) -> bytes:
        sets = [a_set(0, struct.pack("!HH", 256, 1) + struct.pack("!HH", 2, 4))] if with_template else []
        body = b"".join([*sets, a_set(256, struct.pack("!I", 5))])
        return struct.pack("!HHIIII", 9, 2, uptime, 1_700_000_000, seq, 1) + body

    assert len(parse_pdu(EXPORTER, v9(100_000_000, 50, True), decoder=decoder)) == 1
    assert len(parse_pdu(EXPORTER, v9(1_000, 0, False), decoder=decoder)) == 0  # rebooted: its old template is gone
    assert decoder.stats.exporter_restarts == 1


def test_malformed_datagram_changes_nothing() -> None:
    decoder = Decoder()
    # a good template followed by a set whose length runs past the message
    bad = ipfix([a_set(2, template(256, FIELDS)), struct.pack("!HH", 256, 500)])
    with pytest.raises(aioflow.MalformedPDUError, match="bad_set_length"):
        parse_pdu(EXPORTER, bad, decoder=decoder)
    assert decoder.templates() == {} and decoder.stats.malformed["bad_set_length"] == 1
    for junk, reason in [(b"", "short_header"), (b"\x00\x07" + b"\0" * 30, "bad_version"),
                         (struct.pack("!HH", 10, 9999) + b"\0" * 12, "bad_length")]:  # fmt: skip
        assert decoder.parse(EXPORTER, junk).error == reason
    assert decoder.stats.datagrams == 4


def valid_datagrams() -> list[bytes]:
    return [flow_message(3), flow_message(2, seq=3, with_template=False)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.sampled_from(valid_datagrams()).flatmap(
    lambda d: st.lists(st.tuples(st.integers(0, len(d) - 1), st.integers(0, 255)), max_size=6).map(
        lambda edits: _mutate(d, edits))))  # fmt: skip
def test_fuzzed_datagrams_never_escape(datagram: bytes) -> None:
    decoder = Decoder()
    decoder.parse(EXPORTER, flow_message(1))
    message = decoder.parse(EXPORTER, datagram)
    for rs in message.sets:  # every decoded value must also be readable
        for name in rs.template.names:
            rs.column(name)
    for record in aioflow.netflow.collect.PDU(message):
        record.to_dict()
        record.flow_id(bidir=True)
    assert decoder.stats.datagrams == 2
    try:
        parse_pdu(EXPORTER, datagram, decoder=decoder)
    except aioflow.MalformedPDUError:
        assert sum(decoder.stats.malformed.values()) >= 1


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for where, value in edits:
        out[where] = value
    return bytes(out)


@pytest.mark.anyio
async def test_udp_collector_counts_junk_and_yields_records() -> None:
    async with Collector(("127.0.0.1", 0)) as collector:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in [b"junk", flow_message(2), b"\x00\x0a\x00", flow_message(1, seq=2, with_template=False)]:
                s.sendto(d, collector.address)
        got = []
        with anyio.fail_after(5):
            async for record in collector:
                got.append(record.src_ip)
                if len(got) == 3:
                    break
    assert got == ["10.0.0.0", "10.0.0.1", "10.0.0.0"]
    assert sum(collector.stats.malformed.values()) == 2



@pytest.mark.anyio
async def test_udp_collector_keeps_a_burst_it_has_not_read_yet() -> None:
    # 150 datagrams arrive while nothing reads: all wait (in the kernel's buffer) and all come out.
    # anyio's own UDP socket kept at most 100 under asyncio and silently dropped the oldest.
    burst = 150
    async with Collector(("127.0.0.1", 0)) as collector:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(flow_message(1), collector.address)
            for seq in range(1, burst):
                s.sendto(flow_message(1, seq=seq, with_template=False), collector.address)
        await anyio.sleep(0.2)  # the event loop runs meanwhile: a user-space queue would fill here
        got = 0
        with anyio.fail_after(5):
            async for _ in collector:
                got += 1
                if got == burst:
                    break
    assert collector.stats.datagrams == burst
    assert collector.stats.sequence_gaps == 0

def test_ipfix_file_round_trip(tmp_path: Path) -> None:
    from aioflow.export import IPFIXFileWriter

    flows = list(aioflow.read(DATA / "ndpi_smtp-starttls.pcap"))
    path = tmp_path / "flows.ipfix"
    with IPFIXFileWriter(path) as writer:
        writer.write(flows)
    decoder = Decoder(template_timeout=None)
    got = sorted((r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.protocol, r.packets, r.bytes, r.reverse_packets,
                  r.reverse_bytes, r.start_ns // 10**6, r.end_ns // 10**6)
                 for r in read_ipfix_file(path, decoder=decoder))  # fmt: skip
    want = sorted((f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.src2dst_packets, f.src2dst_bytes,
                   f.dst2src_packets, f.dst2src_bytes, f.first_seen_ns // 10**6, f.last_seen_ns // 10**6)
                  for f in flows)  # fmt: skip
    assert got == want and got
    assert not decoder.stats.malformed


def test_aioflow_collect_is_a_function() -> None:
    # issue 12: a plain function (no module whose class was swapped); its module's names are aioflow's
    assert inspect.isasyncgenfunction(aioflow.collect) and aioflow.parse_pdu is parse_pdu


def test_aioflow_collect_after_a_plain_import() -> None:
    # Here aioflow.collect is imported already; only a new interpreter takes the lazy path of `import aioflow`.
    code = "import aioflow; assert callable(aioflow.collect) and aioflow.read_ipfix_file and aioflow.Collector"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_cli_collect_prints_records_and_archives_ipfix(tmp_path: Path) -> None:
    import time

    port = free_udp_port()
    archive = tmp_path / "in.ipfix"
    cli = subprocess.Popen(
        [sys.executable, "-m", "aioflow", "collect", "--listen", f"127.0.0.1:{port}", "--json", "--count", "3",
         "--write", str(archive)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while cli.poll() is None and time.monotonic() < deadline:  # until it listens and has 3 records
                for d in [b"junk", flow_message(2), flow_message(1, seq=2, with_template=False)]:
                    s.sendto(d, ("127.0.0.1", port))
                time.sleep(0.2)
        out, err = cli.communicate(timeout=10)
    finally:
        cli.kill()
    assert cli.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and lines[0]["sourceIPv4Address"] == "10.0.0.0" and lines[0]["version"] == 10
    assert "malformed" in err
    assert {(r.src_ip, r.packets) for r in read_ipfix_file(archive)} == {("10.0.0.0", 1), ("10.0.0.1", 2)}


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["ipfix", "v9", "v5"])
async def test_aioflow_exporter_to_aioflow_collector(fmt: str) -> None:
    from aioflow.export import EXPORTERS

    flows = list(aioflow.read(DATA / "ndpi_smtp-starttls.pcap")) + list(aioflow.read(DATA / "zeek_icmp_5-pings.pcap"))
    if fmt == "v5":  # v5 cannot carry IPv6: the exporter counts and skips those flows
        flows = [f for f in flows if f.ip_version == 4]
    if fmt == "ipfix":
        want = sorted((f.src_ip, f.dst_ip, f.protocol, f.src2dst_packets, f.src2dst_bytes, f.dst2src_packets,
                       f.dst2src_bytes, f.first_seen_ns // 10**6) for f in flows)  # fmt: skip
    else:  # one record per direction that saw packets
        want = sorted((a, b, f.protocol, getattr(f, f"{d}_packets"), getattr(f, f"{d}_bytes"), 0, 0,
                       getattr(f, f"{d}_first_seen_ns") // 10**6)
                      for f in flows for a, b, d in ((f.src_ip, f.dst_ip, "src2dst"), (f.dst_ip, f.src_ip, "dst2src"))
                      if getattr(f, f"{d}_packets"))  # fmt: skip
    got = []
    async with Collector(("127.0.0.1", 0)) as collector:
        async with EXPORTERS[fmt](collector.address) as exporter:
            await exporter.send_many(flows)
        with anyio.fail_after(10):
            async for r in collector:
                got.append((r.src_ip, r.dst_ip, r.protocol, r.packets, r.bytes, r.reverse_packets or 0,
                            r.reverse_bytes or 0, r.start_ns // 10**6))  # fmt: skip
                if len(got) == len(want):
                    break
    assert sorted(got) == want and len(want) >= 3
    assert collector.stats.sequence_gaps == 0 and not collector.stats.malformed


def test_template_cache_is_bounded() -> None:
    decoder = Decoder(max_templates=2)
    for tid in (256, 257, 258):
        parse_pdu(EXPORTER, flow_message(1, tid=tid), decoder=decoder)
    assert len(decoder.templates()) == 2 and decoder.stats.templates_refused == 1
    # the refused template still served its own datagram, not the next ones
    assert len(parse_pdu(EXPORTER, flow_message(1, seq=3, tid=258, with_template=False), decoder=decoder)) == 0
    assert decoder.stats.records == 3 and decoder.stats.sets_without_template == 1
