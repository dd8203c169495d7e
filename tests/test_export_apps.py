"""IPFIX export with applications=True: nDPI's applicationId (RFC 6759), applicationName,
applicationCategoryName and the server name (ntop's FLOW_SERVER_NAME), decoded by tshark's cflow
dissector (Wireshark reads IPFIX files, RFC 5655), equal to read_frame(dissect=True) for every
flow; biflow and one record per direction."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import anyio
import pytest
from support.reference import TSHARK

import aioflow
from aioflow._engine import dissect_unavailable
from aioflow.netflow.export import IPFIXFileWriter

DATA = Path(__file__).parent / "data"
pytestmark = [
    pytest.mark.skipif(bool(dissect_unavailable()), reason=dissect_unavailable() or ""),
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt install tshark)"),
]
Row = tuple[str, int, str, int, int, int, str, str, str]


def _export(capture: Path, path: Path, biflow: bool) -> None:
    async def run() -> None:
        async with aioflow.FlowParser(capture, dissect=True) as parser:
            async with IPFIXFileWriter(path, applications=True, biflow=biflow) as writer:
                await writer.run(parser)

    anyio.run(run)


def _tshark_rows(path: Path) -> list[Row]:
    """Every data record tshark decodes: addresses, ports, engine id, selector, name, category,
    server name. From its JSON tree, record by record ("Flow N"): `-T fields` would drop the
    empty strings from its per-packet lists and misalign them."""
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "-n", "-r", str(path), "-T", "json"], capture_output=True, text=True, check=True)
    rows: list[Row] = []

    def flows(tree: object) -> list[dict[str, str]]:
        if not isinstance(tree, dict):
            return []
        found = [v for k, v in tree.items() if k.startswith("Flow ") and isinstance(v, dict)]
        return found or [f for v in tree.values() for f in flows(v)]

    for packet in json.loads(out.stdout):
        for f in flows(packet["_source"]["layers"].get("cflow", {})):
            rows.append((f.get("cflow.srcaddr") or f["cflow.srcaddrv6"], int(f["cflow.srcport"]),
                         f.get("cflow.dstaddr") or f["cflow.dstaddrv6"], int(f["cflow.dstport"]),
                         int(f["cflow.appl_id.classification_engine_id"]),
                         int(f["cflow.appl_id.selector_id"].replace(":", ""), 16), f["cflow.appl_name"],
                         f["cflow.application_category_name"], f["cflow.pie.ntop.flow_server_name"]))  # fmt: skip
    return rows


def _expected(capture: Path, biflow: bool) -> list[Row]:
    """read_frame(dissect=True)'s flows as the records should carry them: engine 6 (USER-Defined),
    nDPI's application protocol id (else its master's); uni-flow: one per direction with packets."""
    frame = aioflow.read_frame(capture, dissect=True)
    rows: list[Row] = []
    for f in frame.itertuples():
        app = (6, int(f.app_protocol or f.master_protocol), f.application_name, f.application_category_name,
               f.requested_server_name)  # fmt: skip
        rows.append((f.src_ip, f.src_port, f.dst_ip, f.dst_port, *app))
        if not biflow and f.dst2src_packets:
            rows.append((f.dst_ip, f.dst_port, f.src_ip, f.src_port, *app))
    return rows


@pytest.mark.parametrize("biflow", [True, False])
@pytest.mark.parametrize("name", ["ndpi_ocs.pcap", "ndpi_smtp-starttls.pcap", "nfstream_google_ssl.pcap"])
def test_tshark_reads_the_applications(tmp_path: Path, name: str, biflow: bool) -> None:
    capture = DATA / name
    path = tmp_path / "flows.ipfix"
    _export(capture, path, biflow)
    ours = sorted(_tshark_rows(path))
    expected = sorted(_expected(capture, biflow))
    assert len(ours) == len(expected) > 0
    assert ours == expected
    assert all(name for *_, name, _, _ in ours), "an empty applicationName: the test compared nothing"
    if name != "nfstream_google_ssl.pcap":  # its one flow starts after the ClientHello: no server name
        assert any(server for *_, server in ours), "no server name: the test compared nothing"


def test_without_dissect_the_elements_are_empty(tmp_path: Path) -> None:
    """applications=True over flows without the dissect meter: the template still has the
    elements (one template for the whole export), every value empty or zero."""
    path = tmp_path / "flows.ipfix"

    async def run() -> None:
        async with aioflow.FlowParser(DATA / "ndpi_ocs.pcap") as parser:
            async with IPFIXFileWriter(path, applications=True) as writer:
                await writer.run(parser)

    anyio.run(run)
    rows = _tshark_rows(path)
    assert len(rows) == len(aioflow.read_frame(DATA / "ndpi_ocs.pcap"))
    assert {row[4:] for row in rows} == {(0, 0, "", "", "")}


def test_cli_export_dissect_to_a_socket_and_a_file(tmp_path: Path) -> None:
    """`aioflow export --dissect --to HOST:PORT --write FILE`: two sinks, fed flow by flow (send()),
    the applications gathered from the Flow objects; the datagrams the socket received, as an
    IPFIX file, and the file written both decode (tshark) to read_frame(dissect=True)'s values."""
    import re
    import socket
    import sys

    capture = DATA / "nfstream_google_ssl.pcap"
    path = tmp_path / "flows.ipfix"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        command = [sys.executable, "-m", "aioflow", "export", str(capture), "--to", f"127.0.0.1:{port}"]
        run = subprocess.run([*command, "--write", str(path), "--dissect"], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        sent = re.search(rf"127\.0\.0\.1:{port}: \d+ flows, \d+ records in (\d+) messages", run.stderr)
        assert sent, run.stderr
        sock.settimeout(30)  # the datagrams are already in the socket's buffer: counted, not waited for
        received = b"".join(sock.recv(65535) for _ in range(int(sent[1])))
    (tmp_path / "received.ipfix").write_bytes(received)
    expected = sorted(_expected(capture, biflow=True))
    assert sorted(_tshark_rows(tmp_path / "received.ipfix")) == expected
    assert sorted(_tshark_rows(path)) == expected


def test_nfdump_still_reads_the_export(tmp_path: Path, nfdump: object) -> None:
    """nfcapd/nfdump 1.7 skip the application elements and read every flow as read_frame has it
    (5-tuple, packets and bytes each way); no sequence error, no bad packet."""
    from support.nfdump_peer import nfcapd_running, nfdump_json

    from aioflow.netflow.export import IPFIXExporter

    capture = DATA / "ndpi_smtp-starttls.pcap"

    async def run(port: int) -> None:
        async with aioflow.FlowParser(capture, dissect=True) as parser:
            async with IPFIXExporter(("127.0.0.1", port), applications=True) as exporter:
                await exporter.run(parser)

    with nfcapd_running(tmp_path) as nfcapd:
        anyio.run(run, nfcapd.port)
    assert "Sequence Errors: 0, Bad Packets: 0" in nfcapd.log, nfcapd.log
    def ip(text: str) -> str:
        return str(ipaddress.ip_address(text))

    got = sorted((ip(r.get("src4_addr") or r["src6_addr"]), r.get("src_port", 0),
                  ip(r.get("dst4_addr") or r["dst6_addr"]), r.get("dst_port", 0), r["in_packets"], r["in_bytes"],
                  r["out_packets"], r["out_bytes"]) for r in nfdump_json(tmp_path))  # fmt: skip
    frame = aioflow.read_frame(capture)
    ported = frame.protocol.isin([6, 17, 132])  # ICMP's "ports" are not exported
    want = sorted(zip(frame.src_ip, frame.src_port.where(ported, 0), frame.dst_ip, frame.dst_port.where(ported, 0),
                      frame.src2dst_packets, frame.src2dst_bytes, frame.dst2src_packets, frame.dst2src_bytes,
                      strict=True))  # fmt: skip
    assert got == want and len(got) > 0


def test_cli_export_dissect_to_parquet(tmp_path: Path) -> None:
    """`aioflow export --dissect --write FILE.parquet`: the application columns are in the file,
    each flow's as read_frame(dissect=True) has them."""
    import sys

    pq = pytest.importorskip("pyarrow.parquet")
    capture = DATA / "ndpi_ocs.pcap"
    path = tmp_path / "flows.parquet"
    command = [sys.executable, "-m", "aioflow", "export", str(capture), "--write", str(path), "--dissect"]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    got = pq.read_table(path).to_pandas().sort_values("id")
    want = aioflow.read_frame(capture, dissect=True).sort_values("id")
    names = ["src_ip", "src_port", "application_name", "application_category_name", "requested_server_name"]
    assert got[names].values.tolist() == want[names].values.tolist()
    assert got.application_name.str.len().gt(0).all()
