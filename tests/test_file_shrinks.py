"""A mapped capture file that another process truncates while aioflow reads it: damage, counted and
reported where it happened (read_errors, read_error), never SIGBUS. The reader looks at the file's
size (fstat) before its window moves past what it mapped, every MiB, so a cut ahead of it is read up
to the cut. Compared with tcpdump's reading of the truncated file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from test_file_reader import ETHERNET, _until
from test_signals import many_flows_capture

import aioflow

RECORD = 16 + 29  # many_flows_capture's records: header + a 29-byte IPv4/UDP packet


def tcpdump_count(path: Path) -> int:
    """Packets tcpdump reads from a (maybe truncated) capture; it exits 1 on a cut record."""
    proc = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True, check=False)
    return len(proc.stdout.splitlines())


def test_a_file_cut_ahead_of_the_reader_is_read_to_the_cut(tmp_path: Path) -> None:
    """The consumer takes one flow, so the reader stops, blocked, about 10 MB into a 27 MB file (its
    read-ahead is bounded by batches, not time); the file is then cut at 20 MB, mid-record. Reading
    on, the reader must stop at the cut with a damage report. Run in a child: before the size was
    looked at again, reading into the cut-off pages killed the process with SIGBUS."""
    capture = many_flows_capture(tmp_path / "many.pcap", 600_000)
    cut = 20_000_000
    assert (cut - 24) % RECORD, "the cut must fall inside a record"
    child = textwrap.dedent(f"""
        import os, anyio, aioflow
        async def main() -> None:
            async with aioflow.FlowParser({str(capture)!r}) as parser:
                flows = parser.terminated()
                await flows.__anext__()
                assert parser.info().progress < 0.5, parser.info().progress  # blocked well before the cut
                os.truncate({str(capture)!r}, {cut})
                async for _ in flows:
                    pass
                info = parser.info()
                print(info.packets, info.read_errors, info.packets_in_flows + sum(info.aside.values()))
                print(info.read_error)
        anyio.run(main)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)  # -7: SIGBUS
    counts, error = proc.stdout.splitlines()
    packets, errors, accounted = map(int, counts.split())
    assert packets == (cut - 24) // RECORD == tcpdump_count(capture), counts
    assert errors == 1 and accounted == packets, counts
    assert error.startswith(f"truncated at byte {24 + packets * RECORD}: the file shrank from") and "27000024" in error


@pytest.mark.anyio
async def test_a_followed_file_that_shrinks_is_damage(tmp_path: Path) -> None:
    """Followed and waiting at its end, the file is cut to half: reported, not waited on forever
    (nor read from a position past the new end once it grows again)."""
    raw = ETHERNET.read_bytes()
    path = tmp_path / "followed.pcap"
    path.write_bytes(raw)
    async with aioflow.FlowParser(path, follow=True, idle_timeout=1e9) as parser:
        async with anyio.create_task_group() as tasks:

            async def consume() -> None:
                async for _ in parser.terminated():
                    pass

            tasks.start_soon(consume)
            await _until(lambda: parser.info().packets >= 94)  # all read: it waits for more
            assert not parser.info().read_errors
            with path.open("r+b") as fh:
                fh.truncate(len(raw) // 2)
            await _until(lambda: parser.info().finished)
    info = parser.info()
    assert info.packets == 94 and info.read_errors == 1, info
    assert f"the file shrank from {len(raw)} to {len(raw) // 2} bytes" in info.read_error, info.read_error
