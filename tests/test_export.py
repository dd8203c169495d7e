"""The exporters' own rules, on the bundled captures: datagrams under the MTU, templates first and
refreshed, sequence numbers per RFC, send errors counted, files written that others read back
(tshark reads IPFIX files, pyarrow reads Parquet), the CLI, and asyncio + trio."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import pytest
from support.tshark import tshark_records

import aioflow
from aioflow._engine import dissect_unavailable
from aioflow._frame import RECORD_DTYPE
from aioflow.cli import main
from aioflow.export import EXPORTERS, IPFIXFileWriter, ParquetWriter
from aioflow.netflow._encode import PORT_PROTOCOLS, encoder_for, gather_records

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
DATA = ROOT / "tests" / "data"
# IPv4 and IPv6, TCP/UDP/ICMP, VLANs: together they exercise both templates and every column
CAPTURES = [BUNDLED, DATA / "zeek_mixed-vlan-mpls.pcap", DATA / "zeek_icmp_5-pings.pcap", DATA / "ndpi_mysql.pcapng"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def flows_of(path: Path) -> list[aioflow.Flow]:
    return list(aioflow.read(path))


class Receiver:
    """A UDP socket on loopback that keeps every datagram (the collector side of these tests)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.address = self.sock.getsockname()

    def drain(self) -> list[bytes]:
        out = []
        try:
            while True:
                out.append(self.sock.recv(70_000))
        except TimeoutError:
            return out


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.sock.close()


def sets_of(message: bytes, header: int) -> list[tuple[int, int]]:
    """(set id, length) of each set/FlowSet after the header."""
    out, offset = [], header
    while offset + 4 <= len(message):
        set_id, length = struct.unpack_from("!HH", message, offset)
        assert length >= 4, "a set shorter than its header"
        out.append((set_id, length))
        offset += length
    assert offset == len(message), "sets do not fill the message exactly"
    return out


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["ipfix", "v9", "v5"])
@pytest.mark.parametrize("mtu", [400, 1400])
async def test_datagrams_fit_the_mtu_and_number_per_rfc(fmt: str, mtu: int, receiver: Receiver) -> None:
    flows = [f for path in CAPTURES for f in flows_of(path)]
    async with EXPORTERS[fmt](receiver.address, mtu=mtu, template_refresh_packets=5) if fmt != "v5" else \
            EXPORTERS[fmt](receiver.address, mtu=mtu) as exporter:  # fmt: skip
        await exporter.send_many(flows)
    got = await anyio.to_thread.run_sync(receiver.drain)
    stats = exporter.stats
    assert len(got) == stats.messages > 1
    assert all(len(m) <= mtu for m in got)
    assert stats.send_errors == 0
    expected_records = sum(
        1 if fmt == "ipfix" else bool(f.src2dst_packets) + bool(f.dst2src_packets)
        for f in flows if fmt != "v5" or f.ip_version == 4
    )  # fmt: skip
    assert stats.records == expected_records
    records = 0
    template_sent: dict[int, int] = {}  # template id -> index of the message that last carried it
    for i, m in enumerate(got):
        if fmt == "v5":
            version, count, _, _, _, sequence = struct.unpack_from("!HHIIII", m)
            assert (version, sequence) == (5, records)  # v5: flows sent before this datagram
            assert len(m) == 24 + 48 * count and count <= 30
            records += count
            continue
        header, template_set_id = (20, 0) if fmt == "v9" else (16, 2)
        sets = sets_of(m, header)
        data_id, data_length = sets[-1]
        with_template = sets[0][0] == template_set_id
        if with_template:
            assert struct.unpack_from("!H", m, header + 4)[0] == data_id  # the data set's own template
        # templates first, and again once 5 messages went out without them
        due = data_id not in template_sent or i - template_sent[data_id] >= 5
        assert with_template == due, (i, data_id, template_sent)
        if with_template:
            template_sent[data_id] = i
        if fmt == "v9":
            version, count, _, _, sequence, _ = struct.unpack_from("!HHIIII", m)
            assert (version, sequence) == (9, i)  # v9: export packets sent before this one
            assert all(length % 4 == 0 for _, length in sets)  # FlowSets padded to 32 bits
            records += count - with_template  # count includes template records
        else:
            version, length, _, sequence, _ = struct.unpack_from("!HHIII", m)
            assert (version, length, sequence) == (10, len(m), records)  # IPFIX: data records before
            # biflow templates: 2 addresses (4 or 16), ports 2+2, protocol 1, ipVersion 1, vlanId 2, times 8+8,
            # 2 x (packets 8, octets 8, tcpControlBits 2, min/max TTL 1+1), flowEndReason 1, biflowDirection 1
            record_length = 74 if data_id == 256 else 98
            assert (data_length - 4) % record_length == 0
            records += (data_length - 4) // record_length
    assert records == stats.records


