"""Synchronous entry points for scripts: read() iterates flows, read_frame() builds a DataFrame."""

from __future__ import annotations

import os
import select
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._engine import Batch, Engine, MeterLayout
from ._errors import CaptureDamagedWarning, damage_message
from ._flow import Flow
from ._parser import BATCH_RECORDS, READY_BATCHES, file_engine, iter_batch
from ._plugins import run_plugins

if TYPE_CHECKING:
    import pandas
    import pyarrow


def read_batches(
    source: str | os.PathLike[str],
    *,
    warn_stacklevel: int = 2,
    layouts: list[MeterLayout] | None = None,
    on_damage: Callable[[str], None] | None = None,
    stats_out: dict[str, Any] | None = None,
    use: Callable[[Batch], object] | None = None,
    expect: Callable[[int], object] | None = None,
    **options: Any,
) -> Iterator[Batch]:
    """The batches of ended flows of a capture file (blocking): what read() makes Flows of.
    FlowParser's options; raises as FlowParser and read() do. The engine's reading thread runs
    ahead while the caller handles the batches this yields. A damaged file: after its last batch,
    a CaptureDamagedWarning (attributed `warn_stacklevel` frames up, as warnings.warn counts), or
    its text to `on_damage` instead (aioflow.dask: warnings.catch_warnings is process-wide, so a
    worker thread cannot catch its own task's warning with it). `layouts`: gets the engine's meter
    layout once it is open (loaded meters' fields included), for the columns of a source with no
    flow. `stats_out`, when given, is updated with the engine's final counters (Engine.stats()).
    `use`: each batch is given to use() instead of being yielded, in place in the engine's memory
    without plugins (Engine.take_ready; a plugin may keep a Flow, which reads its batch later),
    so `use` must keep nothing of it; the generator is then only run through. `expect` (with
    `use`): called once, before the first batch is given to use(), with how many records the
    whole source may give (expected_records), for a consumer that sizes its columns once."""
    engine, read_ahead, plugins = file_engine(source, **options)
    if layouts is not None:
        layouts.append(engine.meter_layout)
    if use is not None and expect is not None:
        use = _expecting(use, expect, engine)
    try:
        ready_fd = engine.start(BATCH_RECORDS, READY_BATCHES, read_ahead)
        in_place = use if not plugins else None
        while True:
            state, batch = engine.take_ready(use=in_place)
            if state == "wait":
                select.select([ready_fd], [], [])
            elif batch.count:
                run_plugins(batch, plugins)
                if use is None:
                    yield batch
                else:
                    use(batch)
            if state == "done":
                break
        stats = engine.stats()
        if stats_out is not None:
            stats_out.update(stats)
    finally:
        engine.close()
    if stats["read_errors"]:
        text = damage_message(os.fspath(source), stats["packets_read"], stats["error"])
        if on_damage is not None:
            on_damage(text)
            return
        warnings.warn(CaptureDamagedWarning(text), stacklevel=warn_stacklevel)


def _expecting(
    use: Callable[[Batch], object], expect: Callable[[int], object], engine: Engine
) -> Callable[[Batch], None]:
    """use(), preceded the first time by expect(the records expected in all)."""
    told = False

    def first_told(batch: Batch) -> None:
        nonlocal told
        if not told:
            told = True
            expect(expected_records(engine.stats(), batch.count))
        use(batch)

    return first_told


def expected_records(stats: dict[str, Any], taken: int) -> int:
    """How many records a capture file may give in all, from the engine's counters while it
    reads (Engine.stats()): the flows created so far, scaled by the share of the file read so far,
    plus a quarter (active timeouts split flows; flows are not spread evenly); `taken` when the
    file's size is not known (a pipe). An estimate: a consumer that sizes by it still grows."""
    offset, size = stats["file_offset"], stats["file_size"]
    seen = max(stats["flows_created"], taken)
    return int(seen * size / offset * 1.25) if size and offset else taken


def read(source: str | os.PathLike[str], **options: Any) -> Iterator[Flow]:
    """Every flow of a capture file, in the order flows ended (blocking; for scripts).

    Takes FlowParser's options (filter, idle_timeout, active_timeout, ... in FlowParser's units)
    and raises what FlowParser does for them and for the file (ConfigError,
    CaptureNotFoundError, CaptureFormatError, ...) when iteration starts. A damaged or
    truncated file yields the flows of the packets before the damage, then warns
    CaptureDamagedWarning (where reading stopped and why)."""
    for batch in read_batches(source, warn_stacklevel=3, **options):
        yield from iter_batch(batch)


