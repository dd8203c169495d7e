"""nfstream's record fields on aioflow (README "Features for analytics"): compared with nfstream
itself (PyPI, its own venv: support/nfstream_venv.py) flow by flow where both open GTP-U, plus
expiration_id, ids from 0 and the keyed BLAKE2b anonymization of read_frame/to_csv."""

from __future__ import annotations

import csv
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest
from support.corpus import ABSENT, CORPUS, DATA
from support.nfstream_venv import nfstream_flows

import aioflow

# GTP-U without outer IP fragments (nfstream keeps only an outer datagram's first fragment, so
# captures with fragmented carriers, like the bundled zeek GTP one, are left out by that rule)
GTP = CORPUS / "ndpi_zoom.pcap"
CAPTURE = DATA / "zeek_ipv6-http-atomic-frag.pcap"


def five_tuple(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["src_ip"], d["src_port"], d["dst_ip"], d["dst_port"], d["protocol"])


def test_gtp_flows_match_nfstreams() -> None:
    if not GTP.exists():
        pytest.skip(ABSENT)
    # ICMP "ports" differ by definition (nfstream: 0 / type; aioflow: echo id or type, code): TCP and UDP
    theirs = {five_tuple(f): f for f in nfstream_flows(GTP, decode_tunnels=True) if f["protocol"] in (6, 17)}
    frame = aioflow.read_frame(GTP, decode_tunnels=True, meters=("mac",))
    mine = frame[frame.protocol.isin((6, 17))].to_dict("records")
    assert len(theirs) == len(mine) > 10
    gtp = 0
    for row in mine:
        want = theirs[five_tuple(row)]
        # nfstream's tunnel_id is a tunnel *type* (1: GTP); aioflow's is the tunnel's identity
        assert (row["tunnel_type"] == "gtp") == (want["tunnel_id"] == 1)
        gtp += row["tunnel_type"] == "gtp"
        assert row["packets"] == want["bidirectional_packets"]
        assert row["captured_bytes"] == want["bidirectional_bytes"]  # nfstream's accounting_mode 0
        assert (row["src_mac"], row["dst_mac"], row["src_oui"], row["dst_oui"]) == (
            want["src_mac"],
            want["dst_mac"],
            want["src_oui"],
            want["dst_oui"],
        )
        assert row["id"] == want["id"]  # numbered from 0 in order of first packets
        assert row["expiration_id"] == want["expiration_id"]
        assert row["vlan_id"] == want["vlan_id"]
    assert gtp >= 1


def test_ids_start_at_zero_per_source() -> None:
    for _ in range(2):
        ids = sorted(f.id for f in aioflow.read(CAPTURE))
        assert ids == list(range(len(ids)))


def test_expiration_id_follows_the_end_reason() -> None:
    # an active timeout of 0.5 s splits the longer flows: those records ended "active"
    frame = aioflow.read_frame(DATA / "zeek_tcp_reassembly.pcap", active_timeout=0.5)
    assert set(frame.end_reason) >= {"active"}
    assert (frame.expiration_id[frame.end_reason == "active"] == 1).all()
    assert (frame.expiration_id[frame.end_reason != "active"] == 0).all()
    # a table of one flow evicts: no timeout, nfstream's "custom"
    flows = list(aioflow.read(CAPTURE, max_flows=1))
    assert "evicted" in {f.end_reason for f in flows}
    assert all(f.expiration_id == (1 if f.end_reason == "active" else -1 if f.end_reason == "evicted" else 0)
               for f in flows)  # fmt: skip


def nfstream_digest(value: Any, key: bytes) -> str:
    """nfstream's NFAnonymizer.process, for one value."""
    return blake2b(str(value).encode(), digest_size=64, key=key).hexdigest()


def test_columns_to_anonymize_are_keyed_blake2b(tmp_path: Path) -> None:
    key = bytes(range(64))
    plain = aioflow.read_frame(CAPTURE)
    masked = aioflow.read_frame(CAPTURE, columns_to_anonymize=("src_ip", "dst_port"), anonymize_key=key)
    assert list(masked.columns) == list(plain.columns)
    assert list(masked.src_ip) == [nfstream_digest(v, key) for v in plain.src_ip]
    assert list(masked.dst_port) == [nfstream_digest(v, key) for v in plain.dst_port]
    assert list(masked.dst_ip) == list(plain.dst_ip)
    # without a key: a random one per call
    a = aioflow.read_frame(CAPTURE, columns_to_anonymize=("src_ip",))
    b = aioflow.read_frame(CAPTURE, columns_to_anonymize=("src_ip",))
    assert set(a.src_ip).isdisjoint(b.src_ip) and set(a.src_ip).isdisjoint(masked.src_ip)
    # to_csv writes the same rows
    out = tmp_path / "flows.csv"
    n = aioflow.to_csv(CAPTURE, out, columns_to_anonymize=("src_ip", "dst_port"), anonymize_key=key)
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert n == len(rows) == len(plain)
    assert [r["src_ip"] for r in rows] == list(masked.src_ip)
    assert list(rows[0]) == list(plain.columns)
    with pytest.raises(aioflow.ConfigError, match="no column nope"):
        aioflow.read_frame(CAPTURE, columns_to_anonymize=("nope",))
