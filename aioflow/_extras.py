"""Record extras beside the flow counters, under nfstream's names (README, "Features for
analytics"): nfstream's expiration_id from aioflow's end reason, the meters' column names, and
nfstream's keyed BLAKE2b anonymization of columns. (The tunnel and mac meters name their fields
as nfstream does themselves, in C: tunnel_id, ..., src_mac, ...)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._engine import METERS

# nfstream's expiration_id: 0 idle (its flows also end so when the capture ends), 1 active, -1
# custom (a plugin's or a rule's). aioflow's FIN/RST/eof/stop endings are idle-like for nfstream, which
# has no such reasons; an eviction (table full) is no timeout: custom. "" (an active flow): 0.
EXPIRATION_IDS: Mapping[str, int] = {"": 0, "idle": 0, "fin": 0, "rst": 0, "eof": 0, "stop": 0, "active": 1}


def expiration_id(end_reason: str) -> int:
    """nfstream's expiration_id for an aioflow end reason (EXPIRATION_IDS; any other: -1)."""
    return EXPIRATION_IDS.get(end_reason, -1)


def meter_column_names(meters: Iterable[str]) -> tuple[str, ...]:
    """The record columns of these built-in meters, in order: Flow.meter_columns()' keys."""
    return tuple(METERS[name].column(f) for name in meters for f in METERS[name].fields)


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
