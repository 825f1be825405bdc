"""The one safe model loader: every prediction path (classify, evaluate, the worker, napari)
loads a model through :func:`load_model`.

Loading a ``.keras`` file goes in this order:

1. :func:`~allnet_core.model.files.find_model_file` turns a run folder into its best model.
2. The archive's ``config.json`` is read as plain JSON, without deserialising anything; a
   model holding a ``Lambda`` layer (which could run arbitrary code) is refused here.
3. Keras loads the model with ``safe_mode=True`` (and ``compile=False`` unless asked).
4. :func:`check_model` checks that it fits its job: a fixed-size RGB input
   ``(N, H, W, 3)``, an output ``(None, n_classes)`` with one probability per class (the
   output layer's activation is softmax or sigmoid, not raw scores), and the positive
   class among the class names.
5. The model card beside the file (``model.card.json``, :mod:`allnet_core.model.card`) is
   read and checked against the file's SHA-256; without one the model is untested.

Class names come from the caller, else from a ``config.json`` beside the model or in its
run folder (key ``class_names``), else :data:`allnet_core.classes.CLASS_NAMES`.
"""

from __future__ import annotations

import dataclasses
import io as _io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allnet_core.classes import CLASS_NAMES, POSITIVE_CLASS
from allnet_core.errors import ModelError
from allnet_core.model.files import find_model_file

__all__ = ["LoadedModel", "check_model", "load_model", "read_keras_config", "run_class_names"]

#: Layer classes refused before a model is deserialised.
UNSAFE_LAYERS = frozenset({"Lambda"})


@dataclass(frozen=True)
class LoadedModel:
    """A checked Keras classifier and the facts needed to use it.

    Attributes
    ----------
    model : keras.Model
        Takes ``(N, H, W, 3)`` float32 images in 0-255, returns ``(N, n_classes)``
        probabilities.
    class_names : tuple of str
        Names of the output classes, in output order.
    positive_index : int
        Column of the positive class (P(ALL) for ALLNet).
    input_size : (int, int)
        The model's input height and width.
    source : str
        Where the model came from (its file, or the model's name), for messages.
    path : pathlib.Path or None
        The model file, when loaded from one.
    card : ModelCard or None
        The model card found beside the file (:func:`allnet_core.model.card.read_card`):
        its calibration and out-of-scope reference are applied by the predictor. None
        for a model without a card (an untested model).
    """

    model: Any
    class_names: tuple[str, ...]
    positive_index: int
    input_size: tuple[int, int]
    source: str
    path: Path | None = None
    card: Any = None

    @property
    def positive_class(self) -> str:
        """The name of the positive class."""
        return self.class_names[self.positive_index]


def load_model(path: str | os.PathLike, class_names: Sequence[str] | None = None,
               positive_class: str = POSITIVE_CLASS, *, compile: bool = False) -> LoadedModel:
    """Load a ``.keras`` model file or the best model of a run folder, safely and checked.

    Parameters
    ----------
    path : str or path-like
        A ``.keras`` file or a run folder (see :func:`~allnet_core.model.files.find_model_file`).
    class_names : sequence of str, optional
        Names of the output classes; default from a ``config.json`` beside the model or in
        its run folder (see :func:`run_class_names`), else ``("HEM", "ALL")``.
    positive_class : str
        The class whose probability is P(positive).
    compile : bool
        Restore the optimizer and loss too (to resume training from a checkpoint).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        For a missing file, a file that is not a Keras model, a model with a ``Lambda``
        layer, or a model whose input or output does not fit (see :func:`check_model`).

    Examples
    --------
    >>> loaded = load_model("runs/demo")  # doctest: +SKIP
    >>> loaded.class_names, loaded.positive_index, loaded.input_size  # doctest: +SKIP
    (('HEM', 'ALL'), 1, (450, 450))
    """
    model_path = find_model_file(path)
    unsafe = _find_layer_classes(read_keras_config(model_path), UNSAFE_LAYERS)
    if unsafe:
        raise ModelError(
            f"{model_path}: the model contains a Lambda layer, which can run arbitrary "
            "code; refusing to load it (rebuild the model without Lambda layers)"
        )
    from allnet_core.backend import get_keras

    keras = get_keras()
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=compile)
    except Exception as exc:  # keras raises ValueError, TypeError, OSError...
        raise ModelError(
            f"{model_path}: cannot load the model ({type(exc).__name__}: {exc})"
        ) from exc
    if class_names is None:
        class_names = run_class_names(model_path)
    loaded = check_model(model, class_names=class_names, positive_class=positive_class,
                         source=str(model_path), path=model_path)
    from allnet_core.model.card import read_card  # the card that travels with the model

    return dataclasses.replace(loaded, card=read_card(model_path))