_PANDAS_FRAGMENTED = 100  # pandas warns past this many blocks (pandas/core/internals/managers.py, insert)


def read_frame(
    source: str | os.PathLike[str],
    *,
    columns_to_anonymize: Sequence[str] = (),
    anonymize_key: bytes | None = None,
    **options: Any,
) -> pandas.DataFrame:
    """All flows of a capture file as a pandas DataFrame, one row per ended flow.

    Built from the C records in bulk (numpy), without a Python object per flow. Needs the
    `pandas` extra, `pip install pandas` (ImportError without it). Options, units
    and errors as read() (a damaged file: the flows before the damage, and a CaptureDamagedWarning);
    columns as Flow.to_dict(), integers as int64 (times in ns and s, bytes, packets), then the
    enabled meters' (decode_tunnels: tunnel_id, tunnel_type, tunnel_src_ip, tunnel_dst_ip;
    meters=("mac",): src_mac, dst_mac, src_oui, dst_oui). `columns_to_anonymize` become
    nfstream's keyed BLAKE2b hex digests (`anonymize_key`: up to 64 bytes; random per call
    without one); ConfigError for a column the frame lacks. The plugins' fields (plugins=...)
    are "udps.<name>" columns (None where a flow has none)."""
    return frame(source, columns_to_anonymize, anonymize_key, None, options)


def frame(
    source: str | os.PathLike[str],
    columns_to_anonymize: Sequence[str],
    anonymize_key: bytes | None,
    on_damage: Callable[[str], None] | None,
    options: dict[str, Any],
) -> pandas.DataFrame:
    """read_frame()'s frame; a damaged capture's text to `on_damage` when given (read_batches)."""
    try:
        import numpy  # noqa: F401  (pandas needs it; checked here for the message)
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("read_frame needs pandas and numpy: pip install pandas (the 'pandas' extra)") from exc
    from ._extras import Anonymizer
    from ._frame import add_batch, batches_to_columns
    from ._frame_targets import PandasColumns

    anonymizer = Anonymizer(columns_to_anonymize, anonymize_key)
    layouts: list[MeterLayout] = []
    form = PandasColumns()
    # the warning's frames: read_batches, batches_to_columns, frame, read_frame, its caller
    batches = read_batches(source, warn_stacklevel=5, layouts=layouts, on_damage=on_damage,
                           use=add_batch(form), expect=form.expect, **options)  # fmt: skip
    columns = batches_to_columns(batches, layouts, form)
    # The columns are ours: no second copy, unless pandas would call the frame "highly fragmented"
    # (a PerformanceWarning on the next column a user adds, past 100 blocks: statistics' 116
    # columns); then one copy joins them into a block per dtype (~1 ms per 1,000 rows).
    return anonymizer.frame(pd.DataFrame(columns, copy=len(columns) >= _PANDAS_FRAGMENTED))


def to_csv(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    columns_to_anonymize: Sequence[str] = (),
    anonymize_key: bytes | None = None,
    **options: Any,
) -> int:
    """Writes read_frame()'s rows to a CSV file at `path` (nfstream's to_csv, with its
    `columns_to_anonymize`) and returns how many. Options and errors as read_frame()."""
    frame = read_frame(source, columns_to_anonymize=columns_to_anonymize, anonymize_key=anonymize_key, **options)
    frame.to_csv(path, index=False)
    return len(frame)


def read_arrow(source: str | os.PathLike[str], **options: Any) -> pyarrow.Table:
    """All flows of a capture file as a pyarrow Table: read_frame()'s columns, built the same way
    (numpy columns from the C records, batch by batch). Needs pyarrow, `pip install pyarrow`
    (the 'parquet' extra; ImportError saying so without it). Options, units and errors as
    read_frame()."""
    try:
        import pyarrow as pa
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("read_arrow needs pyarrow: pip install pyarrow (the 'parquet' extra)") from exc
    from ._frame import add_batch, batches_to_columns
    from ._frame_targets import ArrowColumns

    layouts: list[MeterLayout] = []
    form = ArrowColumns()
    batches = read_batches(source, warn_stacklevel=4, layouts=layouts, use=add_batch(form), **options)
    return pa.table(batches_to_columns(batches, layouts, form))
