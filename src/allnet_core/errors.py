"""Exception types raised by allnet_core.

Every error a user can cause derives from :class:`AllnetError`; the CLI and the napari
plugin turn these into one readable line instead of a traceback. Each subclass also derives
from the builtin exception a Python user would expect (``ValueError`` for bad input).
"""

from __future__ import annotations

import errno
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

    def __reduce__(self):  # picklable: it travels back from worker processes
        return type(self), (self.path, self.problem)


class DatasetError(AllnetError, ValueError):
    """A dataset folder or table cannot be used (empty, one class, too few subjects...)."""


class ConfigError(AllnetError, ValueError):
    """A configuration value is out of range or inconsistent."""


class ModelError(AllnetError, ValueError):
    """A model file cannot be loaded or does not fit what is asked of it."""


class CancelledError(AllnetError):
    """Long work stopped because its cancel token was set."""


class RunInUseError(AllnetError, RuntimeError):
    """A run folder is locked by another process that trains in it."""


class ProtocolError(AllnetError, ValueError):
    """A request to the worker process is not valid (not JSON, not an object, a bad field)."""


class OutputError(AllnetError, OSError):
    """An output path cannot be written: a file where a folder is needed (or the reverse),
    a read-only folder, a full disk.

    Built like :class:`OSError` (``OutputError(errno, strerror, filename)``); its message is
    :func:`describe_os_error`'s one line.
    """

    def __str__(self) -> str:
        return describe_os_error(self)


#: A hint for the operating-system errors a user meets when writing results.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space or choose another output folder",
    errno.EDQUOT: "free some space or choose another output folder",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.EROFS: "choose a folder on a writable disk",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "a file of that name exists; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; name a file",
}


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason (hint)``: one line for an operating-system error.

    Examples
    --------
    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "run/model.keras"))
    'run/model.keras: No space left on device (free some space or choose another output folder)'
    """
    where = exc.filename if exc.filename is not None else "output"
    reason = exc.strerror or OSError.__str__(exc)
    hint = _OS_ERROR_HINTS.get(exc.errno)
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")
