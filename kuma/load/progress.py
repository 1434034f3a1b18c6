"""A one-line progress bar on stderr (a plain line every few seconds when not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    WIDTH = 30

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        self.label = label
        self.total = max(1, total)
        self.enabled = enabled
        self.started = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last_line = 0.0
        self._shown = False

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not self._tty and now - self._last_line < 5.0:
            return
        self._last_line = now
        filled = int(self.WIDTH * min(done, self.total) / self.total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = (
            f"{self.label:<12} [{bar}] {done:>7,}/{self.total:,} {now - self.started:6.1f}s {extra}"
        )
        if self._tty:
            sys.stderr.write("\r" + text + "\x1b[K")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self._tty and self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
