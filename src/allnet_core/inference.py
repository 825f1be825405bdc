"""Apply a trained ALLNet: single cells, whole smear fields, test-time augmentation, Grad-CAM.

The central object is :class:`Classifier`, a trained Keras model plus the facts needed to
use it (input size, class names). Load one from a ``.keras`` file or a training run folder
with :meth:`Classifier.load`, or wrap a model in memory with ``Classifier(model)``.

Input pixels
------------
The model takes ``float32`` RGB images in 0-255 (it rescales internally). Crops of any
size are turned into model input by :func:`allnet_core.feed.resize_for_model`, the very
function the training feed uses: a non-square crop is padded with black to a centred
square, then shrunk by area averaging (or enlarged bilinearly) to the model's input size.
Training and classification therefore see identical pixels.

Single cells and smear fields
-----------------------------
A single-cell image (a cell cut out on an exactly black background, like C-NMC's) is
classified whole. A smear field is segmented first (:func:`allnet_core.segmentation.
label_cells`) and every white cell is cut out as a C-NMC-like 450x450 crop
(:func:`allnet_core.segmentation.extract_cells`). :func:`is_single_cell_image` decides
between the two.

Test-time augmentation
----------------------
With ``tta=True`` the probabilities are averaged over the 8 symmetries of the square
(identity, rotations by 90, 180 and 270 degrees, and each of them after a left-right flip;
see :data:`TTA_TRANSFORMS`), applied to the resized model input. A non-square model input
uses the 4 of them that keep its shape (identity, both flips, 180 degrees).

Speed
-----
Batches are predicted with ``model.predict_on_batch`` at a few fixed batch shapes (a short
last batch is padded with black images to the next power of two), so the backend compiles
the forward pass once per shape (``tf.function`` on TensorFlow, ``jax.jit`` on JAX) and
keeps the weights resident; Keras' ``predict`` would rebuild its data pipeline on every
call. See ``benchmarks/inference_speed.py`` and ``docs/classify.md`` for measured figures.

This is research software: a model trained with it is not a diagnostic device.
"""

from __future__ import annotations

import io as _io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from allnet_core.errors import ConfigError, ImageReadError, ModelError
from allnet_core.progress import check_cancel, emit

__all__ = [
    "CELL_CROP_SIZE",
    "DEFAULT_CLASS_NAMES",
    "GRADCAM_MIN_SIZE",
    "MODES",
    "TTA_TRANSFORMS",
    "Classifier",
    "ImageResult",
    "find_model_file",
    "gradcam_to_field",
    "image_cells",
    "is_single_cell_image",
    "tta_transforms",
]

#: Output classes of an ALLNet model when nothing else says: index 1 is ALL.
DEFAULT_CLASS_NAMES = ("HEM", "ALL")
#: Side of the C-NMC-like crops cut out of smear fields (C-NMC cells are 450x450).
CELL_CROP_SIZE = 450
#: Values of ``mode`` in :meth:`Classifier.classify_image` and ``allnet classify --mode``.
MODES = ("auto", "cells", "smear")
#: Test-time transforms as ``(k, flip)``: ``np.rot90(x, k)`` after an optional left-right flip.
TTA_TRANSFORMS = tuple((k, flip) for flip in (False, True) for k in range(4))
_DEFAULT_BATCH = 16


# --------------------------------------------------------------------------- images


def is_single_cell_image(rgb, black_fraction: float = 0.4) -> bool:
    """Whether ``rgb`` is a cut-out cell on black (like C-NMC) rather than a smear field.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    black_fraction : float
        Least fraction of pixels that are exactly ``(0, 0, 0)``. C-NMC cells have 75-91 %;
        smear fields practically none.

    Returns
    -------
    bool

    Examples
    --------
    >>> img = np.zeros((64, 64, 3), np.uint8); img[24:40, 24:40] = 150
    >>> is_single_cell_image(img)
    True
    """
    a = _check_image(rgb)
    if not 0.0 < black_fraction <= 1.0:
        raise ConfigError(f"black_fraction must be in (0, 1], got {black_fraction}")
    black = ~a.any(axis=-1)
    return bool(black.mean() >= black_fraction)


