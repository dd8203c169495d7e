"""tshark as an outside reference: the runner the `tshark` fixture hands out (each run kept for the
session and in pytest's cache), and its reading of IPFIX files (RFC 5655, which it decodes natively)."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support import reference
from support.files import identity
from support.tools import TOOL_ENV


def tshark_time(text: str) -> int:
    """tshark's "Mar 23, 2022 10:45:36.009000000 UTC" -> Unix ns."""
    whole, fraction = text.removesuffix(" UTC").rsplit(".", 1)
    moment = dt.datetime.strptime(" ".join(whole.split()), "%b %d, %Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 10**9 + int(fraction.ljust(9, "0"))


def tshark_records(path: Path) -> Counter[tuple[Any, ...]]:
    """tshark reads IPFIX files (RFC 5655) natively: its view of every data record."""
    fields = ["cflow.srcaddr", "cflow.srcaddrv6", "cflow.dstaddr", "cflow.dstaddrv6", "cflow.srcport",
              "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets", "cflow.abstimestart",
              "cflow.abstimeend"]  # fmt: skip
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|",
         *[arg for f in fields for arg in ("-e", f)]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    got: Counter[tuple[Any, ...]] = Counter()
    for line in out.splitlines():
        c = dict(zip(fields, (column.split("|") if column else [] for column in line.split("\t")), strict=True))
        src, dst = c["cflow.srcaddr"] or c["cflow.srcaddrv6"], c["cflow.dstaddr"] or c["cflow.dstaddrv6"]
        n = len(c["cflow.packets"])
        per = len(c["cflow.abstimestart"]) // n  # 2 with nanoseconds=True: the ms times, then the ns ones
        for i in range(n):
            got[(src[i], int(c["cflow.srcport"][i]), dst[i], int(c["cflow.dstport"][i]), int(c["cflow.protocol"][i]),
                 int(c["cflow.packets"][i]), int(c["cflow.octets"][i]),
                 *(tshark_time(c[f][i * per + per - 1]) for f in ("cflow.abstimestart", "cflow.abstimeend")),
                 )] += 1  # fmt: skip
    return got


# Larger outputs (packet dumps) are kept for the session only, not written to pytest's cache.
CACHED_OUTPUT_LIMIT = 1 << 20


class TShark:
    """tshark runs, each kept for the session and (keyed by the file's content, tshark's version and
    the arguments) in pytest's cache across runs: starting tshark dominates the comparisons' time."""

    def __init__(self, executable: str, cache: pytest.Cache | None) -> None:
        self.executable = executable
        self.version = subprocess.run([executable, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        self._cache = cache
        self._runs: dict[tuple[object, ...], Future[subprocess.CompletedProcess[str]]] = {}
        self._lock = threading.Lock()
        # two tshark runs at a time ahead of the tests that need them (prefetch)
        self._pool = ThreadPoolExecutor(max_workers=2)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def _run(self, path: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        key = ""
        if self._cache is not None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            key = "aioflow/tshark/" + hashlib.sha256(repr((digest, self.version, args)).encode()).hexdigest()
            hit = self._cache.get(key, None)
            if hit is not None:
                return subprocess.CompletedProcess(args, hit[0], hit[1], hit[2])
        cmd = [self.executable, "-r", str(path), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=TOOL_ENV)
        if self._cache is not None and len(done.stdout) < CACHED_OUTPUT_LIMIT:
            self._cache.set(key, [done.returncode, done.stdout, done.stderr])
        return done

    def start(self, path: Path, *args: str) -> Future[subprocess.CompletedProcess[str]]:
        """`tshark -r path args...`, started in the background (or the run already made)."""
        with self._lock:
            key = (identity(path), args)
            if key not in self._runs:
                self._runs[key] = self._pool.submit(self._run, path, args)
            return self._runs[key]

    def output(self, path: Path, *args: str) -> str:
        """The standard output of `tshark -r path args...`; RuntimeError when tshark fails."""
        done = self.start(path, *args).result()
        if done.returncode != 0:
            raise RuntimeError(f"tshark failed on {path}: {done.stderr.strip()}")
        return done.stdout

    def prefetch_conversations(self, paths: Sequence[Path]) -> None:
        for p in paths:
            self.start(p, *reference.TSHARK_CONVERSATION_ARGS)

    def conversations(self, path: Path) -> dict[tuple[str, frozenset[str]], int]:
        """tshark's TCP/UDP conversation table (reference.parse_tshark_conversations)."""
        return reference.parse_tshark_conversations(self.output(path, *reference.TSHARK_CONVERSATION_ARGS))
