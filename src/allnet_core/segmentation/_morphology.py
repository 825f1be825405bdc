"""Fast binary morphology and label bookkeeping used by the auto method."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EIGHT_CONNECTED = np.ones((3, 3), bool)  # 8-connectivity


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a ``(2 radius + 1)`` square (separable, fast)."""
    if radius <= 0:
        return mask.copy()
    return ndi.maximum_filter(mask.view(np.uint8), size=2 * radius + 1).view(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a ``(2 radius + 1)`` square; outside the image counts as set."""
    if radius <= 0:
        return mask.copy()
    return ndi.minimum_filter(mask.view(np.uint8), size=2 * radius + 1, mode="nearest").view(
        bool
    )


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a boolean mask (like ``ndi.binary_fill_holes``, much faster).

    A hole is a connected background region (4-connected) that does not reach the image
    border.
    """
    mask = np.asarray(mask, bool)
    if mask.size == 0 or mask.all():
        return mask.copy()
    bg, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[bg] | mask


def hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Connected pieces of ``weak`` (8-connected) that contain a pixel of ``strong``."""
    comp, n = ndi.label(weak, structure=EIGHT_CONNECTED)
    if n == 0:
        return weak
    keep = np.zeros(n + 1, bool)
    keep[comp[strong & weak]] = True
    keep[0] = False
    return keep[comp]


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels 1..N in increasing order of their old id (int32)."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    if present.all() if present.size <= 1 else present[1:].all():
        return labels.astype(np.int32, copy=False)
    ids = np.cumsum(present, dtype=np.int32)
    ids[~present] = 0
    return ids[labels]


def keep_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``labels`` with only the ids where ``keep`` is True, renumbered 1..N (int32).

    ``keep`` is indexed by label id; the background (id 0) is never kept.
    """
    keep = keep.copy()
    keep[0] = False
    ids = np.cumsum(keep, dtype=np.int32)
    ids[~keep] = 0
    return ids[labels]


def subsample(a: np.ndarray, factor: int) -> np.ndarray:
    """Every ``factor``-th pixel, starting half a step in (the image itself for 1)."""
    if factor == 1:
        return a
    return np.ascontiguousarray(a[factor // 2 :: factor, factor // 2 :: factor])