def _check_image(rgb, name: str = "image") -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[-1] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageReadError(name, f"expected an HxWx3 RGB image, got an array of shape {a.shape}")
    if a.dtype != np.uint8:
        from allnet_core.io import as_rgb_uint8

        a = as_rgb_uint8(a, source=name)
    return a[..., :3]


def _check_crop(crop, name: str = "crop") -> np.ndarray:
    """A crop (or stack) as given: ``uint8``, or real numbers in 0-255 (the model's scale)."""
    a = np.asarray(crop)
    if a.ndim < 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ImageReadError(name, f"expected RGB crops (..., H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer)
                                   or np.issubdtype(a.dtype, np.floating)):
        raise ImageReadError(name, f"unsupported pixel type {a.dtype}; use uint8")
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
        raise ImageReadError(
            name, f"pixel values must lie in 0-255 (uint8 scale), got {lo:g}..{hi:g}"
        )
    return a


def _whole_cell(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """A single-cell image as one cell: labels, the image as its crop, the table."""
    import pandas as pd

    h, w = a.shape[:2]
    mask = a.any(axis=-1)
    if not mask.any():  # an all-black image holds no cell
        mask = np.zeros((h, w), bool)
        crops = np.zeros((0, h, w, 3), np.uint8)
        return mask.astype(np.int32), crops, _empty_cell_table()
    rr, cc = np.nonzero(mask)
    r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
    row = dict(
        label=1, bbox_min_row=r0, bbox_min_col=c0, bbox_max_row=r1, bbox_max_col=c1,
        area=int(rr.size), centroid_row=float(rr.mean()), centroid_col=float(cc.mean()),
        touches_border=bool(r0 == 0 or c0 == 0 or r1 == h or c1 == w), scale=1.0,
    )
    return mask.astype(np.int32), a[None].copy(), pd.DataFrame([row], columns=_CELL_COLUMNS)


_CELL_COLUMNS = [
    "label", "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col", "area",
    "centroid_row", "centroid_col", "touches_border", "scale",
]


def _empty_cell_table():
    import pandas as pd

    return pd.DataFrame({c: [] for c in _CELL_COLUMNS}).astype(
        {"label": np.int32, "area": np.int64, "touches_border": bool, "scale": float}
    )


def image_cells(rgb, mode: str = "auto", labels=None, crop_size: int = CELL_CROP_SIZE,
                black_fraction: float = 0.4):
    """Find the cells of an image and cut them out; no model is involved.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    mode : {"auto", "cells", "smear"}
        ``"cells"``: the image is one cut-out cell on black and is used whole.
        ``"smear"``: the image is segmented with :func:`~allnet_core.segmentation.label_cells`
        and each white cell is cut out with :func:`~allnet_core.segmentation.extract_cells`.
        ``"auto"``: ``"cells"`` if :func:`is_single_cell_image`, else ``"smear"``.
    labels : (H, W) int array, optional
        Instance labels to use instead of segmenting (smear mode).
    crop_size : int
        Side of the crops cut out of smear fields.
    black_fraction : float
        Passed to :func:`is_single_cell_image` in ``"auto"`` mode.

    Returns
    -------
    labels : (H, W) int32 array
    crops : list of (h, w, 3) uint8 arrays
        One per cell, in label order (the whole image in ``"cells"`` mode).
    table : pandas.DataFrame
        One row per cell: ``label``, bounding box, ``area``, centroid, ``touches_border``,
        ``scale`` (see :func:`~allnet_core.segmentation.extract_cells`).
    mode : str
        The mode used (``"cells"`` or ``"smear"``).
    """
    a = _check_image(rgb)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        mode = "cells" if labels is None and is_single_cell_image(a, black_fraction) else "smear"
    if mode == "cells" and labels is None:
        lab, crops, table = _whole_cell(a)
        return lab, list(crops), table, mode
    from allnet_core.segmentation import extract_cells, label_cells

    if labels is None:
        lab = label_cells(a)
    else:
        lab = np.asarray(labels)
        if lab.shape != a.shape[:2]:
            raise ConfigError(f"labels shape {lab.shape} does not match the image {a.shape[:2]}")
        lab = lab.astype(np.int32, copy=False)
    crops, table = extract_cells(a, lab, size=crop_size)
    return lab, list(crops), table.reset_index(drop=True), "smear"


# --------------------------------------------------------------------------- TTA


def tta_transforms(shape: tuple[int, int] | None = None) -> tuple[tuple[int, bool], ...]:
    """The test-time transforms used for images of ``shape`` (all 8 when square)."""
    if shape is None or shape[0] == shape[1]:
        return TTA_TRANSFORMS
    return ((0, False), (2, False), (0, True), (2, True))


def _apply_transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``np.rot90(flip(batch), k)`` on the image axes of an ``(N, H, W, C)`` batch."""
    out = batch[:, :, ::-1] if flip else batch
    return np.ascontiguousarray(np.rot90(out, k, axes=(1, 2)))


# --------------------------------------------------------------------------- models


def find_model_file(path: str | os.PathLike) -> Path:
    """The model file for ``path``: a ``.keras`` file, or the best model of a run folder.

    A run folder written by :func:`allnet_core.training.cross_validate` names its best fold
    in ``report.json`` (``best_fold``; ``fold_<k>/model.keras``, or ``best_model``). Without
    a report the search is: ``model.keras`` or ``best_model.keras`` in the folder itself,
    else the only ``*.keras`` file below it (checkpoints ``ckpt_*.keras`` ignored); several
    candidates are an error that lists them.

    Raises
    ------
    ModelError
        If nothing usable is found.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such model file or run folder")
    if p.is_file():
        return p
    report = p / "report.json"
    if report.is_file():
        try:
            info = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{report}: not readable JSON ({exc})") from exc
        candidates = []
        if isinstance(info, dict) and info.get("best_fold") is not None:
            candidates.append(p / f"fold_{info['best_fold']}" / "model.keras")
        if isinstance(info, dict) and info.get("best_model"):
            best = Path(info["best_model"])
            candidates.append(best if best.is_absolute() else p / best)
        for c in candidates:
            if c.is_file():
                return c
        raise ModelError(
            f"{p}: report.json names the best model "
            f"({', '.join(str(c) for c in candidates) or 'none'}) but the file is missing"
        )
    for name in ("model.keras", "best_model.keras"):
        if (p / name).is_file():
            return p / name
    found = sorted(f for f in p.rglob("*.keras") if not f.name.startswith(("ckpt_", ".")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelError(f"{p}: the folder holds no .keras model file")
    listing = ", ".join(str(f.relative_to(p)) for f in found[:6])
    raise ModelError(
        f"{p}: the folder holds {len(found)} models ({listing}{', ...' if len(found) > 6 else ''}) "
        "and no report.json naming the best; pass one model file"
    )


def _read_keras_config(path: Path) -> dict:
    """The model configuration stored in a ``.keras`` archive, without deserialising it."""
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path}: not a Keras model file (a .keras file is a zip archive; "
            "legacy .h5 or SavedModel files are not supported)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            if "config.json" not in zf.namelist():
                raise ModelError(f"{path}: not a Keras model file (the archive has no config.json)")
            with zf.open("config.json") as fh:
                return json.load(_io.TextIOWrapper(fh, encoding="utf-8"))
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"{path}: damaged Keras model file ({exc})") from exc


def _find_layer_classes(config: Any, names: set[str]) -> set[str]:
    """Layer class names from ``names`` that occur anywhere in a Keras config tree."""
    found = set()
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str) and cls.rsplit(">", 1)[-1] in names:
                found.add(cls)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _class_names_from_run(model_path: Path) -> tuple[str, ...] | None:
    """``class_names`` from a ``config.json`` beside the model or in its parent folders."""
    for folder in (model_path.parent, model_path.parent.parent):
        cfg = folder / "config.json"
        if not cfg.is_file():
            continue
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        names = data.get("class_names") if isinstance(data, dict) else None
        if isinstance(names, list) and all(isinstance(n, str) for n in names) and names:
            return tuple(names)
    return None


class Classifier:
    """A trained ALLNet (or any Keras image classifier) ready to classify cells.

    Parameters
    ----------
    model : keras.Model
        Takes ``(N, H, W, 3)`` float32 images in 0-255 and returns class probabilities
        ``(N, n_classes)``.
    class_names : sequence of str, optional
        Names of the output classes, in order. Default ``("HEM", "ALL")``.
    positive_class : str
        The class whose probability :meth:`classify_cells` returns.
    source : str, optional
        Where the model came from (shown in messages).

    Raises
    ------
    ModelError
        If the model's input is not a fixed-size RGB image or its output does not have one
        value per class.

    Examples
    --------
    >>> clf = Classifier.load("runs/demo")  # doctest: +SKIP
    >>> p_all = clf.classify_cells(crops)  # doctest: +SKIP
    >>> result = clf.classify_image(read_rgb("smear.jpg"))  # doctest: +SKIP
    >>> result.table[["label", "class", "p_all"]]  # doctest: +SKIP
    """

    def __init__(self, model, class_names: Sequence[str] | None = None,
                 positive_class: str = "ALL", source: str | None = None):
        self.model = model
        self.source = source or getattr(model, "name", "<model>")
        self.class_names = tuple(class_names) if class_names is not None else DEFAULT_CLASS_NAMES
        in_shape = _single_shape(getattr(model, "input_shape", None))
        out_shape = _single_shape(getattr(model, "output_shape", None))
        if in_shape is None or len(in_shape) != 4 or in_shape[-1] != 3 \
                or in_shape[1] is None or in_shape[2] is None:
            raise ModelError(
                f"{self.source}: the model must take fixed-size RGB images (N, H, W, 3), "
                f"its input shape is {in_shape}"
            )
        n = len(self.class_names)
        if out_shape is None or len(out_shape) != 2 or out_shape[-1] != n:
            raise ModelError(
                f"{self.source}: wrong output shape {out_shape}; expected (None, {n}), one "
                f"probability per class ({', '.join(self.class_names)})"
            )
        if positive_class not in self.class_names:
            raise ModelError(
                f"{self.source}: positive class {positive_class!r} is not among the class "
                f"names {self.class_names}"
            )
        self.positive_index = self.class_names.index(positive_class)
        self.input_size = (int(in_shape[1]), int(in_shape[2]))
        self._padded: dict[int, np.ndarray] = {}
        self._gradcam_cache: dict[str | None, tuple] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, class_names: Sequence[str] | None = None,
             positive_class: str = "ALL") -> Classifier:
        """Load a ``.keras`` model file or the best model of a training run folder.

        The file's configuration is read first: a model holding a ``Lambda`` layer (which
        could run arbitrary code) is refused before anything is deserialised, and the
        model is then loaded with ``safe_mode=True`` and ``compile=False``. The input size
        comes from the model; class names from ``class_names``, else from a
        ``config.json`` beside the model or in its run folder (key ``class_names``), else
        :data:`DEFAULT_CLASS_NAMES`.

        Parameters
        ----------
        path : str or path-like
            A ``.keras`` file or a run folder (see :func:`find_model_file`).
        class_names : sequence of str, optional
        positive_class : str

        Raises
        ------
        ModelError
            For a missing file, a file that is not a Keras model, a model with a
            ``Lambda`` layer, or a model whose output does not fit the class names.
        """
        model_path = find_model_file(path)
        config = _read_keras_config(model_path)
        unsafe = _find_layer_classes(config, {"Lambda"})
        if unsafe:
            raise ModelError(
                f"{model_path}: the model contains a Lambda layer, which can run arbitrary "
                "code; refusing to load it (rebuild the model without Lambda layers)"
            )
        from allnet_core.backend import get_keras

        keras = get_keras()
        try:
            model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
        except Exception as exc:  # keras raises ValueError, TypeError, OSError...
            raise ModelError(
                f"{model_path}: cannot load the model ({type(exc).__name__}: {exc})"
            ) from exc
        if class_names is None:
            class_names = _class_names_from_run(model_path)
        return cls(model, class_names=class_names, positive_class=positive_class,
                   source=str(model_path))

    def __repr__(self) -> str:
        h, w = self.input_size
        return (f"Classifier({self.source!r}, input={h}x{w}, "
                f"classes={self.class_names})")

    # ------------------------------------------------------------------ inputs

    def prepare(self, crops) -> np.ndarray:
        """Turn crops into the model's input batch: ``(N, H, W, 3)`` float32 in 0-255.

        ``crops`` is an ``(N, h, w, 3)`` array or a sequence of ``(h, w, 3)`` arrays of
        any sizes. Crops not already at the input size go through
        :func:`allnet_core.feed.resize_for_model` (black padding to a square, then area
        averaging or bilinear enlarging), exactly as in training.
        """
        from allnet_core.feed import resize_for_model

        h, w = self.input_size
        if isinstance(crops, np.ndarray) and crops.ndim == 4:
            items: Iterable = crops
            n = crops.shape[0]
            if crops.shape[1:] == (h, w, 3):
                return self._as_input(crops)
        elif isinstance(crops, np.ndarray) and crops.ndim == 3:
            raise ImageReadError(
                "crops", f"expected a stack of crops (N, H, W, 3), got shape {crops.shape}; "
                "use crops[None] for a single crop"
            )
        elif isinstance(crops, np.ndarray):
            raise ImageReadError("crops", f"expected (N, H, W, 3) crops, got shape {crops.shape}")
        else:
            items = list(crops)
            n = len(items)
        out = np.empty((n, h, w, 3), np.float32)
        for i, c in enumerate(items):
            c = _check_crop(c, name=f"crop {i}")
            if c.shape[:2] == (h, w):
                out[i] = c
            elif h == w:
                out[i] = resize_for_model(c, h)
            else:
                raise ModelError(
                    f"{self.source}: the model input {h}x{w} is not square; crops must "
                    f"already be {h}x{w}, crop {i} is {c.shape[0]}x{c.shape[1]}"
                )
        return out

    def _as_input(self, crops: np.ndarray) -> np.ndarray:
        return _check_crop(crops, "crops").astype(np.float32)

    # ------------------------------------------------------------------ prediction

    def _predict_batch(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Probabilities for ``len(x) <= batch_size`` inputs, at a few fixed batch shapes.

        A short batch is padded with black images up to the next power of two (at most
        ``batch_size``), so the backend compiles at most ``log2(batch_size) + 2`` shapes
        and never computes more than twice the cells asked for.
        """
        n = len(x)
        target = _padded_size(n, batch_size)
        if n < target:
            pad = self._padded.get(target)
            if pad is None or pad.shape[1:] != x.shape[1:]:
                pad = np.zeros((target, *x.shape[1:]), np.float32)
                self._padded[target] = pad
            pad[:n] = x
            pad[n:] = 0
            x = pad
        probs = self.model.predict_on_batch(x)
        return np.asarray(probs, dtype=np.float32)[:n]

    def predict_proba(self, crops, batch_size: int = _DEFAULT_BATCH, tta: bool = False,
                      progress: Callable | None = None, cancel=None) -> np.ndarray:
        """Class probabilities for every crop: ``(N, n_classes)`` float32.

        Parameters
        ----------
        crops : (N, h, w, 3) array or sequence of (h, w, 3) arrays
            ``uint8`` RGB crops, or real numbers in 0-255 (other sizes are resized,
            see :meth:`prepare`).
        batch_size : int
            Crops per forward pass.
        tta : bool
            Average over the test-time transforms (:func:`tta_transforms`).
        progress : callable, optional
            Receives ``{"kind": "batch", "done", "total"}`` after every batch.
        cancel : CancelToken, optional
            Checked before every batch; raises :class:`~allnet_core.errors.CancelledError`.
        """
        batch_size = _check_batch_size(batch_size)
        n_classes = len(self.class_names)
        if isinstance(crops, np.ndarray) and crops.ndim == 4 and crops.shape[0] == 0:
            return np.zeros((0, n_classes), np.float32)
        if not isinstance(crops, np.ndarray):
            crops = list(crops)
            if not crops:
                return np.zeros((0, n_classes), np.float32)
        n = len(crops)
        transforms = tta_transforms(self.input_size) if tta else ((0, False),)
        out = np.zeros((n, n_classes), np.float32)
        for start in range(0, n, batch_size):
            check_cancel(cancel, "classification")
            x = self.prepare(crops[start:start + batch_size])
            acc = np.zeros((len(x), n_classes), np.float64)
            for k, flip in transforms:
                xt = _apply_transform(x, k, flip) if (k or flip) else x
                acc += self._predict_batch(xt, batch_size)
            out[start:start + len(x)] = acc / len(transforms)
            emit(progress, "batch", done=min(start + batch_size, n), total=n)
        return out

    def classify_cells(self, crops, batch_size: int = _DEFAULT_BATCH, tta: bool = False,
                       progress: Callable | None = None, cancel=None) -> np.ndarray:
        """P(ALL) (the positive class) for every crop, as a float32 array of length N.

        Parameters are those of :meth:`predict_proba`.

        Examples
        --------
        >>> clf.classify_cells(np.zeros((2, 450, 450, 3), np.uint8))  # doctest: +SKIP
        array([0.41, 0.41], dtype=float32)
        """
        probs = self.predict_proba(crops, batch_size=batch_size, tta=tta, progress=progress,
                                   cancel=cancel)
        return np.ascontiguousarray(probs[:, self.positive_index], dtype=np.float32)

    def classes_of(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Class names from probabilities: positive class when its probability >= threshold
        (two classes), otherwise the most probable class."""
        probs = np.asarray(probs)
        names = np.asarray(self.class_names, dtype=object)
        if len(self.class_names) == 2:
            other = 1 - self.positive_index
            idx = np.where(probs[:, self.positive_index] >= threshold, self.positive_index, other)
        else:
            idx = np.argmax(probs, axis=1)
        return names[idx].astype(str)

    def classify_image(self, rgb, labels=None, mode: str = "auto", tta: bool = False,
                       gradcam: bool = False, batch_size: int = _DEFAULT_BATCH,
                       threshold: float = 0.5, crop_size: int = CELL_CROP_SIZE,
                       progress: Callable | None = None, cancel=None) -> ImageResult:
        """Classify every white cell of an image: segment, cut out, classify.

        Parameters
        ----------
        rgb : (H, W, 3) uint8 array
            A smear field or a single-cell image.
        labels : (H, W) int array, optional
            Use these instance labels instead of segmenting.
        mode : {"auto", "cells", "smear"}
            See :func:`image_cells`.
        tta : bool
            Test-time augmentation.
        gradcam : bool
            Also compute Grad-CAM heatmaps (per cell and mapped into the image).
        batch_size : int
        threshold : float
            P(ALL) at or above which a cell is called ALL.
        crop_size : int
            Side of the crops cut out of smear fields (then resized to the model input).
        progress, cancel
            See :meth:`predict_proba`.

        Returns
        -------
        ImageResult
            Unpacks as ``labels, table``. ``table`` has one row per cell with columns
            ``label``, ``class``, ``p_all``, ``area``, ``centroid_row``, ``centroid_col``,
            ``bbox_min_row``, ``bbox_min_col``, ``bbox_max_row``, ``bbox_max_col``
            (exclusive), ``touches_border`` and ``scale``.
        """
        lab, crops, table, used = image_cells(rgb, mode=mode, labels=labels, crop_size=crop_size)
        probs = self.predict_proba(crops, batch_size=batch_size, tta=tta, progress=progress,
                                   cancel=cancel)
        table = self.cell_table(table, probs, threshold=threshold)
        cell_maps = field = None
        if gradcam:
            cell_maps = self.gradcam(crops, batch_size=batch_size, cancel=cancel)
            sizes = crop_size if used == "smear" else None
            field = gradcam_to_field(cell_maps, table, lab.shape, labels=lab, crop_size=sizes)
        return ImageResult(labels=lab, table=table, mode=used, heatmap=field,
                           cell_heatmaps=cell_maps)

    def cell_table(self, table, probs: np.ndarray, threshold: float = 0.5):
        """Add ``class`` and ``p_all`` to a cell table (from :func:`image_cells`) and order
        its columns as documented in :meth:`classify_image`."""
        t = table.reset_index(drop=True).copy()
        t["class"] = self.classes_of(probs, threshold) if len(t) else np.array([], str)
        t["p_all"] = probs[:, self.positive_index].astype(np.float32) if len(t) else \
            np.array([], np.float32)
        first = ["label", "class", "p_all", "area", "centroid_row", "centroid_col",
                 "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
                 "touches_border", "scale"]
        return t[first + [c for c in t.columns if c not in first]]

    # ------------------------------------------------------------------ Grad-CAM

    def gradcam(self, crops, class_index: int | Sequence[int] | None = None,
                layer: str | None = None, batch_size: int = _DEFAULT_BATCH,
                cancel=None) -> np.ndarray:
        """Grad-CAM heatmaps (Selvaraju et al. 2017) at crop resolution.

        The evidence of the last convolutional layer (``conv4`` in ALLNet at 450x450) for a
        class: the feature maps weighted by the spatially averaged gradient of the class
        score, summed over channels, passed through ReLU, divided by the map's maximum and
        resized bilinearly to the crop's size. The class score is the log-odds of the class
        against the others, ``z_c - logsumexp(z_j, j != c)`` on the pre-softmax logits
        (``z_ALL - z_HEM`` for two classes; the softmax depends on logit differences only).

        Parameters
        ----------
        crops : (N, h, w, 3) array or sequence of (h, w, 3) arrays
        class_index : int or sequence of int, optional
            Class to explain per crop; default the predicted class.
        layer : str, optional
            Name of the layer to explain. Default: the last ``Conv2D`` layer whose feature
            map is at least 7x7 (:data:`GRADCAM_MIN_SIZE`): ``conv4`` (17x17) for ALLNet at
            450x450, ``conv3`` for a 64x64 model whose ``conv4`` is only 3x3.
        batch_size : int
        cancel : CancelToken, optional

        Returns
        -------
        numpy.ndarray
            ``(N, h, w)`` float32 in [0, 1] (a list of arrays when crops differ in size).
            A crop without positive evidence gets all zeros: this happens, e.g., to cells
            called HEM by a model that sees HEM as the mere absence of ALL features.

        Notes
        -----
        Gradients come from the active Keras backend (``tf.GradientTape`` on TensorFlow,
        ``jax.grad`` on JAX, autograd on PyTorch).
        """
        batch_size = _check_batch_size(batch_size)
        if not isinstance(crops, np.ndarray):
            crops = list(crops)
        n = len(crops)
        h, w = self.input_size
        if n == 0:
            return np.zeros((0, h, w), np.float32)
        if layer not in self._gradcam_cache:
            self._gradcam_cache[layer] = self._gradcam_models(layer)
        features, head, logits = self._gradcam_cache[layer]
        if class_index is not None:
            cls = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,))
            if cls.min() < 0 or cls.max() >= len(self.class_names):
                raise ConfigError(f"class_index must be in 0..{len(self.class_names) - 1}")
        maps = np.zeros((n, h, w), np.float32)
        for start in range(0, n, batch_size):
            check_cancel(cancel, "Grad-CAM")
            x = self.prepare(crops[start:start + batch_size])
            c = None if class_index is None else cls[start:start + len(x)]
            maps[start:start + len(x)] = _gradcam_batch(features, head, logits, x, c, (h, w))
        return _maps_to_crop_sizes(maps, crops)

    def _gradcam_models(self, layer: str | None):
        from allnet_core.backend import get_keras

        keras = get_keras()
        model = self.model
        if layer is None:
            layer = _default_cam_layer(model, keras, self.source)
        try:
            target = model.get_layer(layer)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: no layer named {layer!r}") from exc
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
                f"{self.source}: Grad-CAM needs a functional model whose layer {layer!r} "
                f"feeds the output ({type(exc).__name__}: {exc})"
            ) from exc
        return features, head, logits


