"""`aioflow collect --read FILE`: an IPFIX file written by `aioflow export --write` replayed through the
collector gives the flows FlowParser ended and the records tshark's own IPFIX file reader decodes;
missing, non-IPFIX and truncated files."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.tshark import tshark_records

import aioflow
from aioflow.netflow.collect import Decoder, read_ipfix_file

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
# IPv4 and IPv6, TCP/UDP/ICMP (bundled); VLAN and MPLS (zeek)
CAPTURES = [BUNDLED, ROOT / "tests" / "data" / "zeek_mixed-vlan-mpls.pcap"]


def aioflow_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aioflow", *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def export_file(capture: Path, path: Path, *options: str) -> Path:
    proc = aioflow_cli("export", capture, "--write", path, *options)
    assert proc.returncode == 0, proc.stderr
    return path


def read_json(path: Path, *options: str) -> list[dict[str, Any]]:
    proc = aioflow_cli("collect", "--read", path, "--json", *options)
    assert proc.returncode == 0, proc.stderr
    assert "malformed 0" in proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def message_ends(data: bytes) -> list[int]:
    """Where each IPFIX message of a file ends, from the 16-bit length of each header (RFC 7011 3.1)."""
    ends, offset = [], 0
    while offset < len(data):
        version, length = struct.unpack_from("!HH", data, offset)
        assert version == 10 and length >= 16
        offset += length
        ends.append(offset)
    assert offset == len(data)
    return ends


@pytest.mark.parametrize("biflow", [True, False], ids=["biflow", "uniflow"])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_read_gives_the_parsers_flows_and_tshark_agrees(tmp_path: Path, capture: Path, biflow: bool) -> None:
    path = export_file(capture, tmp_path / "flows.ipfix", *([] if biflow else ["--uniflow"]))
    records = read_json(path)
    flows = list(aioflow.read(capture))

    # 1. What FlowParser ended: a biflow record per flow, or a record per direction that saw packets.
    def ends(r: dict[str, Any], *names: str) -> tuple[Any, ...]:
        return tuple(r.get(f"{name}IPv4Address") or r.get(f"{name}IPv6Address") for name in names)

    got = Counter((*ends(r, "source", "destination"), r["protocolIdentifier"], r["packetDeltaCount"],
                   r["octetDeltaCount"], r.get("reversePacketDeltaCount", 0), r.get("reverseOctetDeltaCount", 0),
                   r["start_ns"] // 10**6, r["end_ns"] // 10**6) for r in records)  # fmt: skip
    want: Counter[tuple[Any, ...]] = Counter()
    for f in flows:
        if biflow:
            want[(f.src_ip, f.dst_ip, f.protocol, f.src2dst_packets, f.src2dst_bytes, f.dst2src_packets,
                  f.dst2src_bytes, f.first_seen_ns // 10**6, f.last_seen_ns // 10**6)] += 1  # fmt: skip
            continue
        for a, b, d in ((f.src_ip, f.dst_ip, "src2dst"), (f.dst_ip, f.src_ip, "dst2src")):
            first, last = getattr(f, f"{d}_first_seen_ns"), getattr(f, f"{d}_last_seen_ns")
            if getattr(f, f"{d}_packets"):
                want[(a, b, f.protocol, getattr(f, f"{d}_packets"), getattr(f, f"{d}_bytes"), 0, 0, first // 10**6,
                      last // 10**6)] += 1  # fmt: skip
    assert got == want and len(flows) >= 3

    # 2. Wireshark's IPFIX file reader and dissector, on the same file. In a biflow record tshark lists the
    # reverse counters under the same field names as the forward ones: compared on uniflow files only.
    if biflow:
        return
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt install tshark): only FlowParser was compared")
    ours = Counter((*ends(r, "source"), r.get("sourceTransportPort", 0), *ends(r, "destination"),
                    r.get("destinationTransportPort", 0), r["protocolIdentifier"], r["packetDeltaCount"],
                    r["octetDeltaCount"], r["start_ns"], r["end_ns"]) for r in records)  # fmt: skip
    assert ours == tshark_records(path) and ours


def test_truncated_file_prints_the_intact_messages_and_exits_1(tmp_path: Path) -> None:
    data = export_file(BUNDLED, tmp_path / "flows.ipfix", "--uniflow").read_bytes()
    ends = message_ends(data)
    assert len(ends) >= 2, "the test needs a file of several messages"
    intact = tmp_path / "intact.ipfix"
    intact.write_bytes(data[: ends[-2]])
    want = aioflow_cli("collect", "--read", intact)
    assert want.returncode == 0 and 0 < len(want.stdout.splitlines()), want.stderr
    full = aioflow_cli("collect", "--read", tmp_path / "flows.ipfix")
    assert len(want.stdout.splitlines()) < len(full.stdout.splitlines())
    # cut inside the last message's records, then inside its header
    for cut in (ends[-2] + (ends[-1] - ends[-2]) // 2, ends[-2] + 7):
        damaged = tmp_path / f"cut{cut}.ipfix"
        damaged.write_bytes(data[:cut])
        proc = aioflow_cli("collect", "--read", damaged)
        assert proc.returncode == 1
        assert proc.stdout.replace(str(damaged), str(intact)) == want.stdout  # exporter is named by the file
        assert "malformed 1 {'file_truncated': 1}" in proc.stderr
        assert f"error: {damaged}: damaged (file_truncated 1)" in proc.stderr
        decoder = Decoder(template_timeout=None)  # the API: the same records, the damage counted
        assert len(list(read_ipfix_file(damaged, decoder=decoder))) == len(want.stdout.splitlines())
        assert decoder.stats.malformed == {"file_truncated": 1}


def test_bad_files_are_typed_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ipfix"
    archive = tmp_path / "archive.ipfix"
    proc = aioflow_cli("collect", "--read", missing, "--write", archive)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"aioflow: error: {missing}: no such IPFIX file; check the path\n"
    assert not archive.exists()  # nothing read, nothing written
    with pytest.raises(aioflow.FlowFileNotFoundError):
        next(read_ipfix_file(missing))

    proc = aioflow_cli("collect", "--read", BUNDLED)  # a pcapng capture, not IPFIX
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{BUNDLED}: not an IPFIX file" in proc.stderr and "aioflow export --write" in proc.stderr
    with pytest.raises(aioflow.FlowFileFormatError) as excinfo:
        next(read_ipfix_file(BUNDLED))
    assert isinstance(excinfo.value, ValueError)

    with pytest.raises(aioflow.FlowFileFormatError, match="directory"):
        next(read_ipfix_file(tmp_path))
    empty = tmp_path / "empty.ipfix"  # e.g. `collect --write` that received nothing
    empty.write_bytes(b"")
    proc = aioflow_cli("collect", "--read", empty)
    assert (proc.returncode, proc.stdout) == (0, "") and "datagrams 0" in proc.stderr


def test_read_excludes_listen_and_write_copies(tmp_path: Path) -> None:
    path = export_file(BUNDLED, tmp_path / "flows.ipfix")
    proc = aioflow_cli("collect", "--read", path, "--listen", ":4739")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
    copy = tmp_path / "copy.ipfix"
    proc = aioflow_cli("collect", "--read", path, "--write", copy, "--count", "3")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3
    first = message_ends(path.read_bytes())[0]
    assert copy.read_bytes() == path.read_bytes()[:first]  # the messages read before --count was reached
    proc = aioflow_cli("collect", "--read", path, "--write", path)
    assert proc.returncode == 2 and "must not be the --read file" in proc.stderr
    # a missing --read file is its typed error, whatever --write names
    proc = aioflow_cli("collect", "--read", tmp_path / "missing.ipfix", "--write", path)
    assert proc.returncode == 2 and "no such IPFIX file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: no permission error to provoke")
def test_unreadable_file_is_a_permission_error(tmp_path: Path) -> None:
    path = export_file(BUNDLED, tmp_path / "flows.ipfix")
    path.chmod(0)
    with pytest.raises(aioflow.FlowFilePermissionError):
        next(read_ipfix_file(path))
    proc = aioflow_cli("collect", "--read", path)
    assert proc.returncode == 2 and "not readable by this user" in proc.stderr


def test_listen_port_alone_is_every_address() -> None:
    from aioflow.cli import build_parser

    def listen(text: str) -> tuple[str, int | None]:
        return build_parser().parse_args(["collect", "--listen", text]).listen  # type: ignore[no-any-return]

    assert listen(":4739") == ("0.0.0.0", 4739)  # as --help says
    assert listen("127.0.0.1:4739") == ("127.0.0.1", 4739) and listen("[::1]:9995") == ("::1", 9995)
