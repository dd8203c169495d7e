"""Instruction counts of one command under callgrind (load-independent, unlike wall time): the
whole program's and the producer thread's loop (producer.c's run, inclusive: the whole C pipeline,
af_pipeline_pump inlined into it by LTO). Used by zeek_meters.py and dissect_bench.py.

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

CACHE_SIM = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64"]


def count(argv: list[str], producer: bool = True, cache: bool = False) -> dict[str, int]:
    """{"producer": Ir of producer.c:run inclusive, "total": Ir of the whole program} for argv
    (`producer=False`: a command that starts no engine, only "total" required). With `cache`, also
    "producer_D1" and "producer_LL": the loop's data-cache misses (reads and writes) at each level."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        sim = CACHE_SIM if cache else []
        subprocess.run(["valgrind", "--tool=callgrind", *sim, f"--callgrind-out-file={out}", *argv], check=True,
                       capture_output=True)  # fmt: skip
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    events: list[str] = []
    found: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("Events shown:"):
            events = line.split(":", 1)[1].split()
        numbers = []  # the event columns: numbers, each followed by its share in parentheses
        for token in re.sub(r"\([^)]*\)", " ", line).split():
            if not re.fullmatch(r"[0-9][0-9,]*", token):
                break
            numbers.append(int(token.replace(",", "")))
        if "PROGRAM TOTALS" in line and numbers:
            found["total"] = numbers[0]
        elif re.search(r"producer\.c:run\b", line) and numbers and "producer" not in found:
            found["producer"] = numbers[0]
            if cache and len(numbers) == len(events):
                row = dict(zip(events, numbers, strict=True))
                found["producer_D1"] = row["D1mr"] + row["D1mw"]
                found["producer_LL"] = row["DLmr"] + row["DLmw"]
    missing_cache = cache and producer and "producer_D1" not in found
    if "total" not in found or (producer and "producer" not in found) or missing_cache:
        raise RuntimeError("producer.c:run or the program's total not in callgrind's output")
    return found
