"""Resetting a live TCP connection from the side (flowgrep's -k, as tcpkill does): one RST to each
end, forged as if from the other, carrying exactly the sequence number that end expects next, the
only one a modern stack accepts (RFC 5961 answers any other in-window RST with a challenge ACK)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from .._errors import CapturePermissionError

_TCP_RST = 0x04


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def rst_packet(src: str, sport: int, dst: str, dport: int, seq: int) -> bytes:
    """A whole IPv4 or IPv6 packet holding a bare TCP RST (no payload, no ACK)."""
    source, dest = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 5 << 4, _TCP_RST, 0, 0, 0)
    if source.version == 4:
        pseudo = source.packed + dest.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    else:
        pseudo = source.packed + dest.packed + struct.pack("!IxxxB", len(tcp), socket.IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    if source.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), int.from_bytes(os.urandom(2), "big"), 0, 64,
                         socket.IPPROTO_TCP, 0, source.packed, dest.packed)  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64, source.packed, dest.packed)
    return ip + tcp


class TcpKiller:
    """Raw sockets opened up front (they need CAP_NET_RAW, which a privilege drop then removes)."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}
        self.sent = 0
        for version, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            try:
                # IPPROTO_RAW: the packet carries its own IP header (IP_HDRINCL / IPV6_HDRINCL implied)
                self._sockets[version] = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except PermissionError:
                self.close()
                raise CapturePermissionError(
                    "-k sends forged TCP resets through a raw socket: it needs root or CAP_NET_RAW"
                ) from None
            except OSError:  # no IPv6 on this host: only IPv4 streams can be reset
                continue

    def reset(self, src: str, sport: int, dst: str, dport: int, seq: int) -> bool:
        """Sends one RST from (src, sport) to (dst, dport); False when it could not be sent."""
        version = ipaddress.ip_address(dst).version
        sock = self._sockets.get(version)
        if sock is None:
            return False
        try:
            sock.sendto(rst_packet(src, sport, dst, dport, seq), (dst, 0))
        except OSError:
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Closes the raw sockets (idempotent)."""
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
