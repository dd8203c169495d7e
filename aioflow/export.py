"""``aioflow.export``: the documented home of the NetFlow/IPFIX exporters and flow file writers,
which live in :mod:`aioflow.netflow.export` (see there). Importing this module imports numpy."""

from .netflow.export import (
    EXPORTERS,
    ExportStats,
    IPFIXExporter,
    IPFIXFileWriter,
    NetflowV5Exporter,
    NetflowV9Exporter,
    ParquetWriter,
    TransportOptions,
)

__all__ = [
    "EXPORTERS",
    "ExportStats",
    "IPFIXExporter",
    "IPFIXFileWriter",
    "NetflowV5Exporter",
    "NetflowV9Exporter",
    "ParquetWriter",
    "TransportOptions",
]
