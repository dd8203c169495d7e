"""aioflow's exceptions. Each also subclasses the matching builtin, so callers may catch either."""

from __future__ import annotations

from typing import BinaryIO, cast


class AioflowError(Exception):
    """Base of every error aioflow raises on purpose."""


class CaptureNotFoundError(AioflowError, FileNotFoundError):
    """The capture file does not exist."""


class CapturePermissionError(AioflowError, PermissionError):
    """The capture (file or interface) cannot be opened with this process's rights."""


class InterfaceNotFoundError(AioflowError, LookupError):
    """No network interface of that name (the message lists the ones there are)."""


class CaptureSourceError(AioflowError, OSError):
    """The interface cannot be captured on for another reason (down, unsupported, ...)."""


class CaptureFormatError(AioflowError, ValueError):
    """The file is not a pcap/pcapng capture libpcap can read, or its header is damaged."""


class FilterError(AioflowError, ValueError):
    """The BPF filter expression does not compile."""


class ConfigError(AioflowError, ValueError):
    """A FlowParser parameter is out of range."""


class PatternUnsupportedError(ConfigError):
    """A valid regex the native stream search (Vectorscan) cannot run: a backreference, a
    lookaround, a pattern that matches the empty string, or a build without Vectorscan."""


class DissectUnavailableError(ConfigError):
    """dissect=True in a build without nDPI (install libndpi-dev and rebuild aioflow), or with an
    nDPI library that is not the one aioflow was built against."""


class EngineError(AioflowError, RuntimeError):
    """The C engine failed in a way none of the other errors describe."""


class MalformedPDUError(AioflowError, ValueError):
    """A NetFlow/IPFIX datagram that cannot be decoded (the message says why)."""


class FlowFileNotFoundError(AioflowError, FileNotFoundError):
    """The flow file (IPFIX, RFC 5655) to read does not exist."""


class FlowFilePermissionError(AioflowError, PermissionError):
    """The flow file cannot be read with this process's rights."""


class FlowFileFormatError(AioflowError, ValueError):
    """The file is not an IPFIX file (it does not start with an IPFIX message) or not a flow-tools file
    (bad magic, unsupported version, damaged header). Damage further in is counted (IPFIX) or warned
    about (flow-tools)."""


def open_flow_file(name: str, mode: str, kind: str) -> BinaryIO:
    """``name`` opened in binary ``mode`` ("r"/"w"), OS errors as aioflow's flow-file errors (the
    message names the ``kind`` of file, e.g. "IPFIX")."""
    try:
        return cast(BinaryIO, open(name, mode + "b"))
    except FileNotFoundError:
        raise FlowFileNotFoundError(f"{name}: no such {kind} file; check the path") from None
    except PermissionError:
        rights = "readable" if mode == "r" else "writable"
        raise FlowFilePermissionError(f"{name}: not {rights} by this user; fix its permissions") from None
    except IsADirectoryError:
        raise FlowFileFormatError(f"{name}: a directory, not a {kind} file") from None


class CaptureDamagedWarning(UserWarning):
    """read()/read_frame(): the capture is damaged or cut short; reading stopped there and the flows
    of the packets before were delivered (FlowParser.info().read_error keeps the reader's words)."""


def damage_message(source: object, packets: int, error: str, live: bool = False) -> str:
    """Where reading stopped and why, in one line: the text of CaptureDamagedWarning and of the
    commands' exit-1 message. `packets`: how many were read before the damage."""
    why = " ".join(error.split()) or "unreadable data"
    where = f"after packet {packets}" if packets else "before the first packet"
    if live:
        return f"{source}: the capture failed {where}: {why}; the flows until then were delivered"
    return f"{source}: damaged capture: reading stopped {where}: {why}; the flows of the packets before were delivered"
