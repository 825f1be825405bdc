"""A small text progress bar for the CLI, fed by allnet_core progress events."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Render ``[#####.....] 12/40 text`` on one terminal line (plain lines when piped)."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 28):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def update(self, done: int | None = None, text: str = "", force: bool = False) -> None:
        if done is not None:
            self.done = min(int(done), self.total)
        now = time.monotonic()
        if not force and self._tty and now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label} [{bar}] {self.done}/{self.total} {text}".rstrip()
        if self._tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
