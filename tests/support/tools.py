"""How the tests run external tools (tcpdump, curl, ping, ngrep, tcpflow, tshark)."""

from __future__ import annotations

import os

# Not under `make sanitize`'s preloaded ASan runtime: curl hangs under it, and tcpflow reads past
# its buffers on some truncated captures (tcpflow's fault, not aioflow's).
TOOL_ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
