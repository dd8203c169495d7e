"""Many captures on a Dask cluster: read_flows() as a dask DataFrame, one partition per capture
built by read_frame()'s bulk path on a worker, and to_parquet() writing a partitioned Parquet
dataset (hive layout: DuckDB, Spark, ClickHouse and pyarrow read it). Needs the `dask` extra,
``pip install 'aioflow-pcap[dask]'`` (dask[distributed], pandas, pyarrow).

The captures are named on the calling machine (globs expanded, each checked there, before any
task runs) and opened at the same path by the workers: a shared filesystem, as for dask's own
readers of local paths. A capture is one partition, read whole by one worker; or, with
``shares_per_capture=K``, K partitions, each counting a 1/K share of its flows by flow hash
(FlowParser's ``flow_share``): every such task reads the whole file, but holds and meters only its
share, and together they give one reader's records exactly."""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import dask
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dask.base import compute
    from dask.delayed import delayed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"aioflow.dask needs dask[distributed], pandas and pyarrow ({exc.name} is missing): "
        "pip install 'aioflow-pcap[dask]'"
    ) from exc

from ._engine import is_meter_library
from ._errors import CaptureDamagedWarning, CaptureNotFoundError, ConfigError
from ._extras import Anonymizer
from ._frame import Columns, empty_parts
from ._parser import file_config
from ._read import frame

__all__ = ["CAPTURE_COLUMN", "WrittenCapture", "read_flows", "to_parquet"]

# The column naming each row's capture: its absolute path (as the workers open it).
CAPTURE_COLUMN = "capture"

# Options whose meaning needs the caller's process or an endless source, or whose columns cannot
# be known before a capture is read (the meta Dask needs up front), with what to do instead.
_UNSUPPORTED = {
    "plugins": "the plugins' udps columns are only known once flows are read; run read_frame(plugins=...) per "
               "capture inside your own dask tasks (dask.delayed) instead",
    "follow": "a followed capture never ends, so its partition would never be complete; leave follow out",
    "live": "aioflow.dask reads capture files; capture an interface with FlowParser",
}  # fmt: skip

# pandas' own dtype for a column of str (read_frame's text columns): `str` in pandas 3, object before.
_TEXT = pd.Series([""]).dtype


@dataclass(frozen=True)
class WrittenCapture:
    """What to_parquet() wrote of one capture: its flows, their packets and bytes, and the damage
    ("" for a whole capture; else read_frame's CaptureDamagedWarning text: the rows are the flows
    of the packets before the damage)."""

    capture: str
    flows: int
    packets: int
    bytes: int
    damage: str = ""


@dataclass(frozen=True)
class _Plan:
    """What every task of one call shares: the options, the columns to anonymize with one key
    (a random key per task would hash the same address differently in each partition) and the
    meta (the frame of no flow, in the dtypes every partition is cast to)."""

    captures: tuple[str, ...]
    shares: int  # tasks per capture, each counting one share of its flows (flow_share)
    options: dict[str, Any]
    anonymize: tuple[str, ...]
    key: bytes
    meta: pd.DataFrame
    list_types: dict[str, np.dtype[Any]]

    @property
    def dtypes(self) -> dict[str, Any]:
        return dict(self.meta.dtypes.items())

    def parts(self) -> list[tuple[str, int]]:
        """The tasks: (capture, share) for every capture and each of its shares."""
        return [(capture, share) for capture in self.captures for share in range(self.shares)]

    def options_for(self, share: int) -> dict[str, Any]:
        """read_frame's options for one share of a capture (all of it when not shared)."""
        return {**self.options, "flow_share": (share, self.shares)} if self.shares > 1 else self.options


