"""Output folders: made, and proven writable, before any work starts (a run that would fail at its first
write fails at once, with the folder named)."""

from __future__ import annotations

import os
from pathlib import Path

from perception.errors import OutputError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove a file can be written there; OutputError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".perception-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"{path}: output folder is not writable ({err.strerror or err})") from err
    return path
