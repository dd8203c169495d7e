"""What a result kept for the session is valid for (tests rewrite files in tmp_path)."""

from __future__ import annotations

from pathlib import Path


def identity(path: Path) -> tuple[str, int, int]:
    """What a cached output is valid for: this file as it is now (tests rewrite files in tmp_path)."""
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)
