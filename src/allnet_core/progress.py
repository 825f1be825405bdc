"""The two plain hooks of long work: progress events and a cancel token.

Long-running functions (training, batch classification) take ``progress`` and ``cancel``
arguments and know nothing of the GUI that may be watching:

* ``progress`` is any callable taking one ``dict``. Every event has a ``"kind"`` key
  (``"start"``, ``"fold_start"``, ``"epoch_end"``, ``"batch_end"``, ``"file"``, ``"done"``,
  ...) and JSON-serialisable values, so the same events can travel as JSON lines from a
  worker process (see :mod:`allnet_core.worker`).
* ``cancel`` is a :class:`CancelToken` (or anything with an ``is_set()`` method). Work checks
  it between batches and stops cleanly, keeping what is complete.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from allnet_core.errors import CancelledError

__all__ = ["CancelLike", "CancelToken", "ProgressCallback", "check_cancel", "emit"]

ProgressCallback = Callable[[dict[str, Any]], None]


class CancelLike(Protocol):
    def is_set(self) -> bool: ...


class CancelToken:
    """A thread-safe flag asking long work to stop at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop."""
        self._event.set()

    def is_set(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()


def emit(progress: ProgressCallback | None, kind: str, **fields: Any) -> None:
    """Send one event ``{"kind": kind, **fields}`` to ``progress`` if there is one."""
    if progress is not None:
        progress({"kind": kind, **fields})


def check_cancel(cancel: CancelLike | None, what: str = "work") -> None:
    """Raise :class:`CancelledError` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise CancelledError(f"{what} cancelled")
