"""Seed corpus of a fuzz harness, from the bundled captures and ../shared/pcaps (when present).

    python fuzz/seed_corpus.py HARNESS DIR

fuzz_packet_path: runs of consecutive packets of each capture, in that harness's input layout
(see fuzz/fuzz_packet_path.c), with options varied across seeds. fuzz_ja4: the first payloads of
each flow whose client starts with a TLS record or a QUIC long header (fuzz/fuzz_ja4.c's layout),
and each such TLS record's message alone. Any other harness (a file reader): the capture files
themselves, up to 1 MiB each.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

from fuzz_input import LINK_TYPES  # a seed's first byte is the index of its link type there

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "tests" / "data", ROOT.parent / "shared" / "pcaps"]
# Option bytes cycled over a capture's seeds: defaults, stream search + headers + low_ttl,
# chunks, stop early, discard streams, defragment and reassembly off.
OPTIONS = [0x00, 0x4C, 0x14, 0x80, 0x20, 0x03]
RUN = 48  # packets per seed
MAX_SEEDS_PER_FILE = 6
MAX_SEED = 1 << 16
MAX_FILE = 1 << 20


def captures() -> Iterator[Path]:
    for source in SOURCES:
        if source.is_dir():
            yield from sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))


def packets(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    """(link type, [(time, bytes)]) of a capture dpkt reads; (-1, []) when it cannot."""
    import dpkt  # test dependency (.[dev]): only this script needs it

    out: list[tuple[float, bytes]] = []
    try:
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(0)
            reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
            link = int(reader.datalink())
            for ts, buf in reader:
                out.append((float(ts), bytes(buf)))
                if len(out) >= RUN * MAX_SEEDS_PER_FILE * 8:
                    break
    except Exception:  # damaged captures are the file-reader harness's seeds; skip them here
        return -1, out
    return link, out


def packet_seeds(path: Path) -> Iterator[bytes]:
    link, pkts = packets(path)
    if link not in LINK_TYPES or not pkts:
        return
    runs = [pkts[i : i + RUN] for i in range(0, len(pkts), RUN)]
    step = max(1, len(runs) // MAX_SEEDS_PER_FILE)
    for n, run in enumerate(runs[::step][:MAX_SEEDS_PER_FILE]):
        opt = OPTIONS[(n + len(path.name)) % len(OPTIONS)]
        # max_flows 128 pumped here, 128 through the reading threads, 3 (evicting from the start)
        flows_and_threads = (0x7F, 0xFF, 0x02)[n % 3]
        # every other seed opens tunnels (first byte's bit 7: decode_tunnels and the mac meter)
        seed = bytearray([LINK_TYPES.index(link) | (0x80 if n % 2 else 0), opt, flows_and_threads])
        prev = run[0][0]
        for ts, buf in run:
            steps = min(255, max(0, round((ts - prev) * 32)))
            prev = ts
            buf = buf[:4096]
            if len(seed) + 3 + len(buf) > MAX_SEED:
                break
            seed += struct.pack("<HB", len(buf), steps) + buf
        yield bytes(seed)


def ja4_seeds(path: Path) -> Iterator[bytes]:
    """fuzz_ja4 seeds of a capture's Ethernet frames: per flow, its first client payloads."""
    import dpkt

    link, pkts = packets(path)
    if link != 1:
        return
    flows: dict[tuple[bytes, int, bytes, int, int], list[tuple[int, bytes]]] = {}
    for _, buf in pkts:
        try:
            ip = dpkt.ethernet.Ethernet(buf).data
        except dpkt.UnpackError:  # damaged frames (tests/data/malformed): no seed from them
            continue
        l4 = getattr(ip, "data", None)
        if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            continue
        if not l4.data:
            continue
        key = (ip.src, l4.sport, ip.dst, l4.dport, ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt)
        back = (ip.dst, l4.dport, ip.src, l4.sport, key[4])
        if back in flows:
            flows[back].append((1, bytes(l4.data)))
        else:
            flows.setdefault(key, []).append((0, bytes(l4.data)))
    for key, payloads in flows.items():
        udp = key[4] == 17
        first = payloads[0][1]
        if not (first[:2] == b"\x16\x03" if not udp else first[0] & 0xC0 == 0xC0):
            continue
        seed = bytearray([1 if udp else 0])
        for sender, data in payloads[:6]:
            seed += struct.pack("<HB", len(data), sender) + data
        yield bytes(seed[:MAX_SEED])
        if not udp and len(first) > 5:
            yield b"\x00" + first[5:]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    harness, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in captures():
        if harness == "fuzz_packet_path":
            blobs = list(packet_seeds(path))
        elif harness == "fuzz_ja4":
            blobs = list(ja4_seeds(path))
        else:
            blobs = [path.read_bytes()] if path.stat().st_size <= MAX_FILE else []
        for blob in blobs:
            (out / hashlib.sha1(blob).hexdigest()).write_bytes(blob)
            count += 1
    print(f"seed_corpus: {count} seeds for {harness} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
