"""Grad-CAM (Selvaraju et al. 2017): where in a crop the model found its evidence.

:func:`gradcam_models` splits a model at the explained layer, :func:`gradcam_batch` computes
the maps of one batch on the active Keras backend, :func:`maps_to_crop_sizes` brings them
back to each crop's size, :func:`gradcam_to_field` places per-cell maps into the image the
cells were cut from, :func:`overlay_heatmap` blends a map over an image and
:func:`write_gradcam_png` draws the picture that ``allnet classify --gradcam`` writes:
overlay, cell outlines, each cell's call and P(ALL), a colour bar.
:meth:`allnet_core.inference.Classifier.gradcam` runs them over many crops.
"""

from __future__ import annotations

import numpy as np

from allnet_core.errors import ConfigError, ModelError
from allnet_core.inference.cells import CELL_CROP_SIZE

__all__ = [
    "GRADCAM_MIN_SIZE",
    "HEATMAP_CMAP",
    "OUTLINE_COLOUR",
    "default_cam_layer",
    "gradcam_figure",
    "gradcam_batch",
    "gradcam_models",
    "gradcam_to_field",
    "maps_to_crop_sizes",
    "outline_cells",
    "overlay_heatmap",
    "write_gradcam_png",
]

#: Least height and width of the feature map that Grad-CAM uses by default.
GRADCAM_MIN_SIZE = 7


def default_cam_layer(model, keras, source: str) -> str:
    """The last ``Conv2D`` layer whose feature map is at least GRADCAM_MIN_SIZE square.

    For ALLNet at 450x450 that is ``conv4`` (17x17). Small-input models (e.g. 64x64, whose
    ``conv4`` is 3x3) fall back to an earlier layer: a 3x3 map cannot say where in the crop
    the evidence lies. Without any such layer, the last ``Conv2D``.
    """
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    if not convs:
        raise ModelError(f"{source}: the model has no Conv2D layer for Grad-CAM")
    for lyr in reversed(convs):
        shape = tuple(lyr.output.shape)
        if len(shape) == 4 and min(shape[1] or 0, shape[2] or 0) >= GRADCAM_MIN_SIZE:
            return lyr.name
    return convs[-1].name


def gradcam_models(model, layer: str | None, source: str):
    """Split ``model`` at ``layer`` (default :func:`default_cam_layer`) for Grad-CAM.

    Returns
    -------
    features : keras.Model
        Input to the layer's feature maps.
    head : keras.Model
        Feature maps to the class scores: the pre-softmax logits when the model ends in a
        softmax ``Activation`` layer, else its output.
    logits : bool
        Whether ``head`` returns logits.
    """
    from allnet_core.backend import get_keras

    keras = get_keras()
    if layer is None:
        layer = default_cam_layer(model, keras, source)
    try:
        target = model.get_layer(layer)
    except ValueError as exc:
        raise ConfigError(f"{source}: no layer named {layer!r}") from exc
    last = model.layers[-1]
    score, logits = model.output, False
    if isinstance(last, keras.layers.Activation) and \
            getattr(last.activation, "__name__", "") == "softmax":
        score, logits = last.input, True  # explain logits, not saturating probabilities
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    try:
        features = keras.Model(inputs, target.output)
        head = keras.Model(target.output, score)
    except Exception as exc:  # a model that is not a functional graph
        raise ModelError(
            f"{source}: Grad-CAM needs a functional model whose layer {layer!r} "
            f"feeds the output ({type(exc).__name__}: {exc})"
        ) from exc
    return features, head, logits


def _score_gradients(head, feats: np.ndarray, cls: np.ndarray | None, logits: bool):
    """Gradient of the class log-odds w.r.t. the feature maps, on the active backend.

    ``head`` maps feature maps to logits (``logits=True``) or to probabilities.
    """
    from allnet_core.backend import get_keras

    keras = get_keras()
    backend = keras.backend.backend()

    def pick(scores, ops):
        # Log-odds of the class against the others, summed over the batch:
        # z_c - logsumexp_{j != c} z_j (for two classes simply z_c - z_other).
        if not logits:
            scores = ops.log(ops.clip(scores, 1e-7, 1.0))
        if cls is None:
            idx = ops.argmax(scores, axis=-1)
        else:
            idx = ops.convert_to_tensor(cls.astype("int32"))
        onehot = ops.one_hot(idx, scores.shape[-1], dtype=scores.dtype)
        own = ops.sum(scores * onehot, axis=-1)
        others = ops.logsumexp(scores - 1e9 * onehot, axis=-1)
        return ops.sum(own - others)

    ops = keras.ops
    if backend == "tensorflow":
        import tensorflow as tf  # the backend's own autodiff: allowed only on this branch

        a = tf.convert_to_tensor(feats)
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = pick(head(a, training=False), ops)
        return tape.gradient(total, a).numpy()
    if backend == "jax":
        import jax

        def f(a):
            return pick(head(a, training=False), ops)

        return np.asarray(jax.grad(f)(jax.numpy.asarray(feats)))
    if backend == "torch":
        import torch

        device = head.weights[0].value.device if head.weights else "cpu"
        a = torch.as_tensor(feats, device=device).requires_grad_(True)
        total = pick(head(a, training=False), ops)
        (grad,) = torch.autograd.grad(total, a)
        return grad.detach().cpu().numpy()
    raise ModelError(f"Grad-CAM is not available on the {backend!r} Keras backend")


