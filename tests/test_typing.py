"""The public surface is typed: `mypy --strict` passes on the package, the examples, and every
```python snippet of the README (issue 12). mypy is in the dev extra, so `make test` runs this."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# README snippets are fragments: those with a top-level `await`/`async for` run inside this
# function, whose parameters stand for the names the README leaves to the reader.
FRAGMENT_HEAD = "import aioflow\n\n\nasync def snippet(parser: aioflow.FlowParser, payload: bytes) -> None:\n"

pytest.importorskip("mypy", reason="mypy is not installed: pip install -e '.[dev]' (the dev extra has it)")


def _mypy(*targets: str | Path) -> subprocess.CompletedProcess[str]:
    # The repository's [tool.mypy] settings (strict), its cache (.mypy_cache) and its aioflow/.
    command = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, targets)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def readme_snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def as_module(snippet: str) -> str:
    """The snippet itself when it is a whole module, else wrapped in FRAGMENT_HEAD's function."""
    try:
        compile(snippet, "<README>", "exec")
    except SyntaxError:
        return FRAGMENT_HEAD + textwrap.indent(snippet, "    ")
    return snippet


def test_package_and_examples_pass_mypy_strict() -> None:
    proc = _mypy("aioflow", "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_snippets_pass_mypy_strict(tmp_path: Path) -> None:
    snippets = readme_snippets()
    assert len(snippets) >= 5, "the README's ```python blocks were not found"
    paths = []
    for i, snippet in enumerate(snippets):
        path = tmp_path / f"readme_snippet_{i}.py"
        path.write_text(as_module(snippet))
        paths.append(path)
    proc = _mypy(*paths)
    # each error with the README block it is in: the files are gone after the test
    report = []
    for line in proc.stdout.splitlines():
        found = re.search(r"readme_snippet_(\d+)\.py", line)
        block = int(found.group(1)) if found else None
        report.append(line if block is None else f"{line}\n--- in README block {block}:\n{snippets[block]}")
    assert proc.returncode == 0, "\n".join(report) + proc.stderr
