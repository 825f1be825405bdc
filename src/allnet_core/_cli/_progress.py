"""The CLI's progress bar, fed by allnet_core progress events: tqdm with elapsed time and ETA.

On a terminal the bar redraws in place; when stderr is piped or redirected it refreshes
at most every ``_PIPED_INTERVAL`` seconds, so a log of a 12,000-image job holds a few
dozen progress updates, not one line per image.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

_PIPED_INTERVAL = 10.0


class ProgressBar:
    """``label  40%|####      | 12/30 [00:04<00:06, 2.9it/s] text`` on stderr."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 width: int | None = None):
        stream = stream or sys.stderr
        tty = hasattr(stream, "isatty") and stream.isatty()
        self._bar = tqdm(total=max(int(total), 1), desc=label or None, file=stream,
                         ncols=width and width + 40, dynamic_ncols=tty and not width,
                         mininterval=0.1 if tty else _PIPED_INTERVAL, leave=True)
        self.total = self._bar.total

    @property
    def done(self) -> int:
        return int(self._bar.n)

    def reset(self, total: int) -> None:
        """Start again at 0 of ``total`` (elapsed time and ETA restart too)."""
        self._bar.reset(total=max(int(total), 1))
        self.total = self._bar.total

    def update(self, done: int | None = None, text: str = "", force: bool = False) -> None:
        """Move the bar to ``done`` (absolute) and show ``text`` after it."""
        if done is not None:
            self._bar.update(min(int(done), self.total) - self._bar.n)
        if text:
            self._bar.set_postfix_str(text, refresh=False)
        if force:
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