#: Least height and width of the feature map that Grad-CAM uses by default.
GRADCAM_MIN_SIZE = 7


def _default_cam_layer(model, keras, source: str) -> str:
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


def _single_shape(shape):
    if shape is None:
        return None
    if isinstance(shape, list):
        if len(shape) != 1:
            return None
        shape = shape[0]
    return tuple(shape)


def _padded_size(n: int, batch_size: int) -> int:
    """The batch shape that ``n <= batch_size`` inputs are padded to."""
    size = 1
    while size < n:
        size *= 2
    return min(size, batch_size)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


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


def _gradcam_batch(features, head, logits: bool, x: np.ndarray, cls,
                   size: tuple[int, int]) -> np.ndarray:
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


def _maps_to_crop_sizes(maps: np.ndarray, crops):
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
    from skimage.transform import resize

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
        else:
            if hm.shape != (crop_size, crop_size):
                hm = resize(hm, (crop_size, crop_size), order=1, mode="edge",
                            anti_aliasing=False)
            ph, pw = r1 - r0, c1 - c0
            scale = float(getattr(row, "scale", 1.0) or 1.0)
            nh, nw = ph, pw
            if scale < 1.0:
                nh = max(1, min(crop_size, int(np.floor(ph * scale + 1e-6))))
                nw = max(1, min(crop_size, int(np.floor(pw * scale + 1e-6))))
            top, left = (crop_size - nh) // 2, (crop_size - nw) // 2
            part = hm[top:top + nh, left:left + nw]
            if part.shape != (ph, pw):
                part = resize(part, (ph, pw), order=1, mode="edge", anti_aliasing=False)
        region = field[r0:r1, c0:c1]
        if labels is not None:
            mask = np.asarray(labels)[r0:r1, c0:c1] == row.label
            region[mask] = part[mask]
        else:
            np.maximum(region, part, out=region)
    return np.clip(field, 0.0, 1.0)


@dataclass
class ImageResult:
    """What :meth:`Classifier.classify_image` returns; unpacks as ``labels, table``.

    Attributes
    ----------
    labels : (H, W) int32 array
        Instance labels of the classified cells.
    table : pandas.DataFrame
        One row per cell (see :meth:`Classifier.classify_image`).
    mode : str
        ``"cells"`` or ``"smear"``.
    heatmap : (H, W) float32 array or None
        Grad-CAM mapped into the image (with ``gradcam=True``).
    cell_heatmaps : (N, s, s) float32 array or None
        Grad-CAM per crop (with ``gradcam=True``).
    """

    labels: np.ndarray
    table: Any
    mode: str = "smear"
    heatmap: np.ndarray | None = None
    cell_heatmaps: np.ndarray | None = None

    def __iter__(self):
        return iter((self.labels, self.table))
