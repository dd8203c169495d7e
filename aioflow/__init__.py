"""aioflow: packets from pcap/pcapng files into bidirectional IP flows, with a C core and an
asyncio (anyio) API. See README.md for the API, units and end reasons."""

import importlib

from ._errors import (
    AioflowError,
    CaptureFormatError,
    CaptureNotFoundError,
    CapturePermissionError,
    CaptureSourceError,
    ConfigError,
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
from ._read import read, read_frame
from ._stream import StreamChunk, StreamMatch, StreamPatterns
from ._version import __version__

# NetFlow/IPFIX export (aioflow.export) needs numpy: imported on first use, so `import aioflow` stays light.
_EXPORT_NAMES = ("ExportStats", "IPFIXExporter", "IPFIXFileWriter", "NetflowV5Exporter", "NetflowV9Exporter",
                 "ParquetWriter")  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _EXPORT_NAMES:
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'aioflow' has no attribute {name!r}")

__all__ = [
    "AioflowError",
    "CaptureFormatError",
    "CaptureNotFoundError",
    "CapturePermissionError",
    "CaptureSourceError",
    "ConfigError",
    "EngineError",
    "ExportStats",
    "FilterError",
    "Flow",
    "FlowFileFormatError",
    "FlowFileNotFoundError",
    "FlowFilePermissionError",
    "FlowParser",
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
    "__version__",
    "read",
    "read_frame",
]

# NetFlow/IPFIX collection (aioflow.collect, itself callable: `async for r in aioflow.collect(addr)`) needs
# numpy too: imported on first use.
_COLLECT_NAMES = ("Collector", "FlowRecord", "parse_pdu", "read_ipfix_file")
_export_getattr = __getattr__


def __getattr__(name: str) -> object:
    if name == "collect" or name in _COLLECT_NAMES:
        # Not `from . import collect`: its fromlist check asks this very __getattr__ for "collect" (recursion).
        collect = importlib.import_module(".collect", __name__)
        return collect if name == "collect" else getattr(collect, name)
    return _export_getattr(name)
