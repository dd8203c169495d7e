"""Dropping root once a live capture is open (FlowParser(user=...), flowgrep's -u)."""

from __future__ import annotations

import os

from ._errors import CapturePermissionError, ConfigError


def drop_privileges(user: str) -> None:
    """Become `user` (its uid and primary gid, no supplementary groups). Called once the capture
    is open, which needed root. Raises ConfigError for an unknown user, CapturePermissionError
    when this process may not change user (only root can)."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"user={user!r}: no such user") from None
    try:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError as exc:
        raise CapturePermissionError(f"cannot become {user!r}: {exc} (only root can change user)") from None
