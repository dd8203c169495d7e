"""`aioflow grep` against ngrep on the same capture and pattern, in one run.

    .venv/bin/python benchmarks/grep_bench.py                          # the default benchmark capture
    .venv/bin/python benchmarks/grep_bench.py --capture x.pcap --pattern 'GET /' --repeat 3

Both run as commands (what a user would type), output to a file, interleaved, best of --repeat by wall time:
  ngrep    ngrep -q -I CAPTURE PATTERN              (per packet, libpcap + PCRE)
  aioflow  aioflow grep -a PATTERN -r CAPTURE       (TCP reassembled, UDP per datagram)
The capture is read once first so both find it in the page cache. Printed: seconds, packets/s,
matches each reported (ngrep: packets, aioflow: flows) and the ratio.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CAPTURE = HERE / "data" / "synth-10000000p-600000f-s1.pcap"  # run.py makes it


def timed(cmd: list[str], out: Path) -> tuple[float, str, float]:
    """(wall seconds, stdout, child CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with out.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, out.read_text(), cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--pattern", default="GET /[a-z]+ HTTP/1\\.1", help="regex both tools search for")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    if not a.capture.exists():
        raise SystemExit(f"{a.capture}: not found (make one with benchmarks/make_capture.py)")
    if shutil.which("ngrep") is None:
        raise SystemExit("ngrep is not installed: apt-get install ngrep")
    with a.capture.open("rb") as fh:  # page cache, for both
        while fh.read(1 << 24):
            pass
    packets = int(subprocess.run(["capinfos", "-M", "-c", "-T", str(a.capture)], capture_output=True, text=True)
                  .stdout.splitlines()[-1].split("\t")[-1]) if shutil.which("capinfos") else 0  # fmt: skip
    out = Path("/tmp") / "aioflow-grep-bench.out"
    runs = {
        "ngrep": ["ngrep", "-q", "-I", str(a.capture), a.pattern],
        "aioflow": [sys.executable, "-m", "aioflow", "grep", "-a", a.pattern, "-r", str(a.capture)],
    }
    best: dict[str, tuple[float, str, float]] = {}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(a.repeat):  # interleaved, so that the machine's noise falls on both alike
        for name, cmd in runs.items():
            result = timed(cmd, out)
            times[name].append(result[0])
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    matches = {
        "ngrep": sum(1 for line in best["ngrep"][1].splitlines() if re.match(r"^[TUI] ", line)),
        "aioflow": len(best["aioflow"][1].splitlines()),
    }
    print(f"capture {a.capture.name}: {packets:,} packets; pattern {a.pattern!r}; best of {a.repeat}")
    print(f"{'tool':8} {'seconds':>8} {'CPU s':>7} {'packets/s':>11} {'reported':>9}")
    for name, (seconds, _, cpu) in best.items():
        rate = f"{packets / seconds:,.0f}" if packets else "-"
        print(f"{name:8} {seconds:8.2f} {cpu:7.2f} {rate:>11} {matches[name]:9,}")
    for name, seconds in times.items():
        print(f"{name} runs: {', '.join(f'{t:.2f}' for t in seconds)} s")
    pairs = [n / f for n, f in zip(times["ngrep"], times["aioflow"], strict=True)]
    print(f"aioflow grep is {best['ngrep'][0] / best['aioflow'][0]:.2f}x ngrep's speed (best wall times); "
          f"run by run: {', '.join(f'{r:.2f}x' for r in pairs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
