"""Run by nfstream's own venv's python (not aioflow's): NFStreamer's flows of each capture, as one
JSON line per capture: {"capture": path, "flows": [{field: value, ...}, ...]} (or "error").

    python nfstream_dump.py ACCOUNTING_MODE SPLT IDLE_S ACTIVE_S CAPTURE...

Statistics on, no dissection, no tunnel decoding (aioflow keys on the outer header), one meter
process; every field nfstream defines for them, and the key."""

from __future__ import annotations

import json
import sys

import nfstream  # type: ignore[import-not-found]

KEY = ("src_ip", "src_port", "dst_ip", "dst_port", "protocol", "vlan_id", "ip_version")


def main() -> None:
    mode, splt, idle, active = (int(a) for a in sys.argv[1:5])
    names = list(nfstream.flow.NFlow.__slots__) if hasattr(nfstream.flow, "NFlow") else []
    for path in sys.argv[5:]:
        try:
            streamer = nfstream.NFStreamer(
                source=path, decode_tunnels=False, n_dissections=0, statistical_analysis=True,
                splt_analysis=splt, accounting_mode=mode, idle_timeout=idle, active_timeout=active, n_meters=1,
            )  # fmt: skip
            flows = []
            for f in streamer:
                row = {k: getattr(f, k) for k in names if not k.startswith("_") and hasattr(f, k)}
                row.update({k: getattr(f, k) for k in KEY})
                flows.append(row)
            print(json.dumps({"capture": path, "flows": flows}, default=str), flush=True)
        except Exception as exc:
            print(json.dumps({"capture": path, "error": f"{type(exc).__name__}: {exc}"}), flush=True)


if __name__ == "__main__":
    main()
