"""Record extras beside the flow counters, under nfstream's names (README, "Features for
analytics"): the `tunnel` meter's fields as tunnel_id / tunnel_type / tunnel_src_ip /
tunnel_dst_ip, the `mac` meter's as src_mac / dst_mac / src_oui / dst_oui, nfstream's
expiration_id from aioflow's end reason, and nfstream's keyed BLAKE2b anonymization of columns."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._engine import METERS, ffi, lib

TUNNEL_TYPES: tuple[str, ...] = tuple(
    ffi.string(lib.af_tunnel_type_name(i)).decode() for i in range(lib.AF_TUNNEL_TYPE_COUNT)
)

# nfstream's expiration_id: 0 idle (its flows also end so when the capture ends), 1 active, -1
# custom (a plugin's or a rule's). aioflow's FIN/RST/eof/stop endings are idle-like for nfstream, which
# has no such reasons; an eviction (table full) is no timeout: custom. "" (an active flow): 0.
EXPIRATION_IDS: Mapping[str, int] = {"": 0, "idle": 0, "fin": 0, "rst": 0, "eof": 0, "stop": 0, "active": 1}


def expiration_id(end_reason: str) -> int:
    """nfstream's expiration_id for an aioflow end reason (EXPIRATION_IDS; any other: -1)."""
    return EXPIRATION_IDS.get(end_reason, -1)


def mac_text(mac: int) -> str:
    """A 48-bit address as nfstream writes it: "aa:bb:cc:dd:ee:ff" (zero when the link had none)."""
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def oui_text(mac: int) -> str:
    """The address's OUI (first three octets), as nfstream's src_oui: "aa:bb:cc"."""
    return mac_text(mac)[:8]


def tunnel_ip_text(version: int, hi: int, lo: int) -> str:
    """The tunnel meter's address (16 bytes as two big-endian numbers) as text; "" without one."""
    if version == 4:
        return str(ipaddress.IPv4Address(hi >> 32))
    if version == 6:
        return str(ipaddress.IPv6Address(hi << 64 | lo))
    return ""


def tunnel_fields(raw: Mapping[str, int | float] | None) -> dict[str, Any]:
    """The tunnel meter's raw fields (None: off) as the record's tunnel_* fields."""
    if not raw:
        return {"tunnel_id": 0, "tunnel_type": "", "tunnel_src_ip": "", "tunnel_dst_ip": ""}
    v = int(raw["ip_version"])
    return {
        "tunnel_id": int(raw["id"]),
        "tunnel_type": TUNNEL_TYPES[int(raw["type"])],
        "tunnel_src_ip": tunnel_ip_text(v, int(raw["src_ip_hi"]), int(raw["src_ip_lo"])),
        "tunnel_dst_ip": tunnel_ip_text(v, int(raw["dst_ip_hi"]), int(raw["dst_ip_lo"])),
    }


def mac_fields(raw: Mapping[str, int | float] | None) -> dict[str, str]:
    """The mac meter's raw fields (None: off) as src_mac, dst_mac, src_oui, dst_oui."""
    src, dst = (int(raw["src_mac"]), int(raw["dst_mac"])) if raw else (0, 0)
    return {"src_mac": mac_text(src), "dst_mac": mac_text(dst), "src_oui": oui_text(src), "dst_oui": oui_text(dst)}


# Meters whose fields reach records under nfstream's names rather than <meter>_<field>: their raw
# fields (MeterLayout.read) as those columns. _frame.extra_columns is the same in bulk, for read_frame.
METER_EXTRAS: Mapping[str, Callable[[Mapping[str, int | float] | None], Mapping[str, Any]]] = {
    "tunnel": tunnel_fields,
    "mac": mac_fields,
}


def meter_column_names(meters: Iterable[str]) -> tuple[str, ...]:
    """The record columns of these built-in meters, in order: Flow.meter_columns()' keys."""
    out: list[str] = []
    for name in meters:
        if name in METER_EXTRAS:
            out += METER_EXTRAS[name](None)
        else:
            out += (METERS[name].column(f) for f in METERS[name].fields)
    return tuple(out)


class Anonymizer:
    """nfstream's NFAnonymizer: each value of the named columns becomes
    blake2b(str(value).encode(), digest_size=64, key=key).hexdigest(); the key is 64 random
    bytes per call unless one is given (the same key gives the same digests across runs)."""

    def __init__(self, columns: Iterable[str], key: bytes | None = None) -> None:
        import secrets  # here, not at `import aioflow`: only anonymization needs them
        from hashlib import blake2b

        self._blake2b = blake2b
        self.columns = tuple(columns)
        self.key = secrets.token_bytes(64) if key is None else bytes(key)
        if len(self.key) > 64:
            from ._errors import ConfigError

            raise ConfigError(f"anonymization key of {len(self.key)} bytes: BLAKE2b takes at most 64")

    def value(self, value: Any) -> Any:
        if value is None:
            return None
        return self._blake2b(str(value).encode(), digest_size=64, key=self.key).hexdigest()

    def frame(self, frame: Any) -> Any:
        """The frame with its named columns anonymized (ConfigError for a column it lacks)."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            from ._errors import ConfigError

            raise ConfigError(f"columns_to_anonymize: no column {', '.join(missing)} (the columns: "
                              f"{', '.join(frame.columns)})")  # fmt: skip
        for c in self.columns:
            frame[c] = frame[c].map(self.value)
        return frame
