"""Prints the engine's C sources and its compiler and linker flags, one line, as
aioflow/_build_pcap.py builds the extension (libpcap, Vectorscan when present, and whatever else
that file adds), so `make fuzz` links each harness with exactly the engine Python gets."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    build = runpy.run_path(str(ROOT / "aioflow" / "_build_pcap.py"))  # not as __main__: it compiles nothing
    sources = [str((build["CSRC"] / s).relative_to(ROOT)) for s in build["SOURCES"]] + ["aioflow/_native.c"]
    flags = [*build["ENGINE_CFLAGS"], *build["ENGINE_LIBS"]]
    print(" ".join(sources + flags))
