"""The report's HTML page: one self-contained file (plotly's JavaScript embedded once, no CDN),
facts at the top, charts, and tables that sort when a header is clicked."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

from .._timeline import TIMELINE_CLASSES
from . import _aggregate as agg
from . import _figures as figures
from ._gather import ReportData

TOP_ROWS = 100

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; } th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { background: #e8e8e8; } td.text, th.text { text-align: left; }
.facts td { text-align: left; } .note { color: #666; font-size: 0.9em; }
"""

# A click on a header sorts by that column (numbers by value), again reverses.
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var down = th.dataset.order !== "desc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = down ? "desc" : "asc";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return down ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def render(data: ReportData, title: str) -> str:
    """The whole page."""
    import plotly.io as pio
    import plotly.offline

    cols = data.columns
    sections = [_facts(data)]
    charts: list[tuple[str, Any]] = []
    if data.timeline is not None:
        starts = agg.flow_starts(cols, data.timeline)
        charts.append(("Traffic over time", figures.traffic(data.timeline, starts, data.timeline_estimated)))
    apps = None
    if "application_name" in cols and len(agg.column(cols, "application_name")):
        names, groups, apps = agg.applications(cols)
        by_app = agg.estimated_timeline(cols, groups=groups, group_count=len(names))
        if by_app is not None:
            starts = agg.flow_starts(cols, by_app, groups, len(names))
            chart = figures.traffic(by_app, starts, True, tuple(names), "application")
            charts.append(("Traffic by application", chart))
        charts.append(("Applications", figures.applications(apps)))
    addresses = agg.flow_addresses(cols)
    talkers = agg.endpoints(cols, TOP_ROWS, addresses)
    convs = agg.conversations(cols, TOP_ROWS, addresses)
    if talkers.rows:
        charts.append(("Top talkers", figures.talkers(talkers)))
    classes = agg.protocol_classes(agg.column(cols, "protocol"))
    sizes = {n: agg.column(cols, "captured_bytes")[classes == k] for k, n in enumerate(TIMELINE_CLASSES)}
    durations = {n: agg.column(cols, "duration_ns")[classes == k] / 1e9 for k, n in enumerate(TIMELINE_CLASSES)}
    charts.append(("Flow sizes", figures.distribution(sizes, "Flow size (bytes, both directions)", "bytes")))
    charts.append(("Flow durations", figures.distribution(durations, "Flow duration (flows of one packet: 0 s,"
                                                          " left out)", "seconds")))  # fmt: skip
    charts.append(("End reasons", figures.end_reasons(agg.end_reasons(cols))))
    states = agg.tcp_states(cols) if "tcp_state" in cols else None
    if states is not None and states.rows:
        charts.append(("TCP connection states", figures.tcp_states(states)))
    config = {"displaylogo": False, "responsive": True}
    for heading, fig in charts:
        body = pio.to_html(fig, full_html=False, include_plotlyjs=False, config=config)
        sections.append(f"<h2>{html.escape(heading)}</h2>\n<div class='chart'>{body}</div>")
        if heading == "TCP connection states" and states is not None:
            sections.append(_table(states, "TCP flows by conn_state"))
        if heading == "Applications" and apps is not None:
            sections.append(_table(apps, "Applications (nDPI)"))
        if heading == "Top talkers":
            sections.append(_table(talkers, "Endpoints (as Wireshark's Endpoints, IPv4 and IPv6)"))
            sections.append(_table(convs, "Conversations (as Wireshark's Conversations; splits summed)"))
    if not talkers.rows:
        sections.append("<p class='note'>No flows.</p>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>\n<body>"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(sections) + f"\n<script>{_SORT_JS}</script></body></html>\n"
    )


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC") if ns else "-"


def _facts(data: ReportData) -> str:
    """The header: per source, what was read, the time span, what was set aside and why."""
    rows = []
    for s in data.sources:
        info = s.info
        aside = ", ".join(f"{k} {v}" for k, v in sorted(info.aside.items()) if v) or "none"
        events = ", ".join(f"{k} {v}" for k, v in sorted(info.decode_events.items()) if v) or "none"
        span = (s.last_ns - s.first_ns) / 1e9
        cells = [
            ("source", s.source), ("packets read", f"{info.packets:,}"), ("bytes read", f"{info.bytes:,}"),
            ("packets in flows", f"{info.packets_in_flows:,}"), ("flows", f"{info.flows_ended:,}"),
            ("first packet", _when(s.first_ns)), ("last packet", _when(s.last_ns)), ("span", f"{span:,.3f} s"),
            ("link type", str(info.link_type)), ("counted aside (not in a flow)", aside),
            ("decode events (packets kept)", events),
        ]  # fmt: skip
        if info.read_errors:
            cells.append(("damage", info.read_error))
        rows.append("".join(f"<tr><th class='text'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                            for k, v in cells))  # fmt: skip
    note = ""
    if data.timeline_estimated:
        note = "<p class='note'>Built from flow records: traffic over time is an estimate.</p>"
    tables = "".join(f"<table class='facts'>{r}</table>" for r in rows)
    return f"<h2>Capture</h2>{tables}{note}<p class='note'>Bytes are captured frame bytes, as Wireshark counts.</p>"


def _table(table: agg.Table, caption: str) -> str:
    head = "".join(f"<th class='{_kind(table.rows, i)}'>{html.escape(c)}</th>" for i, c in enumerate(table.columns))
    body = []
    for row in table.rows:
        cells = "".join(_cell(v) for v in row)
        body.append(f"<tr>{cells}</tr>")
    shown = f"top {len(table.rows)} of {table.total}" if table.total > len(table.rows) else f"{table.total}"
    return (f"<h3>{html.escape(caption)}: {shown}</h3><table class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def _kind(rows: Sequence[tuple[Any, ...]], i: int) -> str:
    return "text" if rows and isinstance(rows[0][i], str) else "number"


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return f"<td class='text' data-value='{html.escape(value, quote=True)}'>{html.escape(value)}</td>"
    text = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
    return f"<td data-value='{value}'>{text}</td>"
