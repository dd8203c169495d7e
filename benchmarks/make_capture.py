"""Generate a large synthetic Ethernet pcap capture for benchmarking flow meters.

The bytes are made by capgen.c (compiled here on first use with the system C compiler), because a
per-packet Python loop cannot write ten million packets in reasonable time; capgen does it in about
half a minute. The same arguments always give the same file, byte for byte.

Traffic model (see capgen.c): TCP flows with three-way handshakes, request/response data both
ways and FIN teardowns (some end with RST, some stay open, some are refused), UDP request/response
flows (DNS, NTP, QUIC-like), a share of them over IPv6, started at uniformly random times over the
span so that many flows are interleaved. Beside the capture goes ``<output>.json`` with the counts
and the number of flows a meter with aioflow's default timeouts holds at once (peak and mean).

Payloads: random bytes by default (``--payloads random``: what the flow-meter benchmarks were
measured on). ``--payloads apps`` gives each flow the first payload packets of a real application
flow of the same protocol (TLS, HTTP, SSH, mail, DNS, QUIC from the corpus in ../shared/pcaps, or
stand-ins written by _payloads.py without it; a share of flows stay random, unknown to nDPI): what
application detection (dissect=True, benchmarks/dissect_bench.py) should be measured on.

    python benchmarks/make_capture.py                        # 10M packets, 600k flows
    python benchmarks/make_capture.py --packets 500000 --flows 30000 -o /tmp/small.pcap
    python benchmarks/make_capture.py --packets 1000000 --flows 60000 --seed 7 --payloads apps
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
BUILD_DIR = HERE / "build"

DEFAULT_PACKETS = 10_000_000
DEFAULT_FLOWS = 600_000
DEFAULT_SEED = 1
DEFAULT_IPV6_SHARE = 0.2
DEFAULT_UDP_SHARE = 0.25
DEFAULT_SPAN = 300.0
PAYLOADS = ("random", "apps")


def compile_c(source: Path, libs: list[str], build_dir: Path = BUILD_DIR) -> Path:
    """Compile one C file to an executable named after a hash of its source (rebuilt on change)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("no C compiler found (set CC)")
    digest = hashlib.sha256(source.read_bytes() + " ".join(libs).encode()).hexdigest()[:12]
    exe = build_dir / f"{source.stem}-{digest}"
    if not exe.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-o", str(tmp), str(source), *libs], check=True)
        tmp.replace(exe)  # atomic, so a half-written binary is never picked up
    return exe


def generator_digest() -> str:
    """Identifies the generator's source: a capture made by another version is made anew."""
    return hashlib.sha256((HERE / "capgen.c").read_bytes()).hexdigest()[:12]


def default_output(packets: int, flows: int, seed: int, payloads: str = "random") -> Path:
    suffix = "" if payloads == "random" else f"-{payloads}"
    return DATA_DIR / f"synth-{packets}p-{flows}f-s{seed}{suffix}.pcap"


def payload_scripts() -> tuple[Path, dict[str, Any]]:
    """The payload-script file for --payloads apps (made once per content, in BUILD_DIR) and what
    the sidecar says of it: source (corpus or synthetic), its digest, scripts per group and file."""
    import _payloads

    source, found = _payloads.scripts()
    blob = _payloads.encode(found)
    digest = hashlib.sha256(blob).hexdigest()[:12]
    path = BUILD_DIR / f"payloads-{digest}.bin"
    if not path.exists():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
    return path, {"source": source, "digest": digest, "mix": _payloads.MIX, "scripts": _payloads.summary(found)}


def meta_path(capture: Path) -> Path:
    return capture.with_name(capture.name + ".json")


def params(
    packets: int, flows: int, seed: int, ipv6_share: float, udp_share: float, span: float, payloads: str = "random"
) -> dict[str, Any]:
    # "payloads" only when not random, so the sidecars of captures made before it still match
    return {
        **({"payloads": payloads} if payloads != "random" else {}),
        "packets": packets,
        "flows": flows,
        "seed": seed,
        "ipv6_share": ipv6_share,
        "udp_share": udp_share,
        "span": span,
    }


