"""Fast checks on the small real captures bundled in tests/data (no ../shared corpus needed).

They cover Ethernet, 802.1Q/QinQ, MPLS, PPPoE, Linux SLL and SLL2, raw IPv4/IPv6, NULL, PPP,
NFLOG, pcapng, IPv4 and IPv6 fragments, ICMP/ICMPv6/SCTP and a few malformed files. aioflow is
compared with the dpkt reference (all protocols, per flow and direction) and with tshark's TCP/UDP
conversations; tests/data/MANIFEST.tsv gives each file's source and licence.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from support import reference
from support.compare import aioflow_conversations, diff, explain, ref_groups, run_parser
from support.reference import ReferenceFlows
from support.tshark import TShark

import aioflow

DATA = Path(__file__).resolve().parent / "data"
MANIFEST = DATA / "MANIFEST.tsv"
FILES = sorted(p for p in DATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))
REFUSED = {"malformed/libpcap_pcap-invalid-version-1.pcap": aioflow.CaptureFormatError}


def _rel(p: Path) -> str:
    return p.relative_to(DATA).as_posix()


READABLE = [p for p in FILES if _rel(p) not in REFUSED]


def test_manifest_lists_every_bundled_capture() -> None:
    with MANIFEST.open(newline="") as fh:
        rows = {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
    assert sorted(rows) == sorted(_rel(p) for p in FILES)
    for p in FILES:
        row = rows[_rel(p)]
        assert row["source_repo"] and row["source_path"] and row["license_of_source_repo"], row
        assert hashlib.sha256(p.read_bytes()).hexdigest() == row["sha256"], f"{_rel(p)} differs from its source"
    assert sum(p.stat().st_size for p in FILES) < 1_100_000
    # The bundle covers the link types and encapsulations the core tests rely on.
    link_types = {lt for p in READABLE for lt in reference.read_capture(p).link_types}
    assert {0, 1, 9, 101, 113, 228, 229, 239, 276} <= link_types, link_types


@pytest.mark.anyio
@pytest.mark.parametrize("path", READABLE, ids=_rel)
async def test_bundled_flows_match_reference(path: Path, reference_flows: ReferenceFlows) -> None:
    ref = reference_flows(path)
    groups, in_flows, info = await run_parser(path)
    assert info.packets == ref.records
    assert info.packets == info.packets_in_flows + sum(info.aside.values())
    assert in_flows == info.packets_in_flows
    want = ref_groups(ref)
    assert {k: sorted(v) for k, v in groups.items()} == {k: sorted(v) for k, v in want.items()}, (
        f"{_rel(path)}: " + explain(groups, want))


@pytest.mark.parametrize("path", [p for p in READABLE if _rel(p) not in reference.EXCLUDED], ids=_rel)
def test_bundled_flows_match_tshark(path: Path, tshark: TShark) -> None:
    rel = _rel(path)
    want = reference.comparable(rel, tshark.conversations(path))
    got = reference.comparable(rel, aioflow_conversations(path))
    assert got == want, f"{rel}: aioflow vs tshark, " + diff(got, want, "aioflow")


@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_bundled_refused_capture_raises(rel: str) -> None:
    with pytest.raises(REFUSED[rel]):
        list(aioflow.read(DATA / rel))
    with pytest.raises(reference.CaptureRefused):
        reference.read_capture(DATA / rel)
