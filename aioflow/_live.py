"""Live pacing: how long FlowParser's live reader lets packets gather in the kernel ring between
reads, from the rate the last reads saw and the ring's size."""

from __future__ import annotations

import time

from ._native import lib

# A wake costs a fixed ~0.2 ms of interpreter and event-loop work, whatever it reads. So while
# traffic flows the reader does not wait on the capture fd (readable per ring block, every few ms
# under load): it pauses and lets packets gather in the kernel ring, for at most LIVE_PAUSE_SECONDS
# and short enough that the ring fills to LIVE_RING_SHARE at the rate the last wake saw. When the
# rest of the ring would hold less than LIVE_RING_MARGIN_SECONDS of traffic (a small ring, a fast
# link), a late wake would drop packets: then it waits on the fd, one wake per block, as tcpdump.
LIVE_PAUSE_SECONDS = 0.25
LIVE_RING_SHARE = 0.5
LIVE_RING_MARGIN_SECONDS = 0.02
LIVE_FIRST_PAUSE_SECONDS = 0.01  # traffic just began: its rate is not known yet
# A ring block is handed over when full or AF_LIVE_LATENCY_MS after its first packet (plus the
# kernel timer's slack): reading nothing sooner than this after the last read does not mean the
# traffic stopped.
LIVE_BLOCK_SECONDS = lib.AF_LIVE_LATENCY_MS / 1000 + 0.01
LIVE_RING_PACKET_BYTES = 96  # ring room per packet besides its captured bytes (TPACKET_V3 header, address, padding)
# The ring hands packets over in blocks of this size (libpcap's, whatever the buffer size): a read
# can leave up to one block's worth of packets that arrived behind, so the rate estimate adds one.
LIVE_RING_BLOCK_BYTES = 256 << 10
LIBPCAP_RING_BYTES = 2 << 20  # buffer_size=0: the ring libpcap makes on Linux
# The default kernel ring of a live source. libpcap's 2 MiB holds ~50 ms of a 300k packets/s link,
# less than the pauses the reader sizes from the ring, so it would wake per 256 KiB block, most of
# its CPU then spent in the event loop (56% in benchmarks/live.py); 16 MiB lets it wake about five
# times a second at that rate (Python ~7% of the CPU) for 16 MiB of kernel memory per capture.
LIVE_BUFFER_BYTES = 16 << 20


class LivePacer:
    """The live reader's pause after it drained the ring: count() what each read took, then nap()
    says how many seconds to sleep (0: wait on the capture fd instead, one wake per ring block)."""

    def __init__(self, ring_bytes: int) -> None:
        self.ring = ring_bytes or LIBPCAP_RING_BYTES  # the kernel ring's size, bytes
        self.pause = 0.0  # the pause the rate calls for, seconds; 0: idle, wait on the fd
        self.per_block = False  # the ring is too small for pauses at this rate: wait on the fd
        self.used = 0  # ring bytes read since `since`
        self.since = time.monotonic()  # when the last wake that read packets emptied the ring

    def count(self, pumped_bytes: int, pumped_packets: int) -> None:
        """Adds one read's captured bytes and packets (the ring room they took)."""
        self.used += pumped_bytes + pumped_packets * LIVE_RING_PACKET_BYTES

    def nap(self) -> float:
        """Seconds to pause now that the ring is drained; 0.0: wait on the capture fd."""
        now = time.monotonic()
        if self.used:  # the rate since the last wake that read packets sets the next pause
            if self.pause:
                full = self.ring * (now - self.since) / (self.used + LIVE_RING_BLOCK_BYTES)  # seconds the ring holds
                self.pause = min(LIVE_PAUSE_SECONDS, full * LIVE_RING_SHARE)
                self.per_block = full - self.pause < LIVE_RING_MARGIN_SECONDS
            else:
                self.pause, self.per_block = LIVE_FIRST_PAUSE_SECONDS, False
            self.used, self.since, nap = 0, now, self.pause
        elif self.pause and now - self.since < LIVE_BLOCK_SECONDS:  # no block handed over yet
            nap = min(self.pause, self.since + LIVE_BLOCK_SECONDS - now)
        else:
            self.pause = nap = 0.0  # no packet for a whole block timeout: idle
        return 0.0 if self.per_block else nap