def read_flows(
    paths_or_glob: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    shares_per_capture: int = 1,
    columns_to_anonymize: Sequence[str] = (),
    anonymize_key: bytes | None = None,
    **options: Any,
) -> dd.DataFrame:
    """The flows of many capture files as one dask DataFrame: one partition per capture (in the
    order given, a glob's matches sorted), each read_frame(capture, **options) on a worker, plus
    the CAPTURE_COLUMN naming its capture (its absolute path). Nothing is read until it is
    computed; the columns and their dtypes come from the options alone.

    `shares_per_capture=K` (default 1): K partitions per capture, each the flows of one share of K
    by flow hash (FlowParser's flow_share; `id` stays unique within a capture). Each task reads
    the whole file but holds and meters only its share: worth it when meters dominate
    (statistics, dissect, reassemble) or when a capture's frame is too big for one worker. Without
    a `hash_seed` option, one is drawn for the call (the shares must hash alike).

    `paths_or_glob`: a path, a glob ('captures/*.pcap') or several of either. Options as
    read_frame() (FlowParser's), checked here; plugins, follow and live are refused (ConfigError,
    saying why), as are meters that are shared libraries. Raises CaptureNotFoundError before
    building anything when a capture is missing or a glob matches nothing. A damaged capture's
    partition holds the flows read before the damage; its CaptureDamagedWarning is raised on the
    worker and, on a distributed cluster, forwarded to the client (distributed.warn; the client
    shows it when the event reaches it, not necessarily before compute() returns)."""
    plan = _plan(paths_or_glob, options, columns_to_anonymize, anonymize_key, shares_per_capture)
    # Dask would otherwise turn every object column into Arrow strings, splt_*'s arrays included
    # (their cells would become the arrays' repr); text columns are pandas' str dtype already.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(  # type: ignore[no-any-return]  # dask.dataframe is untyped
            _partition,
            plan.parts(),
            meta=plan.meta,
            label="aioflow-read-flows",
            enforce_metadata=False,  # _partition casts to the meta's dtypes itself
            plan=_without_captures(plan),
        )


def to_parquet(
    paths_or_glob: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    partition_on: Sequence[str] = (),
    shares_per_capture: int = 1,
    columns_to_anonymize: Sequence[str] = (),
    anonymize_key: bytes | None = None,
    **options: Any,
) -> list[WrittenCapture]:
    """Writes the flows of many captures (read_flows()' rows and columns) to a Parquet dataset in
    `out_dir`, one task per capture on the current Dask scheduler (the distributed Client, when
    one is set up), and returns what each wrote. `partition_on`: columns whose values name
    hive-style directories (protocol=6/...); the files of a capture are named after it
    (<stem>-<hash of its path>-<n>.parquet), so a capture written again, or a task Dask retries,
    replaces its own files and no other capture's (files of partitions the new write does not
    produce stay: another partition_on or other options want a new directory). Every file has the same schema, from the
    options rather than from its rows (text columns as strings, splt_* as lists); a capture with
    no flow writes no file. `shares_per_capture` as read_flows(): K tasks per capture, whose files
    carry the share in their names (<stem>-<hash>-<share>of<K>-<n>.parquet); still one
    WrittenCapture per capture.

    Errors as read_flows(), before any task runs (ConfigError also for a partition_on column the
    rows lack); a damaged capture: its flows before the damage are written, and a
    CaptureDamagedWarning is raised here, one per damaged capture, after all were written."""
    plan = _plan(paths_or_glob, options, columns_to_anonymize, anonymize_key, shares_per_capture)
    missing = [c for c in partition_on if c not in plan.meta.columns]
    if missing:
        raise ConfigError(f"partition_on: no column {', '.join(missing)} (the columns: {', '.join(plan.meta.columns)})")
    os.makedirs(out_dir, exist_ok=True)
    shared = _without_captures(plan)
    write = delayed(_write_capture, pure=False)
    tasks = [write(part, os.fspath(out_dir), tuple(partition_on), shared) for part in plan.parts()]
    written = _per_capture(list(compute(*tasks)))
    for w in written:
        if w.damage:
            warnings.warn(CaptureDamagedWarning(w.damage), stacklevel=2)
    return written


