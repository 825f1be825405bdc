"""Agreement of two label images, object by object.

Shared by ``benchmarks/tiled_segmentation.py`` and ``tests/core/test_tiled.py`` (which
imports this file by path), so that the figure and the test use the same rule.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_iou"]


def best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For every label ``1..max`` of ``a``, its best IoU with any label of ``b`` (0 if none).

    A label of ``a`` is *matched* in ``b`` at IoU ``t`` when its value is ``>= t``.
    """
    from skimage.metrics import contingency_table

    coo = contingency_table(a, b).tocoo()
    na, nb = np.bincount(a.ravel()), np.bincount(b.ravel())
    best = np.zeros(int(a.max()) + 1)
    for i, j, v in zip(coo.row, coo.col, coo.data, strict=True):
        if i and j:
            best[i] = max(best[i], v / (na[i] + nb[j] - v))
    return best[1:]
