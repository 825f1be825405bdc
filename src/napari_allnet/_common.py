"""Small helpers shared by the widgets: layer checks, in-place layer updates, messages."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from allnet_core.errors import AllnetError, ImageReadError

__all__ = [
    "LayerProblem", "default_of", "layer_pixels", "layer_rgb", "lazy_layer_rgb", "place_like",
    "upsert_layer",
]


class LayerProblem(AllnetError, ValueError):
    """A layer cannot be used as input; the message says why, for a notification."""


def layer_rgb(layer, task: str) -> np.ndarray:
    """The pixels of an Image layer as ``HxWx3 uint8`` RGB, or a clear :class:`LayerProblem`.

    Parameters
    ----------
    layer : napari.layers.Image or None
        The chosen layer.
    task : str
        What the pixels are for, named in the messages (e.g. ``"Segment cells"``).
    """
    data = np.asarray(_layer_data(layer, task))
    try:
        return _as_rgb(data, layer.name)
    except ImageReadError as exc:
        raise LayerProblem(f"{task}: {exc}") from exc


def layer_pixels(layer, task: str):
    """``(pixels, lazy)``: a large layer's lazy dask array (:func:`lazy_layer_rgb`) and
    True, or the in-memory pixels (:func:`layer_rgb`) and False."""
    lazy = lazy_layer_rgb(layer, task)
    return (lazy, True) if lazy is not None else (layer_rgb(layer, task), False)


def lazy_layer_rgb(layer, task: str):
    """A large layer's pixels as a lazy ``HxWx3 uint8`` dask array, None for others.

    Large means not held in memory: a dask or zarr array, or a multiscale layer (its full
    resolution level). Nothing is read here. Raises :class:`LayerProblem` as
    :func:`layer_rgb` does.
    """
    data = _layer_data(layer, task)
    if isinstance(data, np.ndarray) and not getattr(layer, "multiscale", False):
        return None
    from allnet_core.io_lazy import open_rgb_lazy

    try:
        return open_rgb_lazy(data)
    except ImageReadError as exc:
        raise LayerProblem(f"{task}: {exc}") from exc


def _layer_data(layer, task: str):
    """The layer's (full resolution) data after the checks of :func:`layer_rgb`, unread."""
    if layer is None:
        raise LayerProblem(f"{task}: no image layer chosen. Open a colour image (or a sample: "
                           "File > Open Sample > ALLNet) and choose it.")
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if not getattr(layer, "rgb", False) or data.ndim == 2:
        raise LayerProblem(
            f"{task} needs an RGB colour image, but layer {layer.name!r} is a grayscale "
            f"image of shape {data.shape}. White cells are found by their colour "
            "saturation, which a single channel does not have. Open the original colour "
            "image (an RGB layer).")
    if data.ndim != 3:
        raise LayerProblem(
            f"{task} works on one 2-D colour image, but layer {layer.name!r} has shape "
            f"{data.shape} (a stack or volume). Split the stack and choose one image.")
    return data


def _as_rgb(data: np.ndarray, name: str) -> np.ndarray:
    from allnet_core.io import as_rgb_uint8

    return as_rgb_uint8(data, source=f"layer {name!r}")


def default_of(func: Callable, name: str, fallback: Any) -> Any:
    """The default value of ``func``'s parameter ``name`` (``fallback`` if it has none)."""
    p = inspect.signature(func).parameters.get(name)
    if p is None or p.default is inspect.Parameter.empty:
        return fallback
    return p.default


def place_like(source) -> dict[str, Any]:
    """Layer keyword arguments that put a new 2-D layer exactly over ``source``."""
    nd = 2
    return {
        "scale": tuple(source.scale[-nd:]),
        "translate": tuple(source.translate[-nd:]),
    }


_INIT_ONLY = ("rgb", "multiscale", "cache")


def upsert_layer(viewer, name: str, data, layer_type: str, **kwargs):
    """Update the layer called ``name`` in place, or add it if there is none of that type.

    Returns the layer.
    """
    from napari.layers import Image, Labels

    cls = {"labels": Labels, "image": Image}[layer_type]
    existing = viewer.layers[name] if name in viewer.layers else None
    if isinstance(existing, cls):
        existing.data = data
        for key, value in kwargs.items():
            if key not in _INIT_ONLY:
                setattr(existing, key, value)
        existing.refresh()
        return existing
    add = getattr(viewer, f"add_{layer_type}")
    return add(data, name=name, **kwargs)
