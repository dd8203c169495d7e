"""Instruction counts of one command under callgrind (load-independent, unlike wall time): the
whole program's and the producer thread's loop (producer.c's run, inclusive: the whole C pipeline,
af_pipeline_pump inlined into it by LTO). Used by zeek_meters.py and dissect_bench.py."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path


def count(argv: list[str], producer: bool = True, cache: bool = False) -> dict[str, int]:
    """{"producer": Ir of producer.c:run inclusive, "total": Ir of the whole program} for argv
    (`producer=False`: a command that starts no engine, only "total" required). `cache`: also
    callgrind's cache simulation (--cache-sim=yes), each event of producer.c:run inclusive as
    "producer_<event>" (D1mr, D1mw: first-level data misses on reads and writes; DLmr, DLmw:
    last-level), simulated, so as load-independent as the instruction counts."""
    sim = ["--cache-sim=yes"] if cache else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", *sim, f"--callgrind-out-file={out}", *argv], check=True,
                       capture_output=True)  # fmt: skip
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    found: dict[str, int] = {}
    events: list[str] = []
    for line in text.splitlines():
        if line.startswith("Events shown:"):
            events = line.split(":", 1)[1].split()
        columns = [int(c.replace(",", "")) for c in re.findall(r"[0-9][0-9,]*(?= )", line.strip() + " ")]
        number = re.sub(r"[^0-9].*", "", line.strip().replace(",", ""))
        if "PROGRAM TOTALS" in line and number:
            found["total"] = int(number)
        elif re.search(r"producer\.c:run\b", line) and number and "producer" not in found:
            found["producer"] = int(number)
            if cache:
                found.update({f"producer_{e}": v for e, v in zip(events, columns, strict=False)})
    if "total" not in found or (producer and "producer" not in found):
        raise RuntimeError("producer.c:run or the program's total not in callgrind's output")
    return found
