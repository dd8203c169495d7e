"""`aioflow flows --follow` (FlowParser(follow=True)) on a capture still being written: plain, and
gzip (one stream flushed part way, as a writer piping through gzip leaves it). Half the file is
written; once a row shows the command read it (a flow ends when packet time has passed its idle
timeout), the rest is appended; once the rows show that was read too, SIGINT stops it and the flows
still open end as "stop". Every packet is in a printed flow, as tcpdump reads the whole file."""

from __future__ import annotations

import gzip
import signal
import subprocess
import zlib
from pathlib import Path

import pytest
from test_signals import aioflow_cli, many_flows_capture, signalled

FLOWS = 4000  # one-packet UDP flows, 1 ms apart: with --idle-timeout 1 the first ends at packet 1001
HALF = 2000
RECORD = 16 + 29


def tcpdump_count(path: Path) -> int:
    proc = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True, check=True)
    return len(proc.stdout.splitlines())


def rows_until(proc: subprocess.Popen[str], src_port: int, rows: list[str]) -> None:
    """Reads CSV rows into `rows` until the one of the flow from `src_port`."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "the command ended: " + (proc.communicate()[1] if proc.poll() is not None else "")
        rows.append(line)
        if line.split(",")[3] == str(src_port):
            return


@pytest.mark.parametrize("compression", ["plain", "gzip"])
def test_flows_follow_reads_a_growing_file(compression: str, tmp_path: Path) -> None:
    whole = many_flows_capture(tmp_path / "whole.pcap", FLOWS).read_bytes()
    assert tcpdump_count(tmp_path / "whole.pcap") == FLOWS
    cut = 24 + HALF * RECORD + 7  # half the packets, then part of a record header
    path = tmp_path / ("growing.pcap" + (".gz" if compression == "gzip" else ""))
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip stream
    first = packer.compress(whole[:cut]) + packer.flush(zlib.Z_SYNC_FLUSH) if compression == "gzip" else whole[:cut]
    path.write_bytes(first)
    proc = aioflow_cli("flows", str(path), "--follow", "--format", "csv", "--idle-timeout", "1", unbuffered=True)
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline().strip().split(",")
        assert header[3] == "src_port"
        rows: list[str] = []
        rows_until(proc, 1024 + HALF - 1000 - 1, rows)  # the last flow packet HALF - 1 can end: all of it read
        with path.open("ab") as fh:
            fh.write(packer.compress(whole[cut:]) + packer.flush() if compression == "gzip" else whole[cut:])
        rows_until(proc, 1024 + FLOWS - 1000 - 1, rows)  # the rest was read
        out, err = signalled(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    rows += out.splitlines()
    ports = sorted(int(row.split(",")[3]) for row in rows)
    assert ports == [1024 + i for i in range(FLOWS)], err
    assert f"{FLOWS} packets," in err and "stop 1000)" in err, err
    if compression == "gzip":
        assert gzip.decompress(path.read_bytes()) == whole


def test_follow_on_an_interface_is_a_usage_error() -> None:
    proc = aioflow_cli("flows", "lo", "--follow")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == "", err
    assert err.count("\n") == 1 and "follow" in err and "interface" in err and "Traceback" not in err, err
