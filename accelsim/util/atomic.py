"""Atomic file writes: write a temp file in the target directory, fsync, then os.replace.

An interrupted write leaves either the old file (or no file) or the complete new one, never a
truncated one (POSIX rename is atomic within a file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def default_file_mode() -> int:
    """The permissions an ordinary open() gives a new file: 0666 minus the process umask (mkstemp
    creates 0600 files and os.replace keeps that mode, so atomic writers apply this instead)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
