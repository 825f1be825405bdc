"""The worker's jobs: what ``classify``, ``train`` and ``device_info`` requests do.

Every handler takes ``(request, progress, cancel)`` (the request dict, a callable for
:mod:`allnet_core.progress` events and a :class:`~allnet_core.progress.CancelToken`) and
returns the ``result`` object of the reply. Keras and the backend are imported inside the
handlers, never at module level, so ``import allnet_core.worker`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from allnet_core.errors import ConfigError, ImageReadError
from allnet_core.progress import CancelToken, check_cancel

__all__ = ["MODES", "Handler", "ModelCache", "band", "choice", "classify", "classify_files",
           "classify_large_job", "device_info", "flag", "fraction", "handlers", "positive_int",
           "required", "train"]

#: Values of a ``classify`` request's ``mode``.
MODES = ("auto", "cells", "smear")

#: A job handler: ``handler(request, progress, cancel) -> result``.
Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None], CancelToken],
                   dict[str, Any]]


class ModelCache:
    """Keeps the last loaded :class:`~allnet_core.inference.Classifier` resident.

    A second request with the same model file (same path and modification time, same model
    card) does not load it again; another model replaces it (one model in memory at a time).
    """

    def __init__(self):
        self._classifiers: dict[tuple, Any] = {}

    def load(self, model: str):
        """The classifier of ``model`` (a ``.keras`` file or a training run folder, as
        ``allnet classify`` takes), loaded once."""
        from allnet_core.inference import Classifier, find_model_file
        from allnet_core.model.card import card_path

        path = find_model_file(model)
        card = card_path(path)  # a card written or replaced later is read again
        key = (str(path.resolve()), path.stat().st_mtime,
               card.stat().st_mtime if card.is_file() else None)
        if key not in self._classifiers:
            self._classifiers.clear()  # keep one model resident at a time
            self._classifiers[key] = Classifier.load(path)
        return self._classifiers[key]


def handlers(models: ModelCache | None = None) -> dict[str, Handler]:
    """The handler of every job op, sharing one :class:`ModelCache`."""
    models = models if models is not None else ModelCache()

    def classify_job(request, progress, cancel):
        return classify(request, progress, cancel, models=models)

    return {"classify": classify_job, "train": train, "device_info": device_info}


def device_info(request, progress, cancel) -> dict[str, Any]:
    """The ``device_info`` job: Keras backend and devices."""
    from allnet_core.backend import describe_environment

    return describe_environment()


def classify(request, progress, cancel, *, models: ModelCache) -> dict[str, Any]:
    """The ``classify`` job: one image file (labels, table, heatmap), or many files.

    With ``image_paths`` (files and folders) the job is
    :func:`allnet_core.inference.classify_images`, the batch classification that
    ``allnet classify`` runs: see :func:`classify_files`.
    """
    import numpy as np

    from allnet_core.io import check_output_dir, read_rgb, write_csv, write_tiff
    from allnet_core.io_lazy import is_large_image

    if "image_paths" in request:
        return classify_files(request, progress, cancel, models=models)
    image_path = required(request, "image_path")
    out_dir = check_output_dir(required(request, "out_dir"), "out_dir")
    model = required(request, "model")
    tta, gradcam = flag(request, "tta"), flag(request, "gradcam")
    kwargs: dict[str, Any] = {"tta": tta, "gradcam": gradcam, "progress": progress,
                              "cancel": cancel}
    optional(request, kwargs, "batch_size", positive_int)
    optional(request, kwargs, "mode", choice, MODES)
    optional(request, kwargs, "uncertain", band)
    if not request.get("labels_path") and is_large_image(image_path):
        return classify_large_job(request, progress, cancel, models=models)
    rgb = read_rgb(image_path)
    kwargs["labels"] = _read_labels(request, rgb.shape[:2], image_path)
    progress({"kind": "stage", "stage": "loading model", "model": model})
    classifier = models.load(model)
    check_cancel(cancel, "classification")  # loading cannot stop half-way: check right after
    progress({"kind": "stage", "stage": "classifying"})
    res = classifier.classify_image(rgb, **kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_path = write_tiff(out_dir / "labels.tif", np.asarray(res.labels, np.int32))
    table_path = write_csv(out_dir / "cells.csv", res.table)
    heatmap_path = None
    if gradcam and getattr(res, "heatmap", None) is not None:
        heatmap_path = write_tiff(out_dir / "heatmap.tif",
                                  np.asarray(res.heatmap, np.float32))
    return {
        "labels_path": str(labels_path),
        "table_path": str(table_path),
        "heatmap_path": None if heatmap_path is None else str(heatmap_path),
        "n_cells": len(res.table),
        "assessment": assessment(classifier),
    }


def classify_large_job(request, progress, cancel, *, models: ModelCache) -> dict[str, Any]:
    """A ``classify`` job on an image too large for memory (a ``.zarr`` folder, say):
    segmented in tiles, labels written as ``out_dir/labels.zarr`` (chunked), no Grad-CAM.
    See :func:`allnet_core.inference.classify_large`."""
    from allnet_core.inference import DEFAULT_UNCERTAIN, classify_large
    from allnet_core.io import write_csv
    from allnet_core.model.predict import DEFAULT_BATCH

    out_dir = Path(request["out_dir"])
    progress({"kind": "stage", "stage": "loading model", "model": request["model"]})
    classifier = models.load(request["model"])
    progress({"kind": "stage", "stage": "segmenting in tiles"})
    res = classify_large(classifier, request["image_path"], labels_dir=out_dir, name="labels",
                         tta=flag(request, "tta"),
                         batch_size=(positive_int(request, "batch_size")
                                     if request.get("batch_size") is not None else DEFAULT_BATCH),
                         uncertain=(band(request, "uncertain")
                                    if request.get("uncertain") is not None
                                    else DEFAULT_UNCERTAIN),
                         progress=progress, cancel=cancel)
    return {"labels_path": str(res.labels_path),
            "table_path": str(write_csv(out_dir / "cells.csv", res.table)),
            "heatmap_path": None, "n_cells": len(res.table),
            "assessment": assessment(classifier)}


def classify_files(request, progress, cancel, *, models: ModelCache) -> dict[str, Any]:
    """Classify the cells of many files: ``cells.csv``, ``per_image.csv``,
    ``per_subject.csv`` and, with ``gradcam``, overlays in ``out_dir/gradcam``."""
    from allnet_core.inference import classify_images
    from allnet_core.io import check_output_dir, write_csv

    paths = request["image_paths"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigError("'image_paths' must be a non-empty list of file or folder paths")
    out_dir = check_output_dir(required(request, "out_dir"), "out_dir")
    model = required(request, "model")
    kwargs: dict[str, Any] = {"tta": flag(request, "tta"), "skip_bad": flag(request, "skip_bad")}
    optional(request, kwargs, "batch_size", positive_int)
    optional(request, kwargs, "mode", choice, MODES)
    optional(request, kwargs, "threshold", fraction)
    optional(request, kwargs, "uncertain", band, kwargs.get("threshold", 0.5))
    if flag(request, "gradcam"):
        kwargs["gradcam_dir"] = out_dir / "gradcam"
    progress({"kind": "stage", "stage": "loading model", "model": model})
    classifier = models.load(model)
    result = classify_images(classifier, paths, progress=progress, cancel=cancel, **kwargs)
    written = {name: str(write_csv(out_dir / f"{name}.csv", table)) for name, table in
               (("cells", result.cells), ("per_image", result.per_image),
                ("per_subject", result.per_subject))}
    return {
        "table_path": written["cells"],
        "per_image_path": written["per_image"],
        "per_subject_path": written["per_subject"],
        "gradcam_paths": [str(p) for p in result.gradcam_files],
        "n_cells": len(result.cells),
        "n_images": len(result.per_image),
        "problems": list(result.problems),
        "assessment": assessment(classifier),
    }


def assessment(classifier) -> dict[str, Any]:
    """The model card's verdict as plain JSON: ``headline``, ``warnings``, ``at_chance``,
    ``untested`` (see :func:`allnet_core.model.card.assess`)."""
    verdict = classifier.assessment
    return {"headline": verdict.headline, "warnings": list(verdict.warnings),
            "at_chance": verdict.at_chance, "untested": verdict.untested}


def _read_labels(request: dict[str, Any], shape: tuple[int, int], image_path: str):
    """The request's ``labels_path`` image (checked against the image's shape), or None."""
    import numpy as np
    import tifffile

    if request.get("labels_path") is None:
        return None
    path = required(request, "labels_path")
    try:
        labels = np.asarray(tifffile.imread(path))
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except Exception as exc:  # tifffile raises many types on a bad file
        raise ImageReadError(path, f"not a readable TIFF label image ({exc})") from exc
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageReadError(path, f"labels must be integers, got {labels.dtype}")
    if labels.shape != shape:
        raise ConfigError(
            f"labels {request['labels_path']}: shape {labels.shape} does not match "
            f"the image {image_path} ({shape[0]}x{shape[1]})"
        )
    return labels


def train(request, progress, cancel) -> dict[str, Any]:
    """The ``train`` job: cross-validated training into a run folder (or resume it)."""
    from allnet_core.training import config_from_request, cross_validate

    data = required(request, "data")
    out = required(request, "out")
    resume = flag(request, "resume")
    fields = request.get("config")
    if not isinstance(fields, Mapping | None):
        raise ConfigError(f"request 'train': 'config' must be an object of TrainConfig "
                          f"fields, got {type(fields).__name__} {fields!r:.60}")
    # The one "config from request", shared with `allnet train`: a profile's values under
    # the given fields; a resumed run starts from its saved config.json.
    config = config_from_request(fields or {}, None, out if resume else None)
    result = cross_validate(data, config, out, progress=progress, cancel=cancel,
                            resume=resume)
    return run_summary(Path(out), result)


def run_summary(run_dir: Path, result: Any) -> dict[str, Any]:
    """What the parent needs from a finished run: paths and the report's numbers."""
    return {
        "run_dir": str(run_dir),
        "best_fold": result.best_fold,
        "best_model": str(result.best_model),
        "report": str(result.report),
        "folds": result.folds,
        "holdout": result.holdout,
    }