def _plan(
    paths_or_glob: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    options: dict[str, Any],
    columns_to_anonymize: Sequence[str],
    anonymize_key: bytes | None,
    shares: int,
) -> _Plan:
    """The captures and options checked, and the meta, before any task is built."""
    if isinstance(shares, bool) or not isinstance(shares, int) or shares < 1:
        raise ConfigError(f"shares_per_capture={shares!r}: expected an integer >= 1 (tasks per capture)")
    for name, why in _UNSUPPORTED.items():
        if options.get(name):
            raise ConfigError(f"aioflow.dask: {name}= is not supported: {why}")
    libraries = [m for m in options.get("meters", ()) if is_meter_library(m)]
    if libraries:
        raise ConfigError(f"aioflow.dask: meters={libraries!r}: a meter library's columns are only known once it is "
                          "loaded; use built-in meters, or read_frame per capture in your own dask tasks")  # fmt: skip
    captures = _captures(paths_or_glob)
    if shares > 1:
        if options.get("hash_seed") is None:  # the shares must hash flows alike
            options = {**options, "hash_seed": secrets.randbits(64)}
        file_config(captures[0], flow_share=(0, shares), **options)  # its ConfigError before any task
    meta, list_types = _meta(captures[0], options)
    # read_frame's anonymizer checks the key and the columns (ConfigError) and draws the one key
    anonymizer = Anonymizer(columns_to_anonymize, anonymize_key)
    anonymizer.frame(meta.copy())
    for name in anonymizer.columns:  # nfstream's hex digests: text whatever the column was
        meta[name] = meta[name].astype(_TEXT)
        list_types.pop(name, None)
    return _Plan(captures, shares, dict(options), anonymizer.columns, anonymizer.key, meta, list_types)


def _without_captures(plan: _Plan) -> _Plan:
    """The plan each task gets: the captures are the tasks' own argument (a task list of
    thousands of paths is not sent with every task)."""
    return _Plan((), plan.shares, plan.options, plan.anonymize, plan.key, plan.meta, plan.list_types)


def _captures(paths_or_glob: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    """The capture files named, globs expanded (sorted); CaptureNotFoundError for a missing one."""
    items = [paths_or_glob] if isinstance(paths_or_glob, str | os.PathLike) else list(paths_or_glob)
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise CaptureNotFoundError(f"{text}: no capture matches this pattern (check the directory and the "
                                           "quoting: the pattern is expanded here, not by a shell)")  # fmt: skip
            out += matches
        else:
            out.append(text)
    if not out:
        raise ConfigError("aioflow.dask: no capture given; name capture files or a glob such as 'captures/*.pcap'")
    for path in out:
        if os.path.isdir(path):
            raise CaptureNotFoundError(f"{path}: a directory, not a capture file; give a glob such as "
                                       f"'{os.path.join(path, '*.pcap')}'")  # fmt: skip
        if not os.path.exists(path):
            raise CaptureNotFoundError(f"{path}: no such capture file (the paths are checked on this machine and "
                                       "opened at the same path by the workers)")  # fmt: skip
    # absolute: a worker's working directory is not the caller's
    return tuple(os.path.abspath(path) for path in out)


def _meta(capture: str, options: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, np.dtype[Any]]]:
    """read_frame()'s frame of no flow for these options (FlowParser checks them: ConfigError),
    text columns in pandas' str dtype, plus CAPTURE_COLUMN; and the list columns (splt_*) with
    the dtype of their items (Parquet's list types)."""
    meters = file_config(capture, **options).meters_on()
    array_length = options.get("splt", 0)
    empty = empty_parts(meters, array_length)
    list_types = {n: c.dtype for n, c in empty.items() if np.ndim(c) == 2}
    meta = pd.DataFrame(Columns().batch(empty))
    for name, dtype in meta.dtypes.items():
        if isinstance(dtype, np.dtype) and dtype.kind == "O" and name not in list_types:
            meta[name] = meta[name].astype(_TEXT)
    meta[CAPTURE_COLUMN] = pd.Series([], dtype=_TEXT)
    return meta, list_types


