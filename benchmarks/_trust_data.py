"""Crops that lie clearly outside what a C-NMC-like model saw, cut from real BCCD fields.

Shared by ``benchmarks/trust.py`` and ``tests/core/test_trust.py`` (which imports this file
by path), so the figures in ``docs/trust.md`` and the test use the same crops.

* ``"wbc"``: the white cells that ``allnet classify`` itself finds on a BCCD field
  (:func:`allnet_core.inference.image_cells` in smear mode): mostly neutrophils, some
  eosinophils, lymphocytes and monocytes.
* ``"rbc"`` and ``"platelets"``: the ``RBC`` and ``Platelets`` boxes of the Pascal-VOC
  annotations, each cut out as an ellipse inscribed in its box and placed on black at its
  own scale, as :func:`allnet_core.segmentation.extract_cells` places a segmented cell (the
  C-NMC look). Boxes touching the image border or a WBC box are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "bccd_crops"]

KINDS = ("wbc", "rbc", "platelets")
_VOC_NAMES = {"rbc": "RBC", "platelets": "Platelets"}


def _bccd_module():
    """``benchmarks/_bccd.py`` (loaded by path, once)."""
    name = "_allnet_bench_bccd"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_bccd.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def _overlaps(box, others) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3]
               for o in others)


def _box_labels(shape, boxes) -> np.ndarray:
    """Instance labels: an ellipse inscribed in each box (later boxes win overlaps)."""
    labels = np.zeros(shape, np.int32)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    for i, (r0, c0, r1, c1) in enumerate(boxes, 1):
        cy, cx = (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2
        ry, rx = max((r1 - r0) / 2, 1), max((c1 - c0) / 2, 1)
        inside = ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1
        labels[inside] = i
    return labels


def bccd_crops(root: str | os.PathLike, kind: str, fields: int = 40, per_field: int = 3,
               size: int = 450) -> list[np.ndarray]:
    """Crops of one kind from the first ``fields`` BCCD fields (at most ``per_field`` each).

    Parameters
    ----------
    root : path-like
        ``ALLNET_DATA_DIR`` (holds ``bccd/``).
    kind : {"wbc", "rbc", "platelets"}
    fields, per_field : int
    size : int
        Side of the crops (450, like C-NMC; the model resizes them).

    Returns
    -------
    list of (size, size, 3) uint8 arrays
    """
    from allnet_core.inference import image_cells
    from allnet_core.io import read_rgb
    from allnet_core.segmentation import extract_cells

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    bccd = _bccd_module()
    crops: list[np.ndarray] = []
    for field in bccd.bccd_fields(root)[:fields]:
        rgb = read_rgb(field.image)
        if kind == "wbc":
            _, found, _, _ = image_cells(rgb, mode="smear", crop_size=size)
            crops.extend(found[:per_field])
            continue
        xml = Path(root) / "bccd" / "Annotations" / f"{field.name}.xml"
        h, w = rgb.shape[:2]
        boxes = [b for b in bccd.read_voc_boxes(xml, _VOC_NAMES[kind])
                 if b[0] > 0 and b[1] > 0 and b[2] < h and b[3] < w
                 and not _overlaps(b, field.boxes)][:per_field]
        if boxes:
            found, _ = extract_cells(rgb, _box_labels(rgb.shape[:2], boxes), size=size)
            crops.extend(found)
    return crops
