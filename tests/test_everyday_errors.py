"""Everyday mistakes are one line on stderr and exit 2, never a traceback (issue 13, 3): an export
host that does not resolve, `collect --listen` on a port in use or an address this machine lacks,
`--write x.parquet` without pyarrow or into a missing directory, a full disk on every output, and
in the library a find_flow() port over 65535 (ConfigError)."""

from __future__ import annotations

import errno
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioflow

DATA = Path(__file__).resolve().parent / "data"
CAPTURE = DATA / "ndpi_smtp-starttls.pcap"
BIG = Path(__file__).resolve().parents[1] / "examples" / "data" / "ndpi_telegram_videocall.pcapng"


def aioflow_cli(*args: str | Path, stdout: int | None = subprocess.PIPE, prelude: str = "") -> tuple[int, str]:
    """Runs the command (after `prelude`, Python run first in the same process); (exit code, stderr)."""
    code = f"{prelude}\nimport sys\nfrom aioflow.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False)  # fmt: skip
    return proc.returncode, proc.stderr


def one_line_error(stderr: str, *words: str) -> str:
    """The error line (last on stderr; a summary may come before it), checked: no traceback."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    line = stderr.splitlines()[-1]
    assert line.startswith("aioflow: error: "), stderr
    for word in words:
        assert word in line, line
    return line


def test_an_export_host_that_does_not_resolve() -> None:
    code, err = aioflow_cli("export", CAPTURE, "--to", "collector.invalid:2055")
    assert code == 2
    assert one_line_error(err, "--to collector.invalid:2055", "does not resolve") == err.strip()


def test_collect_on_a_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code, err = aioflow_cli("collect", "--listen", f"127.0.0.1:{port}", "--count", "1")
    assert code == 2
    assert one_line_error(err, f"--listen 127.0.0.1:{port}", "in use") == err.strip()


@pytest.mark.parametrize(("listen", "why"), [("192.0.2.1:2055", "no interface of this machine"),
                                              ("999.1.1.1:2055", "does not resolve")])  # fmt: skip
def test_collect_on_a_bad_address(listen: str, why: str) -> None:
    code, err = aioflow_cli("collect", "--listen", listen, "--count", "1")
    assert code == 2
    assert one_line_error(err, f"--listen {listen}", why) == err.strip()


def test_parquet_without_pyarrow(tmp_path: Path) -> None:
    # pyarrow blocked in the command's process: `import pyarrow` raises ImportError there
    block = "import sys\nsys.modules['pyarrow'] = None\nsys.modules['pyarrow.parquet'] = None"
    code, err = aioflow_cli("export", CAPTURE, "--write", tmp_path / "x.parquet", prelude=block)
    assert code == 2
    assert one_line_error(err, "--write", "pip install pyarrow") == err.strip()
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("name", ["x.parquet", "x.ipfix"])
def test_writing_into_a_missing_directory(tmp_path: Path, name: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    target = tmp_path / "no-such-dir" / name
    code, err = aioflow_cli("export", CAPTURE, "--write", target)
    assert code == 2
    assert one_line_error(err, str(target), "No such file or directory") == err.strip()
    code, err = aioflow_cli("collect", "--read", "/dev/null", "--write", target)
    assert code == 2 and one_line_error(err, str(target)) == err.strip()


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs mounted for the test and filled to the last byte: every write there fails with
    ENOSPC. Needs root (mount)."""
    where = tmp_path / "full"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {proc.stderr.decode().strip()}")
    try:
        fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError) as full:
                while True:
                    os.write(fd, b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def export_ipfix(tmp_path: Path) -> Path:
    path = tmp_path / "flows.ipfix"
    code, err = aioflow_cli("export", CAPTURE, "--write", path)
    assert code == 0, err
    return path


def test_a_full_disk_on_standard_output(tmp_path: Path) -> None:
    ipfix = export_ipfix(tmp_path)
    with open("/dev/full", "w") as full:
        for args in (("flows", BIG, "--format", "json"), ("flows", BIG, "--format", "csv"),
                     ("grep", "-a", ".", "-r", BIG), ("collect", "--read", ipfix, "--json")):  # fmt: skip
            code, err = aioflow_cli(*args, stdout=full.fileno())
            assert code == 2, (args, err)
            one_line_error(err, "standard output", "No space left on device", "free some space")


def test_a_full_disk_on_output_files(tmp_path: Path, full_dir: Path) -> None:
    ipfix = export_ipfix(tmp_path)
    runs = [("export", BIG, "--write", full_dir / "flows.ipfix"),
            ("export", BIG, "--write", "/dev/full"),
            ("collect", "--read", ipfix, "--write", full_dir / "archive.ipfix"),
            ("grep", "-a", ".", "-l", full_dir, "-r", BIG)]  # fmt: skip
    try:
        import pyarrow  # noqa: F401

        runs.append(("export", BIG, "--write", full_dir / "flows.parquet"))
    except ImportError:
        pass
    for args in runs:
        code, err = aioflow_cli(*args)
        assert code == 2, (args, err)
        where = str(args[args.index("--write") + 1] if "--write" in args else full_dir)
        one_line_error(err, where, "No space left on device")


@pytest.mark.anyio
async def test_find_flow_numbers_out_of_range_are_config_errors() -> None:
    async with aioflow.FlowParser(CAPTURE) as parser:
        for kwargs, words in [({"src_port": 65536}, "src_port=65536"), ({"dst_port": -1}, "dst_port=-1"),
                              ({"vlan_id": 4096}, "vlan_id=4096"), ({"protocol": 256}, "protocol=256"),
                              ({"src_port": 80.5}, "src_port=80.5")]:  # fmt: skip
            args = {"src_ip": "192.0.2.1", "src_port": 1, "dst_ip": "192.0.2.2", "dst_port": 2} | kwargs
            with pytest.raises(aioflow.ConfigError, match=words) as caught:
                await parser.find_flow(**args)  # type: ignore[arg-type]
            assert isinstance(caught.value, ValueError) and "0 to" in str(caught.value)
        assert await parser.find_flow("192.0.2.1", 65535, "192.0.2.2", 0, vlan_id=4095) is None
        async for _ in parser.terminated():
            pass


def test_a_timeout_too_big_for_nanoseconds_means_never() -> None:
    assert [f.end_reason for f in aioflow.read(CAPTURE, idle_timeout=math.inf, active_timeout=1e300)]
    code, err = aioflow_cli("flows", CAPTURE, "--idle-timeout", "1e300", "--no-progress")
    assert code == 0, err