def check_model(model, class_names: Sequence[str] | None = None,
                positive_class: str = POSITIVE_CLASS, source: str | None = None,
                path: Path | None = None) -> LoadedModel:
    """Check that a Keras model in memory can classify RGB crops into ``class_names``.

    Parameters
    ----------
    model : keras.Model
    class_names : sequence of str, optional
        Default ``("HEM", "ALL")``.
    positive_class : str
    source : str, optional
        Named in messages; default the model's name.
    path : pathlib.Path, optional
        The file it came from.

    Returns
    -------
    LoadedModel
        ``model`` with its class names, positive index and input size.

    Raises
    ------
    ModelError
        If the input is not a fixed-size RGB image ``(N, H, W, 3)``, the output is not
        ``(None, n_classes)`` with one probability per class (an output layer whose
        activation is not softmax or sigmoid gives scores, not probabilities), or the
        positive class is not among the class names.
    """
    source = source or getattr(model, "name", "<model>")
    names = tuple(class_names) if class_names is not None else CLASS_NAMES
    in_shape = _single_shape(getattr(model, "input_shape", None))
    out_shape = _single_shape(getattr(model, "output_shape", None))
    if in_shape is None or len(in_shape) != 4 or in_shape[-1] != 3 \
            or in_shape[1] is None or in_shape[2] is None:
        raise ModelError(
            f"{source}: the model must take fixed-size RGB images (N, H, W, 3), "
            f"its input shape is {in_shape}"
        )
    if out_shape is None or len(out_shape) != 2 or out_shape[-1] != len(names):
        raise ModelError(
            f"{source}: wrong output shape {out_shape}; expected (None, {len(names)}), one "
            f"probability per class ({', '.join(names)})"
        )
    _check_probability_output(model, source)
    if positive_class not in names:
        raise ModelError(
            f"{source}: positive class {positive_class!r} is not among the class "
            f"names {names}"
        )
    return LoadedModel(model=model, class_names=names, positive_index=names.index(positive_class),
                       input_size=(int(in_shape[1]), int(in_shape[2])), source=source, path=path)


#: Output activations whose values are probabilities.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


def _check_probability_output(model, source: str) -> None:
    """Refuse a model whose output layer's activation is known and gives no probabilities
    (a ``Dense`` without softmax writes raw scores such as -15.97 as P(ALL))."""
    layer, activation = _output_activation(model)
    if activation is not None and activation not in PROBABILITY_ACTIVATIONS:
        raise ModelError(
            f"{source}: the output layer {getattr(layer, 'name', '?')!r} has activation "
            f"{activation!r}, so the model gives scores, not probabilities; add a softmax "
            "output layer (as ALLNet has) and save the model again")


def _output_activation(model) -> tuple[Any, str | None]:
    """The layer that makes the model's output and its activation's name (None if the
    layer has none that can be told, e.g. a Reshape)."""
    layer = model
    while getattr(layer, "layers", None):  # a (nested) model: the layer making its output
        history = getattr(getattr(layer, "outputs", [None])[0], "_keras_history", None)
        layer = getattr(history, "operation", None) or layer.layers[-1]
    if type(layer).__name__ == "Softmax":
        return layer, "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return layer, None
    return layer, getattr(activation, "__name__", None) or str(activation)


def read_keras_config(path: str | os.PathLike) -> dict:
    """The model configuration stored in a ``.keras`` archive, without deserialising it.

    Raises
    ------
    ModelError
        If the file is not a ``.keras`` zip archive with a readable ``config.json``.
    """
    path = Path(path)
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


def run_class_names(model_path: str | os.PathLike) -> tuple[str, ...] | None:
    """``class_names`` from a ``config.json`` beside the model or in its parent folder.

    Returns None when neither folder has a ``config.json`` with a non-empty list of strings
    under ``class_names``.
    """
    model_path = Path(model_path)
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


def _find_layer_classes(config: Any, names: frozenset[str] | set[str]) -> set[str]:
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


def _single_shape(shape):
    """A model's only input or output shape as a tuple (None for several)."""
    if shape is None:
        return None
    if isinstance(shape, list):
        if len(shape) != 1:
            return None
        shape = shape[0]
    return tuple(shape)
