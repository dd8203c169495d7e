"""Where the CPU goes per thread with workers: callgrind instruction counts (load-independent) of
the reading thread and of each worker's thread, for workers=1 and workers=N (benchmarks/README.md
"Workers"). Each run is one process under `valgrind --tool=callgrind --separate-threads=yes`
reading the capture through the bulk path (as workers_bench.py does); each thread's Ir comes from
its own callgrind file, and the thread is named by the function it runs: readahead.c's `run` (the
reader), producer.c's `run` (a worker), else "python" (the interpreter thread, prefaulting...).

    nice .venv/bin/python benchmarks/make_capture.py --packets 200000 --flows 12000 --seed 7 -o /tmp/200k.pcap
    nice .venv/bin/python benchmarks/workers_callgrind.py /tmp/200k.pcap --workers 2

Projection to N cores from the counts alone (no cache or hand-off effects; the Python thread,
which does the same per-batch work with any worker count, is left out): a run takes about as
long as its busiest core. With workers=N on N cores the reader and N workers are N + 1 threads:
- "balanced" (the scheduler moves threads between cores freely): time ~ max(engine Ir / N,
  the busiest thread's Ir);
- "pinned" (the reader shares one core with the busiest worker for the whole run): time ~
  max(reader + busiest worker, any other worker).
Speedup = engine Ir of workers=1 (one thread, no reader on 2 cores) / that time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SETS = {
    "flows": "",
    "statistics+dissect": "statistics=True, dissect=True",
    "reassembly": "reassemble=True",
}

PROGRAM = """
import sys
from aioflow._read import read_batches
for _ in read_batches(sys.argv[1], workers={workers}, {options}):
    pass
"""


def _thread_ir(path: Path) -> tuple[str, int]:
    """(role, Ir) of one thread's callgrind file."""
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not found:
        raise RuntimeError(f"no Ir total in {path}")
    files_with_run = set()  # the files of functions named run (uncompressed names: one file each)
    current = None
    for line in text.splitlines():
        if line.startswith("fl="):
            current = line[3:]
        elif re.match(r"fn=run(\.lto_priv\.\d+)?$", line) and current:
            files_with_run.add(Path(current).name)
    role = "reader" if "readahead.c" in files_with_run else "worker" if "producer.c" in files_with_run else "python"
    return role, int(found.group(1))


def count(capture: Path, workers: int, options: str) -> list[tuple[str, int]]:
    """[(role, Ir)] for each thread of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        program = PROGRAM.format(workers=workers, options=options)
        subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes", "--compress-strings=no",
                        f"--callgrind-out-file={out}",
                        sys.executable, "-c", program, str(capture)], check=True, capture_output=True)  # fmt: skip
        return [_thread_ir(p) for p in sorted(Path(tmp).glob("cg.out-*"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path)
    ap.add_argument("--workers", type=int, default=2, help="compared with 1 (default 2)")
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    args = ap.parse_args(argv)
    for name in args.sets:
        engine: dict[int, int] = {}
        balanced: dict[int, int] = {}
        pinned: dict[int, int] = {}
        for w in (1, args.workers):
            threads = count(args.capture, w, SETS[name])
            reader = sum(ir for role, ir in threads if role == "reader")
            workers = sorted((ir for role, ir in threads if role == "worker"), reverse=True)
            python = sum(ir for role, ir in threads if role == "python")
            engine[w] = reader + sum(workers)
            balanced[w] = max(-(-engine[w] // w), reader, *workers)
            pinned[w] = max([reader + workers[0], *workers[1:]])
            print(f"{name:20} workers={w}: reader {reader / 1e6:,.1f}M Ir, workers "
                  f"{', '.join(f'{ir / 1e6:,.1f}M' for ir in workers)}, engine total {engine[w] / 1e6:,.1f}M "
                  f"(python and other threads {python / 1e6:,.0f}M)")  # fmt: skip
        w = args.workers
        print(f"{name:20} engine Ir x{engine[w] / engine[1]:.2f} of workers=1; projected speedup on {w} cores: "
              f"balanced x{engine[1] / balanced[w]:.2f}, pinned x{engine[1] / pinned[w]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
