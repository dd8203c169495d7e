"""ndpiReader (Debian's libndpi-bin, the same nDPI aioflow links) as the reference for dissect=True:
its per-flow CSV (-C), keyed by the flow's 5-tuple without direction, and its per-protocol summary
("Detected protocols")."""

from __future__ import annotations

import csv
import ipaddress
import re
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


def _run_reader(capture: Path) -> tuple[str, list[list[str]]]:
    """ndpiReader's report (stdout) and per-flow CSV rows of a capture."""
    assert NDPI_READER is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flows.csv"
        # not UTF-8 throughout: it prints ALPN values byte for byte (foxio_tls-non-ascii-alpn.pcapng)
        run = subprocess.run([NDPI_READER, "-i", str(capture), "-C", str(out)], capture_output=True, text=True,
                             errors="replace", check=True)  # fmt: skip
        if not out.exists():
            return run.stdout + run.stderr, []
        with out.open(errors="replace") as f:
            return run.stdout + run.stderr, list(csv.reader(f))


def ndpi_reader_flows(capture: Path) -> dict[Key, list[dict[str, str]]]:
    """ndpiReader's flows of a capture by 5-tuple: its CSV rows (ndpi_proto, server_name_sni, ...);
    a 5-tuple it reported twice has two rows."""
    rows = _run_reader(capture)[1]
    header = [rows[0][0].lstrip("#"), *rows[0][1:]]
    flows: dict[Key, list[dict[str, str]]] = defaultdict(list)
    for row in rows[1:]:
        d = dict(zip(header, row, strict=False))
        key = flow_key(int(d["protocol"]), d["src_ip"], int(d["src_port"]), d["dst_ip"], int(d["dst_port"]))
        if key is not None:
            flows[key].append(d)
    return flows


_PROTOCOL_LINE = re.compile(r"\s*(\S+)\s+packets: (\d+)\s+bytes: (\d+)\s+flows: (\d+)\s*")


def ndpi_reader_protocols(capture: Path) -> tuple[dict[str, tuple[int, int, int]], str]:
    """ndpiReader's "Detected protocols" of a capture: {protocol: (packets, bytes, flows)} (nDPI's
    application protocol, else its master: the last part of "TLS.YouTube"; bytes are whole frames,
    header->len), and its report (empty protocols: it read no IP packet, the report says why)."""
    report = _run_reader(capture)[0]
    section = report.partition("Detected protocols:")[2].partition("\n\n")[0]
    found = {}
    for text in section.strip().splitlines():
        m = _PROTOCOL_LINE.fullmatch(text)
        assert m, f"ndpiReader's summary line not understood: {text!r}"
        found[m[1]] = (int(m[2]), int(m[3]), int(m[4]))
    return found, report