def optional(request: dict[str, Any], kwargs: dict[str, Any], key: str,
             parse: Callable[..., Any], *args: Any) -> None:
    """Set ``kwargs[key]`` to ``parse(request, key, *args)`` when the request gives ``key``
    (not null); otherwise leave the callee's default."""
    if request.get(key) is not None:
        kwargs[key] = parse(request, key, *args)


def required(request: dict[str, Any], key: str) -> str:
    """``request[key]``, a non-empty string (a path); a
    :class:`~allnet_core.errors.ConfigError` if missing, empty or not a string."""
    value = request.get(key)
    if value is None or value == "":
        raise ConfigError(f"request {request.get('op')!r} needs a {key!r} field")
    if not isinstance(value, str):
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be a string (a "
                          f"path), got {value!r:.60}")
    return value


def flag(request: dict[str, Any], key: str) -> bool:
    """``request[key]`` as a bool (``False`` if absent); a ConfigError unless true/false."""
    value = request.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be true or false, "
                          f"got {value!r:.60}")
    return value


def positive_int(request: dict[str, Any], key: str) -> int:
    """``request[key]`` as a positive whole number; a ConfigError naming ``key`` else."""
    value = request.get(key)
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and value == int(value) and value >= 1)
    if not ok:
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be a positive whole "
                          f"number, got {value!r:.60}")
    return int(value)


def fraction(request: dict[str, Any], key: str) -> float:
    """``request[key]`` as a number in [0, 1]; a ConfigError naming ``key`` else."""
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be a number in "
                          f"[0, 1], got {value!r:.60}")
    return float(value)


def band(request: dict[str, Any], key: str, threshold: float = 0.5) -> tuple[float, float]:
    """``request[key]`` as an uncertain band ``(low, high)`` holding ``threshold``
    (:func:`allnet_core.inference.calls.check_band`); a ConfigError naming ``key`` else."""
    from allnet_core.inference.calls import check_band

    value = request.get(key)
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be two numbers "
                          f"[low, high], got {value!r:.60}")
    try:
        return check_band(value, threshold)
    except ConfigError as exc:
        raise ConfigError(f"request {request.get('op')!r}: {key!r}: {exc}") from exc


def choice(request: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """``request[key]``, one of ``choices``; a ConfigError naming ``key`` and them else."""
    value = request.get(key)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"request {request.get('op')!r}: {key!r} must be one of "
                          f"{', '.join(map(repr, choices))}, got {value!r:.60}")
    return value
