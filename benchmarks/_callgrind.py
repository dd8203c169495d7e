"""Instruction counts of one command under callgrind (load-independent, unlike wall time): the
whole program's and the producer thread's loop (producer.c's run, inclusive: the whole C pipeline,
af_pipeline_pump inlined into it by LTO). Used by zeek_meters.py and dissect_bench.py."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path


def count(argv: list[str], producer: bool = True) -> dict[str, int]:
    """{"producer": Ir of producer.c:run inclusive, "total": Ir of the whole program} for argv
    (`producer=False`: a command that starts no engine, only "total" required)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv], check=True,
                       capture_output=True)  # fmt: skip
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    found: dict[str, int] = {}
    for line in text.splitlines():
        number = re.sub(r"[^0-9].*", "", line.strip().replace(",", ""))
        if "PROGRAM TOTALS" in line and number:
            found["total"] = int(number)
        elif re.search(r"producer\.c:run\b", line) and number and "producer" not in found:
            found["producer"] = int(number)
    if "total" not in found or (producer and "producer" not in found):
        raise RuntimeError("producer.c:run or the program's total not in callgrind's output")
    return found
