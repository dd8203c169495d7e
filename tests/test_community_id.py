"""The community_id meter against the reference implementation (the `communityid` package, by the
spec's authors) on every flow of the corpus and of tests/data, and against the Community ID values
Zeek's own test suite commits for corpus captures (../shared/zeek).

For ICMP the hash needs the flow's first packet's type and code (echo flows are keyed by their
identifier): tshark gives them, by the flow's first packet time and addresses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.corpus import CORPUS, DATA, params

import aioflow

communityid = pytest.importorskip("communityid", reason="pip install communityid (a dev dependency)")

CAPTURES = sorted(p for p in DATA.glob("*.pcap*") if p.is_file())
CORPUS_CAPTURES = sorted(p for p in CORPUS.rglob("*.pcap*") if "malformed" not in p.parts) if CORPUS.is_dir() else []
SHARED_ZEEK = Path(__file__).resolve().parents[2] / "shared" / "zeek"
ZEEK = SHARED_ZEEK if SHARED_ZEEK.is_dir() else DATA / "zeek"
ICMP = (1, 58)
PORTED = (6, 17, 132)


def reference(flow: aioflow.Flow, seed: int = 0) -> str:
    """The package's Community ID of a non-ICMP flow, from the record's endpoints."""
    if flow.protocol in PORTED:
        t = communityid.FlowTuple(flow.protocol, flow.src_ip, flow.dst_ip, flow.src_port, flow.dst_port)
    else:
        t = communityid.FlowTuple(flow.protocol, flow.src_ip, flow.dst_ip)
    return str(communityid.CommunityID(seed).calc(t))


Packet = list[tuple[str, str, int, int]]


def icmp_first_packets(tshark: object, path: Path) -> dict[int, list[Packet]]:
    """tshark's ICMP/ICMPv6 packets by time (ns): (src, dst, type, code) for each IP header's
    addresses, outermost first (a tunnel's outer header, then the ICMP packet's own, then the
    header an error message quotes: the first pair with the flow's addresses is the packet's own)."""
    fields = ("frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "icmp.type", "icmp.code",
              "icmpv6.type", "icmpv6.code")  # fmt: skip
    args = ("-n", "-Y", "icmp || icmpv6", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|")
    out = tshark.output(path, *args, *(a for f in fields for a in ("-e", f)))  # type: ignore[attr-defined]
    got: dict[int, list[Packet]] = {}
    for line in out.splitlines():
        c = dict(zip(fields, (col.split("|") if col else [] for col in line.split("\t")), strict=True))
        whole, _, frac = c["frame.time_epoch"][0].partition(".")
        ts = int(whole) * 10**9 + int(frac.ljust(9, "0")[:9])
        kind = (c["icmp.type"] or c["icmpv6.type"])[0], (c["icmp.code"] or c["icmpv6.code"])[0]
        pairs = [*zip(c["ip.src"], c["ip.dst"], strict=True), *zip(c["ipv6.src"], c["ipv6.dst"], strict=True)]
        got.setdefault(ts, []).append([(src, dst, int(kind[0]), int(kind[1])) for src, dst in pairs])
    return got


def check_capture(path: Path, tshark: object) -> tuple[int, int]:
    """Every flow's community_id equals the reference's; returns (flows checked, ICMP flows among
    them). An ICMP flow whose first packet tshark does not show unambiguously fails the test."""
    flows = list(aioflow.read(path, meters=("community_id",)))
    checked = icmp = 0
    packets = icmp_first_packets(tshark, path) if any(f.protocol in ICMP for f in flows) else {}
    for f in flows:
        got = f.meter("community_id")["value"]
        if f.protocol in ICMP:
            ends = {f.src_ip, f.dst_ip}
            firsts = {
                next(h for h in headers if {h[0], h[1]} == ends)
                for headers in packets.get(f.first_seen_ns, [])
                if any({h[0], h[1]} == ends for h in headers)
            }
            assert len(firsts) == 1, f"{path.name}: ICMP flow {f.src_ip}->{f.dst_ip} at {f.first_seen_ns}: {firsts}"
            src, dst, mtype, code = firsts.pop()
            make = communityid.FlowTuple.make_icmp if f.protocol == 1 else communityid.FlowTuple.make_icmp6
            want = str(communityid.CommunityID().calc(make(src, dst, mtype, code)))
            icmp += 1
        else:
            want = reference(f)
        assert got == want, f"{path.name}: {f.protocol} {f.src_ip}:{f.src_port}->{f.dst_ip}:{f.dst_port}"
        checked += 1
    return checked, icmp


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_every_flow_of_tests_data(path: Path, tshark: object) -> None:
    checked, _ = check_capture(path, tshark)
    assert checked > 0


@pytest.mark.parametrize("path", params(CORPUS_CAPTURES))
def test_every_flow_of_the_corpus(path: Path | None, tshark: object) -> None:
    if path is None:
        pytest.skip("capture corpus absent")
    check_capture(path, tshark)


def test_icmp_flows_are_checked(tshark: object) -> None:
    """The ICMP path is exercised: echo (two-way, ordered) and one-way types, v4 and v6."""
    names = ("zeek_icmp_5-pings.pcap", "zeek_communityid_icmp6.pcap")
    total = sum(check_capture(DATA / name, tshark)[1] for name in names)
    assert total >= 10


def test_seed() -> None:
    path = DATA / "zeek_tcp_handshake-reorder.pcap"
    flows = list(aioflow.read(path, meters=("community_id",), community_id_seed=4711))
    assert flows and all(f.meter("community_id")["value"] == reference(f, 4711) for f in flows)
    unseeded = list(aioflow.read(path, meters=("community_id",)))
    assert [f.meter("community_id")["value"] for f in unseeded] != [f.meter("community_id")["value"] for f in flows]
    with pytest.raises(aioflow.ConfigError, match="community_id_seed"):
        list(aioflow.read(path, meters=("community_id",), community_id_seed=65536))


def test_frame_column() -> None:
    path = DATA / "zeek_pcapng-multi-interface.pcapng"
    frame = aioflow.read_frame(path, meters=("community_id",))
    flows = list(aioflow.read(path, meters=("community_id",)))
    assert list(frame["community_id_value"]) == [f.meter("community_id")["value"] for f in flows]
    assert all(v.startswith("1:") and len(v) == 30 for v in frame["community_id_value"])


# --- Zeek's committed values ---

ZEEK_OUT = re.compile(r"\[orig_h=([^,]+), orig_p=(\d+)/\w+, resp_h=([^,]+), resp_p=(\d+)/\w+, proto=(\d+).*\], (1:\S+)")


def zeek_values(name: str) -> set[str]:
    """Community IDs in a Zeek baseline: bifs.community_id.run-pcaps output, or a conn.log cut whose
    last column is community_id."""
    values = set()
    for line in (ZEEK / name).read_text().splitlines():
        if line.startswith("#"):
            continue
        m = ZEEK_OUT.match(line)
        values.add(m.group(6) if m else line.split("\t")[-1])
    return values


@pytest.mark.parametrize(
    ("capture", "baseline"),
    [
        ("zeek_communityid_icmp6.pcap", "zeek_communityid_icmp6.pcap.community_id.out"),
        ("zeek_communityid_sctp.pcap", "zeek_communityid_sctp.pcap.community_id.out"),
        ("zeek_tcp_handshake-reorder.pcap", "zeek_tcp_handshake-reorder.pcap.community_id.conn.log.cut"),
    ],
)
def test_zeek_baselines(capture: str, baseline: str) -> None:
    """The same set of values as Zeek's. Zeek keys ICMP by (addresses, type mapping) and so folds
    echo sessions with different identifiers into one connection where aioflow keeps one flow per
    identifier; both give each the same Community ID, so the sets are compared."""
    if not (ZEEK / baseline).is_file():
        pytest.skip(f"Zeek baselines absent: {ZEEK} not found")
    path = DATA / capture if (DATA / capture).is_file() else CORPUS / capture
    if not path.is_file():
        pytest.skip(f"{capture} is in neither tests/data nor the corpus")
    flows = list(aioflow.read(path, meters=("community_id",)))
    ours = {f.meter("community_id")["value"] for f in flows}
    if capture == "zeek_communityid_sctp.pcap":
        # Zeek does not parse SCTP ("unknown_transport", ports 0/0 in its conn_id) and so hashes
        # ports 0 and 0; the spec (and the reference package, which refuses SCTP without ports)
        # hashes SCTP's ports, as aioflow does. Proof: Zeek's value is the spec's with ports 0.
        assert ours == {reference(f) for f in flows}
        zero = communityid.CommunityID()
        ours = {str(zero.calc(communityid.FlowTuple(132, f.src_ip, f.dst_ip, 0, 0))) for f in flows}
    assert ours == zeek_values(baseline)
