"""aioflow's TCP/UDP flows against tshark's conversation table, capture by capture.

tshark has no flow timeouts, so aioflow runs with its timeouts out of the way; its flows are summed
per (protocol, unordered endpoints) like tshark's table (which ignores VLAN ids and sums the TCP
streams of a reused 5-tuple). Captures where tshark defines conversations differently (tunnels it
decodes, fragments it reassembles, files it cannot read) are listed with a reason in
reference.EXCLUDED / EXCLUDED_CONVERSATIONS; the tests below also check that list stays honest.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import subprocess
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import reference

import aioflow

CORPUS = Path(os.environ.get("AIOFLOW_PCAPS") or Path(__file__).resolve().parents[2] / "shared" / "pcaps")
ABSENT = f"capture corpus absent: {CORPUS} not found (set AIOFLOW_PCAPS to the shared pcaps folder)"
NO_TSHARK = "tshark is not installed (apt install tshark): the comparison needs it"

Convs = dict[tuple[str, frozenset[str]], int]


def _rel(p: Path) -> str:
    return p.relative_to(CORPUS).as_posix()


ALL = list(reference.iter_corpus(CORPUS)) if CORPUS.is_dir() else []
COMPARED = [p for p in ALL if _rel(p) not in reference.EXCLUDED]


def _params(paths: list[Path]) -> list[object]:
    return [pytest.param(p, id=_rel(p)) for p in paths] or [pytest.param(None, id="corpus-absent")]


@functools.cache
def tshark_version() -> str:
    assert reference.TSHARK is not None
    return subprocess.run([reference.TSHARK, "-v"], capture_output=True, text=True).stdout.split("\n")[0]


def _tshark_cached(path: Path, cache: pytest.Cache, version: str) -> Convs:
    # tshark's table depends only on the file and tshark's version: keep it across runs (keyed by
    # both), since starting tshark per capture dominates the suite's time.
    key = f"aioflow/tshark-conv/{hashlib.sha256(path.read_bytes()).hexdigest()}-{version}"
    hit = cache.get(key, None)
    if hit is not None:
        return {(proto, frozenset(ends)): n for proto, ends, n in hit}
    convs = reference.tshark_conversations(path)
    cache.set(key, [[proto, sorted(ends), n] for (proto, ends), n in convs.items()])
    return convs


@pytest.fixture(scope="module")
def tshark_pool(request: pytest.FixtureRequest) -> dict[Path, Future[Convs]]:
    """tshark runs for the selected captures, two at a time, started before the first test needs one."""
    if reference.TSHARK is None:
        pytest.skip(NO_TSHARK)
    version = tshark_version()
    wanted: list[Path] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is not request.module or callspec is None:
            continue
        p = callspec.params.get("path") or (CORPUS / callspec.params["rel"] if "rel" in callspec.params else None)
        if isinstance(p, Path) and p.is_file() and p not in wanted:
            wanted.append(p)
    pool = ThreadPoolExecutor(max_workers=2)
    request.addfinalizer(lambda: pool.shutdown(cancel_futures=True))
    return {p: pool.submit(_tshark_cached, p, request.config.cache, version) for p in wanted}


def _aioflow_conversations(path: Path) -> Convs:
    convs: Counter[tuple[str, frozenset[str]]] = Counter()
    for f in aioflow.read(path, idle_timeout=1e9, active_timeout=1e9, fin_timeout=1e9):
        if f.protocol in (6, 17):
            ends = frozenset({f"{ipaddress.ip_address(f.src_ip)}:{f.src_port}",
                              f"{ipaddress.ip_address(f.dst_ip)}:{f.dst_port}"})
            convs[("tcp" if f.protocol == 6 else "udp", ends)] += f.packets
    return dict(convs)


def _diff(got: Convs, want: Convs, got_name: str) -> str:
    lines = []
    for k in sorted(set(got) | set(want), key=lambda k: (k[0], sorted(k[1]))):
        if got.get(k) != want.get(k):
            lines.append(f"  {k[0]} {' <-> '.join(sorted(k[1]))}: {got_name} {got.get(k)}, tshark {want.get(k)}")
    return f"{len(lines)} conversation(s) differ:\n" + "\n".join(lines[:20])


@pytest.mark.corpus
@pytest.mark.parametrize("who", ["aioflow", "reference"])
@pytest.mark.parametrize("path", _params(COMPARED))
def test_conversations_match_tshark(path: Path | None, who: str, tshark_pool: dict[Path, Future[Convs]]) -> None:
    """aioflow, and the test-side reference itself, agree with tshark where both define flows alike."""
    if path is None:
        pytest.skip(ABSENT)
    rel = _rel(path)
    want = reference.comparable(rel, tshark_pool[path].result())
    if who == "aioflow":
        convs = _aioflow_conversations(path)
    else:
        convs = reference.reference_conversations(reference.reference_flows(path))
    got = reference.comparable(rel, convs)
    assert got == want, f"{rel}: {who} vs tshark, " + _diff(got, want, who)


@pytest.mark.corpus
def test_exclusions_name_existing_captures() -> None:
    if not ALL:
        pytest.skip(ABSENT)
    names = {_rel(p) for p in ALL}
    missing = sorted((set(reference.EXCLUDED) | set(reference.EXCLUDED_CONVERSATIONS)) - names)
    assert not missing, f"exclusions name captures that are not in {CORPUS}: {missing}"
    both = sorted(set(reference.EXCLUDED) & set(reference.EXCLUDED_CONVERSATIONS))
    assert not both, f"captures excluded whole and by conversation: {both}"
    assert all(reason.strip() for reason in reference.EXCLUDED.values())
    assert all(r.strip() for convs in reference.EXCLUDED_CONVERSATIONS.values() for r in convs.values())


@pytest.mark.corpus
@pytest.mark.parametrize("rel", sorted(reference.EXCLUDED_CONVERSATIONS))
def test_excluded_conversations_do_differ(rel: str, tshark_pool: dict[Path, Future[Convs]]) -> None:
    """Each excluded conversation really is one tshark counts differently (no stale exclusions)."""
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(ABSENT)
    want = tshark_pool[path].result()
    got = reference.reference_conversations(reference.reference_flows(path))
    for key, reason in reference.EXCLUDED_CONVERSATIONS[rel].items():
        assert got.get(key) != want.get(key), f"{rel}: {sorted(key[1])} agrees with tshark; drop '{reason}'"


@pytest.mark.corpus
@pytest.mark.parametrize("rel", sorted(reference.EXCLUDED))
def test_excluded_captures_do_differ(rel: str, tshark_pool: dict[Path, Future[Convs]]) -> None:
    """Each wholly excluded capture is one tshark cannot read or counts differently."""
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(ABSENT)
    reason = reference.EXCLUDED[rel]
    try:
        want = tshark_pool[path].result()
    except RuntimeError as exc:
        # tshark cannot read it: the stated reason must say so.
        assert "tshark refuses" in reason or "neither tshark" in reason, f"{rel}: {exc} but reason is '{reason}'"
        return
    try:
        got = reference.reference_conversations(reference.reference_flows(path))
    except reference.CaptureRefused as exc:
        raise AssertionError(f"{rel}: tshark reads it but the reference refuses it: {exc}") from exc
    assert got != want, f"{rel} agrees with tshark; drop its exclusion ('{reason}')"
