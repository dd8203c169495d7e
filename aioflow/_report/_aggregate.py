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


ADDRESS = np.dtype("V17")  # an address as one sortable value: IP version, then 16 bytes (IPv4 in the first 4)


def address_keys(version: np.ndarray[Any, Any], raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Addresses as ADDRESS values, from the records' version and 16-byte address columns."""
    out = np.empty((len(version), 17), dtype=np.uint8)
    out[:, 0] = version
    out[:, 1:] = raw
    return out.view(ADDRESS).reshape(-1)


def address_keys_of_text(text: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """ADDRESS values of address strings (flows given as a frame): each distinct one parsed once."""
    import ipaddress

    names, where = np.unique(np.asarray(text).astype(str), return_inverse=True)
    parsed = [ipaddress.ip_address(n) for n in names]
    raw = np.zeros((len(names), 16), dtype=np.uint8)
    for i, a in enumerate(parsed):
        raw[i, : len(a.packed)] = np.frombuffer(a.packed, dtype=np.uint8)
    keys = address_keys(np.array([a.version for a in parsed], dtype=np.uint8), raw)
    return keys[where.reshape(-1)]


def unique_rows(columns: list[np.ndarray[Any, Any]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """np.unique(..., return_inverse=True) over rows of integer columns, by lexsort (numpy sorts
    integers far faster than the byte strings np.unique(axis=0) compares): the index of each
    distinct row's first occurrence in sorted order, and each row's distinct-row number."""
    n = len(columns[0])
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for c in columns:
        sorted_c = c[order]
        change[1:] |= sorted_c[1:] != sorted_c[:-1]
    group = np.cumsum(change) - 1
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = group
    return order[change], inverse


def address_codes(keys: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The distinct ADDRESS values (sorted) and each value's index among them."""
    raw = keys.view(np.uint8).reshape(-1, 17)
    words = raw[:, 1:].copy().view(">u8")  # two big-endian words: sorting them sorts the bytes
    first, inverse = unique_rows([raw[:, 0].astype(np.int64), words[:, 0], words[:, 1]])
    return keys[first], inverse


Addresses = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def flow_addresses(cols: Columns) -> Addresses:
    """address_codes of the flows' two ends: every source address, then every destination's.
    endpoints() and conversations() both need them; a report computes them once for both."""
    return address_codes(np.concatenate([column(cols, "src_addr"), column(cols, "dst_addr")]))


def address_text(key: Any) -> str:
    """An ADDRESS value as text ('192.0.2.1', '2001:db8::1')."""
    import ipaddress

    data = bytes(key)
    return str(ipaddress.IPv4Address(data[1:5]) if data[0] == 4 else ipaddress.IPv6Address(data[1:17]))


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


def endpoints(cols: Columns, top: int, addresses: Addresses | None = None) -> Table:
    """Per IP address, as tshark's ``-z endpoints,ip`` (and ``ipv6``): packets and bytes in all,
    sent (Tx) and received (Rx), from every flow it is an end of; the `top` by bytes.
    `addresses`: flow_addresses(cols), when already computed."""
    sp, sb = column(cols, "src2dst_packets"), column(cols, "src2dst_captured_bytes")
    dp, db = column(cols, "dst2src_packets"), column(cols, "dst2src_captured_bytes")
    names, where = flow_addresses(cols) if addresses is None else addresses
    n = len(names)

    def per_address(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.bincount(where, weights=values, minlength=n).astype(np.int64)

    tx_packets, tx_bytes = per_address(np.concatenate([sp, dp])), per_address(np.concatenate([sb, db]))
    rx_packets, rx_bytes = per_address(np.concatenate([dp, sp])), per_address(np.concatenate([db, sb]))
    order = np.argsort(-(tx_bytes + rx_bytes), kind="stable")[:top]  # ties: in address order
    rows = [(address_text(names[i]), int(tx_packets[i] + rx_packets[i]), int(tx_bytes[i] + rx_bytes[i]),
             int(tx_packets[i]), int(tx_bytes[i]), int(rx_packets[i]), int(rx_bytes[i])) for i in order]  # fmt: skip
    return Table(("address", "packets", "bytes", "tx_packets", "tx_bytes", "rx_packets", "rx_bytes"), rows, n)


def conversations(cols: Columns, top: int, addresses: Addresses | None = None) -> Table:
    """Per protocol and unordered pair of (address, port), as tshark's ``-z conv,tcp``/``conv,udp``
    (flows split by timeouts or port reuse summed, VLAN ids ignored): packets and bytes each way,
    A being the smaller endpoint; first packet time (epoch s) and duration (s). The `top` by bytes.
    `addresses`: flow_addresses(cols), when already computed."""
    proto = column(cols, "protocol").astype(np.int64)
    names, codes = flow_addresses(cols) if addresses is None else addresses
    count = len(proto)
    # an endpoint as one integer: address code, then port (keys stay numbers: no string per flow)
    src = codes[:count].astype(np.int64) << 16 | column(cols, "src_port").astype(np.int64)
    dst = codes[count:].astype(np.int64) << 16 | column(cols, "dst_port").astype(np.int64)
    swap = src > dst
    a, b = np.where(swap, dst, src), np.where(swap, src, dst)
    first_row, where = unique_rows([proto, a, b])
    keys = np.stack([proto, a, b], axis=1)[first_row]
    n = len(keys)
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
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], -(ab_bytes + ba_bytes)))[:top]

    def text(endpoint: int) -> str:
        address, port = address_text(names[endpoint >> 16]), endpoint & 0xFFFF
        return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

    rows = [(protocol_name(int(keys[i, 0])), text(int(keys[i, 1])), text(int(keys[i, 2])),
             int(ab_packets[i]), int(ab_bytes[i]), int(ba_packets[i]), int(ba_bytes[i]),
             int(ab_packets[i] + ba_packets[i]), int(ab_bytes[i] + ba_bytes[i]),
             first[i] / 1e9, (last[i] - first[i]) / 1e9) for i in order]  # fmt: skip
    return Table(("protocol", "a", "b", "a_to_b_packets", "a_to_b_bytes", "b_to_a_packets", "b_to_a_bytes",
                  "packets", "bytes", "start", "duration"), rows, n)  # fmt: skip


_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 47: "gre", 50: "esp", 132: "sctp"}


def protocol_name(number: int) -> str:
    return _PROTOCOL_NAMES.get(number, f"ip-{number}")


def flow_starts(
    cols: Columns, timeline: Timeline, groups: np.ndarray[Any, Any] | None = None, group_count: int = 0
) -> np.ndarray[Any, Any]:
    """Flows (records) starting in each of the timeline's buckets, by protocol class (or by
    `groups`, a group index per flow): (buckets, classes)."""
    first = column(cols, "first_seen_ns").astype(np.int64)
    count = len(timeline.packets)
    if groups is None:
        groups, group_count = protocol_classes(column(cols, "protocol")), len(TIMELINE_CLASSES)
    out = np.zeros((count, group_count), dtype=np.int64)
    if not len(first) or not count:
        return out
    bucket = np.clip((first - timeline.origin_ns) // timeline.interval_ns, 0, count - 1)
    np.add.at(out, (bucket, groups), 1)
    return out


def estimated_timeline(
    cols: Columns, buckets: int = 400, groups: np.ndarray[Any, Any] | None = None, group_count: int = 0
) -> Timeline | None:
    """A timeline from flow records alone: each flow's packets and bytes spread evenly over its
    buckets from first to last packet. An estimate; the report says so. Columns are the
    protocol classes, or `groups` (a group index per flow, `group_count` of them: applications)."""
    first = column(cols, "first_seen_ns").astype(np.int64)
    if not len(first):
        return None
    last = column(cols, "last_seen_ns").astype(np.int64)
    origin, span = int(first.min()), int(last.max() - first.min()) + 1
    interval = nice_interval(span / buckets)
    count = span // interval + 1
    start, end = (first - origin) // interval, (last - origin) // interval
    width = end - start + 1
    if groups is None:
        groups, group_count = protocol_classes(column(cols, "protocol")), len(TIMELINE_CLASSES)

    def spread(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each flow's integer total over its buckets: an equal share, the remainder one each
        in its first buckets (so totals stay exact); added with a difference array."""
        share, extra = np.divmod(values.astype(np.int64), width)
        delta = np.zeros((count + 1, group_count), dtype=np.int64)
        np.add.at(delta, (start, groups), share + 1)
        np.add.at(delta, (start + extra, groups), -1)
        np.add.at(delta, (end + 1, groups), -share)
        return np.cumsum(delta, axis=0)[:count]

    return Timeline(origin, interval, spread(column(cols, "packets")), spread(column(cols, "captured_bytes")))


def applications(cols: Columns, top: int = 8) -> tuple[list[str], np.ndarray[Any, Any], Table]:
    """dissect=True: the `top` applications by bytes (the rest as "other"), each flow's group
    index among them, and a table of every application: flows, packets, bytes."""
    names, where = np.unique(column(cols, "application_name").astype(str), return_inverse=True)
    where = where.reshape(-1)
    n = len(names)
    sizes = np.bincount(where, weights=column(cols, "captured_bytes"), minlength=n).astype(np.int64)
    packets = np.bincount(where, weights=column(cols, "packets"), minlength=n).astype(np.int64)
    flows = np.bincount(where, minlength=n)
    order = np.argsort(-sizes, kind="stable")
    shown = [str(names[i]) or "unknown" for i in order[:top]]
    group = np.full(n, len(shown), dtype=np.int64)
    group[order[:top]] = np.arange(len(order[:top]))
    if n > top:
        shown.append("other")
    rows = [(str(names[i]) or "unknown", int(flows[i]), int(packets[i]), int(sizes[i])) for i in order]
    return shown, group[where], Table(("application", "flows", "packets", "bytes"), rows, n)


def nice_interval(ns: float) -> int:
    """The smallest of 1, 2, 5 x 10^k ns that is at least `ns`."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= ns:
                return step * m
        step *= 10


def log_edges(values: np.ndarray[Any, Any], bins: int = 40) -> np.ndarray[Any, Any]:
    """Log-spaced bin edges spanning the positive values (none when there is none)."""
    positive = values[values > 0].astype(np.float64)
    if not len(positive):
        return np.zeros(0)
    low, high = np.log10(positive.min()), np.log10(positive.max())
    return np.logspace(low, high if high > low else low + 1, bins + 1)


def end_reasons(cols: Columns) -> dict[str, int]:
    """Records by end reason, most first."""
    names, counts = np.unique(column(cols, "end_reason").astype(str), return_counts=True)
    return {str(n): int(c) for n, c in sorted(zip(names, counts, strict=True), key=lambda x: (-x[1], x[0]))}


# Zeek's conn_state values, in the order its documentation lists them, with what they mean
TCP_STATES = {
    "S0": "attempt, no reply", "S1": "established, not terminated", "SF": "normal establishment and termination",
    "REJ": "attempt rejected", "S2": "established, originator closed, no reply",
    "S3": "established, responder closed, no reply", "RSTO": "established, originator aborted (RST)",
    "RSTR": "responder sent a RST", "RSTOS0": "originator sent a SYN then a RST, no SYN-ACK",
    "RSTRH": "responder sent a SYN-ACK then a RST, no SYN from the originator",
    "SH": "originator sent a SYN then a FIN, no SYN-ACK", "SHR": "responder sent a SYN-ACK then a FIN, no SYN",
    "OTH": "no SYN seen, just midstream traffic",
}  # fmt: skip


def tcp_states(cols: Columns) -> Table:
    """TCP flow records by Zeek's conn_state (the conn_state meter), as Zeek's order lists them."""
    tcp = column(cols, "protocol") == 6
    states = column(cols, "tcp_state")[tcp].astype(str)
    names, counts = np.unique(states, return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist(), strict=True))
    known = [(s, found.pop(s), TCP_STATES[s]) for s in TCP_STATES if s in found]
    rows = known + [(s, n, "") for s, n in sorted(found.items())]
    return Table(("conn_state", "flows", "meaning"), rows, len(rows))
