"""A small progress bar on stderr (no dependency): drawn at once on a terminal, and on a pipe only
once the job has run longer than ``delay`` seconds, so short runs and test logs stay clean."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable progress sink: ``bar(done, total)`` or ``bar(stage, done, total)``."""

    def __init__(self, label: str = "", *, stream: TextIO | None = None, delay: float = 2.0,
                 enabled: bool = True, width: int = 28):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.enabled = enabled and self.stream is not None  # stderr closed (`2>&-`): no bar
        self.width = width
        try:
            self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        except (OSError, ValueError):
            self.tty = False
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self._drawn = False
        self._stage = ""

    def __call__(self, *args) -> None:
        # Accept (done, total) and (stage, done, total): record_training uses the latter.
        if not self.enabled or len(args) < 2:
            return
        try:
            self._draw(*args)
        except (OSError, ValueError):  # stderr full (`2>/dev/full`) or closed: progress is optional
            self.enabled = False

    def _draw(self, *args) -> None:
        if isinstance(args[0], str) and args[0] != self._stage:
            self._stage = args[0]
            self._last_decile = -1      # a new stage (e.g. warmup -> record) starts its own count
        done, total = int(args[-2]), int(args[-1])
        now = time.monotonic()
        if not self.tty and now - self.start < self.delay:
            return
        frac = min(1.0, done / total) if total > 0 else 1.0
        if self.tty:
            if now - self._last_draw < 0.1 and done < total:
                return
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            stage = f" {self._stage}" if self._stage else ""
            self.stream.write(f"\r{self.label}{stage} [{bar}] {done}/{total} {frac:4.0%} "
                              f"{now - self.start:5.1f}s\x1b[K")
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            stage = f" {self._stage}" if self._stage else ""
            self.stream.write(f"{self.label}{stage}: {done}/{total} ({frac:.0%}) {now - self.start:.1f}s\n")
        self._last_draw = now
        self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        if self._drawn and self.tty and self.enabled:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._drawn = False
