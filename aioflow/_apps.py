"""Traffic by application: each ended flow's nDPI application and category (the dissect meter),
summed per (application, category) a batch at a time with numpy. `aioflow apps` and
examples/app_breakdown.py are built on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ._engine import Batch
from ._frame import RECORD_DTYPE, meter_columns

# What a group adds up, per direction (read_frame's names): packets, IP bytes, captured bytes.
SUMS = ("src2dst_packets", "dst2src_packets", "src2dst_bytes", "dst2src_bytes",
        "src2dst_captured_bytes", "dst2src_captured_bytes")  # fmt: skip
TEXTS = ("application_name", "application_category_name")
# application_columns(): the two texts, the end of each flow, the sums
COLUMNS = (*TEXTS, "last_seen_ns", *SUMS)


def application_columns(batch: Batch) -> dict[str, np.ndarray]:
    """COLUMNS of a batch from a FlowParser(dissect=True): the application and category as str
    (empty for a flow the dissector had no room for), ``last_seen_ns`` and the SUMS as int64.
    Raises ValueError for a batch without the dissect meter."""
    only = set(TEXTS)
    texts = meter_columns(batch.meter_data, batch.count, batch.meter_layout, only) if batch.count else {}
    if batch.count and texts.keys() != only:
        raise ValueError("the batch has no application fields: open the FlowParser with dissect=True")
    rec = np.frombuffer(batch.raw_records(), dtype=RECORD_DTYPE)
    cols = {name: texts.get(name, np.zeros(0, dtype=object)) for name in TEXTS}
    cols["last_seen_ns"] = rec["last_ns"].astype(np.int64)
    for name in SUMS:
        cols[name] = rec[name].astype(np.int64)
    return cols


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    """One application and category: its flows and, each way, packets, IP bytes (NetFlow's
    octets) and captured bytes (the frames as pcap stored them, link layer included)."""

    application_name: str
    application_category_name: str
    flows: int
    src2dst_packets: int
    dst2src_packets: int
    src2dst_bytes: int
    dst2src_bytes: int
    src2dst_captured_bytes: int
    dst2src_captured_bytes: int

    @property
    def packets(self) -> int:
        return self.src2dst_packets + self.dst2src_packets

    @property
    def bytes(self) -> int:
        return self.src2dst_bytes + self.dst2src_bytes

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (the CSV and JSON output's columns)."""
        return asdict(self)


class ApplicationTotals:
    """Flows, packets and bytes per (application, category), added a batch at a time: numpy
    groups each batch (one Python step per group, none per flow); memory follows the number of
    distinct applications, which nDPI bounds (a few hundred)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str], np.ndarray] = {}

    def add(self, batch: Batch) -> None:
        """Adds a batch of a FlowParser(dissect=True) (ValueError without dissect)."""
        self.add_columns(application_columns(batch))

    def add_columns(self, cols: Mapping[str, np.ndarray]) -> None:
        """Adds flows given as application_columns() gives them (or a selection of their rows)."""
        if not len(cols["application_name"]):
            return
        names, by_name = np.unique(cols["application_name"], return_inverse=True)
        categories, by_category = np.unique(cols["application_category_name"], return_inverse=True)
        groups, by_group = np.unique(by_name * len(categories) + by_category, return_inverse=True)
        values = np.stack([np.ones(len(by_group), dtype=np.int64), *(cols[s] for s in SUMS)], axis=1)
        sums = np.zeros((len(groups), values.shape[1]), dtype=np.int64)
        np.add.at(sums, by_group, values)
        for group, row in zip(groups.tolist(), sums, strict=True):
            key = (str(names[group // len(categories)]), str(categories[group % len(categories)]))
            if key in self._sums:
                self._sums[key] += row
            else:
                self._sums[key] = row

    def rows(self) -> list[ApplicationRow]:
        """One row per (application, category), most bytes (both ways) first; ties by flows,
        then by name."""
        rows = [
            ApplicationRow(name, category, *(int(v) for v in sums)) for (name, category), sums in self._sums.items()
        ]
        rows.sort(key=lambda r: (-r.bytes, -r.flows, r.application_name, r.application_category_name))
        return rows
