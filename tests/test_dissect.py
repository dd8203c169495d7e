"""dissect=True (application detection with nDPI) against ndpiReader, the same nDPI's own reader,
and the bounds of the dissection (budget per flow, pool of nDPI states, text fields)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from support.ndpi_ref import NDPI_READER, Key, flow_key, ndpi_reader_flows

import aioflow
from aioflow._engine import METERS, dissect_unavailable

DATA = Path(__file__).parent / "data"
# captures of tests/data that come from nDPI's own test suite
CORE = ["ndpi_smtp-starttls.pcap", "ndpi_mysql.pcapng", "ndpi_ocs.pcap", "ndpi_syslog.pcap",
        "ndpi_log4j-webapp-exploit.pcap"]  # fmt: skip

pytestmark = pytest.mark.skipif(bool(dissect_unavailable()), reason=dissect_unavailable() or "")
needs_reader = pytest.mark.skipif(NDPI_READER is None, reason="ndpiReader is not installed (apt install libndpi-bin)")


def _ours(capture: Path, **options: Any) -> dict[Key, list[tuple[str, str]]]:
    flows: dict[Key, list[tuple[str, str]]] = defaultdict(list)
    for f in aioflow.read(capture, dissect=True, **options):
        d = f.meter("dissect")
        key = flow_key(f.protocol, f.src_ip, f.src_port, f.dst_ip, f.dst_port)
        assert key is not None
        flows[key].append((str(d["application_name"]), str(d["requested_server_name"])))
    return flows


def _compare(captures: list[Path]) -> tuple[int, list[str], dict[str, list[str]]]:
    """Flows both tools report once with the same 5-tuple: how many; those whose application or
    server name differ, by cause; and the unexplained ones."""
    same = 0
    total = 0
    explained: dict[str, list[str]] = defaultdict(list)
    unexplained: list[str] = []
    for capture in captures:
        reference = ndpi_reader_flows(capture)
        ours = _ours(capture)
        for key in reference.keys() & ours.keys():
            if len(reference[key]) != 1 or len(ours[key]) != 1:
                # one tool split the 5-tuple into several flows (idle timeout, FIN then reuse): no pairing
                explained["flow splitting"].append(f"{capture.name} {key}")
                continue
            total += 1
            theirs = (reference[key][0]["ndpi_proto"], reference[key][0]["server_name_sni"])
            mine = ours[key][0]
            if theirs == mine:
                same += 1
            elif theirs[0] == mine[0] == "SSH" and theirs[1].startswith("SSH-") and not mine[1]:
                # ndpiReader's CSV writes the SSH client's banner in its server-name column; nDPI
                # has no server name for SSH (aioflow's requested_server_name is nfstream's: empty)
                explained["ndpiReader: SSH banner as server name"].append(f"{capture.name} {key}")
            else:
                unexplained.append(f"{capture.name} {key}: ndpiReader {theirs}, aioflow {mine}")
    assert total, "no flow in common: the comparison compared nothing"
    return same * 100 // total if total else 0, unexplained, explained


@needs_reader
def test_core_captures_agree_with_ndpi_reader() -> None:
    percent, unexplained, explained = _compare([DATA / name for name in CORE])
    assert not unexplained, unexplained
    assert percent == 100, explained


@needs_reader
def test_corpus_agrees_with_ndpi_reader(corpus: Path) -> None:
    """>= 98% of the flows both report with the same 5-tuple: same application and server name;
    every other difference has a cause named here."""
    captures = sorted(p for p in corpus.glob("*.pcap*") if p.is_file())
    percent, unexplained, explained = _compare(captures)
    assert not unexplained, "\n".join(unexplained)
    assert percent >= 98, {cause: len(flows) for cause, flows in explained.items()}


@needs_reader
def test_split_records_carry_the_result_and_eviction_keeps_results() -> None:
    """A result is stored when its flow's dissection ends and given back when the flow ends: every
    record of an active-timeout split carries ndpiReader's application and server name; and with a
    table of two flows (evictions give slots and results back, new flows take them again) no
    dissected flow is left without its result (an empty application_name)."""
    split = 0
    for name in ("ndpi_ocs.pcap", "ndpi_log4j-webapp-exploit.pcap"):
        reference = ndpi_reader_flows(DATA / name)
        ours = _ours(DATA / name, active_timeout=5.0)
        for key, records in ours.items():
            if len(reference.get(key, [])) == 1:
                split += len(records) > 1
                theirs = (reference[key][0]["ndpi_proto"], reference[key][0]["server_name_sni"])
                assert records == [theirs] * len(records), (name, key)
    assert split >= 3, "no flow was split: the test checked no split record"

    async def run() -> tuple[list[str], aioflow.ParserInfo]:
        async with aioflow.FlowParser(DATA / "ndpi_ocs.pcap", dissect=True, max_flows=2) as parser:
            names = [str(f.meter("dissect")["application_name"]) async for f in parser.terminated()]
            return names, parser.info()

    import anyio

    names, info = anyio.run(run)
    assert info.dissection["dissect_pool_full"] == 0
    assert len(names) > len(aioflow.read_frame(DATA / "ndpi_ocs.pcap")), "no eviction"
    assert "" not in names


def test_fields_have_nfstream_names_and_text_decodes() -> None:
    frame = aioflow.read_frame(DATA / "ndpi_smtp-starttls.pcap", dissect=True)
    for name in ("application_name", "application_category_name", "requested_server_name", "client_fingerprint",
                 "server_fingerprint", "master_protocol", "app_protocol", "application_is_guessed"):  # fmt: skip
        assert name in frame.columns
    assert all(isinstance(v, str) for v in frame["application_name"])
    assert (frame["application_name"] != "").all()
    assert {f.ctype for f in METERS["dissect"].fields} >= {"char[48]", "uint16_t"}


def test_budget_gives_up_and_says_so() -> None:
    """max_dissections=1: a TLS flow's first packet (a SYN) tells nDPI nothing, so it gives up
    guessing; every dissection that started ended, and its nDPI state went back to the pool."""
    capture = DATA / "ndpi_smtp-starttls.pcap"

    async def run() -> tuple[list[dict[str, Any]], aioflow.ParserInfo]:
        async with aioflow.FlowParser(capture, dissect=True, max_dissections=1) as parser:
            flows = [dict(f.meter("dissect")) async for f in parser.terminated()]
            return flows, parser.info()

    import anyio

    flows, info = anyio.run(run)
    d = info.dissection
    assert d["dissect_flows"] == d["dissect_detected"] + d["dissect_gave_up"] > 0
    assert d["dissect_gave_up"] > 0 and d["dissect_in_flight"] == 0
    assert sum(f["application_is_guessed"] for f in flows) > 0
    full = aioflow.read_frame(capture, dissect=True)
    assert (full["application_is_guessed"] == 0).sum() > sum(1 - f["application_is_guessed"] for f in flows) - 1


def test_pool_bounds_dissections_in_flight() -> None:
    """max_dissecting_flows=1 on a capture with flows at once: one nDPI state at most, the flows
    that found none counted (dissect_pool_full) and left without an application."""
    capture = DATA / "ndpi_ocs.pcap"

    async def run() -> tuple[int, aioflow.ParserInfo]:
        async with aioflow.FlowParser(capture, dissect=True, max_dissecting_flows=1) as parser:
            empty = 0
            async for f in parser.terminated():
                empty += f.meter("dissect")["application_name"] == ""
            return empty, parser.info()

    import anyio

    empty, info = anyio.run(run)
    d = info.dissection
    assert d["dissect_peak_in_flight"] == 1 and d["dissect_in_flight"] == 0
    assert d["dissect_pool_full"] > 0
    assert empty == d["dissect_pool_full"]
    assert d["dissect_state_bytes"] >= 512  # one nDPI flow state (4.2: 704 bytes), held only while dissecting


def test_off_by_default_and_bounds_checked() -> None:
    frame = aioflow.read_frame(DATA / "ndpi_ocs.pcap")
    assert "application_name" not in frame.columns
    with pytest.raises(aioflow.ConfigError, match="max_dissections"):
        aioflow.read_frame(DATA / "ndpi_ocs.pcap", dissect=True, max_dissections=0)


def test_unavailable_build_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioflow import _engine

    monkeypatch.setattr(_engine, "dissect_unavailable", lambda: "built without nDPI: install libndpi-dev")
    with pytest.raises(aioflow.DissectUnavailableError, match="libndpi-dev"):
        aioflow.FlowParser(DATA / "ndpi_ocs.pcap", dissect=True)


EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # nDPI's HASSH of a KEXINIT it did not see whole
OWN_FINGERPRINT = ("TLS", "QUIC", "SSH")  # protocols whose fingerprints nDPI keeps


def _tshark_fingerprints(tshark: str, capture: Path) -> dict[Key, tuple[set[str], set[str]]]:
    """tshark's JA3 + HASSH (client) and JA3S + HASSH server, by 5-tuple."""
    import subprocess

    fields = ["ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport",
              "tls.handshake.ja3", "ssh.kex.hassh", "tls.handshake.ja3s", "ssh.kex.hasshserver"]  # fmt: skip
    out = subprocess.run(
        [tshark, "-n", "-r", str(capture), "-Y", "tls.handshake.ja3 or tls.handshake.ja3s or ssh.kex.hassh or "
         "ssh.kex.hasshserver", "-T", "fields", "-E", "separator=|", *(x for f in fields for x in ("-e", f))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found: dict[Key, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for line in out.splitlines():
        f = line.split("|")
        sport, dport = f[2] or f[3], f[6] or f[7]
        if not sport or not dport:
            continue
        key = flow_key(6 if f[2] else 17, (f[0] or f[1]).split(",")[-1], int(sport.split(",")[0]),
                       (f[4] or f[5]).split(",")[-1], int(dport.split(",")[0]))  # fmt: skip
        if key is None:
            continue
        for side, columns in ((0, (8, 9)), (1, (10, 11))):
            found[key][side].update(v for c in columns for v in f[c].split(",") if v)
    return found


def test_fingerprints_agree_with_tshark(corpus: Path) -> None:
    """JA3/JA3S and HASSH against tshark's tls.handshake.ja3/ja3s and ssh.kex.hassh/hasshserver on
    every TLS/SSH flow of the corpus: every fingerprint aioflow gives is tshark's; the ones it
    lacks are nDPI 4.2's limits, each cause counted here."""
    from support.reference import TSHARK

    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    compared = equal = 0
    missing: dict[str, int] = defaultdict(int)
    wrong: list[str] = []
    for capture in sorted(p for p in corpus.glob("*.pcap*") if p.is_file()):
        reference = _tshark_fingerprints(TSHARK, capture)
        if not reference:
            continue
        for flow in aioflow.read(capture, dissect=True):
            key = flow_key(flow.protocol, flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port)
            if key not in reference:
                continue
            d = flow.meter("dissect")
            for side, name in enumerate(("client_fingerprint", "server_fingerprint")):
                expected = reference[key][side]
                if not expected:
                    continue
                compared += 1
                ours = str(d[name]).lower()  # nDPI writes HASSH in upper case
                if ours in expected:
                    equal += 1
                elif ours == EMPTY_MD5:
                    missing["SSH KEXINIT over several segments (nDPI does not reassemble)"] += 1
                elif ours:
                    wrong.append(f"{capture.name} {key} {name}: aioflow {ours}, tshark {expected}")
                elif flow.protocol == 17 and side == 1:
                    missing["QUIC server: nDPI 4.2 reads the client's Initial only"] += 1
                elif not str(d["tls_version"]) and str(d["application_name"]).split(".")[0] not in OWN_FINGERPRINT:
                    # STARTTLS, OpenVPN...: nDPI keeps the outer protocol and no TLS details
                    missing[f"TLS inside {d['application_name']}"] += 1
                else:
                    missing["handshake message past nDPI's dissection (max_dissections, split records)"] += 1
    assert not wrong, "\n".join(wrong)
    assert compared and equal * 100 // compared >= 90, dict(missing)


@needs_reader
def test_cli_flows_dissect_columns_match_ndpi_reader() -> None:
    """`aioflow flows --dissect`: the table's APP / SERVER NAME columns and the CSV's fields carry
    what ndpiReader finds for the same flows."""
    import csv
    import subprocess
    import sys

    capture = DATA / "ndpi_smtp-starttls.pcap"
    reference = ndpi_reader_flows(capture)
    run = [sys.executable, "-m", "aioflow", "flows", "--dissect", "--no-progress", str(capture)]
    table = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    assert "APP" in table[0] and "SERVER NAME" in table[0]
    rows = list(csv.DictReader(subprocess.run([*run, "--format", "csv"], capture_output=True, text=True,
                                              check=True).stdout.splitlines()))  # fmt: skip
    assert len(rows) == len(table) - 1 == len(reference)
    for row, line in zip(rows, table[1:], strict=True):
        key = flow_key(int(row["protocol"]), row["src_ip"], int(row["src_port"]), row["dst_ip"], int(row["dst_port"]))
        assert key is not None
        expected = [reference[key][0]["ndpi_proto"], reference[key][0]["server_name_sni"]]
        assert [row["application_name"], row["requested_server_name"]] == expected
        assert line.split()[-2:] == expected
