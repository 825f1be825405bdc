"""The trained classifier: :class:`Classifier`, a checked model plus the facts needed to use it.

Load one from a ``.keras`` file or a training run folder with :meth:`Classifier.load`
(the one safe loader, :func:`allnet_core.model.load_model`), or wrap a model in memory
with ``Classifier(model)``. Predictions go through the one predictor,
:class:`allnet_core.model.Predictor`, which reads P(ALL) from the positive class's column,
applies the model card's calibration and scores how far each cell lies from the training
cells; :mod:`allnet_core.inference.calls` then calls each cell ALL, HEM, uncertain or out
of scope.

This is research software: a model trained with it is not a diagnostic device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from allnet_core.classes import POSITIVE_CLASS
from allnet_core.errors import ConfigError
from allnet_core.inference.calls import DEFAULT_UNCERTAIN, OUT_OF_SCOPE, call_cells
from allnet_core.inference.cells import CELL_CROP_SIZE, image_cells
from allnet_core.inference.gradcam import (
    gradcam_batch,
    gradcam_models,
    gradcam_to_field,
    maps_to_crop_sizes,
)
from allnet_core.inference.results import TABLE_COLUMNS, CellScores, ImageResult
from allnet_core.inference.tta import apply_transform, tta_transforms
from allnet_core.model.loading import LoadedModel, check_model, load_model
from allnet_core.model.predict import DEFAULT_BATCH, Predictor, check_batch_size
from allnet_core.preprocess import prepare_crops
from allnet_core.progress import check_cancel, emit

__all__ = ["Classifier"]


class Classifier:
    """A trained ALLNet (or any Keras image classifier) ready to classify cells.

    Parameters
    ----------
    model : keras.Model or LoadedModel
        Takes ``(N, H, W, 3)`` float32 images in 0-255 and returns class probabilities
        ``(N, n_classes)``. A :class:`~allnet_core.model.LoadedModel` (from
        :func:`~allnet_core.model.load_model`) brings its class names and source along;
        the other arguments are then ignored.
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
                 positive_class: str = POSITIVE_CLASS, source: str | None = None):
        if not isinstance(model, LoadedModel):
            model = check_model(model, class_names=class_names, positive_class=positive_class,
                                source=source)
        self.loaded = model
        self.model = model.model
        self.source = model.source
        self.class_names = model.class_names
        self.positive_index = model.positive_index
        self.input_size = model.input_size
        self.card = model.card
        self._predictor = Predictor(model)
        self._gradcam_cache: dict[str | None, tuple] = {}

    @property
    def assessment(self):
        """The model card's headline and warnings (:func:`allnet_core.model.card.assess`)."""
        from allnet_core.model.card import assess

        return assess(self.card)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, class_names: Sequence[str] | None = None,
             positive_class: str = POSITIVE_CLASS) -> Classifier:
        """Load a ``.keras`` model file or the best model of a training run folder.

        The file's configuration is read first: a model holding a ``Lambda`` layer (which
        could run arbitrary code) is refused before anything is deserialised, and the
        model is then loaded with ``safe_mode=True`` and ``compile=False``. The input size
        comes from the model; class names from ``class_names``, else from a
        ``config.json`` beside the model or in its run folder (key ``class_names``), else
        :data:`allnet_core.classes.CLASS_NAMES`. See :func:`allnet_core.model.load_model`.

        Parameters
        ----------
        path : str or path-like
            A ``.keras`` file or a run folder (see :func:`allnet_core.model.find_model_file`).
        class_names : sequence of str, optional
        positive_class : str

        Raises
        ------
        ModelError
            For a missing file, a file that is not a Keras model, a model with a
            ``Lambda`` layer, or a model whose output does not fit the class names.
        """
        return cls(load_model(path, class_names=class_names, positive_class=positive_class))

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
        return prepare_crops(crops, self.input_size, self.source)

    # ------------------------------------------------------------------ prediction

    def predict_cells(self, crops, batch_size: int = DEFAULT_BATCH, tta: bool = False,
                      progress: Callable | None = None, cancel=None) -> CellScores:
        """Raw probabilities, calibrated P(ALL) and out-of-scope scores of every crop.

        Parameters
        ----------
        crops : (N, h, w, 3) array or sequence of (h, w, 3) arrays
            ``uint8`` RGB crops, or real numbers in 0-255 (other sizes are resized,
            see :meth:`prepare`).
        batch_size : int
            Crops per forward pass.
        tta : bool
            Average the probabilities over the test-time transforms
            (:func:`tta_transforms`); the features of the out-of-scope score come from the
            untransformed crop, as in training.
        progress : callable, optional
            Receives ``{"kind": "batch", "done", "total"}`` after every batch.
        cancel : CancelToken, optional
            Checked before every batch; raises :class:`~allnet_core.errors.CancelledError`.

        Returns
        -------
        CellScores
        """
        batch_size = check_batch_size(batch_size)
        n_classes = len(self.class_names)
        if not isinstance(crops, np.ndarray):
            crops = list(crops)
        n = len(crops)
        transforms = tta_transforms(self.input_size) if tta else ((0, False),)
        scope = self._predictor.scope is not None
        out = np.zeros((n, n_classes), np.float32)
        feats = []
        for start in range(0, n, batch_size):
            check_cancel(cancel, "classification")
            x = self.prepare(crops[start:start + batch_size])
            acc = np.zeros((len(x), n_classes), np.float64)
            for k, flip in transforms:
                if scope and not (k or flip):
                    probs, f = self._predictor.predict_batch_features(x, batch_size)
                    feats.append(f)
                else:
                    probs = self._predictor.predict_batch(
                        apply_transform(x, k, flip) if (k or flip) else x, batch_size)
                acc += probs
            out[start:start + len(x)] = acc / len(transforms)
            emit(progress, "batch", done=min(start + batch_size, n), total=n)
        return self.scores(out, np.concatenate(feats) if feats else None)

    def scores(self, probs: np.ndarray, features: np.ndarray | None = None) -> CellScores:
        """:class:`CellScores` of raw probabilities ``(N, n_classes)`` (and head features
        for the out-of-scope score; without them the score is ``nan``)."""
        probs = np.asarray(probs, np.float32).reshape(-1, len(self.class_names))
        p_raw = np.clip(probs[:, self.positive_index].astype(np.float64), 0.0, 1.0)
        oos = (np.full(len(probs), np.nan) if features is None
               else self._predictor.oos_score(features))
        return CellScores(probs, self._predictor.calibrate(p_raw), oos, p_raw)

    def predict_proba(self, crops, batch_size: int = DEFAULT_BATCH, tta: bool = False,
                      progress: Callable | None = None, cancel=None) -> np.ndarray:
        """Raw class probabilities for every crop: ``(N, n_classes)`` float32.

        Parameters are those of :meth:`predict_cells`.
        """
        return self.predict_cells(crops, batch_size=batch_size, tta=tta, progress=progress,
                                  cancel=cancel).probs

    def classify_cells(self, crops, batch_size: int = DEFAULT_BATCH, tta: bool = False,
                       progress: Callable | None = None, cancel=None) -> np.ndarray:
        """Calibrated P(ALL) (the positive class) for every crop, as a float32 array of
        length N (raw P(ALL) for a model without a card).

        Parameters are those of :meth:`predict_cells`.

        Examples
        --------
        >>> clf.classify_cells(np.zeros((2, 450, 450, 3), np.uint8))  # doctest: +SKIP
        array([0.41, 0.41], dtype=float32)
        """
        scores = self.predict_cells(crops, batch_size=batch_size, tta=tta, progress=progress,
                                    cancel=cancel)
        return np.ascontiguousarray(scores.p_all, dtype=np.float32)

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
                       gradcam: bool = False, batch_size: int = DEFAULT_BATCH,
                       threshold: float = 0.5, crop_size: int = CELL_CROP_SIZE,
                       progress: Callable | None = None, cancel=None,
                       uncertain=DEFAULT_UNCERTAIN) -> ImageResult:
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
            Calibrated P(ALL) at or above which a cell is called ALL.
        crop_size : int
            Side of the crops cut out of smear fields (then resized to the model input).
        progress, cancel
            See :meth:`predict_cells`.
        uncertain : (float, float) or None
            Calibrated P(ALL) strictly inside this band is called ``uncertain``
            (:data:`~allnet_core.inference.calls.DEFAULT_UNCERTAIN`); None for no band.

        Returns
        -------
        ImageResult
            Unpacks as ``labels, table``. ``table`` has one row per cell with columns
            ``label``, ``class`` (ALL or HEM at the threshold), ``p_all`` (calibrated),
            ``area``, ``centroid_row``, ``centroid_col``, ``bbox_min_row``,
            ``bbox_min_col``, ``bbox_max_row``, ``bbox_max_col`` (exclusive),
            ``touches_border``, ``scale``, ``call`` (ALL, HEM, ``uncertain`` or
            ``out_of_scope``), ``p_all_raw`` and ``oos_score`` (above 1: out of scope;
            empty without a model card).
        """
        lab, crops, table, used = image_cells(rgb, mode=mode, labels=labels, crop_size=crop_size)
        scores = self.predict_cells(crops, batch_size=batch_size, tta=tta, progress=progress,
                                    cancel=cancel)
        table = self.cell_table(table, scores, threshold=threshold, uncertain=uncertain)
        cell_maps = field = None
        if gradcam:
            cell_maps, field = self.image_gradcam(crops, table, lab, used, crop_size=crop_size,
                                                  batch_size=batch_size, cancel=cancel)
        return ImageResult(labels=lab, table=table, mode=used, heatmap=field,
                           cell_heatmaps=cell_maps)

    def cell_table(self, table, scores, threshold: float = 0.5, uncertain=DEFAULT_UNCERTAIN):
        """Add ``class``, ``call``, ``p_all``, ``p_all_raw`` and ``oos_score`` to a cell
        table (from :func:`image_cells`) and order its columns as documented in
        :meth:`classify_image`.

        ``scores`` is a :class:`CellScores` (from :meth:`predict_cells`) or raw
        probabilities ``(N, n_classes)`` (calibrated here; no out-of-scope score).
        """
        if not isinstance(scores, CellScores):
            scores = self.scores(scores)
        t = table.reset_index(drop=True).copy()
        names = self.class_names
        if len(names) == 2:
            pos, neg = names[self.positive_index], names[1 - self.positive_index]
            classes = np.where(scores.p_all >= threshold, pos, neg).astype(str)
            calls = call_cells(scores.p_all, scores.oos_score, threshold, uncertain, pos, neg)
        else:
            classes = self.classes_of(scores.probs, threshold)
            calls = np.where(np.nan_to_num(scores.oos_score) > 1, OUT_OF_SCOPE, classes)
        t["class"] = classes if len(t) else np.array([], str)
        t["call"] = calls if len(t) else np.array([], str)
        for name in ("p_all", "p_all_raw", "oos_score"):
            t[name] = np.asarray(getattr(scores, name), np.float32)
        return t[TABLE_COLUMNS + [c for c in t.columns if c not in TABLE_COLUMNS]]

    # ------------------------------------------------------------------ Grad-CAM

    def image_gradcam(self, crops, table, labels, mode: str, crop_size: int = CELL_CROP_SIZE,
                      batch_size: int = DEFAULT_BATCH, cancel=None):
        """Grad-CAM of the cells of one image, per crop and placed into the image.

        Parameters
        ----------
        crops, table, labels, mode
            What :func:`image_cells` returned for the image.
        crop_size : int
            Side of the crops cut out of smear fields.
        batch_size : int
        cancel : CancelToken, optional

        Returns
        -------
        cell_maps : (N, h, w) float32 array
            From :meth:`gradcam`.
        field : (H, W) float32 array in [0, 1]
            From :func:`gradcam_to_field`, zero outside the cells.
        """
        cell_maps = self.gradcam(crops, batch_size=batch_size, cancel=cancel)
        sizes = crop_size if mode == "smear" else None
        field = gradcam_to_field(cell_maps, table, np.shape(labels), labels=labels,
                                 crop_size=sizes)
        return cell_maps, field

    def gradcam(self, crops, class_index: int | Sequence[int] | None = None,
                layer: str | None = None, batch_size: int = DEFAULT_BATCH,
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
            map is at least 7x7 (:data:`~allnet_core.inference.gradcam.GRADCAM_MIN_SIZE`):
            ``conv4`` (17x17) for ALLNet at 450x450, ``conv3`` for a 64x64 model whose
            ``conv4`` is only 3x3.
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
        batch_size = check_batch_size(batch_size)
        if not isinstance(crops, np.ndarray):
            crops = list(crops)
        n = len(crops)
        h, w = self.input_size
        if n == 0:
            return np.zeros((0, h, w), np.float32)
        if layer not in self._gradcam_cache:
            self._gradcam_cache[layer] = gradcam_models(self.model, layer, self.source)
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
            maps[start:start + len(x)] = gradcam_batch(features, head, logits, x, c, (h, w))
        return maps_to_crop_sizes(maps, crops)
