"""Test-time augmentation: the symmetries of the square that classification averages over.

With ``tta=True`` the probabilities are averaged over the 8 symmetries of the square
(identity, rotations by 90, 180 and 270 degrees, and each of them after a left-right flip;
see :data:`TTA_TRANSFORMS`), applied to the resized model input. A non-square model input
uses the 4 of them that keep its shape (identity, both flips, 180 degrees).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TTA_TRANSFORMS", "apply_transform", "tta_transforms"]

#: Test-time transforms as ``(k, flip)``: ``np.rot90(x, k)`` after an optional left-right flip.
TTA_TRANSFORMS = tuple((k, flip) for flip in (False, True) for k in range(4))


def tta_transforms(shape: tuple[int, int] | None = None) -> tuple[tuple[int, bool], ...]:
    """The test-time transforms used for images of ``shape`` (all 8 when square)."""
    if shape is None or shape[0] == shape[1]:
        return TTA_TRANSFORMS
    return ((0, False), (2, False), (0, True), (2, True))


def apply_transform(batch: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``np.rot90(flip(batch), k)`` on the image axes of an ``(N, H, W, C)`` batch."""
    out = batch[:, :, ::-1] if flip else batch
    return np.ascontiguousarray(np.rot90(out, k, axes=(1, 2)))
