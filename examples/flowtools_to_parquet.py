"""Convert a directory of flow-tools archives (flow-capture's ft-v05.* files) to one Parquet file.

    python examples/flowtools_to_parquet.py /var/flows/2014 flows-2014.parquet

Files are read in name order (flow-capture names them by start time), a chunk of records at a time,
and written as Parquet row groups as they come: memory stays flat whatever the archive's size.
Columns are pyflowtools' names (``srcaddr`` as uint32, ``first``/``last`` as Unix seconds, ...) plus
``file``, the name of the file each record came from. Needs pyarrow (pip install 'aioflow[parquet]').
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aioflow import FlowSet


def convert(folder: Path, out: Path) -> int:
    """Writes every record of the ft-v05.* files in `folder` to `out`; returns the record count."""
    files = sorted(p for p in folder.iterdir() if p.name.startswith("ft-v05."))
    if not files:
        raise SystemExit(f"{folder}: no ft-v05.* files (flow-capture's version 5 archives) here")
    writer: pq.ParquetWriter | None = None
    records = 0
    try:
        for path in files:
            for columns in FlowSet(path).iter_columns():
                n = len(columns["dPkts"])
                table = pa.table({**columns, "file": pa.array([path.name] * n, pa.string())})
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema, compression="zstd")
                writer.write_table(table)
                records += n
    finally:
        if writer is not None:
            writer.close()
    return records


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python examples/flowtools_to_parquet.py DIRECTORY OUT.parquet")
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    print(f"{convert(folder, out)} records from {folder} written to {out}")


if __name__ == "__main__":
    main()
