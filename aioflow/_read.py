"""Synchronous entry points for scripts: read() iterates flows, read_frame() builds a DataFrame."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._engine import END_REASONS, Batch, Engine
from ._flow import Flow
from ._parser import BATCH_RECORDS, READY_BATCHES, FlowParser, iter_batch

if TYPE_CHECKING:
    import pandas


def _engine_for(source: str | os.PathLike[str], options: dict[str, Any]) -> tuple[Engine, bool]:
    # FlowParser validates and converts the options exactly as the async API does; files only.
    parser = FlowParser(source, live=False, **options)
    return Engine(source, parser._config), parser._reads_ahead()


def _batches(source: str | os.PathLike[str], options: dict[str, Any]) -> Iterator[Batch]:
    # The engine's reading thread runs ahead while the caller handles the batches it yields.
    engine, read_ahead = _engine_for(source, options)
    try:
        ready_fd = engine.start(BATCH_RECORDS, READY_BATCHES, read_ahead)
        while True:
            state, batch = engine.take_ready()
            if state == "wait":
                select.select([ready_fd], [], [])
            elif batch.count:
                yield batch
            if state == "done":
                return
    finally:
        engine.close()


def read(source: str | os.PathLike[str], **options: Any) -> Iterator[Flow]:
    """Every flow of a capture file, in the order flows ended (blocking; for scripts).

    Takes FlowParser's options (filter, idle_timeout, active_timeout, ...)."""
    for batch in _batches(source, options):
        yield from iter_batch(batch)


def read_frame(source: str | os.PathLike[str], **options: Any) -> pandas.DataFrame:
    """All flows of a capture file as a pandas DataFrame, one row per ended flow.

    Built from the C records in bulk (numpy), without a Python object per flow. Needs the
    `pandas` extra: pip install 'aioflow-pcap[pandas]'."""
    try:
        import numpy  # noqa: F401  (pandas needs it; checked here for the message)
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("read_frame needs pandas and numpy: pip install 'aioflow-pcap[pandas]'") from exc
    from ._frame import batches_to_columns

    return pd.DataFrame(batches_to_columns(_batches(source, options), END_REASONS))
