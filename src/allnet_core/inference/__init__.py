"""Apply a trained ALLNet: single cells, whole smear fields, many images, Grad-CAM.

The central object is :class:`Classifier`, a trained Keras model plus the facts needed to
use it (input size, class names). Load one from a ``.keras`` file or a training run folder
with :meth:`Classifier.load`, or wrap a model in memory with ``Classifier(model)``.

The modules follow the data flow:

- :mod:`~allnet_core.inference.cells`: find the cells of an image and cut them out
  (:func:`image_cells`, :func:`is_single_cell_image`).
- crops become model input through :func:`allnet_core.preprocess.prepare_crops`, with
  the training feed's own :func:`allnet_core.preprocess.resize_for_model`, so training and
  classification see identical pixels.
- :mod:`~allnet_core.inference.tta`: test-time augmentation over the symmetries of the
  square (:data:`TTA_TRANSFORMS`).
- :mod:`~allnet_core.inference.classifier`: :class:`Classifier`, built on the one safe
  loader and the one predictor of :mod:`allnet_core.model`.
- :mod:`~allnet_core.inference.gradcam`: Grad-CAM maps, placed back into the image with
  :func:`gradcam_to_field` and drawn with :func:`write_gradcam_png` (inferno overlay,
  cell outlines, each cell's call and P(ALL), a colour bar).
- :mod:`~allnet_core.inference.calls`: the call of each cell (ALL, HEM, ``uncertain``,
  ``out_of_scope``) and the counts per image or subject (:func:`call_cells`,
  :func:`summarize_calls`).
- :mod:`~allnet_core.inference.results`: :class:`ImageResult`, :class:`CellScores`.
- :mod:`~allnet_core.inference.batch`: :func:`classify_images`, many image files in one
  run (batching across images, Grad-CAM overlays, per-image and per-subject summaries),
  used by ``allnet classify`` and the worker. Its per-image work is
  :class:`~allnet_core.inference._run.BatchRun`, whichever way the run goes:
- :mod:`~allnet_core.inference.store`: :class:`ResultStore`, the resumable Parquet
  dataset a run streams to; :mod:`~allnet_core.inference.screening` runs into it, here
  or on Dask through :mod:`~allnet_core.inference.distributed` (tasks, a worker plugin
  that loads the model once per worker).
- :mod:`~allnet_core.inference.large`: :func:`classify_large`, images too large for
  memory, segmented in tiles (:mod:`allnet_core.segmentation.tiled`).

Speed
-----
Batches are predicted at a few fixed batch shapes (see :mod:`allnet_core.model.predict`),
so the backend compiles the forward pass once per shape and keeps the weights resident.
See ``benchmarks/inference_speed.py`` and ``docs/classify.md`` for measured figures.

This is research software: a model trained with it is not a diagnostic device.
"""

from allnet_core.classes import CLASS_NAMES
from allnet_core.inference.batch import (
    BATCH_COLUMNS,
    BatchResult,
    classify_images,
    find_image_files,
)
from allnet_core.inference.calls import DEFAULT_UNCERTAIN, call_cells, summarize_calls
from allnet_core.inference.cells import CELL_CROP_SIZE, MODES, image_cells, is_single_cell_image
from allnet_core.inference.classifier import Classifier
from allnet_core.inference.gradcam import (
    GRADCAM_MIN_SIZE,
    gradcam_figure,
    gradcam_to_field,
    outline_cells,
    overlay_heatmap,
    write_gradcam_png,
)
from allnet_core.inference.large import LargeImageResult, classify_large
from allnet_core.inference.results import TABLE_COLUMNS, CellScores, ImageResult
from allnet_core.inference.store import ResultStore
from allnet_core.inference.tta import TTA_TRANSFORMS, tta_transforms
from allnet_core.model.files import find_model_file

#: Output classes of an ALLNet model when nothing else says: index 1 is ALL
#: (an alias of :data:`allnet_core.classes.CLASS_NAMES`).
DEFAULT_CLASS_NAMES = CLASS_NAMES

__all__ = [
    "BATCH_COLUMNS",
    "CELL_CROP_SIZE",
    "DEFAULT_CLASS_NAMES",
    "DEFAULT_UNCERTAIN",
    "GRADCAM_MIN_SIZE",
    "MODES",
    "TABLE_COLUMNS",
    "TTA_TRANSFORMS",
    "BatchResult",
    "CellScores",
    "Classifier",
    "ImageResult",
    "LargeImageResult",
    "ResultStore",
    "call_cells",
    "classify_images",
    "classify_large",
    "find_image_files",
    "find_model_file",
    "gradcam_figure",
    "gradcam_to_field",
    "image_cells",
    "is_single_cell_image",
    "outline_cells",
    "overlay_heatmap",
    "summarize_calls",
    "tta_transforms",
    "write_gradcam_png",
]
