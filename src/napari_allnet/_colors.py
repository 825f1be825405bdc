"""Class colours used by every layer the plugin makes.

ALL (blast) cells are vermillion and HEM (healthy) cells blue: the Okabe-Ito pair, which
stays distinct under the common colour-vision deficiencies. Cells the model cannot call
are grey (``uncertain``); cells unlike anything it was trained on (``out_of_scope``) are
not filled at all but outlined in Okabe-Ito yellow on a layer of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ALL_COLOR", "CLASS_COLORS", "HEM_COLOR", "OUT_OF_SCOPE_COLOR", "UNCERTAIN_COLOR",
    "UNKNOWN_COLOR", "class_colormap", "gradcam_colormap", "legend_html", "outline_colormap",
]

ALL_COLOR = "#d55e00"  # vermillion
HEM_COLOR = "#0072b2"  # blue
UNKNOWN_COLOR = "#999999"  # grey: a cell without a class
UNCERTAIN_COLOR = UNKNOWN_COLOR  # grey: the model cannot tell
OUT_OF_SCOPE_COLOR = "#f0e442"  # yellow outline, no fill
CLASS_COLORS = {"ALL": ALL_COLOR, "HEM": HEM_COLOR, "uncertain": UNCERTAIN_COLOR,
                "out_of_scope": "transparent"}
#: (colour, mark, text) of the legend, in order.
LEGEND = ((ALL_COLOR, "&#9632;", "ALL (blast)"), (HEM_COLOR, "&#9632;", "HEM (healthy)"),
          (UNCERTAIN_COLOR, "&#9632;", "uncertain"),
          (OUT_OF_SCOPE_COLOR, "&#9633;", "out of scope (outlined, not filled)"))


def class_colormap(classes: Mapping[int, str]):
    """A napari ``DirectLabelColormap`` colouring each label by its class.

    Parameters
    ----------
    classes : mapping
        ``{label: call}`` with calls ``"ALL"``, ``"HEM"``, ``"uncertain"`` (grey) or
        ``"out_of_scope"`` (transparent: see :func:`outline_colormap`). Labels with another
        class are grey; label 0 and labels not listed are transparent.
    """
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    for label, name in classes.items():
        color_dict[int(label)] = CLASS_COLORS.get(str(name), UNKNOWN_COLOR)
    return DirectLabelColormap(color_dict=color_dict)


def outline_colormap(labels):
    """A ``DirectLabelColormap`` painting ``labels`` in :data:`OUT_OF_SCOPE_COLOR` (for a
    Labels layer drawn as contours) and everything else transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    color_dict.update({int(label): OUT_OF_SCOPE_COLOR for label in labels})
    return DirectLabelColormap(color_dict=color_dict)


def legend_html() -> str:
    """The colour legend as rich text for a label: a coloured mark and the call's name,
    one call per line."""
    return "<br>".join(f'<span style="color:{color}; font-size:14pt">{mark}</span> {text}'
                       for color, mark, text in LEGEND)


def gradcam_colormap(n: int = 64):
    """Inferno with an opacity ramp: no evidence is transparent, strong evidence opaque,
    so a Grad-CAM layer shows over the image without darkening it."""
    import numpy as np
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    colors = colormaps["inferno"](np.linspace(0.0, 1.0, n))
    colors[:, 3] = np.linspace(0.0, 1.0, n) ** 0.7
    return Colormap(colors=colors, name="allnet Grad-CAM", interpolation="linear")
