"""Where the captures are: the shared corpus (../shared/pcaps beside the repo, or $AIOFLOW_PCAPS)
and the small bundled ones (tests/data, examples/data). Tests over the corpus are parametrised at
collection time from these lists and skip with ABSENT when the corpus is not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("AIOFLOW_PCAPS") or ROOT.parent / "shared" / "pcaps")
ABSENT = f"capture corpus absent: {CORPUS} not found (set AIOFLOW_PCAPS to the shared pcaps folder)"
DATA = ROOT / "tests" / "data"
BUNDLED = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"


def name_of(path: Path) -> str:
    """A corpus capture's name relative to the corpus (the test id and the key of exclusion lists)."""
    return path.relative_to(CORPUS).as_posix()


def params(paths: list[Path]) -> list[object]:
    """One pytest parameter per corpus capture, or a single `None` one that the test skips when the
    corpus is absent (so the skip says why instead of collecting nothing)."""
    return [pytest.param(p, id=name_of(p)) for p in paths] or [pytest.param(None, id="corpus-absent")]
