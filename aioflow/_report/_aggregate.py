"""The numbers a report shows, computed in bulk (numpy) from flow columns: never a Python object
per flow, so a 10M-packet capture's report is built in seconds.

Bytes here are captured frame bytes (the records' ``*_captured_bytes``), as Wireshark's tables
count them; they equal the bytes on the wire when nothing was cut by a snapshot length."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._timeline import TIMELINE_CLASSES, Timeline

Columns = Mapping[str, Any]  # name -> numpy array (read_frame's columns, or a DataFrame)

PROTOCOL_CLASS = {6: 0, 17: 1, 1: 2, 58: 2}  # timeline class index by IP protocol; others: "other"


def column(cols: Columns, name: str) -> np.ndarray[Any, Any]:
    """One column as a numpy array, whether `cols` is a dict of arrays or a DataFrame."""
    return np.asarray(cols[name])


def protocol_classes(protocol: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Timeline class index (TIMELINE_CLASSES) of each IP protocol number."""
    out = np.full(len(protocol), TIMELINE_CLASSES.index("other"), dtype=np.int64)
    for number, index in PROTOCOL_CLASS.items():
        out[protocol == number] = index
    return out


@dataclass(frozen=True)
class Table:
    """Rows of one report table, largest first; `total` rows existed before the cut to `rows`."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    total: int


def endpoints(cols: Columns, top: int) -> Table:
    """Per IP address, as tshark's ``-z endpoints,ip`` (and ``ipv6``): packets and bytes in all,
    sent (Tx) and received (Rx), from every flow it is an end of; the `top` by bytes."""
    src, dst = column(cols, "src_ip"), column(cols, "dst_ip")
    sp, sb = column(cols, "src2dst_packets"), column(cols, "src2dst_captured_bytes")
    dp, db = column(cols, "dst2src_packets"), column(cols, "dst2src_captured_bytes")
    addresses = np.concatenate([src, dst]).astype(str)
    names, where = np.unique(addresses, return_inverse=True)
    n = len(names)

    def per_address(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.bincount(where, weights=values, minlength=n).astype(np.int64)

    tx_packets, tx_bytes = per_address(np.concatenate([sp, dp])), per_address(np.concatenate([sb, db]))
    rx_packets, rx_bytes = per_address(np.concatenate([dp, sp])), per_address(np.concatenate([db, sb]))
    order = np.lexsort((names, -(tx_bytes + rx_bytes)))[:top]
    rows = [(str(names[i]), int(tx_packets[i] + rx_packets[i]), int(tx_bytes[i] + rx_bytes[i]),
             int(tx_packets[i]), int(tx_bytes[i]), int(rx_packets[i]), int(rx_bytes[i])) for i in order]  # fmt: skip
    return Table(("address", "packets", "bytes", "tx_packets", "tx_bytes", "rx_packets", "rx_bytes"), rows, n)


def conversations(cols: Columns, top: int) -> Table:
    """Per protocol and unordered pair of (address, port), as tshark's ``-z conv,tcp``/``conv,udp``
    (flows split by timeouts or port reuse summed, VLAN ids ignored): packets and bytes each way,
    A being the smaller endpoint; first packet time (epoch s) and duration (s). The `top` by bytes."""
    proto = column(cols, "protocol")
    src = np.char.add(np.char.add(column(cols, "src_ip").astype(str), "|"), column(cols, "src_port").astype(str))
    dst = np.char.add(np.char.add(column(cols, "dst_ip").astype(str), "|"), column(cols, "dst_port").astype(str))
    swap = src > dst
    a, b = np.where(swap, dst, src), np.where(swap, src, dst)
    keys = np.char.add(np.char.add(np.char.add(proto.astype(str), "/"), a), np.char.add("/", b))
    names, where = np.unique(keys, return_inverse=True)
    n = len(names)
    sp, sb = column(cols, "src2dst_packets"), column(cols, "src2dst_captured_bytes")
    dp, db = column(cols, "dst2src_packets"), column(cols, "dst2src_captured_bytes")

    def per_pair(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.bincount(where, weights=values, minlength=n).astype(np.int64)

    ab_packets, ab_bytes = per_pair(np.where(swap, dp, sp)), per_pair(np.where(swap, db, sb))
    ba_packets, ba_bytes = per_pair(np.where(swap, sp, dp)), per_pair(np.where(swap, sb, db))
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    np.minimum.at(first, where, column(cols, "first_seen_ns").astype(np.int64))
    np.maximum.at(last, where, column(cols, "last_seen_ns").astype(np.int64))
    order = np.lexsort((names, -(ab_bytes + ba_bytes)))[:top]
    rows = []
    for i in order:
        number, end_a, end_b = str(names[i]).split("/")
        rows.append((protocol_name(int(number)), endpoint_text(end_a), endpoint_text(end_b),
                     int(ab_packets[i]), int(ab_bytes[i]), int(ba_packets[i]), int(ba_bytes[i]),
                     int(ab_packets[i] + ba_packets[i]), int(ab_bytes[i] + ba_bytes[i]),
                     first[i] / 1e9, (last[i] - first[i]) / 1e9))  # fmt: skip
    return Table(("protocol", "a", "b", "a_to_b_packets", "a_to_b_bytes", "b_to_a_packets", "b_to_a_bytes",
                  "packets", "bytes", "start", "duration"), rows, n)  # fmt: skip


def endpoint_text(key: str) -> str:
    """'addr|port' as 'addr:port', IPv6 addresses bracketed."""
    address, _, port = key.partition("|")
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 47: "gre", 50: "esp", 132: "sctp"}


def protocol_name(number: int) -> str:
    return _PROTOCOL_NAMES.get(number, f"ip-{number}")


def flow_starts(cols: Columns, timeline: Timeline) -> np.ndarray[Any, Any]:
    """Flows (records) starting in each of the timeline's buckets, by protocol class: (buckets, classes)."""
    first = column(cols, "first_seen_ns").astype(np.int64)
    count = len(timeline.packets)
    out = np.zeros((count, len(TIMELINE_CLASSES)), dtype=np.int64)
    if not len(first) or not count:
        return out
    bucket = np.clip((first - timeline.origin_ns) // timeline.interval_ns, 0, count - 1)
    np.add.at(out, (bucket, protocol_classes(column(cols, "protocol"))), 1)
    return out


def estimated_timeline(cols: Columns, buckets: int = 400) -> Timeline | None:
    """A timeline from flow records alone (no timeline meter: flows given to report() directly):
    each flow's packets and bytes spread evenly over its buckets from first to last packet. An
    estimate; the report says so."""
    first = column(cols, "first_seen_ns").astype(np.int64)
    if not len(first):
        return None
    last = column(cols, "last_seen_ns").astype(np.int64)
    origin, span = int(first.min()), int(last.max() - first.min()) + 1
    interval = nice_interval(span / buckets)
    count = span // interval + 1
    start, end = (first - origin) // interval, (last - origin) // interval
    width = end - start + 1
    classes = protocol_classes(column(cols, "protocol"))

    def spread(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each flow's integer total over its buckets: an equal share, the remainder one each
        in its first buckets (so totals stay exact); added with a difference array."""
        share, extra = np.divmod(values.astype(np.int64), width)
        delta = np.zeros((count + 1, len(TIMELINE_CLASSES)), dtype=np.int64)
        np.add.at(delta, (start, classes), share + 1)
        np.add.at(delta, (start + extra, classes), -1)
        np.add.at(delta, (end + 1, classes), -share)
        return np.cumsum(delta, axis=0)[:count]

    return Timeline(origin, interval, spread(column(cols, "packets")), spread(column(cols, "captured_bytes")))


def nice_interval(ns: float) -> int:
    """The smallest of 1, 2, 5 x 10^k ns that is at least `ns`."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= ns:
                return step * m
        step *= 10


def log_histogram(values: np.ndarray[Any, Any], bins: int = 40) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Counts of positive values on log-spaced bins (edges, counts); zeros are left out."""
    positive = values[values > 0].astype(np.float64)
    if not len(positive):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    low, high = np.log10(positive.min()), np.log10(positive.max())
    edges = np.logspace(low, high if high > low else low + 1, bins + 1)
    counts, edges = np.histogram(positive, bins=edges)
    return edges, counts


def end_reasons(cols: Columns) -> dict[str, int]:
    """Records by end reason, most first."""
    names, counts = np.unique(column(cols, "end_reason").astype(str), return_counts=True)
    return {str(n): int(c) for n, c in sorted(zip(names, counts, strict=True), key=lambda x: (-x[1], x[0]))}
