"""The bulk path: C flow records viewed as a numpy structured array, turned into columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._flow import TCP_FLAGS
from ._native import ffi


def _record_dtype() -> np.dtype[Any]:
    """numpy's view of af_record, with offsets taken from the compiled struct itself."""
    u64, u32, u16, u8 = "<u8", "<u4", "<u2", "u1"
    fields: dict[str, tuple[Any, ...]] = {}
    for name, kind in (
        ("id", u64), ("first_ns", u64), ("last_ns", u64),
        ("src2dst_first_ns", u64), ("src2dst_last_ns", u64),
        ("dst2src_first_ns", u64), ("dst2src_last_ns", u64),
        ("src2dst_packets", u64), ("src2dst_bytes", u64), ("src2dst_captured_bytes", u64),
        ("dst2src_packets", u64), ("dst2src_bytes", u64), ("dst2src_captured_bytes", u64),
        ("src2dst_flag_counts", (u32, 8)), ("dst2src_flag_counts", (u32, 8)),
        ("headers_dropped", u32), ("src_ip", (u8, 16)), ("dst_ip", (u8, 16)),
        ("src_port", u16), ("dst_port", u16), ("vlan_id", u16), ("ip_version", u8), ("protocol", u8),
        ("src2dst_tcp_flags", u8), ("dst2src_tcp_flags", u8),
        ("src2dst_min_ttl", u8), ("src2dst_max_ttl", u8), ("dst2src_min_ttl", u8), ("dst2src_max_ttl", u8),
        ("end_reason", u8),
    ):  # fmt: skip
        fields[name] = (np.dtype(kind), ffi.offsetof("af_record", name))
    return np.dtype({  # type: ignore[call-overload]
        "names": list(fields),
        "formats": [f[0] for f in fields.values()],
        "offsets": [f[1] for f in fields.values()],
        "itemsize": ffi.sizeof("af_record"),
    })


RECORD_DTYPE = _record_dtype()


def _ip_strings(version: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Dotted/colon strings; IPv4 vectorised, IPv6 through ipaddress (compressed form)."""
    import ipaddress

    out = np.empty(len(version), dtype=object)
    v4 = version == 4
    if v4.any():
        octets = raw[v4, :4].astype(str)
        joined = octets[:, 0]
        for i in range(1, 4):
            joined = np.char.add(np.char.add(joined, "."), octets[:, i])
        out[v4] = joined
    for i in np.flatnonzero(~v4):
        out[i] = str(ipaddress.IPv6Address(raw[i].tobytes()))
    return out


def records_to_columns(rec: np.ndarray, end_reasons: tuple[str, ...]) -> dict[str, Any]:
    cols: dict[str, Any] = {"id": rec["id"]}
    cols["src_ip"] = _ip_strings(rec["ip_version"], rec["src_ip"])
    cols["src_port"] = rec["src_port"]
    cols["dst_ip"] = _ip_strings(rec["ip_version"], rec["dst_ip"])
    for name in ("dst_port", "protocol", "ip_version", "vlan_id"):
        cols[name] = rec[name]
    cols["first_seen"] = rec["first_ns"] / 1e9
    cols["last_seen"] = rec["last_ns"] / 1e9
    cols["first_seen_ns"] = rec["first_ns"]
    cols["last_seen_ns"] = rec["last_ns"]
    duration = rec["last_ns"] - rec["first_ns"]
    cols["duration"] = duration / 1e9
    cols["duration_ns"] = duration
    cols["packets"] = rec["src2dst_packets"] + rec["dst2src_packets"]
    cols["bytes"] = rec["src2dst_bytes"] + rec["dst2src_bytes"]
    cols["captured_bytes"] = rec["src2dst_captured_bytes"] + rec["dst2src_captured_bytes"]
    for d in ("src2dst", "dst2src"):
        for name in ("packets", "bytes", "captured_bytes"):
            cols[f"{d}_{name}"] = rec[f"{d}_{name}"]
        cols[f"{d}_first_seen_ns"] = rec[f"{d}_first_ns"]
        cols[f"{d}_last_seen_ns"] = rec[f"{d}_last_ns"]
    for d in ("src2dst", "dst2src"):
        cols[f"{d}_tcp_flags"] = rec[f"{d}_tcp_flags"]
        for i, flag in enumerate(TCP_FLAGS):
            cols[f"{d}_{flag}_packets"] = rec[f"{d}_flag_counts"][:, i]
    for d in ("src2dst", "dst2src"):
        cols[f"{d}_min_ttl"] = rec[f"{d}_min_ttl"]
        cols[f"{d}_max_ttl"] = rec[f"{d}_max_ttl"]
    with np.errstate(divide="ignore", invalid="ignore"):
        seconds = duration / 1e9
        cols["bytes_per_second"] = np.where(duration > 0, cols["bytes"] / seconds, 0.0)
        cols["packets_per_second"] = np.where(duration > 0, cols["packets"] / seconds, 0.0)
    cols["headers_dropped"] = rec["headers_dropped"]
    cols["end_reason"] = np.asarray(end_reasons, dtype=object)[rec["end_reason"]]
    return cols
