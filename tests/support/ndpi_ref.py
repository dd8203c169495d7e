"""ndpiReader (Debian's libndpi-bin, the same nDPI aioflow links) as the reference for dissect=True:
its per-flow CSV (-C), keyed by the flow's 5-tuple without direction."""

from __future__ import annotations

import csv
import ipaddress
import shutil
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

NDPI_READER = shutil.which("ndpiReader")

Key = tuple[int, tuple[bytes, int], tuple[bytes, int]]


def flow_key(protocol: int, a: str, a_port: int, b: str, b_port: int) -> Key | None:
    """A 5-tuple without direction; None for an address the tool printed wrong (ndpiReader 4.2
    prints some IPv6 addresses with two "::")."""
    try:
        ends = sorted([(ipaddress.ip_address(a).packed, int(a_port)), (ipaddress.ip_address(b).packed, int(b_port))])
    except ValueError:
        return None
    return (int(protocol), ends[0], ends[1])


def ndpi_reader_flows(capture: Path) -> dict[Key, list[dict[str, str]]]:
    """ndpiReader's flows of a capture by 5-tuple: its CSV rows (ndpi_proto, server_name_sni, ...);
    a 5-tuple it reported twice has two rows."""
    assert NDPI_READER is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flows.csv"
        subprocess.run([NDPI_READER, "-q", "-i", str(capture), "-C", str(out)], capture_output=True, check=True)
        with out.open() as f:
            rows = list(csv.reader(f))
    header = [rows[0][0].lstrip("#"), *rows[0][1:]]
    flows: dict[Key, list[dict[str, str]]] = defaultdict(list)
    for row in rows[1:]:
        d = dict(zip(header, row, strict=False))
        key = flow_key(int(d["protocol"]), d["src_ip"], int(d["src_port"]), d["dst_ip"], int(d["dst_port"]))
        if key is not None:
            flows[key].append(d)
    return flows
