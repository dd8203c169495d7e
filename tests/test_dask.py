"""aioflow.dask on a real distributed.LocalCluster (a scheduler and two worker processes): each
capture's partition, and the Parquet dataset read back by pyarrow and DuckDB, hold the same
records as read_frame() of that capture in this process; a worker killed while it reads a capture
is replaced and the task retried, and nothing is missing; errors come before any task runs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import aioflow

pytest.importorskip("distributed", reason="the 'dask' extra is not installed: pip install '.[dask]'")
duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed: pip install '.[dev]'")
import pandas as pd  # noqa: E402  (after the skips: the extra brings it)
import pyarrow.dataset as pads  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import aioflow.dask as afd  # noqa: E402
from aioflow.cli import main  # noqa: E402

DATA = Path(__file__).parent / "data"
# link types, pcapng, fragments, tunnels, VLANs, IPv6: one partition each
CAPTURES = [DATA / name for name in (
    "ndpi_ocs.pcap", "nfstream_dns_fragmented.pcap", "zeek_pcapng-multi-interface.pcapng",
    "zeek_tunnels_vxlan-encapsulated-http.pcap", "zeek_vlan-collisions.pcap", "tcpdump_LINKTYPE_IPV6.pcap",
    "ndpi_mysql.pcapng")]  # fmt: skip
OPTIONS: dict[str, Any] = {"statistics": True, "splt": 4, "decode_tunnels": True, "meters": ("mac",),
                           "defragment": True}  # fmt: skip
SPLT = ("splt_direction", "splt_ps", "splt_piat_ms", "splt_piat_ns")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One cluster for the module (starting one costs seconds): two worker processes, one thread each."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def records(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's rows in id order, list cells as tuples (comparable), without CAPTURE_COLUMN."""
    out = frame.drop(columns=[afd.CAPTURE_COLUMN], errors="ignore").sort_values("id").reset_index(drop=True)
    for name in SPLT:
        if name in out:
            out[name] = [tuple(int(v) if float(v).is_integer() else float(v) for v in cell) for cell in out[name]]
    return out


def single_process(capture: Path, **options: Any) -> pd.DataFrame:
    return records(aioflow.read_frame(capture, **options))


def test_each_partition_is_read_frame_of_its_capture(client: Client) -> None:
    flows = afd.read_flows([str(c) for c in CAPTURES], **OPTIONS)
    assert flows.npartitions == len(CAPTURES)
    parts = [flows.get_partition(i) for i in range(flows.npartitions)]
    computed = client.compute(parts, sync=True)
    workers = client.run(os.getpid)
    assert len(set(workers.values())) == 2  # two processes, none of them this one
    assert os.getpid() not in workers.values()
    for capture, part in zip(CAPTURES, computed, strict=True):
        assert set(part[afd.CAPTURE_COLUMN]) <= {str(capture)}
        assert list(part.columns) == list(flows.columns)
        assert dict(part.dtypes) == dict(flows.dtypes)  # the meta, built from the options alone, holds
        expected = single_process(capture, **OPTIONS)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(records(part), expected)


def test_one_anonymization_key_for_every_partition(client: Client) -> None:
    capture = CAPTURES[0]
    flows = afd.read_flows([capture, capture], columns_to_anonymize=["src_ip"])  # no key given: one is drawn
    a, b = client.compute([flows.get_partition(i) for i in (0, 1)], sync=True)
    assert list(a.src_ip) == list(b.src_ip) and len(a.src_ip[0]) == 128  # BLAKE2b-512 in hex
    key = bytes(range(64))
    (part,) = client.compute([afd.read_flows(capture, columns_to_anonymize=["src_ip", "src_port"],
                                             anonymize_key=key).get_partition(0)], sync=True)  # fmt: skip
    expected = aioflow.read_frame(capture, columns_to_anonymize=["src_ip", "src_port"], anonymize_key=key)
    pd.testing.assert_frame_equal(records(part), records(expected), check_dtype=False)
    assert part.src_port.dtype == a.src_ip.dtype  # text, as the meta said
    with pytest.raises(aioflow.ConfigError, match="columns_to_anonymize: no column nope"):
        afd.read_flows(capture, columns_to_anonymize=["nope"])


def test_totals_per_capture_from_a_glob(client: Client) -> None:
    flows = afd.read_flows(str(DATA / "zeek_*.pcap"))
    names = sorted(DATA.glob("zeek_*.pcap"))
    assert flows.npartitions == len(names) > 5
    totals = flows.groupby(afd.CAPTURE_COLUMN).agg({"id": "count", "packets": "sum", "bytes": "sum"}).compute()
    expected = {str(c): aioflow.read_frame(c) for c in names}
    assert {c: tuple(row) for c, row in totals.iterrows()} == {
        c: (len(e), e.packets.sum(), e.bytes.sum()) for c, e in expected.items() if len(e)  # no flow: no group
    }


