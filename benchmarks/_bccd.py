"""Loaders and scoring for the real segmentation data sets (BCCD boxes, Zheng masks).

Shared by ``benchmarks/segmentation_accuracy.py``, ``benchmarks/segmentation_speed.py``,
``docs/scripts/segmentation_figures.py`` and ``tests/core/test_segmentation.py`` (which
imports this file by path), so that every figure is computed by the same rules.

Data layout: see ``shared/data/README.md``; the root comes from ``ALLNET_DATA_DIR``.

* BCCD: ``bccd/JPEGImages/BloodImage_NNNNN.jpg`` with Pascal-VOC boxes in
  ``bccd/Annotations/BloodImage_NNNNN.xml``. Only ``WBC`` boxes are used.
* Zheng et al. 2018 set 1: ``zheng/dataset1/NNN.bmp`` with ``NNN.png`` ground truth
  (0 background, 128 cytoplasm, 255 nucleus; stray grey values are rounded to the
  nearest class).

Matching rule for BCCD (issue 3): a labelled object is a true positive when it matches an
unmatched WBC box with IoU >= 0.5 or with its centroid inside the box; each box is matched
at most once.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "bccd_fields",
    "split_held_out",
    "wbc_free_crop",
    "data_root",
    "dice",
    "load_rgb",
    "match_objects",
    "read_voc_boxes",
    "zheng_cells",
    "zheng_truth",
]


def data_root() -> Path | None:
    """``ALLNET_DATA_DIR`` as a path, or ``None`` when unset or missing."""
    root = os.environ.get("ALLNET_DATA_DIR")
    if not root or not Path(root).is_dir():
        return None
    return Path(root)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image through the project's reader (uint8 HxWx3)."""
    from allnet_core.io import read_rgb

    return read_rgb(path)


# ----------------------------------------------------------------------------- BCCD


def read_voc_boxes(xml_path: str | os.PathLike, name: str = "WBC") -> np.ndarray:
    """Boxes of class ``name`` in a Pascal-VOC file as an ``(N, 4)`` int array.

    Each row is ``(row_min, col_min, row_max, col_max)`` with the max exclusive, clipped to
    the image size stored in the file; zero-area boxes are dropped.
    """
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    width = int(float(size.findtext("width").strip())) if size is not None else None
    height = int(float(size.findtext("height").strip())) if size is not None else None
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() != name:
            continue
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (
            int(round(float(bb.findtext(k).strip()))) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        # VOC is 1-based inclusive; keep it simple and treat xmin-1..xmax as the span.
        r0, c0, r1, c1 = max(ymin - 1, 0), max(xmin - 1, 0), ymax, xmax
        if height:
            r1 = min(r1, height)
        if width:
            c1 = min(c1, width)
        if r1 > r0 and c1 > c0:
            boxes.append((r0, c0, r1, c1))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


@dataclass(frozen=True)
class BccdField:
    """One BCCD field: image path and its WBC boxes."""

    name: str
    image: Path
    boxes: np.ndarray


def bccd_fields(root: str | os.PathLike) -> list[BccdField]:
    """All BCCD fields under ``root/bccd`` that have both an image and an annotation."""
    base = Path(root) / "bccd"
    out = []
    for xml in sorted((base / "Annotations").glob("*.xml")):
        img = base / "JPEGImages" / (xml.stem + ".jpg")
        if img.is_file():
            out.append(BccdField(xml.stem, img, read_voc_boxes(xml, "WBC")))
    return out


def _box_iou(a, b) -> float:
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(r1 - r0, 0) * max(c1 - c0, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_objects(labels: np.ndarray, boxes: np.ndarray) -> tuple[int, int, int]:
    """Match labelled objects to boxes; return ``(true_pos, false_pos, false_neg)``.

    An object matches an unmatched box when the IoU of its bounding box with the box is at
    least 0.5 or its centroid lies inside the box. Objects are taken largest first and
    each takes the box with the highest IoU among those it matches.
    """
    from skimage.measure import regionprops

    props = sorted(regionprops(labels), key=lambda p: -p.area)
    free = list(range(len(boxes)))
    tp = fp = 0
    for p in props:
        cr, cc = p.centroid
        best, best_score = None, -1.0
        for i in free:
            b = boxes[i]
            iou = _box_iou(p.bbox, b)
            inside = b[0] <= cr < b[2] and b[1] <= cc < b[3]
            if iou >= 0.5 or inside:
                if iou > best_score:
                    best, best_score = i, iou
        if best is None:
            fp += 1
        else:
            free.remove(best)
            tp += 1
    return tp, fp, len(free)


#: BCCD fields (positions in :func:`bccd_fields`, modulo 30) that were never looked at
#: while the stain-adaptive rules of issue 16 were developed (development used every
#: 2nd, 3rd, 5th or 9th field): a fixed held-out part, 78 of the 292 fields.
HELD_OUT_RESIDUES = (1, 7, 11, 13, 17, 19, 23, 29)


def split_held_out(fields: list) -> tuple[list, list]:
    """``(development, held_out)`` parts of the BCCD fields (see :data:`HELD_OUT_RESIDUES`)."""
    dev = [f for i, f in enumerate(fields) if i % 30 not in HELD_OUT_RESIDUES]
    held = [f for i, f in enumerate(fields) if i % 30 in HELD_OUT_RESIDUES]
    return dev, held


# ----------------------------------------------------------------------------- Zheng


def zheng_cells(root: str | os.PathLike, dataset: int = 1) -> list[Path]:
    """Image paths of Zheng et al. set ``dataset`` (those with a ground-truth PNG)."""
    base = Path(root) / "zheng" / f"dataset{dataset}"
    return [p for p in sorted(base.glob("*.bmp")) if p.with_suffix(".png").is_file()]


def zheng_truth(image_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one Zheng cell as ``(cell_mask, nucleus_mask)`` booleans.

    Grey values are rounded to the nearest of 0 / 128 / 255.
    """
    import imageio.v3 as iio

    gt = np.asarray(iio.imread(Path(image_path).with_suffix(".png")))
    if gt.ndim == 3:
        gt = gt[..., 0]
    levels = np.array([0, 128, 255])
    cls = np.abs(gt[..., None].astype(np.int16) - levels).argmin(axis=-1)
    return cls >= 1, cls == 2


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    denom = pred.sum() + truth.sum()
    if denom == 0:
        return 1.0
    return 2.0 * np.logical_and(pred, truth).sum() / denom


def wbc_free_crop(shape, boxes: np.ndarray, margin: int = 30, least: int = 160):
    """The largest band of a field (left, right, top or bottom of every WBC box) free of WBCs.

    Returns ``(row_slice, col_slice)`` or ``None`` when no band is at least ``least``
    pixels on both sides. Red cells and platelets stay: such crops are real fields that
    hold no white cell.
    """
    h, w = shape[:2]
    if len(boxes) == 0:
        return slice(0, h), slice(0, w)
    r0, c0 = int(boxes[:, 0].min()) - margin, int(boxes[:, 1].min()) - margin
    r1, c1 = int(boxes[:, 2].max()) + margin, int(boxes[:, 3].max()) + margin
    bands = [
        (slice(0, h), slice(0, max(c0, 0))),
        (slice(0, h), slice(min(c1, w), w)),
        (slice(0, max(r0, 0)), slice(0, w)),
        (slice(min(r1, h), h), slice(0, w)),
    ]
    sizes = [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in bands]
    ok = [(hh * ww, b) for (hh, ww), b in zip(sizes, bands, strict=True)
          if hh >= least and ww >= least]
    return max(ok, key=lambda t: t[0])[1] if ok else None
