"""napari-allnet: a thin napari plugin over :mod:`allnet_core`.

Importing this package must stay cheap: no napari, Qt, Keras or TensorFlow import here.
Widgets import what they need when napari creates them.
"""

from allnet_core import __version__

__all__ = ["__version__"]
