"""The napari session's workers and trained models.

A session keeps one :class:`~allnet_core.worker.WorkerClient` per role ("classify",
"train"), see :func:`get_client`, so a second classification reuses the warm worker and
does not pay the framework's start-up again. :func:`register_model` / :func:`last_model`
form the small session registry through which "Train ALLNet" hands its best model to
"Classify cells"; :data:`model_registered` tells open widgets.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from psygnal import SignalInstance

from allnet_core.worker import WorkerClient

__all__ = [
    "get_client",
    "last_model",
    "model_registered",
    "register_model",
    "shutdown_clients",
]

_clients: dict[str, WorkerClient] = {}
_models: list[str] = []


def get_client(role: str = "classify") -> WorkerClient:
    """The session's worker client for ``role`` ("classify" or "train"), created lazily.

    Classification and training use separate workers so that one can run while the
    other is busy.
    """
    if role not in _clients:
        _clients[role] = WorkerClient()
    return _clients[role]


def shutdown_clients() -> None:
    """Stop every worker of this session (called at interpreter exit)."""
    for client in list(_clients.values()):
        client.close()
    _clients.clear()


atexit.register(shutdown_clients)


def register_model(path: str | os.PathLike) -> None:
    """Make a trained model available to "Classify cells" as the session's last model."""
    path = str(Path(path))
    if path in _models:
        _models.remove(path)
    _models.append(path)
    model_registered.emit(path)


def last_model() -> str | None:
    """The last model registered in this session (by a training run), or None."""
    return _models[-1] if _models else None


#: Emitted with the model path whenever :func:`register_model` is called.
model_registered = SignalInstance((str,), name="model_registered")
