"""`aioflow report`: a self-contained HTML report of flows (charts and sortable tables)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from .._flow import Flow
from . import _aggregate
from ._gather import ReportData, gather


def report(
    flows: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Mapping[str, Any] | Iterable[Flow],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    **options: Any,
) -> Path:
    """Writes an HTML report of `flows` to `path` (one file that opens offline) and returns it.

    `flows` is a capture path (or several): read with FlowParser's `options` and the `timeline`
    meter, so traffic over time is counted per packet; or flows already read (read_frame()'s
    DataFrame, a dict of its columns, or Flow objects): then traffic over time is estimated from
    each flow's first and last packet, and the report says so. Needs the `report` extra (plotly)."""
    from ._page import render

    sources = _paths(flows)
    if sources:
        import anyio

        data = anyio.run(gather, sources, dict(options))
        name = ", ".join(os.fspath(s) for s in sources)
    else:
        data = _from_flows(cast("Mapping[str, Any] | Iterable[Flow]", flows))
        name = "flows"
    out = Path(path)
    out.write_text(render(data, title or f"aioflow report: {name}"), encoding="utf-8")
    return out


def _paths(flows: object) -> list[str | os.PathLike[str]]:
    """The capture paths `flows` names ([] when it holds flows)."""
    if isinstance(flows, (str, os.PathLike)):
        return [flows]
    if isinstance(flows, (list, tuple)) and flows and all(isinstance(f, (str, os.PathLike)) for f in flows):
        return list(flows)
    return []


def _from_flows(flows: Mapping[str, Any] | Iterable[Flow]) -> ReportData:
    import numpy as np

    if isinstance(flows, Mapping) or hasattr(flows, "columns"):
        cols = {str(k): np.asarray(flows[k]) for k in flows.keys()}  # type: ignore[union-attr,index]
    else:
        rows = [f.to_dict() for f in flows]
        cols = {k: np.asarray([r[k] for r in rows]) for k in (rows[0] if rows else {})}
    if not cols:
        raise ValueError("report() needs at least one flow, or a capture path")
    if "conn_state_state" in cols:  # read with meters=("conn_state",)
        cols["tcp_state"] = cols["conn_state_state"]
    cols["src_addr"] = _aggregate.address_keys_of_text(cols["src_ip"])
    cols["dst_addr"] = _aggregate.address_keys_of_text(cols["dst_ip"])
    return ReportData(cols, _aggregate.estimated_timeline(cols), True, [])


__all__ = ["report"]
