"""Instruction counts of one command under callgrind (load-independent, unlike wall time): the
whole program's and the producer thread's loop (producer.c's run, inclusive: the whole C pipeline,
af_pipeline_pump inlined into it by LTO). Used by zeek_meters.py and dissect_bench.py.
Every process the command starts is counted too (forked, as nfstream's meter process, or
executed): "total" is their sum, "processes" each one's.

With `cache=True` callgrind also simulates the data caches (as cachegrind does, but counted per
function inclusively, so the producer thread's loop gets its own figures). The simulated caches
are fixed rather than taken from the host (whose last level may be a 100 MiB L3 no flow table
outgrows): CACHE_SIM's D1 of 48 KiB and a last level of 2 MiB, a core's L2 on common x86-64
servers, so "LL misses" are the reads a core's own caches could not serve."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CACHE_SIM = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64"]


def count(
    argv: list[str], producer: bool = True, cache: bool = False, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """{"producer": Ir of producer.c:run inclusive, "total": Ir of every process argv ran, summed,
    "processes": [(pid, Ir), ...] in pid order, the command itself first} (`producer=False`: a
    command that starts no engine, only "total" required). With `cache`, also "producer_D1" and
    "producer_LL": the loop's data-cache misses (reads and writes) at each level. env: the command's
    environment (default: this process's)."""
    found: dict[str, Any] = {"processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        sim = CACHE_SIM if cache else []
        out = Path(tmp) / "cg.%p"  # one file a process: forked ones are followed, exec'd ones too
        subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", *sim, f"--callgrind-out-file={out}",
                        *argv], check=True, capture_output=True, env=env)  # fmt: skip
        for f in sorted(Path(tmp).glob("cg.*"), key=lambda f: int(f.name.split(".")[1])):
            with f.open() as lines:  # the header's "summary: N ..." (Ir first)
                summary = next((line for line in lines if line.startswith("summary:")), None)
            if summary is None:
                raise RuntimeError(f"callgrind's {f.name} has no summary: the process did not end normally")
            found["processes"].append((int(f.name.split(".")[1]), int(summary.split()[1])))
            if producer and "producer" not in found:
                found.update(_producer(f, cache))
    found["total"] = sum(n for _, n in found["processes"])
    missing_cache = cache and producer and "producer_D1" not in found
    if not found["processes"] or (producer and "producer" not in found) or missing_cache:
        raise RuntimeError("producer.c:run or the program's total not in callgrind's output")
    return found


def _producer(path: Path, cache: bool) -> dict[str, int]:
    """producer.c:run's inclusive counts in one process's file ({} when it ran no engine)."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    events: list[str] = []
    for line in text.splitlines():
        if line.startswith("Events shown:"):
            events = line.split(":", 1)[1].split()
        numbers = []  # the event columns: numbers, each followed by its share in parentheses
        for token in re.sub(r"\([^)]*\)", " ", line).split():
            if not re.fullmatch(r"[0-9][0-9,]*", token):
                break
            numbers.append(int(token.replace(",", "")))
        if re.search(r"producer\.c:run\b", line) and numbers:
            found = {"producer": numbers[0]}
            if cache and len(numbers) == len(events):
                row = dict(zip(events, numbers, strict=True))
                found["producer_D1"] = row["D1mr"] + row["D1mw"]
                found["producer_LL"] = row["DLmr"] + row["DLmw"]
            return found
    return {}
