"""Top talkers by bytes sent, from a pandas DataFrame of flows.

    python examples/dataframe.py [CAPTURE]

Needs pandas (`pip install 'aioflow-pcap[pandas]'`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"


def main(path: str, top: int = 10) -> None:
    flows = aioflow.read_frame(path)  # one row per flow
    # A flow is two-way: its src sent src2dst_bytes and its dst sent dst2src_bytes.
    sent = pd.concat([
        flows[["src_ip", "src2dst_bytes"]].set_axis(["host", "bytes"], axis=1),
        flows[["dst_ip", "dst2src_bytes"]].set_axis(["host", "bytes"], axis=1),
    ])
    talkers = sent.groupby("host")["bytes"].sum().sort_values(ascending=False, kind="stable")
    talkers = talkers[talkers > 0]
    print(f"{len(flows)} flows, {int(flows['bytes'].sum())} IP bytes")
    print(f"{'host':<40} {'bytes sent':>12}")
    for host, total in talkers.head(top).items():
        print(f"{host:<40} {int(total):>12}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE))