@pytest.mark.anyio
async def test_v5_counts_the_ipv6_flows_it_cannot_send(receiver: Receiver) -> None:
    flows = flows_of(BUNDLED)
    async with aioflow.NetflowV5Exporter(receiver.address) as exporter:
        await exporter.send_many(flows)
    assert exporter.stats.skipped_ipv6 == sum(f.ip_version == 6 for f in flows) > 0
    assert exporter.stats.flows == len(flows)


@pytest.mark.anyio
async def test_run_sends_every_flow_the_parser_ends(receiver: Receiver) -> None:
    async with aioflow.FlowParser(BUNDLED) as parser, aioflow.IPFIXExporter(receiver.address) as exporter:
        await exporter.run(parser)
    assert exporter.stats.flows == parser.info().flows_ended == len(flows_of(BUNDLED))
    assert len(await anyio.to_thread.run_sync(receiver.drain)) == exporter.stats.messages


@pytest.mark.anyio
async def test_a_refused_datagram_is_counted_not_raised() -> None:
    closed = Receiver()
    address = closed.address
    closed.sock.close()  # nothing listens there: loopback answers with ICMP port unreachable
    async with aioflow.IPFIXExporter(address, batch_flows=1) as exporter:
        for flow in flows_of(BUNDLED):
            await exporter.send(flow)
            await anyio.sleep(0.001)
    assert exporter.stats.send_errors > 0
    assert "Refused" in exporter.stats.last_error


@pytest.mark.anyio
async def test_a_lone_flow_goes_out_within_the_flush_interval(receiver: Receiver) -> None:
    flow = flows_of(BUNDLED)[0]
    async with aioflow.IPFIXExporter(receiver.address, flush_interval=0.05) as exporter:
        await exporter.send(flow)  # far from a full batch, and no other send follows
        with anyio.fail_after(10):  # sent while still inside the block (the deadline bounds a failure)
            while exporter.stats.flows == 0:  # noqa: ASYNC110 (a counter: the exporter has no event)
                await anyio.sleep(0.01)
        assert exporter.stats.flows == 1
    assert len(await anyio.to_thread.run_sync(receiver.drain)) == 1


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(aioflow.ConfigError, match="mtu"):
        aioflow.IPFIXExporter(("127.0.0.1", 4739), mtu=100)
    with pytest.raises(aioflow.ConfigError, match="port"):
        aioflow.NetflowV9Exporter(("127.0.0.1", 0))
    with pytest.raises(aioflow.ConfigError, match="max_rate"):
        aioflow.NetflowV5Exporter(("127.0.0.1", 2055), max_rate=0)
    with pytest.raises(TypeError, match="RECORD_DTYPE"):
        encoder_for("v9").encode(np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="format"):
        encoder_for("v8")


def test_flow_end_reasons_map_to_ipfix_codes() -> None:
    # RFC 7012 flowEndReason: idle 1, active 2, end of flow 3, forced end 4, lack of resources 5
    from aioflow._engine import END_REASONS
    from aioflow.netflow._encode import FLOW_END_REASON

    codes = dict(zip(END_REASONS, FLOW_END_REASON.tolist(), strict=True))
    assert codes == {"": 2, "idle": 1, "active": 2, "fin": 3, "rst": 3, "eof": 4, "evicted": 5, "stop": 4, "custom": 4}