def _read_capture(capture: str, share: int, plan: _Plan) -> tuple[pd.DataFrame, str]:
    """One capture's frame (or its share's) in the plan's dtypes, with its CAPTURE_COLUMN, and
    its damage text ("" when whole): read_frame's bulk path, on a worker."""
    damage: list[str] = []
    flows = frame(capture, plan.anonymize, plan.key, damage.append, plan.options_for(share))
    flows[CAPTURE_COLUMN] = capture
    # only the columns that differ (text of pandas < 3, anonymized numbers): astype of every
    # column costs ~10 ms, as much as reading a small capture
    have = dict(flows.dtypes.items())  # flows[name] per column would cost as much again
    differ = {name: dtype for name, dtype in plan.dtypes.items() if have[name] != dtype}
    return (flows.astype(differ) if differ else flows), "".join(damage)


def _partition(part: tuple[str, int], plan: _Plan) -> pd.DataFrame:
    """read_flows()' partition of one capture (or share); its damage warned where the client sees it."""
    flows, damage = _read_capture(*part, plan)
    if damage and part[1] == 0:  # every share of a capture meets the same damage: warned once
        _warn_client(CaptureDamagedWarning(damage))
    return flows


def _warn_client(warning: Warning) -> None:
    """The warning here and, in a distributed worker, at the clients too (distributed.warn)."""
    try:
        from distributed import warn
    except ImportError:  # dask without distributed: the threads or processes schedulers
        warnings.warn(warning, stacklevel=2)
    else:
        warn(warning)


def _write_capture(
    part: tuple[str, int], out_dir: str, partition_on: tuple[str, ...], plan: _Plan
) -> WrittenCapture:
    """to_parquet()'s task: one capture's flows (or its share's) into the dataset under files
    named after it."""
    capture, share = part
    flows, damage = _read_capture(capture, share, plan)
    table = pa.Table.from_pandas(flows, schema=_arrow_schema(plan), preserve_index=False)
    tag = hashlib.sha256(capture.encode()).hexdigest()[:12]  # the path is absolute (_captures)
    pq.write_to_dataset(
        table,
        out_dir,
        partition_cols=list(partition_on) or None,
        basename_template=f"{Path(capture).stem}-{tag}{_share_tag(share, plan.shares)}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )
    return WrittenCapture(capture, len(flows), int(flows["packets"].sum()), int(flows["bytes"].sum()), damage)


def _share_tag(share: int, shares: int) -> str:
    return f"-{share}of{shares}" if shares > 1 else ""


def _per_capture(parts: list[WrittenCapture]) -> list[WrittenCapture]:
    """One WrittenCapture per capture, its shares' counts added (each share saw the same damage)."""
    out: dict[str, WrittenCapture] = {}
    for w in parts:
        was = out.get(w.capture)
        out[w.capture] = w if was is None else WrittenCapture(
            w.capture, was.flows + w.flows, was.packets + w.packets, was.bytes + w.bytes, was.damage or w.damage)
    return list(out.values())


def _arrow_schema(plan: _Plan) -> pa.Schema:
    """The dataset's schema, from the meta rather than from each capture's rows (pyarrow would
    make a column of empty lists, or of None, Arrow's null type, unlike the other files')."""
    fields = []
    for name, dtype in plan.meta.dtypes.items():
        if name in plan.list_types:
            kind = pa.list_(pa.from_numpy_dtype(plan.list_types[name]))
        elif isinstance(dtype, np.dtype) and dtype.kind in "iufb":
            kind = pa.from_numpy_dtype(dtype)
        else:
            kind = pa.string()
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)
