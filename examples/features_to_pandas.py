"""A labelled feature table for traffic classification, the way an nfstream notebook builds one.

    python examples/features_to_pandas.py [CAPTURE] [OUT.csv]

One row per flow: nfstream's statistical features (statistics=True, columns named as nfstream's),
the sizes and gaps of the first 10 packets (splt=10, one column per place), and a label. The
label here is a rule on the server port, standing in for a ground truth you would join from
elsewhere. Needs pandas (`pip install 'aioflow-pcap[pandas]'`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import aioflow

DEFAULT_CAPTURE = Path(__file__).resolve().parent / "data" / "ndpi_telegram_videocall.pcapng"
SPLT = 10
LABELS = {53: "dns", 443: "https", 80: "http", 123: "ntp"}


def label(row: pd.Series) -> str:
    if row["protocol"] not in (6, 17):
        return "other"
    return LABELS.get(int(row["dst_port"]), "udp-other" if row["protocol"] == 17 else "tcp-other")


def features(path: str) -> pd.DataFrame:
    flows = aioflow.read_frame(path, statistics=True, splt=SPLT, accounting_mode=1)
    # splt_* cells are arrays of SPLT values: spread each into SPLT columns (-1: no such packet)
    spread = {
        f"{name}_{i}": np.stack(flows[name].to_numpy())[:, i] if len(flows) else np.zeros(0, np.int64)
        for name in ("splt_ps", "splt_piat_ms", "splt_direction")
        for i in range(SPLT)
    }
    stats = [c for c in flows.columns if c.endswith(("_ps", "_piat_ms")) or c.startswith("bidirectional_")]
    table = pd.concat([flows[stats], pd.DataFrame(spread, index=flows.index)], axis=1)
    table["label"] = flows.apply(label, axis=1) if len(flows) else []
    return table


def main(path: str, out: str | None = None) -> None:
    table = features(path)
    print(f"{len(table)} flows, {table.shape[1] - 1} features")
    for name, group in table.groupby("label", sort=True):
        print(f"{name:<10} {len(group):>5} flows  mean size {group['bidirectional_mean_ps'].mean():8.1f}"
              f"  packets {int(group['bidirectional_packets'].sum()):>6}")  # fmt: skip
    if out:
        table.to_csv(out, index=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_CAPTURE), sys.argv[2] if len(sys.argv) > 2 else None)