@pytest.mark.parametrize("nanoseconds", [False, True])
def test_ipfix_file_is_read_by_tshark(tmp_path: Path, nanoseconds: bool) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    flows = [f for path in CAPTURES for f in flows_of(path)]
    path = tmp_path / "flows.ipfix"
    with IPFIXFileWriter(path, nanoseconds=nanoseconds, biflow=False) as writer:
        writer.write(flows)
    unit = 1 if nanoseconds else 10**6
    want: Counter[tuple[Any, ...]] = Counter()
    for f in flows:
        ported = f.protocol in PORT_PROTOCOLS
        for sa, sp, da, dp, d in ((f.src_ip, f.src_port, f.dst_ip, f.dst_port, "src2dst"),
                                  (f.dst_ip, f.dst_port, f.src_ip, f.src_port, "dst2src")):  # fmt: skip
            if getattr(f, f"{d}_packets"):
                first, last = getattr(f, f"{d}_first_seen_ns"), getattr(f, f"{d}_last_seen_ns")
                want[(sa, sp if ported else 0, da, dp if ported else 0, f.protocol, getattr(f, f"{d}_packets"),
                      getattr(f, f"{d}_bytes"), first // unit * unit, last // unit * unit)] += 1  # fmt: skip
    assert tshark_records(path) == want
    assert writer.stats.messages >= 1 and writer.stats.templates_sent == 2  # a file: each template once


def test_parquet_matches_read_frame(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "flows.parquet"
    with ParquetWriter(path) as writer:
        writer.write(flows_of(BUNDLED))
    table = pq.read_table(path).to_pandas()
    frame = aioflow.read_frame(BUNDLED)
    assert len(table) == len(frame) == writer.rows
    cols = ["src_ip", "dst_ip", "src_port", "dst_port", "protocol", "src2dst_bytes", "dst2src_packets", "end_reason"]
    key = ["src_ip", "src_port", "dst_ip", "dst_port", "protocol"]
    a = table[cols].sort_values(key).reset_index(drop=True)
    b = frame[cols].sort_values(key).reset_index(drop=True)
    assert a.astype(str).equals(b.astype(str))


PARQUET_METERS: dict[str, Any] = {"statistics": True, "splt": 4, "meters": ("mac", "community_id"),
                                  **({"dissect": True} if not dissect_unavailable() else {})}  # fmt: skip


@pytest.mark.parametrize("path_kind", ["run", "write"])
def test_parquet_has_every_meter_column_of_read_arrow(tmp_path: Path, path_kind: str) -> None:
    """With meters on, run(parser) (batch by batch) and write(flows) (Flow objects) both write
    read_arrow's columns and values, splt as lists, text as strings."""
    pq = pytest.importorskip("pyarrow.parquet")
    capture = DATA / "ndpi_ocs.pcap"
    path = tmp_path / "flows.parquet"

    async def run() -> None:
        async with aioflow.FlowParser(capture, **PARQUET_METERS) as parser, ParquetWriter(path) as writer:
            if path_kind == "run":
                await writer.run(parser)
            else:
                writer.write([f async for f in parser.terminated()])

    anyio.run(run)
    got = pq.read_table(path).to_pandas().sort_values("id").reset_index(drop=True)
    want = aioflow.read_arrow(capture, **PARQUET_METERS).to_pandas().sort_values("id").reset_index(drop=True)
    assert list(got.columns) == list(want.columns) and len(got) == len(want) > 10
    assert {"bidirectional_mean_ps", "splt_ps", "src_mac", "community_id_value"} <= set(got.columns)
    for name in want.columns:
        a, b = got[name].tolist(), want[name].tolist()
        if name.startswith("splt_"):
            a, b = [list(x) for x in a], [list(x) for x in b]
        assert a == b or got[name].equals(want[name]), name


def test_gather_records_takes_the_flows_records(tmp_path: Path) -> None:
    flows = flows_of(BUNDLED)[::3]
    rec = gather_records(flows)
    assert rec.dtype == RECORD_DTYPE and len(rec) == len(flows)
    assert aioflow.RECORD_DTYPE is RECORD_DTYPE  # the public name the docstrings point at
    assert rec["src2dst_bytes"].tolist() == [f.src2dst_bytes for f in flows]
    assert rec["last_ns"].tolist() == [f.last_seen_ns for f in flows]


def test_cli_export_to_a_collector_and_a_file(tmp_path: Path, receiver: Receiver, capsys: Any) -> None:
    port = receiver.address[1]
    out = tmp_path / "flows.parquet"
    assert main(["export", str(BUNDLED), "--to", f"127.0.0.1:{port}", "--format", "v9", "--write", str(out)]) == 0
    err = capsys.readouterr().err
    flows = flows_of(BUNDLED)
    assert f"v9 to 127.0.0.1:{port}: {len(flows)} flows" in err
    assert f"{len(flows)} flows written" in err
    assert receiver.drain() and out.stat().st_size > 0


def ipfix_records(messages: list[bytes]) -> int:
    """Data records in IPFIX biflow messages (the default templates: 74 bytes for IPv4, 98 for IPv6)."""
    records = 0
    for m in messages:
        data_id, data_length = sets_of(m, 16)[-1]
        records += (data_length - 4) // (74 if data_id == 256 else 98)
    return records


def test_cli_export_to_one_collector(receiver: Receiver, capsys: Any) -> None:
    assert main(["export", str(BUNDLED), "--to", f"127.0.0.1:{receiver.address[1]}", "--max-rate", "5000"]) == 0
    assert ipfix_records(receiver.drain()) == len(flows_of(BUNDLED))
    assert "ipfix to 127.0.0.1" in capsys.readouterr().err


def test_cli_export_needs_a_destination(capsys: Any) -> None:
    assert main(["export", str(BUNDLED)]) == 2
    assert "--to" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(BUNDLED), "--to", "host:notaport"])


def test_example_exports_the_big_flows(receiver: Receiver) -> None:
    host, port = receiver.address
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "export_ipfix.py"), str(BUNDLED), f"{host}:{port}",
                           "1000"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    big = [f for f in flows_of(BUNDLED) if f.bytes >= 1000]
    assert proc.stdout.startswith(f"sent {len(big)} of {len(flows_of(BUNDLED))} flows"), proc.stdout
    assert ipfix_records(receiver.drain()) == len(big) > 0


