"""nfstream, from PyPI, in a venv of its own (build/nfstream-venv, made on first use): its numpy,
pandas and psutil stay out of aioflow's venv, as in benchmarks/run.py. Tests run a script there and
read its JSON; they skip with the reason when nfstream cannot be installed (no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .corpus import ROOT

VENV = ROOT / "build" / "nfstream-venv"
SPEC = "nfstream"


def nfstream_python() -> Path:
    """The venv's python with nfstream importable; pytest.skip when it cannot be made."""
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import nfstream"]
    if py.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return py
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", SPEC], capture_output=True, text=True, check=False)
    if pip.returncode != 0 or subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        pytest.skip(f"nfstream could not be installed into {VENV}: {pip.stderr.strip()[-300:]}")
    return py


def nfstream_flows(path: Path, **options: Any) -> list[dict[str, Any]]:
    """Every flow nfstream's NFStreamer(source=path, **options) gives, as its dicts (n_dissections
    0 unless given: no nDPI, its flows only)."""
    options.setdefault("n_dissections", 0)
    script = (
        "import json, sys, nfstream\n"
        "opts = json.loads(sys.argv[2])\n"
        "for f in nfstream.NFStreamer(source=sys.argv[1], **opts):\n"
        "    print(json.dumps(dict(zip(f.keys(), f.values()))))\n"
    )
    proc = subprocess.run([str(nfstream_python()), "-c", script, str(path), json.dumps(options)],
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]
