"""Packaging: `python -m build` makes an sdist and a wheel, the sdist carries what its tests need,
and a clean venv that installs the wheel reads the bundled capture as tshark does.

The wheel is built from the sdist (build's default), so a file the sdist forgets that the build
needs fails here too. Building compiles the C core once (a few seconds); installing the wheel into a
fresh venv fetches its dependencies (cffi, anyio, numpy) through pip's usual index or cache.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from support import reference

import aioflow

pytest.importorskip("build", reason="python -m build is not installed (pip install build, or the dev extra)")
from packaging.requirements import Requirement  # build depends on packaging

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "examples" / "data" / "ndpi_telegram_videocall.pcapng"
# The sdist carries every source file under these directories, and these single files.
SDIST_DIRS = ("aioflow", "tests", "examples", "docs")
SDIST_FILES = ("LICENSE", "README.md", "Makefile", "pyproject.toml", "setup.py", "benchmarks/make_capture.py")


def _manifest_packets() -> int:
    """The bundled capture's packet count, as examples/data/MANIFEST.tsv records it (with its sha256)."""
    with (CAPTURE.parent / "MANIFEST.tsv").open(newline="") as fh:
        rows = {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
    return int(rows[CAPTURE.name]["packets"])


def _clean_env() -> dict[str, str]:
    # Nothing may lead the installed copy back to this checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _can_build_without_isolation() -> bool:
    """--no-isolation (offline, no fresh setuptools download) when this venv meets build-system.requires."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for spec in map(Requirement, requires):
        try:
            if not spec.specifier.contains(importlib.metadata.version(spec.name), prereleases=True):
                return False
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


_NOT_SOURCES = ("*.egg-info", "__pycache__", "*.py[cod]", "*.so", "*.o", ".venv*", ".*_cache", "build", "dist", ".git")


def _source_files() -> list[str]:
    """The checkout's source files, relative: what git tracks or would track (ignored files such as
    .venv or generated benchmark captures left out), or the whole tree outside a git checkout."""
    if (ROOT / ".git").exists() and shutil.which("git") is not None:
        proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return [name for name in proc.stdout.split("\0") if (ROOT / name).is_file()]  # not deleted-uncommitted
    skip = shutil.ignore_patterns(*_NOT_SOURCES)
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(set(dirs) - skip(top, dirs))
        found += [Path(top, f).relative_to(ROOT).as_posix() for f in sorted(set(files) - skip(top, files))]
    return found


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built from a copy of this checkout's sources. Not in place: setuptools merges
    an existing aioflow_pcap.egg-info/SOURCES.txt (`pip install -e` leaves one) into the sdist, which
    would hide a file MANIFEST.in forgets."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    # Neither --sdist nor --wheel: build makes the sdist, then the wheel from the unpacked sdist.
    cmd = [sys.executable, "-m", "build", "--outdir", str(out), str(src)]
    if _can_build_without_isolation():
        cmd.insert(3, "--no-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_sdist_carries_sources_tests_and_data(dist: tuple[Path, Path]) -> None:
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        top = sdist.name.removesuffix(".tar.gz")
        names = {m.name.removeprefix(f"{top}/") for m in tar.getmembers() if m.isfile()}
    assert top == f"aioflow_pcap-{aioflow.__version__}"
    must = {*SDIST_FILES, "aioflow/_native.c", "aioflow/_csrc/api.h", "aioflow/include/aioflow_meter.h",
            "tests/data/MANIFEST.tsv",
            "tests/test_packaging.py", f"examples/data/{CAPTURE.name}"}  # fmt: skip
    must |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "aioflow" / "_csrc").glob("*.[ch]")}
    must |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "data").rglob("*.pcap*")}
    must |= {name for name in _source_files() if name.startswith(tuple(f"{d}/" for d in SDIST_DIRS))}
    assert sorted(must - names) == []
    assert [n for n in names if n.endswith((".so", ".o", ".pyc"))] == []


def test_wheel_holds_the_extension_and_licence(dist: tuple[Path, Path]) -> None:
    _, wheel = dist
    assert wheel.name.startswith(f"aioflow_pcap-{aioflow.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"aioflow_pcap-{aioflow.__version__}.dist-info/METADATA").decode()
    assert any(re.fullmatch(r"aioflow/_native\..*so", n) for n in names), sorted(names)
    # Every module, subpackages included: the package list is found, not written out.
    modules = {n for n in _source_files() if n.startswith("aioflow/") and n.endswith((".py", ".pyi"))}
    assert sorted(modules - names) == []
    assert {"aioflow/py.typed", "aioflow/_version.py", "aioflow/include/aioflow_meter.h",  # the meter ABI header
            f"aioflow_pcap-{aioflow.__version__}.dist-info/licenses/LICENSE"} <= names  # fmt: skip
    assert f"\nVersion: {aioflow.__version__}\n" in metadata
    assert "\nLicense-Expression: BSD-3-Clause\n" in metadata


def _tshark_tcp_udp_conversations() -> int:
    """tshark's TCP and UDP conversations (stream indexes), without packets quoted in ICMP errors."""
    cmd = ["tshark", "-n", "-r", str(CAPTURE), "-Y", "(tcp || udp) && !icmp && !icmpv6", "-T", "fields",
           "-e", "tcp.stream", "-e", "udp.stream"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return len({tuple(line.split("\t")) for line in out.splitlines()})


_FLOW_COLUMNS = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol",
                 "src2dst_packets", "dst2src_packets", "src2dst_bytes", "dst2src_bytes")  # fmt: skip


def _reference_rows() -> Counter[tuple[str, ...]]:
    """The bundled capture's flows by the independent dpkt decoder (support.reference), as CSV cells."""
    return Counter(tuple(str(getattr(f, c)) for c in _FLOW_COLUMNS) for f in reference.reference_flows(CAPTURE).flows)


def test_clean_venv_runs_the_wheel(dist: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = dist
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # clean: no system site-packages, nothing of this checkout
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "aioflow"
    env = _clean_env()
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], env=env, check=True, cwd=tmp_path)

    # From tmp_path, so the checkout is not on sys.path: the import finds the installed copy.
    probe = "import aioflow, aioflow._native; print(aioflow.__file__); print(aioflow.__version__)"
    where, version = subprocess.run([str(python), "-c", probe], env=env, cwd=tmp_path, capture_output=True,
                                    text=True, check=True).stdout.split()  # fmt: skip
    assert Path(where).is_relative_to(env_dir) and version == aioflow.__version__

    proc = subprocess.run([str(cli), "flows", str(CAPTURE), "--format", "csv", "--no-progress"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    summary = re.search(r"(\d+) packets, (\d+) flows .*?(?:(\d+) packets counted aside|$)", proc.stderr)
    assert summary, proc.stderr
    packets, flows, aside = (int(g or 0) for g in summary.groups())
    assert packets == _manifest_packets()
    assert flows == len(rows)
    assert sum(int(r["packets"]) for r in rows) + aside == packets
    # each flow, its direction and counts, as the independent decoder finds them (needs no tshark)
    assert Counter(tuple(r[c] for c in _FLOW_COLUMNS) for r in rows) == _reference_rows()
    if shutil.which("tshark") is not None:
        assert sum(r["protocol"] in ("6", "17") for r in rows) == _tshark_tcp_udp_conversations()

    # And it prints what this checkout's own build prints.
    here = subprocess.run([sys.executable, "-m", "aioflow", "flows", str(CAPTURE), "--format", "csv",
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert proc.stdout == here.stdout
