"""The C core's shape (docs/architecture.md): one file per stage, includes pointing one way; and its
boundary with Python: enum names, array sizes and error codes come from the compiled module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "aioflow"
CSRC = ROOT / "_csrc"
MAX_LINES = 650  # "no C file over ~600 lines"


def _files() -> list[Path]:
    return [*sorted(CSRC.glob("*.[ch]")), ROOT / "_native.c"]


def _module_graph() -> dict[str, set[str]]:
    """x.c and x.h as one module; an edge for each #include of another module's header."""
    graph: dict[str, set[str]] = {}
    for f in _files():
        name = f.name.rsplit(".", 1)[0]
        deps = {d.rsplit(".", 1)[0] for d in re.findall(r'^#include "([^"]+)"', f.read_text(), re.M)}
        graph.setdefault(name, set()).update(deps - {name, "meters"})  # meters.h: the registry list
    return graph


def test_no_include_cycle() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        assert state.get(node) != 1, f"include cycle: {' -> '.join([*path, node])}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_only_the_entry_layer_includes_the_top_stages() -> None:
    graph = _module_graph()
    users = {name for name, deps in graph.items() if "producer" in deps}
    assert users == {"_native"}
    assert {name for name, deps in graph.items() if "pipeline" in deps} <= {"_native", "producer"}


def test_no_c_file_is_too_long() -> None:
    long = {f.name: n for f in _files() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"


def test_every_c_error_code_becomes_a_typed_exception() -> None:
    from aioflow import _errors
    from aioflow._engine import error_for, lib

    codes = [getattr(lib, name) for name in dir(lib) if name.startswith("AF_ERR_")]
    assert len(codes) >= 8
    for code in codes:
        for live in (False, True):
            exc = error_for(code, "what C said", live)
            assert isinstance(exc, _errors.AioflowError)
            assert type(exc) is not _errors.AioflowError
            assert str(exc).startswith("what C said") and "code" not in str(exc)


def test_enum_names_and_sizes_come_from_c() -> None:
    from aioflow._engine import ASIDE_REASONS, DEFRAG_REASONS, END_REASONS, ffi, lib

    assert len(END_REASONS) == lib.AF_END_COUNT and END_REASONS[lib.AF_END_IDLE] == "idle"
    assert len(ASIDE_REASONS) == lib.AF_ASIDE_COUNT and ASIDE_REASONS[lib.AF_ASIDE_FILTERED] == "filtered"
    assert len(DEFRAG_REASONS) == lib.AF_DEFRAG_REASON_COUNT and DEFRAG_REASONS[lib.AF_DEFRAG_OVERLAP] == "overlap"
    assert ffi.typeof("af_stats").fields[2][1].type.length == lib.AF_ASIDE_COUNT  # aside[AF_ASIDE_COUNT]
    assert all(name for name in (*END_REASONS[1:], *ASIDE_REASONS, *DEFRAG_REASONS))


def test_the_typing_stub_lists_every_name_of_the_compiled_module() -> None:
    from aioflow._engine import lib

    stub = (ROOT / "_native.pyi").read_text()
    listed = set(re.findall(r"^    (?:def )?(\w+)[:(]", stub, re.M))
    assert listed == set(dir(lib)), "regenerate aioflow/_native.pyi from api.h's names"
