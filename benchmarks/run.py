"""Benchmark harness: aioflow against nfstream and a bare libpcap read loop, on one capture.

    .venv/bin/python benchmarks/run.py                 # 10M packets / 600k flows (made if absent)
    .venv/bin/python benchmarks/run.py --quick         # 500k packets / 30k flows smoke test
    .venv/bin/python benchmarks/run.py --capture some.pcap --skip-nfstream

Each contender runs in a subprocess of its own, so its peak RSS is its own:
  bare     bare_loop.c (pcap_open_offline + pcap_next_ex to the end, compiled here with -lpcap)
  aioflow  async with FlowParser(path) as p: async for flow in p.terminated(), default timeouts
  nfstream NFStreamer(n_dissections=0, statistical_analysis=False, n_meters=1) iterated to the end,
           from its own venv (benchmarks/.venv-nfstream, made on demand with pip install nfstream)
  --features: also aioflow with statistics=True, and with statistics=True + splt=20 (alternated
           with the flow-only run), and nfstream with statistical_analysis=True (with
           --nfstream-packets N, aioflow's flow-only and statistics runs on that prefix too)
  --libpcap: also aioflow reading the file through libpcap, as before its own reader
           (AIOFLOW_FILE_READER=libpcap); bare loop and aioflow runs alternate for --repeat rounds
  --read-ahead: also aioflow with its reading thread forced on (AIOFLOW_READ_AHEAD=1; by default
           it reads ahead only with more than two CPUs), alternated with the others

The capture is read once before the runs so every contender finds it in the page cache. Results
are printed as a table and written as JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_capture as mc  # sibling script, not a package

HERE = mc.HERE
NFSTREAM_VENV = HERE / ".venv-nfstream"
CONTENDERS = HERE / "_contenders.py"
QUICK_PACKETS, QUICK_FLOWS = 500_000, 30_000


@dataclass
class Result:
    name: str
    capture: Path
    packets: int = 0
    flows: int | None = None
    seconds: float = 0.0
    peak_rss_kb: int = 0
    sampled_rss_kb: int = 0
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0

    @property
    def fps(self) -> float:
        return (self.flows or 0) / self.seconds if self.seconds else 0.0


class TreeRssSampler:
    """Polls the summed RSS of a process and its descendants: the figure a user sees for a
    multi-process tool (nfstream's meter runs beside its main process)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
                out.extend(int(c) for c in text.split())
        except OSError:
            pass
        return out

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            todo, total = [self.pid], 0
            while todo:
                p = todo.pop()
                total += self._rss_kb(p)
                todo.extend(self._children(p))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)


def run_child(
    name: str, capture: Path, cmd: list[str], timeout: float | None, env: dict[str, str] | None = None
) -> Result:
    """Run one contender (env: extra environment variables); its last stdout line is its JSON report."""
    res = Result(name, capture)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    with TreeRssSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            res.error = f"timed out after {timeout} s"
    res.wall_seconds = time.perf_counter() - t0
    res.sampled_rss_kb = sampler.peak_kb
    if proc.returncode != 0 and not res.error:
        res.error = f"exit {proc.returncode}: {err.strip()[-2000:]}"
    if res.error:
        return res
    try:
        rep: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        res.error = f"no JSON report; stdout={out[-500:]!r} stderr={err[-1500:]!r}"
        return res
    res.packets = int(rep.pop("packets"))
    res.flows = rep.pop("flows", None)
    res.seconds = float(rep.pop("seconds"))
    res.peak_rss_kb = int(rep.pop("peak_rss_kb"))
    res.extra = rep
    return res


def best_of(n: int, name: str, capture: Path, cmd: list[str], timeout: float | None) -> Result:
    """Run a contender n times and keep the fastest run (all times kept in extra["all_seconds"])."""
    return fastest([run_child(name, capture, cmd, timeout) for _ in range(max(1, n))])


def alternated(
    n: int, capture: Path, specs: list[tuple[str, list[str], dict[str, str] | None]], timeout: float | None
) -> list[Result]:
    """Run the contenders (name, command, environment) in turn, n rounds, so a machine whose load
    changes slows them alike; the fastest run of each is kept."""
    runs: dict[str, list[Result]] = {name: [] for name, _, _ in specs}
    for _ in range(max(1, n)):
        for name, cmd, env in specs:
            runs[name].append(run_child(name, capture, cmd, timeout, env))
    return [fastest(r) for r in runs.values()]


