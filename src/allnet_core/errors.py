"""Exception types raised by allnet_core.

Every error a user can cause derives from :class:`AllnetError`; the CLI and the napari
plugin turn these into one readable line instead of a traceback. Each subclass also derives
from the builtin exception a Python user would expect (``ValueError`` for bad input).
"""

from __future__ import annotations

import os


class AllnetError(Exception):
    """Base class of every error that allnet_core raises on purpose."""


class ImageReadError(AllnetError, ValueError):
    """An image file cannot be read as an RGB image.

    The message always names the file and the problem.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetError(AllnetError, ValueError):
    """A dataset folder or table cannot be used (empty, one class, too few subjects...)."""


class ConfigError(AllnetError, ValueError):
    """A configuration value is out of range or inconsistent."""


class ModelError(AllnetError, ValueError):
    """A model file cannot be loaded or does not fit what is asked of it."""


class CancelledError(AllnetError):
    """Long work stopped because its cancel token was set."""
