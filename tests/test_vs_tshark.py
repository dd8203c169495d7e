"""aioflow's TCP/UDP flows against tshark's conversation table, capture by capture.

tshark has no flow timeouts, so aioflow runs with its timeouts out of the way; its flows are summed
per (protocol, unordered endpoints) like tshark's table (which ignores VLAN ids and sums the TCP
streams of a reused 5-tuple). Captures where tshark defines conversations differently (tunnels it
decodes, fragments it reassembles, files it cannot read) are listed with a reason in
reference.EXCLUDED / EXCLUDED_CONVERSATIONS; the tests below also check that list stays honest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import reference
from support.compare import aioflow_conversations, diff
from support.corpus import ABSENT, CORPUS, name_of, params
from support.reference import ReferenceFlows
from support.tshark import TShark

ALL = list(reference.iter_corpus(CORPUS)) if CORPUS.is_dir() else []
COMPARED = [p for p in ALL if name_of(p) not in reference.EXCLUDED]


@pytest.fixture(scope="module")
def tshark_ahead(request: pytest.FixtureRequest, tshark: TShark) -> TShark:
    """tshark, its runs for this module's selected captures started before the first test needs one."""
    wanted: list[Path] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is not request.module or callspec is None:
            continue
        p = callspec.params.get("path") or (CORPUS / callspec.params["rel"] if "rel" in callspec.params else None)
        if isinstance(p, Path) and p.is_file() and p not in wanted:
            wanted.append(p)
    tshark.prefetch_conversations(wanted)
    return tshark


@pytest.mark.corpus
@pytest.mark.parametrize("who", ["aioflow", "reference"])
@pytest.mark.parametrize("path", params(COMPARED))
def test_conversations_match_tshark(
    path: Path | None, who: str, tshark_ahead: TShark, reference_flows: ReferenceFlows
) -> None:
    """aioflow, and the test-side reference itself, agree with tshark where both define flows alike."""
    if path is None:
        pytest.skip(ABSENT)
    rel = name_of(path)
    want = reference.comparable(rel, tshark_ahead.conversations(path))
    if who == "aioflow":
        convs = aioflow_conversations(path)
    else:
        convs = reference.reference_conversations(reference_flows(path))
    got = reference.comparable(rel, convs)
    assert got == want, f"{rel}: {who} vs tshark, " + diff(got, want, who)


@pytest.mark.corpus
def test_exclusions_name_existing_captures() -> None:
    if not ALL:
        pytest.skip(ABSENT)
    names = {name_of(p) for p in ALL}
    missing = sorted((set(reference.EXCLUDED) | set(reference.EXCLUDED_CONVERSATIONS)) - names)
    assert not missing, f"exclusions name captures that are not in {CORPUS}: {missing}"
    both = sorted(set(reference.EXCLUDED) & set(reference.EXCLUDED_CONVERSATIONS))
    assert not both, f"captures excluded whole and by conversation: {both}"
    assert all(reason.strip() for reason in reference.EXCLUDED.values())
    assert all(r.strip() for convs in reference.EXCLUDED_CONVERSATIONS.values() for r in convs.values())


@pytest.mark.corpus
@pytest.mark.parametrize("rel", sorted(reference.EXCLUDED_CONVERSATIONS))
def test_excluded_conversations_do_differ(rel: str, tshark_ahead: TShark, reference_flows: ReferenceFlows) -> None:
    """Each excluded conversation really is one tshark counts differently (no stale exclusions)."""
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(ABSENT)
    want = tshark_ahead.conversations(path)
    got = reference.reference_conversations(reference_flows(path))
    for key, reason in reference.EXCLUDED_CONVERSATIONS[rel].items():
        assert got.get(key) != want.get(key), f"{rel}: {sorted(key[1])} agrees with tshark; drop '{reason}'"


@pytest.mark.corpus
@pytest.mark.parametrize("rel", sorted(reference.EXCLUDED))
def test_excluded_captures_do_differ(rel: str, tshark_ahead: TShark, reference_flows: ReferenceFlows) -> None:
    """Each wholly excluded capture is one tshark cannot read or counts differently."""
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(ABSENT)
    reason = reference.EXCLUDED[rel]
    try:
        want = tshark_ahead.conversations(path)
    except RuntimeError as exc:
        # tshark cannot read it: the stated reason must say so.
        assert "tshark refuses" in reason or "neither tshark" in reason, f"{rel}: {exc} but reason is '{reason}'"
        return
    try:
        got = reference.reference_conversations(reference_flows(path))
    except reference.CaptureRefused as exc:
        raise AssertionError(f"{rel}: tshark reads it but the reference refuses it: {exc}") from exc
    assert got != want, f"{rel} agrees with tshark; drop its exclusion ('{reason}')"