@pytest.mark.parametrize(
    ("text", "want"),
    [("collector:2055", ("collector", 2055)), ("[::1]:4739", ("::1", 4739)), (":9995", ("127.0.0.1", 9995)),
     ("10.0.0.5", ("10.0.0.5", None)), ("::1", ("::1", None)), ("[fe80::1]", ("fe80::1", None))],
)  # fmt: skip
def test_cli_addresses(text: str, want: tuple[str, int | None]) -> None:
    from aioflow.cli._common import address

    assert address(text) == want


@pytest.mark.anyio
async def test_ipv6_collector() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    sock.settimeout(1.0)
    with sock:
        async with aioflow.NetflowV9Exporter(("::1", sock.getsockname()[1])) as exporter:
            await exporter.send_many(flows_of(BUNDLED))
        first = await anyio.to_thread.run_sync(sock.recv, 70_000)
    assert struct.unpack_from("!H", first)[0] == 9 and exporter.stats.send_errors == 0


@pytest.mark.anyio
async def test_live_flows_are_exported_as_they_end(receiver: Receiver) -> None:
    """Live capture on loopback: a flow that ends by idle timeout reaches the collector while the
    capture still runs (run() sends each batch as it comes; nothing waits for the end)."""
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (or CAP_NET_RAW)")
    talker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    talker.bind(("127.0.0.1", 0))
    port = talker.getsockname()[1]
    with talker:
        async with aioflow.FlowParser("lo", live=True, filter=f"udp port {port}", idle_timeout=0.3) as parser, \
                aioflow.IPFIXExporter(receiver.address) as exporter:  # fmt: skip
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(exporter.run, parser)
                await anyio.sleep(0.3)  # the capture is up
                for _ in range(3):
                    talker.sendto(b"ping", ("127.0.0.1", 9))  # discard port: nothing needs to answer
                with anyio.fail_after(10):
                    # polling a counter: the exporter has no event to wait on
                    while exporter.stats.flows == 0:  # noqa: ASYNC110 - ended by the idle timeout, then exported
                        await anyio.sleep(0.05)
                parser.stop()
    messages = receiver.drain()
    assert ipfix_records(messages) == exporter.stats.flows >= 1
    # the record: 127.0.0.1:port -> 127.0.0.1:9, UDP, 3 packets of 32 bytes (20 IP + 8 UDP + 4)
    record = messages[0][-74:]
    assert struct.unpack_from("!HHB", record, 8) == (port, 9, 17)
    assert struct.unpack_from("!QQ", record, 32) == (3, 96)  # after addresses, ports, key, two times


@pytest.mark.parametrize("fmt", ["v9", "ipfix"])
def test_templates_are_refreshed_by_time(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = gather_records(flows_of(DATA / "zeek_icmp_5-pings.pcap"))  # IPv4 only: one template
    encoder = encoder_for(fmt, template_refresh_packets=None, template_refresh_seconds=0.2)
    # the encoder's monotonic clock, moved by the test: a loaded machine could otherwise let 0.2 s
    # pass between two calls that must fall in one refresh interval
    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(sys.modules[encoder._template_due.__module__], "time", clock)
    template_set = 0 if fmt == "v9" else 2
    header = 20 if fmt == "v9" else 16

    def with_template() -> list[bool]:
        return [sets_of(m, header)[0][0] == template_set for m in encoder.encode(rec)]

    assert with_template() == [True]
    now[0] += 0.1
    assert with_template() == [False]  # neither time nor packet count says so yet
    now[0] += 0.15
    assert with_template() == [True]
