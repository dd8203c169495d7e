"""aioflow: packets from pcap/pcapng files into bidirectional IP flows, with a C core and an
asyncio (anyio) API. See README.md for the API, units and end reasons."""

from ._errors import (
    AioflowError,
    CaptureFormatError,
    CaptureNotFoundError,
    CapturePermissionError,
    CaptureSourceError,
    ConfigError,
    EngineError,
    FilterError,
    InterfaceNotFoundError,
)
from ._flow import Flow, PacketHeader
from ._parser import FlowParser, ParserInfo
from ._read import read, read_frame
from ._stream import StreamChunk

__version__ = "0.1.0"

__all__ = [
    "AioflowError",
    "CaptureFormatError",
    "CaptureNotFoundError",
    "CapturePermissionError",
    "CaptureSourceError",
    "ConfigError",
    "EngineError",
    "FilterError",
    "Flow",
    "FlowParser",
    "InterfaceNotFoundError",
    "PacketHeader",
    "ParserInfo",
    "StreamChunk",
    "__version__",
    "read",
    "read_frame",
]
