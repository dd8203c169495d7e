"""conn.log's tunnel_parents (aioflow._zeek.tunnel_uid) against Zeek's baselines, read with
decode_tunnels=True. Zeek's uids are random, so the test is by structure: for every baseline row
matched to aioflow's by 5-tuple, tunnel_parents is set exactly when Zeek's is, and two rows share
a parent in aioflow exactly when they share one in Zeek (the same partition of inner connections
into tunnels).

Rules for the rows not compared, each checked:
- OUTER: a UDP tunnel's outer connection (VXLAN, Geneve, GTP-U, Teredo: a row whose uid is another
  row's parent). aioflow counts each packet in exactly one flow (conservation), so a decapsulated
  packet is counted in its inner flow and the tunnel has no outer flow; aioflow has a flow for that
  5-tuple only with the packets it did not open (a tunnel it does not decode there), whose
  tunnel_parents is unset, as Zeek's outer row's is. Such an unopened tunnel's uid is left out of
  Zeek's parent sets (UNOPENED below).
- UNOPENED: inner connections of tunnels aioflow does not decapsulate (AYIYA; Teredo through a
  relay on a port other than 3544, which Zeek finds by its analyzer on any port): aioflow has no
  flow with their 5-tuple, and every tunnel Zeek names for them is one aioflow left unopened
  (their packets stay in the outer flow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.corpus import DATA
from test_zeek_conn import BASELINES, CASES, _cli, capture_of, key, our_rows, zeek_rows

TUNNEL_CASES = [b for b in CASES if any(r.get("tunnel_parents", "-") != "-" for r in zeek_rows(BASELINES / b))]


def parents(row: dict[str, str]) -> frozenset[str]:
    value = row.get("tunnel_parents", "-")
    return frozenset() if value in ("-", "(empty)") else frozenset(value.split(","))


@pytest.mark.parametrize("baseline", TUNNEL_CASES or ["absent"])
def test_tunnel_parents_partition_as_zeek(baseline: str) -> None:
    if not TUNNEL_CASES:
        pytest.skip(f"no Zeek baseline with tunnel_parents in {BASELINES}")
    theirs = zeek_rows(BASELINES / baseline)
    ours = our_rows(capture_of(baseline), decode_tunnels=True)
    outer = {r["uid"]: r for r in theirs if any(r["uid"] in parents(z) for z in theirs)}
    for row in outer.values():  # OUTER
        assert all(parents(o) == frozenset() for o in ours if key(o) == key(row)), row
    unopened = {u for u, r in outer.items() if any(key(o) == key(r) for o in ours)}
    matched: list[tuple[frozenset[str], frozenset[str]]] = []  # (Zeek's opened parents, ours)
    for z in theirs:
        if z["uid"] in outer:
            continue
        mine = [o for o in ours if key(o) == key(z)]
        want = parents(z) - unopened
        if not mine:  # UNOPENED
            assert parents(z) and not want, z  # every tunnel it came through stayed unopened
            continue
        for o in mine:
            # one tunnel per flow: aioflow keys a flow on its tunnel, Zeek gathers every packet's
            assert bool(parents(o)) == bool(want) and len(parents(o)) <= 1, (z, o)
            matched.append((want, parents(o)))
    for i, (want_a, got_a) in enumerate(matched):
        for want_b, got_b in matched[i + 1 :]:
            assert bool(want_a & want_b) == bool(got_a & got_b), (want_a, got_a, want_b, got_b)
    # an inner connection compared, unless aioflow opens none of the capture's tunnels (AYIYA)
    assert any(got for _, got in matched) or all(parents(z) <= unopened for z in theirs)


def test_nested_tunnels_name_the_innermost(tmp_path: Path) -> None:
    """GRE in GRE: Zeek names one parent per row, the innermost tunnel, the same for every
    connection in it; so does aioflow (its tunnel_id hashes the whole path)."""
    baseline = "zeek_tunnels_gre-within-gre.pcap.conn.log"
    if not (BASELINES / baseline).is_file():
        pytest.skip(f"{baseline} absent")
    theirs = zeek_rows(BASELINES / baseline)
    ours = our_rows(capture_of(baseline), decode_tunnels=True)
    assert len({parents(z) for z in theirs}) == 1 and all(len(parents(z)) == 1 for z in theirs)
    assert sorted(key(o) for o in ours) == sorted(key(z) for z in theirs)
    assert len({parents(o) for o in ours}) == 1 and all(len(parents(o)) == 1 for o in ours)
    assert all(p.startswith("C") and p[1:].isalnum() for p in parents(ours[0]))


def test_cli_writes_tunnel_parents(tmp_path: Path) -> None:
    """`--format zeek --decode-tunnels`: the set column as Zeek's ASCII writer writes a set; the
    JSON writer: a list. Without --decode-tunnels the tunnel is not opened: no parent."""
    capture = DATA / "zeek_tunnels_vxlan-encapsulated-http.pcap"
    (tmp_path / "conn.log").write_text(_cli(str(capture), "--format", "zeek", "--decode-tunnels"))
    rows = zeek_rows(tmp_path / "conn.log")
    assert [(r["id.resp_p"], len(parents(r))) for r in rows] == [("80", 1)]
    text = _cli(str(capture), "--format", "zeek-json", "--decode-tunnels")
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["tunnel_parents"] for r in records] == [sorted(parents(rows[0]))]
    (tmp_path / "plain.log").write_text(_cli(str(capture), "--format", "zeek"))
    assert [(r["id.resp_p"], r["tunnel_parents"]) for r in zeek_rows(tmp_path / "plain.log")] == [("4789", "-")]
