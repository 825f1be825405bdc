"""The worker's jobs: what ``classify``, ``train`` and ``device_info`` requests do.

Every handler takes ``(request, progress, cancel)`` (the request dict, a callable for
:mod:`allnet_core.progress` events and a :class:`~allnet_core.progress.CancelToken`) and
returns the ``result`` object of the reply. Keras and the backend are imported inside the
handlers, never at module level, so ``import allnet_core.worker`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from allnet_core.errors import ConfigError
from allnet_core.progress import CancelToken, check_cancel

__all__ = ["Handler", "ModelCache", "classify", "device_info", "handlers", "train"]

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
        """The classifier of the ``.keras`` file ``model``, loaded once."""
        from allnet_core.inference import Classifier

        path = Path(model)
        if not path.is_file():
            raise ConfigError(f"model file {model}: no such file")
        from allnet_core.model.card import card_path

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

    from allnet_core.io import read_rgb, write_csv, write_tiff

    if "image_paths" in request:
        return classify_files(request, progress, cancel, models=models)
    image_path = required(request, "image_path")
    out_dir = Path(required(request, "out_dir"))
    model = required(request, "model")
    tta = bool(request.get("tta", False))
    gradcam = bool(request.get("gradcam", False))
    rgb = read_rgb(image_path)
    labels = _read_labels(request, rgb.shape[:2], image_path)
    progress({"kind": "stage", "stage": "loading model", "model": model})
    classifier = models.load(model)
    check_cancel(cancel, "classification")  # loading cannot stop half-way: check right after
    progress({"kind": "stage", "stage": "classifying"})
    kwargs: dict[str, Any] = {"labels": labels, "tta": tta, "gradcam": gradcam,
                              "progress": progress, "cancel": cancel}
    if request.get("batch_size"):
        kwargs["batch_size"] = int(request["batch_size"])
    if request.get("mode"):
        kwargs["mode"] = str(request["mode"])
    if request.get("uncertain") is not None:
        kwargs["uncertain"] = tuple(float(v) for v in request["uncertain"])
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


def classify_files(request, progress, cancel, *, models: ModelCache) -> dict[str, Any]:
    """Classify the cells of many files: ``cells.csv``, ``per_image.csv``,
    ``per_subject.csv`` and, with ``gradcam``, overlays in ``out_dir/gradcam``."""
    from allnet_core.inference import classify_images
    from allnet_core.io import write_csv

    paths = request["image_paths"]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ConfigError("'image_paths' must be a non-empty list of file or folder paths")
    out_dir = Path(required(request, "out_dir"))
    progress({"kind": "stage", "stage": "loading model", "model": required(request, "model")})
    classifier = models.load(request["model"])
    kwargs: dict[str, Any] = {"tta": bool(request.get("tta", False)),
                              "skip_bad": bool(request.get("skip_bad", False))}
    for key, kind in (("batch_size", int), ("mode", str), ("threshold", float)):
        if request.get(key) is not None:
            kwargs[key] = kind(request[key])
    if request.get("uncertain") is not None:
        kwargs["uncertain"] = tuple(float(v) for v in request["uncertain"])
    if request.get("gradcam"):
        kwargs["gradcam_dir"] = out_dir / "gradcam"
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

    if not request.get("labels_path"):
        return None
    labels = np.asarray(tifffile.imread(request["labels_path"]))
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
    resume = bool(request.get("resume", False))
    # The one "config from request", shared with `allnet train`: a profile's values under
    # the given fields; a resumed run starts from its saved config.json.
    config = config_from_request(request.get("config") or {}, None, out if resume else None)
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


def required(request: dict[str, Any], key: str) -> Any:
    """``request[key]``; a :class:`~allnet_core.errors.ConfigError` if missing or empty."""
    value = request.get(key)
    if value in (None, ""):
        raise ConfigError(f"request {request.get('op')!r} needs a {key!r} field")
    return value
