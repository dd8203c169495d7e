"""The report's charts, as plotly figures (the `report` extra): traffic over time, top talkers,
flow size and duration distributions, end reasons."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._timeline import TIMELINE_CLASSES, Timeline
from ._aggregate import Table, log_edges

try:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("aioflow's report needs plotly: pip install 'aioflow-pcap[report]' (or plotly)") from exc

COLOURS = {"tcp": "#1f77b4", "udp": "#ff7f0e", "icmp": "#2ca02c", "other": "#7f7f7f"}
LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 40}}


def traffic(
    timeline: Timeline, starts: np.ndarray[Any, Any], estimated: bool, names: tuple[str, ...] = TIMELINE_CLASSES,
    by: str = "protocol",
) -> Any:
    """Bytes/s, packets/s and flows/s per time bucket, stacked by protocol class (or by the
    groups `names` gives the columns of: applications)."""
    seconds = timeline.interval_ns / 1e9
    when = (timeline.starts_ns // 1_000_000).astype("datetime64[ms]")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("bytes/s", "packets/s", "flows started/s"))  # fmt: skip
    for k, name in enumerate(names):
        if not (timeline.packets[:, k].any() or starts[:, k].any()):
            continue
        for row, values in ((1, timeline.bytes[:, k]), (2, timeline.packets[:, k]), (3, starts[:, k])):
            fig.add_trace(
                go.Scatter(x=when, y=values / seconds, name=name, legendgroup=name, showlegend=row == 1,
                           stackgroup=f"s{row}", mode="lines", line={"width": 0.5, "color": COLOURS.get(name)}),
                row=row, col=1,
            )  # fmt: skip
    title = f"Traffic over time by {by} ({_interval_text(timeline.interval_ns)} buckets)"
    if estimated:
        title += ", estimated: each flow spread evenly from its first to its last packet"
    fig.update_layout(title=title, height=620, hovermode="x unified", **LAYOUT)
    return fig


def _interval_text(ns: int) -> str:
    for unit, size in (("s", 1_000_000_000), ("ms", 1_000_000), ("µs", 1_000)):
        if ns >= size:
            return f"{ns / size:g} {unit}"
    return f"{ns} ns"


def talkers(table: Table, count: int = 20) -> Any:
    """The top talkers' bytes sent and received, as horizontal stacked bars."""
    rows = table.rows[:count][::-1]
    names = [r[0] for r in rows]
    fig = go.Figure([
        go.Bar(y=names, x=[r[4] for r in rows], name="sent (Tx)", orientation="h"),
        go.Bar(y=names, x=[r[6] for r in rows], name="received (Rx)", orientation="h"),
    ])  # fmt: skip
    fig.update_layout(title=f"Top {len(rows)} talkers by bytes", barmode="stack", xaxis_title="bytes",
                      height=max(300, 24 * len(rows) + 120), **LAYOUT)  # fmt: skip
    return fig


def distribution(values_by_protocol: dict[str, np.ndarray[Any, Any]], title: str, unit: str) -> Any:
    """Histograms on a log axis (log-spaced bins, one trace per protocol class)."""
    fig = go.Figure()
    everything = np.concatenate(list(values_by_protocol.values())) if values_by_protocol else np.zeros(0)
    edges = log_edges(everything)
    for name, values in values_by_protocol.items():
        if not len(edges) or not (values > 0).any():
            continue
        counts, _ = np.histogram(values[values > 0], bins=edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        fig.add_trace(go.Bar(x=centres, y=counts, name=name, marker_color=COLOURS.get(name),
                             width=np.diff(edges) * 0.9))  # fmt: skip
    fig.update_layout(title=title, barmode="stack", xaxis_type="log", xaxis_title=unit, yaxis_title="flows",
                      height=380, **LAYOUT)  # fmt: skip
    return fig


def end_reasons(counts: dict[str, int]) -> Any:
    """Flow records by end reason."""
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color="#9467bd"))
    fig.update_layout(title="Why flows ended", yaxis_title="flows", height=340, **LAYOUT)
    return fig


def applications(table: Table, count: int = 20) -> Any:
    """The top applications' bytes (dissect=True)."""
    rows = table.rows[:count][::-1]
    fig = go.Figure(go.Bar(y=[r[0] for r in rows], x=[r[3] for r in rows], orientation="h",
                           marker_color="#17becf", customdata=[r[1] for r in rows],
                           hovertemplate="%{y}: %{x} bytes, %{customdata} flows"))  # fmt: skip
    fig.update_layout(title=f"Top {len(rows)} applications by bytes (nDPI)", xaxis_title="bytes",
                      height=max(300, 24 * len(rows) + 120), **LAYOUT)  # fmt: skip
    return fig


def tcp_states(table: Table) -> Any:
    """TCP connections by Zeek's conn_state."""
    fig = go.Figure(go.Bar(x=[r[0] for r in table.rows], y=[r[1] for r in table.rows], marker_color="#1f77b4",
                           customdata=[r[2] for r in table.rows],
                           hovertemplate="%{x}: %{y} flows<br>%{customdata}"))  # fmt: skip
    fig.update_layout(title="TCP connection states (Zeek's conn_state)", yaxis_title="flows", height=340, **LAYOUT)
    return fig
