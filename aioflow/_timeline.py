"""Traffic over time: what the `timeline` meter counted, per time bucket and protocol class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

TIMELINE_CLASSES = ("tcp", "udp", "icmp", "other")  # column order of packets/bytes (enum af_timeline_class)


@dataclass(frozen=True)
class Timeline:
    """Packets and captured bytes of the packets counted into flows, per time bucket (rows) and
    protocol class (columns, in TIMELINE_CLASSES' order: tcp, udp, icmp incl. ICMPv6, other IP).

    Bucket i covers [origin_ns + i * interval_ns, origin_ns + (i + 1) * interval_ns): the origin
    is the first packet's time, as tshark's ``-z io,stat`` counts from the first frame. The
    interval starts at 1 ms and grows (2 ms, 10 ms, 20 ms, 100 ms, ...) whenever the capture's
    span would need more than 2048 buckets (``coarsened`` says how often); packets stamped before
    the first one are counted in bucket 0 (``before_origin``)."""

    origin_ns: int
    interval_ns: int
    packets: np.ndarray[Any, np.dtype[np.int64]]
    bytes: np.ndarray[Any, np.dtype[np.int64]]
    coarsened: int = 0
    before_origin: int = 0

    @property
    def starts_ns(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Each bucket's start, epoch nanoseconds."""
        import numpy as np

        return self.origin_ns + self.interval_ns * np.arange(len(self.packets), dtype=np.int64)