def gradcam_batch(features, head, logits: bool, x: np.ndarray, cls,
                  size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM maps ``(N, *size)`` float32 in [0, 1] of one model input batch ``x``.

    ``features``, ``head`` and ``logits`` come from :func:`gradcam_models`; ``cls`` holds
    the class to explain per input (None: the predicted class).
    """
    from skimage.transform import resize

    feats = np.asarray(features.predict_on_batch(x), np.float32)
    grads = _score_gradients(head, feats, cls, logits).astype(np.float32)
    weights = grads.mean(axis=(1, 2))  # (N, C): global-average-pooled gradients
    cams = np.maximum(np.einsum("nhwc,nc->nhw", feats, weights), 0.0)
    out = np.zeros((len(x), *size), np.float32)
    for i, cam in enumerate(cams):
        peak = float(cam.max())
        if not np.isfinite(peak) or peak <= 0:
            continue
        up = resize(cam / peak, size, order=1, mode="edge", anti_aliasing=False)
        out[i] = np.clip(np.nan_to_num(up, nan=0.0), 0.0, 1.0)
    return out


def maps_to_crop_sizes(maps: np.ndarray, crops):
    """Resize model-input-sized heatmaps back to each crop's own size."""
    from skimage.transform import resize

    shapes = [np.shape(c)[:2] for c in crops]
    if all(s == maps.shape[1:] for s in shapes):
        return maps
    out = []
    for m, (ch, cw) in zip(maps, shapes, strict=True):
        side = max(ch, cw)  # undo resize_for_model: square of the long side, then crop
        sq = resize(m, (side, side), order=1, mode="edge", anti_aliasing=False) \
            if m.shape != (side, side) else m
        top, left = (side - ch) // 2, (side - cw) // 2
        out.append(np.clip(sq[top:top + ch, left:left + cw], 0, 1).astype(np.float32))
    if len({o.shape for o in out}) == 1:
        return np.stack(out)
    return out


def gradcam_to_field(heatmaps, table, shape: tuple[int, int], labels=None,
                     crop_size: int | None = CELL_CROP_SIZE) -> np.ndarray:
    """Place per-cell heatmaps into the image they were cut from.

    Undoes :func:`~allnet_core.segmentation.extract_cells`' geometry: each cell's bounding
    box was centred in a ``crop_size`` square, shrunk by ``scale`` when larger. The
    matching part of the heatmap is resized to the bounding box and written there, inside
    the cell's mask when ``labels`` is given (elsewhere 0).

    Parameters
    ----------
    heatmaps : (N, s, s) array or list of 2-D arrays
        From :meth:`Classifier.gradcam`, in the order of ``table``'s rows.
    table : pandas.DataFrame
        The cell table (``label``, ``bbox_*``, ``scale``) of the same image.
    shape : (int, int)
        The image's height and width.
    labels : (H, W) int array, optional
        Instance labels; restricts each heatmap to its cell.
    crop_size : int or None
        Side of the crops. None: each heatmap covers its bounding box as in ``"cells"``
        mode, where the whole image is the crop (the heatmap then must have the image's
        shape).

    Returns
    -------
    (H, W) float32 array in [0, 1]
    """
    from allnet_core.segmentation.cells import crop_geometry

    field = np.zeros(tuple(shape), np.float32)
    if len(table) != len(heatmaps):
        raise ConfigError(f"{len(heatmaps)} heatmaps for a table of {len(table)} cells")
    for hm, row in zip(heatmaps, table.itertuples(index=False), strict=True):
        r0, c0 = int(row.bbox_min_row), int(row.bbox_min_col)
        r1, c1 = int(row.bbox_max_row), int(row.bbox_max_col)
        hm = np.asarray(hm, np.float32)
        if crop_size is None:
            if hm.shape != field.shape:
                raise ConfigError(f"heatmap shape {hm.shape} differs from the image {shape}")
            part = hm[r0:r1, c0:c1]
        else:  # extract_cells' shrink-and-centre, inverted
            part = crop_geometry(row, crop_size).to_field(hm)
        region = field[r0:r1, c0:c1]
        if labels is not None:
            mask = np.asarray(labels)[r0:r1, c0:c1] == row.label
            region[mask] = part[mask]
        else:
            np.maximum(region, part, out=region)
    return np.clip(field, 0.0, 1.0)


#: The heatmap colour map, as napari's Grad-CAM layer: perceptually uniform and readable
#: with colour-vision deficiencies (unlike ``jet``).
HEATMAP_CMAP = "inferno"
#: Colour of the cell outlines in Grad-CAM pictures (apart from inferno's colours and
#: from the stain's purples and pinks).
OUTLINE_COLOUR = (0, 255, 255)


def overlay_heatmap(rgb, heatmap, alpha: float = 0.7, threshold: float = 0.05,
                    cmap: str = HEATMAP_CMAP) -> np.ndarray:
    """Blend a [0, 1] heatmap over an RGB image, as uint8.

    The colour (``cmap``, inferno by default) is blended in with an opacity that grows with
    the heatmap's value: ``alpha`` at 1, nothing at or below ``threshold``. Pixels with
    little or no evidence keep the image's own colour, so cells are not washed over and
    a faint map shows faintly.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    heatmap : (H, W) float array in [0, 1]
    alpha : float
        Opacity of the colour where the heatmap is 1.
    threshold : float
        Values at or below it are not drawn.
    cmap : str
        A matplotlib colour map name.

    Examples
    --------
    >>> rgb = np.full((2, 2, 3), 200, np.uint8)
    >>> out = overlay_heatmap(rgb, np.array([[0.0, 0.0], [0.5, 1.0]]))
    >>> (out[0] == 200).all(), (out[1, 1] != 200).any()
    (True, True)
    """
    from matplotlib import colormaps

    h = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    colours = colormaps[cmap](h)[..., :3] * 255.0
    weight = alpha * np.clip((h - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0)[..., None]
    out = np.asarray(rgb, np.float32) * (1 - weight) + colours * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def outline_cells(rgb, labels, colour=OUTLINE_COLOUR) -> np.ndarray:
    """A copy of ``rgb`` with the boundary pixels of every labelled cell in ``colour``
    (:func:`skimage.segmentation.find_boundaries`, inner mode)."""
    from skimage.segmentation import find_boundaries

    out = np.array(rgb, np.uint8, copy=True)
    out[find_boundaries(np.asarray(labels), mode="inner")] = colour
    return out


def gradcam_figure(rgb, heatmap, labels=None, table=None, dpi: int = 100):
    """The Grad-CAM picture of one image: the heatmap blended over the image
    (:func:`overlay_heatmap`), each cell outlined, its call and P(ALL) written beside it,
    and a colour bar.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    heatmap : (H, W) float array in [0, 1]
        E.g. from :meth:`Classifier.image_gradcam`.
    labels : (H, W) int array, optional
        Instance labels of the cells, outlined.
    table : pandas.DataFrame, optional
        The classified cell table (``call``, else ``class``; ``p_all``, ``bbox_*``): one
        caption per cell.
    dpi : int
        The image is drawn at about one screen pixel per image pixel at this resolution
        (small images larger, so the captions stay legible).

    Returns
    -------
    matplotlib.figure.Figure
        Drawn on the Agg canvas, without pyplot.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    shown = overlay_heatmap(rgb, heatmap)
    if labels is not None:
        shown = outline_cells(shown, labels)
    h, w = shown.shape[:2]
    scale = max(1.0, 360.0 / max(min(h, w), 1))
    img_w, img_h, bar_w = w * scale / dpi, h * scale / dpi, 1.0
    fig = Figure(figsize=(img_w + bar_w, img_h), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, img_w / (img_w + bar_w), 1.0))
    ax.imshow(shown)
    ax.set_axis_off()
    rows = () if table is None else zip(
        table["call" if "call" in table else "class"], table["p_all"], table["bbox_min_row"],
        table["bbox_min_col"], table["bbox_max_row"], strict=True)
    for call, p_all, r0, c0, r1 in rows:  # above the cell, or below it at the top edge
        top = r0 > 0.06 * h
        ax.text(int(c0), int(r0 if top else r1), f"{call}, P(ALL) = {float(p_all):.2f}",
                fontsize=8, color="white", va="bottom" if top else "top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "edgecolor": "none"})
    x0 = img_w / (img_w + bar_w)
    cax = fig.add_axes((x0 + 0.15 * (1 - x0), 0.1, 0.15 * (1 - x0), 0.8))
    fig.colorbar(ScalarMappable(Normalize(0, 1), HEATMAP_CMAP), cax=cax,
                 label="Grad-CAM: evidence for the call (relative)")
    return fig


def write_gradcam_png(path, rgb, heatmap, labels=None, table=None):
    """Write :func:`gradcam_figure` as a PNG, atomically; return the path."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from allnet_core.io import atomic_write

    fig = gradcam_figure(rgb, heatmap, labels, table)
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight", pad_inches=0.05)
    return path
