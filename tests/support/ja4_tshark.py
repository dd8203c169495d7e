"""JA4 from tshark's own dissection: tshark parses each ClientHello (reassembling TCP, opening QUIC
Initials, decoding tunnels) and writes it as PDML; the formula of FoxIO's JA4.md, as FoxIO's tools
apply it to tshark's fields (a non-ASCII ALPN character is '9', a one-character ALPN gives it then
'0'), is applied here. tshark 4.0 has no JA4 of its own (Wireshark 4.2 added tls.handshake.ja4).
Checked against FoxIO's expected outputs on the captures bundled in tests/data (tests/test_ja4.py)."""

from __future__ import annotations

import hashlib
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}
VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
Key = tuple[str, str, int, str, int]  # transport, client address and port, server address and port


@dataclass
class Hello:
    ja4: str
    quic: bool  # tshark found it in QUIC (not, say, in OpenVPN's control channel over UDP)
    sslv2_record: bool  # the packet's transport payload starts with an SSLv2-format record header


def _number(text: str) -> int:
    return int(text, 16) if text.startswith("0x") else int(text)


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _alpn_char(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F else "9"


def client_hellos(path: Path) -> dict[Key, Hello]:
    """The first ClientHello tshark finds for each 5-tuple (innermost headers), as JA4."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tls.handshake.type == 1", "-T", "pdml"],
                         capture_output=True, text=True, check=False).stdout  # fmt: skip
    if not out.strip():
        return {}
    found: dict[Key, Hello] = {}
    for packet in ET.fromstring(out).iter("packet"):
        address: dict[str, str] = {}
        port: dict[str, int] = {}
        payload = ""
        for e in packet.iter("field"):  # document order: the innermost headers come last
            name = e.get("name", "")
            if name in ("ip.src", "ipv6.src", "ip.dst", "ipv6.dst"):
                address[name.split(".")[1]] = e.get("show", "")
            elif name in ("tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport"):
                port[name.split(".")[1]] = int(e.get("show", "0"))
                port["transport"] = 6 if name.startswith("tcp") else 17
            elif name == "tcp.payload" and not payload:
                payload = e.get("value", "")
        protos = [p.get("name") for p in packet.iter("proto")]
        if not address or "transport" not in port:
            continue
        transport = "tcp" if port["transport"] == 6 else "udp"
        key = (transport, address["src"], port["srcport"], address["dst"], port["dstport"])
        ja4 = _ja4(packet, "q" if "quic" in protos else "t")
        if key not in found and ja4:
            found[key] = Hello(ja4, "quic" in protos, transport == "tcp" and payload[:1] in tuple("89abcdef"))
    return found


def _ja4(packet: ET.Element, transport: str) -> str:
    """JA4 of the first ClientHello of a packet's TLS fields (in tshark's order)."""
    ciphers: list[int] = []
    extensions: list[int] = []
    signatures: list[int] = []
    versions: list[int] = []
    version = 0
    alpn: bytes | None = None
    current = -1
    in_hello = False
    for proto in packet.iter("proto"):
        if proto.get("name") != "tls":
            continue
        for e in proto.iter("field"):
            name, show = e.get("name", ""), e.get("show", "")
            if name == "tls.handshake.type":
                if in_hello:
                    break
                in_hello = show == "1"
            elif not in_hello:
                continue
            elif name == "tls.handshake.version" and not version:
                version = _number(show)
            elif name == "tls.handshake.ciphersuite":
                ciphers.append(_number(show))
            elif name == "tls.handshake.extension.type":
                current = int(show)
                extensions.append(current)
            elif name == "tls.handshake.sig_hash_alg" and current == 13:  # not delegated_credentials' (34)
                signatures.append(_number(show))
            elif name == "tls.handshake.extensions.supported_version":
                versions.append(_number(show))
            elif name == "tls.handshake.extensions_alpn_str" and alpn is None and current == 16:
                alpn = bytes.fromhex(e.get("value", ""))
        if in_hello:
            break
    if not in_hello:
        return ""
    ciphers = [c for c in ciphers if c not in GREASE]
    extensions = [x for x in extensions if x not in GREASE]
    signatures = [s for s in signatures if s not in GREASE]
    supported = [v for v in versions if v not in GREASE]
    if 43 in extensions and supported:
        version = max(supported)
    first = _alpn_char(alpn[0]) if alpn else "0"
    last = _alpn_char(alpn[-1]) if alpn and len(alpn) > 1 else "0"
    a = (f"{transport}{VERSIONS.get(version, '00')}{'d' if 0 in extensions else 'i'}{min(99, len(ciphers)):02d}"
         f"{min(99, len(extensions)):02d}{first}{last}")  # fmt: skip
    sorted_ext = ",".join(f"{x:04x}" for x in sorted(x for x in extensions if x not in (0, 16)))
    signed = ",".join(f"{s:04x}" for s in signatures)
    b = _hash12(",".join(f"{c:04x}" for c in sorted(ciphers))) if ciphers else "000000000000"
    c = _hash12(sorted_ext + ("_" + signed if signed else "")) if sorted_ext else "000000000000"
    return f"{a}_{b}_{c}"
