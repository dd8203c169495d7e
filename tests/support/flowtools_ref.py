"""The flow-tools oracles (files written and printed by the real flow-tools 0.68.5): where they are,
and readers for what its programs printed: `flow-export -f 2` CSV, `flow-header`, `flow-print -f 5`."""

from __future__ import annotations

import csv
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
BUNDLED = HERE / "data" / "flowtools"
SHARED = Path(os.environ.get("AIOFLOW_FLOWTOOLS", HERE.parent.parent / "shared" / "flowtools"))
ABSENT = f"the flow-tools corpus is not at {SHARED} (set AIOFLOW_FLOWTOOLS to its folder)"

# flow-export's lower-case CSV names -> pyflowtools' attribute names
_NAMES = {"sysuptime": "sysUpTime", "dpkts": "dPkts", "doctets": "dOctets", "dflows": "dFlows",
          "first": "first_raw", "last": "last_raw"}  # fmt: skip
ADDRESSES = {"exaddr", "srcaddr", "dstaddr", "nexthop", "peer_nexthop", "router_sc"}


def export_rows(path: Path) -> list[dict[str, int]]:
    """`flow-export -f 2` output as rows of integers (addresses as their uint32), by pyflowtools'
    names, with flow-export's two known header quirks undone (v6 names peer_nexthop `nexthop`; v8.6-8.8
    print marked_tos before extra_pkts under a header that says the opposite)."""
    with path.open(newline="") as fh:
        lines = [line for line in fh if not line.startswith("#") or line.startswith("#:")]
    header = lines[0][2:].strip().split(",")
    if header.count("nexthop") == 2:
        header[len(header) - 1 - header[::-1].index("nexthop")] = "peer_nexthop"
    if header[-2:] == ["extra_pkts", "marked_tos"]:
        header[-2:] = ["marked_tos", "extra_pkts"]
    names = [_NAMES.get(h, h) for h in header]
    rows = []
    for row in csv.reader(lines[1:]):
        pairs = zip(names, row, strict=True)
        rows.append({n: int(ipaddress.IPv4Address(v)) if n in ADDRESSES else int(v) for n, v in pairs})
    return rows


def header_fields(path: Path) -> dict[str, str]:
    """`flow-header` output as {label: value}."""
    out = {}
    for line in path.read_text().splitlines():
        label, sep, value = line.lstrip("# ").partition(":")
        if sep:
            out[label.strip()] = value.strip()
    return out


def print_f5(records: list[Any]) -> str:
    """What `flow-print -f 5` prints for these records (flow-tools' printf widths; times by
    localtime() under TZ=UTC: MMDD.HH:MM:SS.mmm, Fl = tcp_flags & 7)."""

    def when(t: float) -> str:
        secs = int(t)
        ms = round((t - secs) * 1000)
        tm = time.gmtime(secs)
        return f"{tm.tm_mon:02d}{tm.tm_mday:02d}.{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{ms:03d}"

    lines = ["Start             End               Sif   SrcIPaddress    SrcP  DIf   DstIPaddress    DstP    P Fl Pkts       Octets", ""]  # noqa: E501
    for r in records:
        lines.append(
            f"{when(r.first):<17} {when(r.last):<17} {r.input:<5} {r.srcaddr:<15} {r.srcport:<5} {r.output:<5} "
            f"{r.dstaddr:<15} {r.dstport:<5} {r.prot:<3} {r.tcp_flags & 7:<2} {r.dPkts:<10} {r.dOctets:<10}"
        )
    return "\n".join(lines) + "\n"