def without_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """records() but `id` (numbered per share: unique, not one reader's) and in the order of the rest."""
    out = records(frame).drop(columns=["id"])
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def test_shares_of_each_capture_give_its_records(client: Client, tmp_path: Path) -> None:
    # a fixed seed: the spread checked below is the same every run (without one, one is drawn)
    flows = afd.read_flows([str(c) for c in CAPTURES], shares_per_capture=3, hash_seed=1, **OPTIONS)
    assert flows.npartitions == 3 * len(CAPTURES)
    computed = client.compute([flows.get_partition(i) for i in range(flows.npartitions)], sync=True)
    for n, capture in enumerate(CAPTURES):
        parts = computed[3 * n : 3 * n + 3]
        whole = pd.concat(parts, ignore_index=True)
        assert set(whole[afd.CAPTURE_COLUMN]) == {str(capture)}
        assert whole.id.is_unique
        pd.testing.assert_frame_equal(without_ids(whole), without_ids(single_process(capture, **OPTIONS)))
    spread = [all(len(p) for p in computed[3 * n : 3 * n + 3]) for n in range(len(CAPTURES))]
    assert sum(spread) >= 2, spread  # some captures' flows really were counted by all three shares
    written = afd.to_parquet(CAPTURES, tmp_path, shares_per_capture=3, **OPTIONS)
    for w, capture in zip(written, CAPTURES, strict=True):
        e = single_process(capture, **OPTIONS)
        assert (w.capture, w.flows, w.packets, w.bytes) == (str(capture), len(e), e.packets.sum(), e.bytes.sum())
    assert {p.name.split("-")[-2] for p in tmp_path.glob("*.parquet")} <= {"0of3", "1of3", "2of3"}
    with pytest.raises(aioflow.ConfigError, match="shares_per_capture=0"):
        afd.read_flows(CAPTURES[0], shares_per_capture=0)
    with pytest.raises(aioflow.ConfigError, match="drop workers=2"):
        afd.read_flows(CAPTURES[0], shares_per_capture=2, workers=2)


def test_meta_comes_from_the_options_without_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = aioflow.read_frame(CAPTURES[0], **OPTIONS)

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read_flows read a capture to build its meta")

    monkeypatch.setattr(aioflow._read, "read_batches", no_reading)
    flows = afd.read_flows(CAPTURES[0], **OPTIONS)
    assert list(flows.columns) == [*expected.columns, afd.CAPTURE_COLUMN]
    assert dict(flows.dtypes.drop(afd.CAPTURE_COLUMN)) == dict(expected.dtypes)


def test_parquet_dataset_reads_back_equal(client: Client, tmp_path: Path) -> None:
    out = tmp_path / "flows"
    written = afd.to_parquet(CAPTURES, out, partition_on=["protocol"], **OPTIONS)
    assert [w.capture for w in written] == [str(c) for c in CAPTURES]
    expected = {str(c): single_process(c, **OPTIONS) for c in CAPTURES}
    for w in written:
        e = expected[w.capture]
        assert (w.flows, w.packets, w.bytes, w.damage) == (len(e), e.packets.sum(), e.bytes.sum(), "")
    assert {p.name for p in out.iterdir()} == {f"protocol={p}" for e in expected.values() for p in e.protocol}
    # DuckDB: the hive directories become the protocol column again
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT capture, count(*), sum(packets), sum(bytes), count(DISTINCT protocol) FROM "
        f"read_parquet('{out}/**/*.parquet', hive_partitioning = true) GROUP BY capture"
    ).fetchall()
    assert {r[0]: r[1:] for r in rows} == {
        c: (len(e), e.packets.sum(), e.bytes.sum(), e.protocol.nunique()) for c, e in expected.items()
    }
    # pyarrow: every record, every column
    table = pads.dataset(out, format="parquet", partitioning="hive").to_table().to_pandas()
    table["protocol"] = table["protocol"].astype("int64")
    for capture, e in expected.items():
        got = records(table[table[afd.CAPTURE_COLUMN] == capture][[*e.columns, afd.CAPTURE_COLUMN]])
        pd.testing.assert_frame_equal(got, e, check_dtype=False)