def make_capture(
    output: Path,
    *,
    packets: int = DEFAULT_PACKETS,
    flows: int = DEFAULT_FLOWS,
    seed: int = DEFAULT_SEED,
    ipv6_share: float = DEFAULT_IPV6_SHARE,
    udp_share: float = DEFAULT_UDP_SHARE,
    span: float = DEFAULT_SPAN,
    payloads: str = "random",
) -> dict[str, Any]:
    """Write the capture and its ``.json`` sidecar; return the sidecar's content."""
    if not 0.0 <= ipv6_share <= 1.0 or not 0.0 <= udp_share <= 1.0:
        raise SystemExit("shares must be between 0 and 1")
    if payloads not in PAYLOADS:
        raise SystemExit(f"--payloads must be one of {', '.join(PAYLOADS)}")
    exe = compile_c(HERE / "capgen.c", ["-lm"])
    scripts: list[str] = []
    payload_meta: dict[str, Any] | None = None
    if payloads == "apps":
        script_path, payload_meta = payload_scripts()
        scripts = [str(script_path)]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    t0 = time.perf_counter()
    args = [str(exe), str(tmp), str(packets), str(flows), str(seed), repr(ipv6_share), repr(udp_share)]
    proc = subprocess.run([*args, repr(span), *scripts], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"capgen failed: {proc.stderr.strip()}")
    elapsed = time.perf_counter() - t0
    tmp.replace(output)
    meta: dict[str, Any] = json.loads(proc.stdout)
    meta["params"] = params(packets, flows, seed, ipv6_share, udp_share, span, payloads)
    if payload_meta:
        meta["payload_scripts"] = payload_meta
    meta["generator"] = generator_digest()
    meta["generated_in_seconds"] = round(elapsed, 3)
    meta_path(output).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_or_make(output: Path, **kwargs: Any) -> dict[str, Any]:
    """Reuse ``output`` when its sidecar says it was made with these parameters; else make it."""
    want = params(
        kwargs.get("packets", DEFAULT_PACKETS),
        kwargs.get("flows", DEFAULT_FLOWS),
        kwargs.get("seed", DEFAULT_SEED),
        kwargs.get("ipv6_share", DEFAULT_IPV6_SHARE),
        kwargs.get("udp_share", DEFAULT_UDP_SHARE),
        kwargs.get("span", DEFAULT_SPAN),
        kwargs.get("payloads", "random"),
    )
    mp = meta_path(output)
    if output.exists() and mp.exists():
        meta: dict[str, Any] = json.loads(mp.read_text())
        same = meta.get("params") == want and meta.get("generator") == generator_digest()
        if same and want.get("payloads") == "apps":  # the corpus (or _payloads.py) changed: make it anew
            same = meta.get("payload_scripts", {}).get("digest") == payload_scripts()[1]["digest"]
        if same and output.stat().st_size == meta.get("file_bytes"):
            return meta
    return make_capture(output, **kwargs)


def describe(path: Path, meta: dict[str, Any]) -> str:
    return (
        f"wrote {path}: {meta['packets']:,} packets, {meta['flows']:,} flows "
        f"({meta['ipv6_flows']:,} IPv6, {meta['udp_flows']:,} UDP, {meta['tcp_fin_flows']:,} TCP FIN, "
        f"{meta['tcp_rst_flows']:,} TCP RST, {meta['tcp_open_flows']:,} TCP open, "
        f"{meta['tcp_refused_flows']:,} TCP refused), {meta['file_bytes'] / 1e9:.2f} GB, "
        f"{meta['span_seconds']:.1f} s of traffic; flows held at once with default timeouts: "
        f"peak {meta['peak_active_flows_default_timeouts']:,}, "
        f"mean {meta['mean_active_flows_default_timeouts']:,.0f}; flow records expected with default "
        f"timeouts {meta['expected_records_default_timeouts']:,} (silences over 120 s split a flow); "
        f"generated in {meta['generated_in_seconds']:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", nargs="?", type=Path, help="capture path (default: benchmarks/data/synth-...)")
    ap.add_argument("-o", "--output", dest="output_opt", type=Path, help="same as the positional argument")
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    ap.add_argument("--flows", type=int, default=DEFAULT_FLOWS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--ipv6-share", type=float, default=DEFAULT_IPV6_SHARE, help="share of flows over IPv6")
    ap.add_argument("--udp-share", type=float, default=DEFAULT_UDP_SHARE, help="share of flows over UDP")
    ap.add_argument("--span", type=float, default=DEFAULT_SPAN, help="seconds of traffic (1..4000)")
    ap.add_argument(
        "--payloads", choices=PAYLOADS, default="random", help="random bytes, or real applications' first packets"
    )
    a = ap.parse_args(argv)
    out = a.output_opt or a.output or default_output(a.packets, a.flows, a.seed, a.payloads)
    meta = make_capture(
        out,
        packets=a.packets,
        flows=a.flows,
        seed=a.seed,
        ipv6_share=a.ipv6_share,
        udp_share=a.udp_share,
        span=a.span,
        payloads=a.payloads,
    )
    print(describe(out, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