def fastest(runs: list[Result]) -> Result:
    good = [r for r in runs if not r.error]
    if not good:
        return runs[0]
    best = min(good, key=lambda r: r.seconds)
    best.peak_rss_kb = max(r.peak_rss_kb for r in good)
    best.sampled_rss_kb = max(r.sampled_rss_kb for r in good)
    if len(good) > 1:
        best.extra["all_seconds"] = [round(r.seconds, 3) for r in good]
    return best


def ensure_nfstream_venv(spec: str) -> Path | None:
    py = NFSTREAM_VENV / "bin" / "python"
    probe = [str(py), "-c", "import nfstream"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"creating {NFSTREAM_VENV} and installing nfstream (once) ...", flush=True)
    # nfstream pulls in its own numpy/pandas/psutil: keep them out of aioflow's venv
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(NFSTREAM_VENV)], check=True)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", spec], check=False)
    if pip.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        print("nfstream could not be installed; skipping it", file=sys.stderr)
        return None
    return py


def prefix_capture(src: Path, packets: int) -> Path:
    """The first `packets` records of a classic pcap file, as a file of its own (kept beside)."""
    dst = src.with_name(f"{src.stem}-first{packets}{src.suffix}")
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    with src.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        magic = m[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            fmt = "<I"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            fmt = ">I"
        else:
            raise SystemExit(f"{src}: --nfstream-packets needs a classic pcap file, not pcapng")
        off, n, size = 24, 0, len(m)
        while n < packets and off + 16 <= size:
            (caplen,) = struct.unpack_from(fmt, m, off + 8)
            off += 16 + caplen
            n += 1
        tmp = dst.with_name(dst.name + ".part")
        with tmp.open("wb") as out:
            for start in range(0, off, 1 << 24):
                out.write(m[start : min(off, start + (1 << 24))])
        tmp.replace(dst)
    return dst


def warm(path: Path) -> None:
    """Read the file once so no contender pays for the disk and the others not."""
    with path.open("rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


def aioflow_importable(py: str) -> bool:
    probe = [py, "-c", "import aioflow; aioflow.FlowParser"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def fmt_row(cells: list[str], widths: list[int]) -> str:
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


def print_table(results: list[Result], meta: dict[str, Any] | None) -> list[str]:
    head = [
        "contender",
        "file",
        "packets",
        "flows",
        "seconds",
        "packets/s",
        "flows/s",
        "peak RSS MB",
        "tree RSS MB",
    ]
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, r.capture.name, "-", "-", "-", "-", "-", "-", r.error[:60]])
            continue
        rows.append(
            [
                r.name,
                r.capture.name,
                f"{r.packets:,}",
                "-" if r.flows is None else f"{r.flows:,}",
                f"{r.seconds:.2f}",
                f"{r.pps:,.0f}",
                "-" if r.flows is None else f"{r.fps:,.0f}",
                f"{r.peak_rss_kb / 1024:.1f}",
                f"{r.sampled_rss_kb / 1024:.1f}",
            ]
        )
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = [fmt_row(head, widths), fmt_row(["-" * w for w in widths], widths)]
    lines += [fmt_row(row, widths) for row in rows]

    ok = {r.name: r for r in results if not r.error}
    notes = []
    if meta and "expected_records_default_timeouts" in meta:
        want = int(meta["expected_records_default_timeouts"])
        notes.append(f"flow records the generator's model expects with 120 s idle timeout: {want:,}")
        for r in ok.values():
            if r.flows is not None and r.capture == Path(meta.get("_path", "")) and r.flows != want:
                notes.append(f"  {r.name} reported {r.flows:,} flows: {r.flows - want:+,} against that")

    def ratio(a: str, b: str) -> None:
        if a in ok and b in ok and ok[b].pps:
            same = ok[a].capture == ok[b].capture
            where = "same file" if same else f"DIFFERENT files: {ok[a].capture.name} vs {ok[b].capture.name}"
            notes.append(f"{a} / {b} packets/s: {ok[a].pps / ok[b].pps:.2f}x ({where})")

    ratio("aioflow", "nfstream")
    ratio("aioflow (prefix)", "nfstream")
    ratio("aioflow", "bare loop")
    ratio("aioflow (libpcap reader)", "bare loop")
    ratio("aioflow", "aioflow (libpcap reader)")
    ratio("aioflow (read-ahead)", "bare loop")
    ratio("aioflow (read-ahead)", "aioflow")
    ratio("aioflow.read", "bare loop")
    ratio("aioflow.read_frame", "bare loop")
    ratio("nfstream", "bare loop")
    ratio("aioflow statistics", "aioflow")            # issue 14's goal: >= 0.8x
    ratio("aioflow statistics+splt20", "aioflow")     # >= 0.7x
    ratio("aioflow statistics", "nfstream statistics")   # >= 30x (same file unless --nfstream-packets)
    ratio("aioflow statistics (prefix)", "nfstream statistics")   # the same-file form with --nfstream-packets
    for name in ("aioflow", "aioflow (prefix)"):
        a = ok.get(name)
        if not a:
            continue
        sampled = int(a.extra.get("peak_active_flows") or 0)
        base = int(a.extra.get("base_rss_kb") or 0)
        growth = (a.peak_rss_kb - base) * 1024
        if sampled:
            notes.append(
                f"{name}: peak active flows (engine high-water mark) {sampled:,}; peak RSS per active flow "
                f"{a.peak_rss_kb * 1024 / sampled:,.0f} B, RSS growth over start-up per active flow "
                f"{growth / sampled:,.0f} B"
            )
        if meta and name == "aioflow" and a.capture == Path(meta.get("_path", "")):
            est = int(meta["peak_active_flows_default_timeouts"])
            notes.append(
                f"{name}: peak active flows by the generator's model (idle 120 s, FIN/RST 10 s) {est:,}; "
                f"RSS growth per such flow {growth / est:,.0f} B"
            )
    lines += ["", *notes]
    for line in lines:
        print(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, help="capture to use (default: the generated one)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PACKETS:,} packets, {QUICK_FLOWS:,} flows")
    ap.add_argument("--packets", type=int, help="packets of the generated capture")
    ap.add_argument("--flows", type=int, help="flows of the generated capture")
    ap.add_argument("--seed", type=int, default=mc.DEFAULT_SEED)
    ap.add_argument("--skip-bare", action="store_true")
    ap.add_argument("--skip-aioflow", action="store_true")
    ap.add_argument("--skip-nfstream", action="store_true")
    ap.add_argument("--read-ahead", action="store_true",
                    help="also aioflow with its reading thread forced on (AIOFLOW_READ_AHEAD=1)")
    ap.add_argument(
        "--nfstream-packets",
        type=int,
        metavar="N",
        help="run nfstream (and aioflow once more, for a same-file ratio) on the first N packets only",
    )
    ap.add_argument(
        "--nfstream-spec",
        default="nfstream",
        help="pip requirement used when the nfstream venv is created, e.g. nfstream==6.5.4",
    )
    ap.add_argument(
        "--aioflow-python",
        default=sys.executable,
        help="interpreter with aioflow installed (default: this one)",
    )
    ap.add_argument("--features", action="store_true",
                    help="also statistics=True and statistics+splt=20 runs, and nfstream with statistics")
    ap.add_argument("--extra", action="store_true", help="also aioflow.read (blocking) and aioflow.read_frame (pandas)")
    ap.add_argument(
        "--libpcap",
        action="store_true",
        help="also aioflow reading the file through libpcap (its former reader, AIOFLOW_FILE_READER=libpcap); "
        "bare loop and both aioflow runs alternate, --repeat rounds",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of bare loop and aioflow; the fastest is kept")
    ap.add_argument("--nfstream-repeat", type=int, default=1, help="runs of nfstream (slow); the fastest is kept")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per contender")
    ap.add_argument("--no-warm", action="store_true", help="do not pre-read the capture")
    ap.add_argument("--json", type=Path, help="where to write the results (default: benchmarks/results/)")
    a = ap.parse_args(argv)

    packets = a.packets or (QUICK_PACKETS if a.quick else mc.DEFAULT_PACKETS)
    flows = a.flows or (QUICK_FLOWS if a.quick else mc.DEFAULT_FLOWS)
    meta: dict[str, Any] | None = None
    if a.capture:
        capture = a.capture
        if not capture.exists():
            raise SystemExit(f"{capture}: no such file")
        if mc.meta_path(capture).exists():
            meta = json.loads(mc.meta_path(capture).read_text())
    else:
        capture = mc.default_output(packets, flows, a.seed)
        if not capture.exists():
            print(f"generating {capture} ...", flush=True)
        meta = mc.load_or_make(capture, packets=packets, flows=flows, seed=a.seed)
        print(mc.describe(capture, meta))
    if meta:
        meta["_path"] = str(capture)
    print(f"capture: {capture} ({capture.stat().st_size / 1e9:.2f} GB); machine: {os.cpu_count()} CPUs")
    if not a.no_warm:
        warm(capture)

    results: list[Result] = []

    def report(r: Result) -> None:
        results.append(r)
        if r.error:
            print(f"  {r.name}: FAILED: {r.error}", flush=True)
        else:
            print(
                f"  {r.name}: {r.packets:,} packets, {r.flows if r.flows is not None else '-'} flows, "
                f"{r.seconds:.2f} s, {r.pps:,.0f} packets/s, peak RSS {r.peak_rss_kb / 1024:.1f} MB",
                flush=True,
            )

    importable = not a.skip_aioflow and aioflow_importable(a.aioflow_python)
    specs: list[tuple[str, list[str], dict[str, str] | None]] = []
    if not a.skip_bare:
        exe = mc.compile_c(HERE / "bare_loop.c", ["-lpcap"])
        specs.append(("bare loop", [str(exe), str(capture)], None))
    if importable:
        cmd = [a.aioflow_python, str(CONTENDERS), "aioflow", str(capture)]
        specs.append(("aioflow", cmd, None))
        if a.libpcap:
            specs.append(("aioflow (libpcap reader)", cmd, {"AIOFLOW_FILE_READER": "libpcap"}))
        if a.read_ahead:
            specs.append(("aioflow (read-ahead)", cmd, {"AIOFLOW_READ_AHEAD": "1"}))
        if a.features:
            features = (("aioflow-stats", "aioflow statistics"), ("aioflow-stats-splt", "aioflow statistics+splt20"))
            for kind, name in features:
                specs.append((name, [a.aioflow_python, str(CONTENDERS), kind, str(capture)], None))
    for r in alternated(a.repeat, capture, specs, a.timeout):
        report(r)

    if not a.skip_aioflow:
        if importable:
            if a.extra:
                for kind, name in (("aioflow-read", "aioflow.read"), ("aioflow-frame", "aioflow.read_frame")):
                    cmd = [a.aioflow_python, str(CONTENDERS), kind, str(capture)]
                    report(best_of(a.repeat, name, capture, cmd, a.timeout))
        else:
            print(f"  aioflow: not importable with {a.aioflow_python} (pip install -e .); skipped")

    nf_capture = capture
    if not a.skip_nfstream:
        py = ensure_nfstream_venv(a.nfstream_spec)
        if py:
            if a.nfstream_packets:
                nf_capture = prefix_capture(capture, a.nfstream_packets)
                print(f"nfstream runs on a prefix: {nf_capture} ({a.nfstream_packets:,} packets)")
                warm(nf_capture)
            nf_kinds = [("nfstream", "nfstream")] + [("nfstream-stats", "nfstream statistics")] * a.features
            for kind, name in nf_kinds:
                cmd = [str(py), str(CONTENDERS), kind, str(nf_capture)]
                report(best_of(a.nfstream_repeat, name, nf_capture, cmd, a.timeout))
            if nf_capture != capture and not a.skip_aioflow and aioflow_importable(a.aioflow_python):
                # the ratios to nfstream are only meaningful on one file: aioflow runs the prefix too
                kinds = [("aioflow", "aioflow (prefix)")]
                kinds += [("aioflow-stats", "aioflow statistics (prefix)")] * a.features
                for kind, name in kinds:
                    cmd = [a.aioflow_python, str(CONTENDERS), kind, str(nf_capture)]
                    report(best_of(a.repeat, name, nf_capture, cmd, a.timeout))

    print()
    lines = print_table(results, meta)
    out = a.json or HERE / "results" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "capture": str(capture),
                "capture_meta": meta,
                "cpus": os.cpu_count(),
                "results": [
                    {
                        "name": r.name,
                        "capture": str(r.capture),
                        "packets": r.packets,
                        "flows": r.flows,
                        "seconds": r.seconds,
                        "packets_per_second": r.pps,
                        "flows_per_second": r.fps,
                        "peak_rss_kb": r.peak_rss_kb,
                        "sampled_tree_rss_kb": r.sampled_rss_kb,
                        "wall_seconds": r.wall_seconds,
                        "extra": r.extra,
                        "error": r.error,
                    }
                    for r in results
                ],
                "table": lines,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults written to {out}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