def test_a_capture_written_again_replaces_its_own_files(client: Client, tmp_path: Path) -> None:
    out = tmp_path / "flows"
    afd.to_parquet(CAPTURES[:2], out, partition_on=["protocol"])
    files = sorted(out.rglob("*.parquet"))
    (again,) = afd.to_parquet(CAPTURES[0], out, partition_on=["protocol"])  # not duplicated, the other kept
    assert sorted(out.rglob("*.parquet")) == files
    counts = duckdb.connect().execute(
        f"SELECT capture, count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    assert dict(counts) == {str(c): len(aioflow.read_frame(c)) for c in CAPTURES[:2]}
    assert again.flows == dict(counts)[str(CAPTURES[0])]


def test_damaged_capture_keeps_what_was_read_and_warns(client: Client, tmp_path: Path) -> None:
    whole = (DATA / "ndpi_ocs.pcap").read_bytes()
    damaged = tmp_path / "cut.pcap"
    damaged.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(aioflow.CaptureDamagedWarning) as caught:
        expected = single_process(damaged)
    (text,) = [str(w.message) for w in caught]
    assert 0 < len(expected) < len(single_process(DATA / "ndpi_ocs.pcap"))

    before = len(client.get_events("warn"))
    (part,) = client.compute([afd.read_flows(damaged).get_partition(0)], sync=True)
    pd.testing.assert_frame_equal(records(part), expected)
    # the worker forwarded its warning: the scheduler has it before the task's result
    events = client.get_events("warn")[before:]
    assert [str(_unpickled(e[1]["message"])) for e in events] == [text]

    with pytest.warns(aioflow.CaptureDamagedWarning, match="cut.pcap") as caught:
        (w,) = afd.to_parquet([damaged], tmp_path / "out")
    assert [str(x.message) for x in caught if x.category is aioflow.CaptureDamagedWarning] == [text]
    assert (w.flows, w.damage) == (len(expected), text)


def _unpickled(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)


def test_missing_captures_raise_before_any_task(client: Client, tmp_path: Path) -> None:
    with pytest.raises(aioflow.CaptureNotFoundError, match="no such capture file"):
        afd.read_flows([CAPTURES[0], tmp_path / "missing.pcap"])
    with pytest.raises(aioflow.CaptureNotFoundError, match="no capture matches"):
        afd.to_parquet(str(tmp_path / "*.pcap"), tmp_path / "out")
    with pytest.raises(aioflow.CaptureNotFoundError, match="a directory"):
        afd.read_flows(DATA)
    assert not (tmp_path / "out").exists()
    with pytest.raises(aioflow.ConfigError, match="partition_on: no column nope"):
        afd.to_parquet(CAPTURES[0], tmp_path / "out", partition_on=["nope"])
    with pytest.raises(aioflow.ConfigError, match="plugins"):
        afd.read_flows(CAPTURES[0], plugins=[aioflow.FlowPlugin()])
    with pytest.raises(aioflow.ConfigError, match="idle_timeout"):
        afd.read_flows(CAPTURES[0], idle_timeout=-1)
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_dataset_on_the_cluster(client: Client, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flows"
    whole = (DATA / "ndpi_ocs.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(whole[: len(whole) // 2])
    args = ["flows", "--dask", client.scheduler.address, str(DATA / "zeek_tcp*.pcap"), str(tmp_path / "cut.pcap"),
            "--format", "parquet", "-o", str(out), "--partition-on", "protocol", "--statistics",
            "--shares-per-capture", "2"]  # fmt: skip
    assert main(args) == 1  # the cut capture's flows are written, and it is said to be damaged
    err = capsys.readouterr().err.splitlines()
    captures = [*sorted(DATA.glob("zeek_tcp*.pcap")), tmp_path / "cut.pcap"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", aioflow.CaptureDamagedWarning)
        expected = {str(c): aioflow.read_frame(c, statistics=True) for c in captures}
    flows = sum(len(e) for e in expected.values())
    assert err[0].endswith(f": {flows} flows ({sum(e.packets.sum() for e in expected.values())} packets) from "
                           f"{len(captures)} captures, 2 Dask workers")  # fmt: skip
    assert len(err) == 2 and err[1].startswith(f"aioflow: error: {tmp_path / 'cut.pcap'}")
    rows = duckdb.connect().execute(
        f"SELECT capture, count(*), sum(bytes), sum(src2dst_mean_ps) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY capture"
    ).fetchall()
    got = {r[0]: (r[1], r[2], round(r[3], 6)) for r in rows}
    assert got == {c: (len(e), e.bytes.sum(), round(e.src2dst_mean_ps.sum(), 6)) for c, e in expected.items() if len(e)}


@pytest.mark.parametrize(("args", "message"), [
    (["--dask", "local", "a.pcap"], "--dask writes a Parquet dataset: give --format parquet -o DIRECTORY"),
    (["--format", "parquet", "-o", "out", "a.pcap"], "add --dask ADDRESS"),
    (["--shares-per-capture", "2", "a.pcap"], "add --dask ADDRESS"),
    (["a.pcap", "b.pcap"], "one SOURCE at a time (2 given)"),
    (["--dask", "local", "--format", "parquet", "-o", "out", "nothing/*.pcap"], "no capture matches this pattern"),
])  # fmt: skip
def test_cli_usage_errors_exit_2_before_any_cluster(args: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", *args]) == 2
    assert message in capsys.readouterr().err


def test_archive_to_parquet_example(client: Client, tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "archive_to_parquet.py"
    proc = subprocess.run([sys.executable, str(example), str(DATA), str(tmp_path / "out"), client.scheduler.address],
                          capture_output=True, text=True, check=True, timeout=600)  # fmt: skip
    captures = sorted(p for p in DATA.iterdir() if p.suffix in (".pcap", ".pcapng"))
    frames = [aioflow.read_frame(c).assign(capture=str(c)) for c in captures]
    flows = pd.concat(frames)
    sent = pd.concat([flows[["src_ip", "src2dst_bytes", "capture"]].set_axis(["host", "bytes", "capture"], axis=1),
                      flows[["dst_ip", "dst2src_bytes", "capture"]].set_axis(["host", "bytes", "capture"], axis=1)])
    talkers = sent.groupby("host").agg(sent=("bytes", "sum"), captures=("capture", "nunique"))
    talkers = talkers[talkers.sent > 0].reset_index().sort_values(["sent", "host"], ascending=[False, True]).head(10)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{len(flows)} flows from {len(captures)} captures in {tmp_path / 'out'}"
    assert [line.split() for line in lines[2:]] == [[h, str(s), str(c)] for h, s, c in talkers.itertuples(index=False)]
    assert len(lines) == 12


def _open_writer(fifo: Path) -> int:
    """The FIFO's write end, once a reader (a worker's task) has it open."""
    for _ in range(6000):  # a bound so that a broken cluster fails the test rather than hangs it
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd
    raise AssertionError(f"no worker opened {fifo}")


def _holders(client: Client, fifo: Path) -> list[int]:
    """The worker processes that have the FIFO open."""
    holders = []
    for pid in client.run(os.getpid).values():
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except FileNotFoundError:  # exited meanwhile
            continue
        holders += [pid] if str(fifo) in links else []
    return holders


def test_a_worker_killed_while_reading_is_retried(client: Client, tmp_path: Path) -> None:
    # The capture is a FIFO: the task reading it waits for this test's bytes, so the worker is
    # killed while it is inside the read, and its retry is seen opening the FIFO again.
    fifo = tmp_path / "slow.pcap"
    os.mkfifo(fifo)
    source = DATA / "ndpi_ocs.pcap"
    captures = [fifo, *CAPTURES[1:4]]
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(afd.to_parquet, captures, tmp_path / "out", partition_on=["capture"])
        fd = _open_writer(fifo)  # the first attempt is reading
        (victim,) = _holders(client, fifo)
        os.kill(victim, signal.SIGKILL)
        for _ in range(6000):  # until it is gone, so that no stale reader shares the retry's pipe
            if not os.path.exists(f"/proc/{victim}/fd"):
                break
            time.sleep(0.01)
        os.close(fd)
        fd = _open_writer(fifo)  # a second attempt, on another worker process
        assert victim not in _holders(client, fifo)
        os.write(fd, source.read_bytes())
        os.close(fd)
        written = job.result(timeout=600)
    client.wait_for_workers(2)
    assert victim not in client.run(os.getpid).values()
    expected = {str(fifo): single_process(source), **{str(c): single_process(c) for c in captures[1:]}}
    assert {w.capture: (w.flows, w.packets, w.damage) for w in written} == {
        c: (len(e), e.packets.sum(), "") for c, e in expected.items()
    }
    table = pads.dataset(tmp_path / "out", format="parquet", partitioning="hive").to_table().to_pandas()
    for capture, e in expected.items():
        got = records(table[table[afd.CAPTURE_COLUMN] == capture][list(e.columns)])
        pd.testing.assert_frame_equal(got, e, check_dtype=False)


def test_without_dask_the_error_names_the_extra() -> None:
    code = "import sys; sys.modules['dask'] = None; import aioflow.dask"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "ImportError" in result.stderr and "pip install 'aioflow-pcap[dask]'" in result.stderr
    cli = ("import sys; sys.modules['distributed'] = None; from aioflow.cli import main; "
           f"sys.exit(main(['flows', '--dask', 'local', {str(CAPTURES[0])!r}, '--format', 'parquet', '-o', 'out']))")
    result = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("aioflow: error: --dask needs the 'dask' extra: pip install 'aioflow-pcap[dask]'")
