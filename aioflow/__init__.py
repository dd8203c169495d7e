"""aioflow: packets from pcap/pcapng files into bidirectional IP flows, with a C core and an
asyncio (anyio) API. See README.md for the API, units and end reasons."""

import importlib
from typing import TYPE_CHECKING, Any

from ._engine import available_meters, meter_include_dir
from ._errors import (
    AioflowError,
    CaptureDamagedWarning,
    CaptureFormatError,
    CaptureNotFoundError,
    CapturePermissionError,
    CaptureSourceError,
    ConfigError,
    DissectUnavailableError,
    EngineError,
    FilterError,
    FlowFileFormatError,
    FlowFileNotFoundError,
    FlowFilePermissionError,
    InterfaceNotFoundError,
    MalformedPDUError,
    PatternUnsupportedError,
)
from ._flow import Flow, PacketHeader
from ._parser import FlowParser, ParserInfo
from ._plugins import FlowPlugin
from ._read import read, read_arrow, read_frame, to_csv
from ._stream import StreamChunk, StreamMatch, StreamPatterns
from ._timeline import Timeline
from ._version import __version__
from ._zeek import zeek_conn_record

# NetFlow/IPFIX export and collection need numpy: imported on first use (PEP 562), so
# `import aioflow` stays light. Type checkers see the real names through the imports below.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("ExportStats", "IPFIXExporter", "IPFIXFileWriter", "NetflowV5Exporter", "NetflowV9Exporter",
                     "ParquetWriter"), "aioflow.netflow.export"),
    **dict.fromkeys(("ApplicationRow", "ApplicationTotals", "application_columns"), "aioflow._apps"),
    "RECORD_DTYPE": "aioflow._frame",  # numpy dtype of batch.raw_records(): one C flow record
    "report": "aioflow._report",  # the HTML report: plotly (the `report` extra) is imported when it writes
    **dict.fromkeys(("Collector", "FlowRecord", "collect", "parse_pdu", "read_ipfix_file"), "aioflow.netflow.collect"),
    "FlowPDU": "aioflow.netflow.collect",
    "FlowSet": "aioflow.netflow.flowtools",  # flow-tools files, pyflowtools' API
}  # fmt: skip

if TYPE_CHECKING:
    # `X as X`: re-exported (they are not in __all__, so `from aioflow import *` stays numpy-free)
    from ._apps import ApplicationRow as ApplicationRow
    from ._apps import ApplicationTotals as ApplicationTotals
    from ._apps import application_columns as application_columns
    from ._frame import RECORD_DTYPE as RECORD_DTYPE
    from ._report import report as report
    from .netflow.collect import Collector as Collector
    from .netflow.collect import FlowPDU as FlowPDU
    from .netflow.collect import FlowRecord as FlowRecord
    from .netflow.collect import collect as collect
    from .netflow.collect import parse_pdu as parse_pdu
    from .netflow.collect import read_ipfix_file as read_ipfix_file
    from .netflow.export import (
        ExportStats,
        IPFIXExporter,
        IPFIXFileWriter,
        NetflowV5Exporter,
        NetflowV9Exporter,
        ParquetWriter,
    )
    from .netflow.flowtools import FlowSet as FlowSet
else:

    def __getattr__(name: str) -> Any:
        """The numpy-backed names of _LAZY, imported when first asked for (then cached here)."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'aioflow' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


__all__ = [
    "AioflowError",
    "CaptureDamagedWarning",
    "CaptureFormatError",
    "CaptureNotFoundError",
    "CapturePermissionError",
    "CaptureSourceError",
    "ConfigError",
    "DissectUnavailableError",
    "EngineError",
    "ExportStats",
    "FilterError",
    "Flow",
    "FlowFileFormatError",
    "FlowFileNotFoundError",
    "FlowFilePermissionError",
    "FlowParser",
    "FlowPlugin",
    "IPFIXExporter",
    "IPFIXFileWriter",
    "InterfaceNotFoundError",
    "MalformedPDUError",
    "NetflowV5Exporter",
    "NetflowV9Exporter",
    "PacketHeader",
    "ParquetWriter",
    "ParserInfo",
    "PatternUnsupportedError",
    "StreamChunk",
    "StreamMatch",
    "StreamPatterns",
    "Timeline",
    "__version__",
    "available_meters",
    "meter_include_dir",
    "read",
    "read_arrow",
    "read_frame",
    "to_csv",
    "zeek_conn_record",
]
