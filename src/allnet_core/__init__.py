"""allnet_core: white-blood-cell segmentation and ALL/HEM classification (ALLNet).

Framework-agnostic: importing this package loads numpy only. Keras and its backend are
imported lazily by the modules that need them (``model``, ``training``, ``inference``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-allnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

from allnet_core.errors import (
    AllnetError,
    CancelledError,
    ConfigError,
    DatasetError,
    ImageReadError,
    ModelError,
)

__all__ = [
    "AllnetError",
    "CancelledError",
    "ConfigError",
    "DatasetError",
    "ImageReadError",
    "ModelError",
    "__version__",
]
