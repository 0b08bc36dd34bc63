"""Atomic file writes: write a temp file in the target directory, fsync, then os.replace.

An interrupted write leaves either the old file (or no file) or the complete new one, never a
truncated one (POSIX rename is atomic within a file system).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator


def default_file_mode() -> int:
    """The permissions an ordinary open() gives a new file: 0666 minus the process umask (mkstemp
    creates 0600 files and os.replace keeps that mode, so atomic writers apply this instead)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_DEFERRED = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends (they are delivered then), so that a
    temp file is never created without the bookkeeping that removes it on interruption."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def make_temp(path: Path) -> tuple[int, str]:
    """mkstemp next to ``path`` (same file system, so os.replace is atomic): (fd, temp path)."""
    directory = path.parent if str(path.parent) else Path(".")
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on success it replaces ``path``, on error it is removed
    (an exception, Ctrl-C, or SIGTERM/SIGHUP as the CLI raises them)."""
    path = Path(path)
    fd = tmp = None
    try:
        with deferred_signals():  # a signal lands after `tmp` is known: the except below removes it
            fd, tmp = make_temp(path)
            os.fchmod(fd, default_file_mode())
        fh = os.fdopen(fd, mode)
        fd = None  # owned by fh now
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
