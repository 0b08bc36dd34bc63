"""Opening user-named input files without surprises: only regular files are read (a FIFO would
block the open forever, /dev/zero would never end), and a path shown in a message is cut short."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotRegularFileError(OSError):
    """The path names something other than a regular file; ``kind`` says what ("a FIFO ...")."""

    def __init__(self, kind: str):
        super().__init__(f"is {kind}, not a regular file")
        self.kind = kind


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symlinks followed).

    The open is non-blocking, so a FIFO without a writer opens at once instead of hanging, and the
    type is checked on the open descriptor (no race between a stat and the open). Raises
    NotRegularFileError, or the OSError of the open (FileNotFoundError, PermissionError,
    ENAMETOOLONG, ELOOP, ...)."""
    nonblock = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere a FIFO cannot be named like this
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(next((k for test, k in _KINDS if test(mode)), "not a regular file"))
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ValueError if it is longer (the
    read stops at ``limit + 1`` bytes whatever the file's size claims)."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data


def display_path(path: str | os.PathLike, n: int = 160) -> str:
    """``path`` for a message: whole if short, else its start and end around '...'."""
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    return text if len(text) <= n else f"{text[: n // 2 - 2]}...{text[-(n // 2 - 1):]}"
