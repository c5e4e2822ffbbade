"""Durable file replacement, for state that must survive kill -9 and power cuts.

Here rather than in one subsystem because the daemon's lock state and the sequencer's job queue
both need it, and every subsystem may import the bus package.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def temporary_prefix(path: Path) -> str:
    """Names of the temporary files `write_atomically` makes next to `path` begin with this
    (a process killed mid-write leaves one; sweep them with `path.parent.glob(prefix + "*")`)."""
    return f".{path.name}."


def write_atomically(path: Path, data: bytes) -> int:
    """Replace `path` by `data` so that a crash at any moment leaves the old file or the new one,
    never a mixture: temporary file in the same directory, fsync, rename, fsync the directory
    (the rename is durable only once the directory is on disk). Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(data)
