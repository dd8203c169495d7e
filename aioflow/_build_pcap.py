"""cffi builder (API mode) for aioflow's C engine.

The cdef is aioflow's own small API (``_csrc/api.h``), never libpcap's headers: libpcap stays an
implementation detail of the C files. libpcap is found with pkg-config, then pcap-config, then a
plain ``-lpcap``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "_csrc"
# The pipeline's stages, bottom up (each includes only the headers of those above it in this
# list); _native.c, the entry layer, is compiled as the module's own source.
STAGES = [
    "decode.c", "checksum.c", "tunnels.c",  # leaf libraries: decoding (checksums, tunnels)
    "fragments.c", "early_fragments.c", "defrag.c",  # leaf libraries: IP fragments
    "flowtable.c", "prefault.c", "match.c",  # leaf libraries
    "sha256.c", "quic_initial.c", "ja4.c",  # JA4 (TLS client fingerprint), QUIC Initials opened for it
    "ndpi_shim.c",  # every nDPI call (the dissect meter's), behind aioflow's own interface
    "record.c", "meter.c",  # records, the meter registry
    "conn_gaps.c",  # the conn_state meter's content gaps (Zeek's reassembler's numbers)
    "arena.c", "stream.c",  # what the reassembly meter builds on: its arena, the streams
    "batch.c", "expiry.c", "account.c",  # batch hand-off, expiry, flow accounting
    "capfile.c", "capread.c",  # capture files: the pcap/pcapng parser, mapping or decompressing a file
    "source.c", "prepare.c", "readahead.c",  # reading: files or libpcap, per-packet preparation, read-ahead thread
    "pipeline.c", "producer.c",  # the pump over all stages, the producer thread
    "workers.c",  # workers: their configs, merged counters, snapshot cursors
    "record_text.c",  # read_frame's address and flow-id text, written per batch
    "gather.c",  # read_frame's numeric columns, out of a batch's rows in one pass
]
# Each meter is its own file, named by its registration line AF_METER(name) in meters.h: adding
# a meter takes that file and that line, nothing here.
METERS = re.findall(r"^AF_METER\((\w+)\)", (CSRC / "meters.h").read_text(), re.M)
SOURCES = [*STAGES, *(f"{name}.c" for name in METERS)]


def _pcap_flags() -> tuple[list[str], list[str]]:
    """Compiler and linker flags for the system libpcap."""
    for cmd in (["pkg-config", "--cflags", "--libs", "libpcap"], ["pcap-config", "--cflags", "--libs"]):
        if shutil.which(cmd[0]) is None:
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            flags = shlex.split(proc.stdout)
            return [f for f in flags if not f.startswith("-l") and not f.startswith("-L")], [
                f for f in flags if f.startswith("-l") or f.startswith("-L")
            ]
    return [], ["-lpcap"]


def _check_pcap_headers(cflags: list[str]) -> None:
    include_dirs = ["/usr/include", "/usr/local/include"] + [f[2:] for f in cflags if f.startswith("-I")]
    if not any((Path(d) / "pcap" / "pcap.h").exists() or (Path(d) / "pcap.h").exists() for d in include_dirs):
        sys.exit(
            "aioflow: libpcap's headers (pcap/pcap.h) were not found. Install them first: "
            "'apt-get install libpcap-dev' (Debian/Ubuntu), 'dnf install libpcap-devel' (Fedora), "
            "'brew install libpcap' (macOS)."
        )


def _include_dir(package: str, header: str) -> str | None:
    """The first include folder holding `header` (a relative path): the usual ones, then those
    pkg-config gives for `package` (and their parents: libhs's points into hs/)."""
    include_dirs = ["/usr/include", "/usr/local/include"]
    if shutil.which("pkg-config") is not None:
        proc = subprocess.run(["pkg-config", "--cflags-only-I", package], capture_output=True, text=True, check=False)
        for flag in shlex.split(proc.stdout):
            if flag.startswith("-I"):
                include_dirs += [flag[2:], str(Path(flag[2:]).parent)]
    return next((d for d in include_dirs if (Path(d) / header).exists()), None)


def _hyperscan_flags() -> tuple[list[str], list[str]]:
    """Vectorscan (or Hyperscan) for grep's native stream search, when its headers are there
    (libvectorscan-dev); without it `aioflow grep` searches in Python. AIOFLOW_NO_HYPERSCAN=1
    builds without it anyway (to test that path)."""
    if os.environ.get("AIOFLOW_NO_HYPERSCAN") == "1":
        return [], []
    found = _include_dir("libhs", "hs/hs.h")
    return ([f"-I{found}", "-DAF_HAVE_HYPERSCAN"], ["-lhs"]) if found else ([], [])


# The nDPI release ndpi_shim.c is written for: nDPI's API changes with every release.
NDPI_VERSION = "4.2"


def _ndpi_flags() -> tuple[list[str], list[str]]:
    """nDPI for application detection (dissect=True), when its headers are there (libndpi-dev) and
    it is the release the shim is written for; without it FlowParser(dissect=True) raises
    DissectUnavailableError naming the package. AIOFLOW_NO_NDPI=1 builds without it anyway."""
    if os.environ.get("AIOFLOW_NO_NDPI") == "1" or shutil.which("pkg-config") is None:
        return [], []
    version = subprocess.run(["pkg-config", "--modversion", "libndpi"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        return [], []
    if version.stdout.strip().split(".")[:2] != NDPI_VERSION.split("."):
        print(f"aioflow: nDPI {version.stdout.strip()} found, the shim is written for {NDPI_VERSION}: "
              "building without application detection", file=sys.stderr)  # fmt: skip
        return [], []
    proc = subprocess.run(["pkg-config", "--cflags", "--libs", "libndpi"], capture_output=True, text=True, check=False)
    flags = shlex.split(proc.stdout)
    include_dirs = [f[2:] for f in flags if f.startswith("-I")]
    if not any((Path(d) / "ndpi_api.h").exists() for d in include_dirs):
        return [], []
    return [*(f for f in flags if f.startswith("-I")), "-DAF_HAVE_NDPI"], [f for f in flags if f[:2] in ("-l", "-L")]


def _libcrypto_flags() -> tuple[list[str], list[str]]:
    """OpenSSL's libcrypto (AES) to open QUIC Initial packets for JA4, when its headers are there
    (libssl-dev); without it QUIC flows get no ja4 (counted: dissect_ja4_quic_unopened).
    AIOFLOW_NO_LIBCRYPTO=1 builds without it anyway (to test that path)."""
    if os.environ.get("AIOFLOW_NO_LIBCRYPTO") == "1":
        return [], []
    found = _include_dir("libcrypto", "openssl/evp.h")
    return ([f"-I{found}", "-DAF_HAVE_LIBCRYPTO"], ["-lcrypto"]) if found else ([], [])


# The stages are one file each and call one another per packet (pipeline -> account -> flow
# table, arena, record): link-time optimisation inlines across the files as one engine.c did, and
# hidden visibility (only PyInit__native is exported) makes those calls direct, not through the
# PLT. Measured with callgrind on a reassembling parse: -3.3% instructions (benchmarks/README.md).
_WHOLE_PROGRAM = ["-flto=auto", "-fvisibility=hidden"]


def _zstd_flags() -> tuple[list[str], list[str]]:
    """libzstd for .zst captures, when its headers are there (libzstd-dev); without it such a file
    raises CaptureFormatError naming the package. zlib (zlib1g-dev) is required, like libpcap."""
    found = _include_dir("libzstd", "zstd.h")
    return ([f"-I{found}", "-DAF_HAVE_ZSTD"], ["-lzstd"]) if found else ([], [])


def _check_zlib_headers() -> None:
    if not any((Path(d) / "zlib.h").exists() for d in ("/usr/include", "/usr/local/include")):
        sys.exit(
            "aioflow: zlib's headers (zlib.h) were not found. Install them first: "
            "'apt-get install zlib1g-dev' (Debian/Ubuntu), 'dnf install zlib-devel' (Fedora)."
        )


def _extra_compile_args() -> list[str]:
    args = ["-std=c11", "-Wall", "-Wextra", "-O2", "-pthread", *_WHOLE_PROGRAM]
    # `make sanitize` builds with ASan+UBSan through this variable.
    args += shlex.split(os.environ.get("AIOFLOW_CFLAGS", ""))
    return args


cflags, libs = _pcap_flags()
_check_pcap_headers(cflags)
hs_cflags, hs_libs = _hyperscan_flags()
_check_zlib_headers()
zstd_cflags, zstd_libs = _zstd_flags()
ndpi_cflags, ndpi_libs = _ndpi_flags()
crypto_cflags, crypto_libs = _libcrypto_flags()
# What the engine needs besides its sources; fuzz/engine_build.py links the harnesses with these.
ENGINE_CFLAGS = [*cflags, *hs_cflags, *zstd_cflags, *ndpi_cflags, *crypto_cflags]
ENGINE_LIBS = [*libs, *hs_libs, *zstd_libs, *ndpi_libs, *crypto_libs, "-lz"]

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "api.h").read_text())
ffibuilder.set_source(
    "aioflow._native",
    (HERE / "_native.c").read_text(),
    sources=[str((CSRC / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(CSRC.relative_to(HERE.parent))],
    extra_compile_args=_extra_compile_args() + ENGINE_CFLAGS,
    extra_link_args=[*ENGINE_LIBS, "-pthread", "-O2", *_WHOLE_PROGRAM,
                     *shlex.split(os.environ.get("AIOFLOW_LDFLAGS", ""))],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir="build", verbose=True)
