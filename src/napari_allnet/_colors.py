"""Class colours used by every layer the plugin makes.

ALL (blast) cells are vermillion and HEM (healthy) cells blue: the Okabe-Ito pair, which
stays distinct under the common colour-vision deficiencies.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ALL_COLOR", "CLASS_COLORS", "HEM_COLOR", "UNKNOWN_COLOR", "class_colormap",
    "gradcam_colormap",
]

ALL_COLOR = "#d55e00"  # vermillion
HEM_COLOR = "#0072b2"  # blue
UNKNOWN_COLOR = "#999999"  # grey: a cell without a class
CLASS_COLORS = {"ALL": ALL_COLOR, "HEM": HEM_COLOR}


def class_colormap(classes: Mapping[int, str]):
    """A napari ``DirectLabelColormap`` colouring each label by its class.

    Parameters
    ----------
    classes : mapping
        ``{label: "ALL" | "HEM"}``. Labels with another class are grey; label 0 and
        labels not listed are transparent.
    """
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    for label, name in classes.items():
        color_dict[int(label)] = CLASS_COLORS.get(str(name), UNKNOWN_COLOR)
    return DirectLabelColormap(color_dict=color_dict)


def gradcam_colormap(n: int = 64):
    """Inferno with an opacity ramp: no evidence is transparent, strong evidence opaque,
    so a Grad-CAM layer shows over the image without darkening it."""
    import numpy as np
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    colors = colormaps["inferno"](np.linspace(0.0, 1.0, n))
    colors[:, 3] = np.linspace(0.0, 1.0, n) ** 0.7
    return Colormap(colors=colors, name="allnet Grad-CAM", interpolation="linear")
