"""conn.log's `service` (aioflow._zeek.service: the dissect meter's nDPI protocols named as Zeek's
analyzers) against every baseline row of ../shared/zeek that has a service column.

A row's service is compared after these rules, each checked to apply where it is used:

- BARE: a baseline made in bare mode (`zeek -b`) loads only some protocol scripts (Zeek's own
  README of the baselines names them, copied to LOADED): a service whose analyzer was not loaded
  there is not expected in it, and is dropped from ours before comparing.
- NESTED: Zeek lists every analyzer that confirmed, including ones inside another's protocol
  (ssl inside QUIC, krb and gssapi inside LDAP's SASL bind); nDPI names one protocol (and its
  master): ours must then be a leading part of Zeek's list.
- TUNNEL: Zeek names a UDP tunnel's outer connection by the tunnel analyzer that decapsulated
  it (teredo, ayiya, gtpv1, vxlan, geneve), which nDPI's header match neither equals nor
  replaces: rows where either side names a tunnel are not compared (counted).
- VIOLATION: an HTTP request to an SSH server: Zeek's SSH analyzer reported a protocol
  violation, so Zeek logs no service; nDPI names what it saw (ssh, http).
- SPLIT: a 5-tuple Zeek logged several times (as in test_zeek_conn) is compared as the union of
  the services of its rows, in order."""

from __future__ import annotations

from collections import defaultdict

import pytest
from support.corpus import DATA
from test_zeek_conn import BASELINES, CASES, KEY, _cli, capture_of, key, zeek_rows

import aioflow
from aioflow import _zeek
from aioflow._engine import dissect_unavailable

pytestmark = pytest.mark.skipif(bool(dissect_unavailable()), reason=dissect_unavailable() or "")

TUNNELS = {"teredo", "ayiya", "gtpv1", "vxlan", "geneve"}
# BARE: the analyzers each bare-mode btest loads (its @loads; "tunnels" loads all of TUNNELS)
LOADED = {
    "zeek_communityid_sctp.pcap.conn.log": set(),
    "zeek_mixed-vlan-mpls.pcap.conn.log": {"http"},
    "zeek_ppp_quic-interop-retry.pcap.conn.log": set(),
    "zeek_tcp_missing-syn.pcap.conn.log": {"http"},
    "zeek_tunnels_Teredo.pcap.conn.log": TUNNELS | {"http", "dns", "dhcp"},
    "zeek_tunnels_ayiya3.pcap.conn.log": TUNNELS | {"http"},
    "zeek_tunnels_geneve-47101.pcap.conn.log": TUNNELS | {"ssl"},
    "zeek_tunnels_gre-sample.pcap.conn.log": TUNNELS | {"dns", "ssh", "ntp"},
    "zeek_tunnels_gre-within-gre.pcap.conn.log": set(TUNNELS),
    "zeek_tunnels_teredo_bubble_with_payload.pcap.conn.log": TUNNELS | {"http"},
    "zeek_tunnels_vxlan-encapsulated-http.pcap.conn.log": TUNNELS | {"http"},
}
VIOLATION = {"zeek_http_get-to-ssh-server.pcap.conn.log.cut"}
WITH_SERVICE = [b for b in CASES if "service" in zeek_rows(BASELINES / b)[0]] if CASES else []


def our_services(baseline: str) -> list[tuple[dict[str, str], str]]:
    flows = aioflow.read(capture_of(baseline), meters=_zeek.METERS, dissect=True, **_zeek.ZEEK_OPTIONS)
    out = []
    for f in flows:
        row = _zeek.conn_record(f)
        names = (row["service"] or "").split(",")
        if baseline in LOADED:  # BARE
            names = [n for n in names if n in LOADED[baseline]]
        out.append(({k: _zeek._tsv_value(row[k], "") for k in KEY}, ",".join(n for n in names if n) or "-"))
    return out


def services(text: str) -> list[str]:
    return [] if text == "-" else text.split(",")


def union(texts: list[str]) -> str:
    """The services of several rows, each once, in the order they first come."""
    return ",".join(dict.fromkeys(n for t in texts for n in services(t))) or "-"


@pytest.mark.parametrize("baseline", WITH_SERVICE or ["absent"])
def test_service_equals_zeek(baseline: str) -> None:
    if not WITH_SERVICE:
        pytest.skip(f"Zeek baselines absent: {BASELINES}")
    theirs = zeek_rows(BASELINES / baseline)
    ours = our_services(baseline)
    by = tuple(k for k in KEY if k in theirs[0])
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for row in theirs:
        groups[key(row, by)].append(row["service"])
    compared = tunnels = 0
    for k, want in groups.items():
        mine = [s for o, s in ours if key(o, by) == k]
        if not mine:
            continue  # an inner connection of a tunnel aioflow did not decapsulate (test_zeek_conn's TUNNEL)
        if len(mine) != len(want):  # SPLIT
            want, mine = [union(want)], [union(mine)]
        for z, o in zip(want, mine, strict=True):
            if TUNNELS & {*services(z), *services(o)}:  # TUNNEL
                tunnels += 1
                continue
            if baseline in VIOLATION:
                assert (z, o) == ("-", "ssh,http")
            else:  # equal, or NESTED: ours leads Zeek's list
                assert services(z)[: len(services(o))] == services(o) and (o != "-" or z == "-"), (k, z, o)
            compared += 1
    assert compared > 0 or tunnels > 0 or baseline.startswith("zeek_tunnels_gre")


def test_rules_apply_where_stated() -> None:
    """NESTED and TUNNEL rows exist (so the rules are needed), and every LOADED name is a
    baseline here; a service Zeek named is never missed by more than NESTED allows."""
    if not WITH_SERVICE:
        pytest.skip(f"Zeek baselines absent: {BASELINES}")
    assert set(LOADED) <= set(CASES) and VIOLATION <= set(CASES)
    named = {s for b in WITH_SERVICE for r in zeek_rows(BASELINES / b) for s in services(r["service"])}
    assert {"quic", "ssl", "ldap_tcp", "krb"} <= named and TUNNELS & named


def test_cli_zeek_with_dissect() -> None:
    """`aioflow flows --format zeek --dissect` fills service (Zeek's baseline row for this capture
    says http); without --dissect it stays unset."""
    capture = str(DATA / "zeek_tcp_missing-syn.pcap")
    (row,) = [line.split("\t") for line in _cli(capture, "--format", "zeek", "--dissect").splitlines()
              if not line.startswith("#")]  # fmt: skip
    assert row[_zeek.FIELDS.index("service")] == "http"
    (plain,) = [line for line in _cli(capture, "--format", "zeek-json").splitlines()]
    assert '"service"' not in plain
