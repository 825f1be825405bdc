"""Screening runs that stream to a result store: in this process or on a Dask cluster.

:func:`screen` is what :func:`~allnet_core.inference.classify_images` runs when given
``out`` (a :class:`~allnet_core.inference.store.ResultStore` folder) or ``client`` (a
``dask.distributed`` client). It hashes the inputs, skips those the store already holds,
classifies the rest (here, or as Dask tasks through
:func:`allnet_core.inference.distributed.run_on_cluster`), and assembles the tables of all
inputs from the store at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from allnet_core.errors import ConfigError, ImageReadError
from allnet_core.inference._run import BatchRun, gradcam_names
from allnet_core.progress import check_cancel, emit

__all__ = ["model_identity", "screen"]


def model_identity(classifier) -> dict:
    """The model file, class names and positive class of a classifier or model path.

    Raises
    ------
    ConfigError
        For a classifier whose model was not loaded from a file.
    """
    from allnet_core.model.files import find_model_file

    if isinstance(classifier, str | os.PathLike):
        path = find_model_file(classifier)
        return {"path": Path(path), "class_names": None, "positive_class": None}
    loaded = classifier.loaded
    if getattr(loaded, "path", None) is None:
        raise ConfigError("a run on a cluster or into a result store needs a model loaded "
                          "from a .keras file (Classifier.load), not one built in memory")
    return {"path": Path(loaded.path), "class_names": list(classifier.class_names),
            "positive_class": classifier.class_names[classifier.positive_index]}


def screen(classifier, files: list[Path], options: dict, *, out, client, gradcam_dir,
           skip_bad: bool, progress, cancel, images_per_task: int | None = None):
    """Classify ``files`` into a result store; see
    :func:`~allnet_core.inference.classify_images` for the parameters."""
    from allnet_core.inference.batch import make_result
    from allnet_core.inference.store import ResultStore, file_sha256
    from allnet_core.model.card import card_path

    model = model_identity(classifier)
    model["sha256"] = file_sha256(model["path"])
    card = card_path(model["path"])  # the card's calibration and scope change the calls
    model["card_sha256"] = file_sha256(card) if card.is_file() else ""
    settings = {"model_sha256": model["sha256"], "card_sha256": model["card_sha256"],
                **options,
                "class_names": model["class_names"], "positive_class": model["positive_class"]}
    settings.pop("batch_size")  # results do not depend on it
    tmp = Path(tempfile.mkdtemp(prefix="allnet-store-")) if out is None else None
    try:
        store = ResultStore(tmp / "cells.parquet" if tmp else out, settings).open()
        hashes = [file_sha256(f) for f in files]
        done = store.done()
        names = gradcam_names(files)
        todo: dict[str, tuple] = {}
        for path, sha, name in zip(files, hashes, names, strict=True):
            if sha not in done and sha not in todo:
                todo[sha] = (str(path), sha, name)
        emit(progress, "resume", done=sum(sha in done for sha in hashes), total=len(files),
             store=str(store.path), discarded=store.discarded)
        emit(progress, "start", total=len(todo))
        items = list(todo.values())
        if client is not None:
            from allnet_core.inference.distributed import run_on_cluster

            run_on_cluster(client, model, items, options, store=store, gradcam_dir=gradcam_dir,
                           images_per_task=images_per_task, progress=progress, cancel=cancel)
        else:
            _run_here(classifier, items, options, store=store, gradcam_dir=gradcam_dir,
                      skip_bad=skip_bad, progress=progress, cancel=cancel)
        cells, per_image, problems = store.assemble(files, hashes)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    classified = set(per_image["source"])
    cams = [] if gradcam_dir is None else [
        Path(gradcam_dir) / n for n, src in zip(names, files, strict=True)
        if str(src) in classified and (Path(gradcam_dir) / n).is_file()]
    result = make_result(cells, per_image, problems, cams, classes=_classes(model))
    emit(progress, "done", images=len(result.per_image), cells=len(result.cells),
         skipped=len(result.problems))
    return result


def _classes(model: dict) -> tuple[str, str] | None:
    """``(positive, negative)`` of a model identity; None (ALL, HEM) when it names none."""
    names, pos = model.get("class_names"), model.get("positive_class")
    if not names or pos is None:
        return None
    return pos, next((n for n in names if n != pos), pos)


def _run_here(classifier, items: list[tuple], options: dict, *, store, gradcam_dir,
              skip_bad: bool, progress, cancel) -> None:
    """Classify ``items`` in this process, committing every batch to ``store``."""
    from allnet_core.inference.batch import _loaded

    run = BatchRun(_loaded(classifier), gradcam_dir=gradcam_dir, cancel=cancel,
                   sink=store.write, labels_dir=store.labels_dir, **options)
    for i, (path, sha, name) in enumerate(items):
        check_cancel(cancel, "classification")
        try:
            run.add_file(Path(path), sha, name)
        except ImageReadError as exc:
            if not skip_bad:
                run.flush()  # keep what is finished: a rerun goes on from there
                raise ImageReadError(
                    exc.path, f"{exc.problem} (stopped at file {i + 1} of {len(items)})"
                ) from exc
            run.add_error(Path(path), sha, exc.problem)
            emit(progress, "file", done=i + 1, total=len(items), path=path, skipped=True)
            continue
        emit(progress, "file", done=i + 1, total=len(items), path=path, skipped=False)
    run.flush()
