"""What both feeds share: argument checks, the epoch order, which samples make a batch,
one-hot labels, and the random flips and quarter turns of a batch.

Only numpy is imported here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from allnet_core.errors import ConfigError, DatasetError

__all__ = ["dihedral", "one_hot", "stain_jitter"]


def default_workers() -> int:
    """Threads that prepare batches when none are asked for: ``min(4, cpu_count)``."""
    return max(1, min(4, os.cpu_count() or 1))


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(c) for c in class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"class_names must be 2+ distinct names, got {class_names!r}")
    return names


def encode_labels(labels: Sequence, class_names: tuple[str, ...],
                  where: Sequence[str] | None = None) -> np.ndarray:
    """Class indices of ``labels`` (names from ``class_names`` or indices); a bad label is a
    :class:`DatasetError` naming ``where[i]`` (its file) when given."""
    lookup = {name: k for k, name in enumerate(class_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(labels):
        if isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            k = int(lab) if 0 <= int(lab) < len(class_names) else None
        else:
            k = lookup.get(str(lab))
        if k is None:
            name = where[i] if where is not None else f"sample {i}"
            raise DatasetError(f"{name}: label {lab!r} is not one of {list(class_names)}")
        out[i] = k
    return out


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order of ``n`` samples in ``epoch``: a permutation seeded by ``(seed, epoch)``."""
    if shuffle:
        return np.random.default_rng([seed, epoch]).permutation(n)
    return np.arange(n)


class EpochOrder:
    """The epoch bookkeeping both feeds share (needs ``num_samples``, ``seed``, ``shuffle``).

    Keras calls :meth:`on_epoch_begin` before each epoch; from the second call on it moves
    to the next epoch. Counting epochs there rather than in ``on_epoch_end`` keeps the first
    epoch of a ``fit`` at ``epoch`` on TensorFlow (Keras also calls ``on_epoch_end`` once
    before training starts). On JAX, Keras runs one more pass over the data, with its own
    ``on_epoch_begin``, to build the model before the first epoch, so the count runs one
    ahead: pass :meth:`epoch_callback` to ``fit`` to pin each epoch to Keras' own epoch
    number, on every backend (training does).
    """

    num_samples: int
    seed: int
    shuffle: bool

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (0-based): sets the sample order (and per-epoch augmentation).

        The next epoch Keras runs uses this epoch's order.
        """
        self.epoch = int(epoch)
        self._fresh = True
        self._order = epoch_order(self.num_samples, self.seed, self.epoch, self.shuffle)

    def on_epoch_begin(self) -> None:
        """Keras calls this before each epoch: from the second one on, move to the next."""
        if not self._fresh:
            self.set_epoch(self.epoch + 1)
        self._fresh = False

    def on_epoch_end(self) -> None:
        """Nothing to do: the next :meth:`on_epoch_begin` moves to the next epoch."""

    def epoch_callback(self):
        """A ``keras.callbacks.Callback`` that sets this feed to the epoch ``fit`` begins
        (imports Keras): ``model.fit(feed, callbacks=[feed.epoch_callback()], ...)``."""
        from allnet_core.backend import get_keras

        feed = self

        class SetFeedEpoch(get_keras().callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                feed.set_epoch(epoch)

        return SetFeedEpoch()


def keras_feed_class(core: type, name: str, module: str, doc: str) -> type:
    """``core`` with :class:`keras.utils.PyDataset` as a second base (imports Keras).

    The class takes ``core``'s arguments plus PyDataset's ``workers`` (default
    :func:`default_workers`), ``use_multiprocessing`` and ``max_queue_size`` (default
    ``2 * workers``; memory use is bounded by it).
    """
    from allnet_core.backend import get_keras

    keras = get_keras()

    class Feed(core, keras.utils.PyDataset):
        def __init__(self, *args, workers: int | None = None, use_multiprocessing: bool = False,
                     max_queue_size: int | None = None, **kwargs):
            workers = default_workers() if workers is None else check_positive_int(
                "workers", workers)
            if max_queue_size is None:
                max_queue_size = max(2, 2 * workers)
            keras.utils.PyDataset.__init__(
                self, workers=workers, use_multiprocessing=bool(use_multiprocessing),
                max_queue_size=check_positive_int("max_queue_size", max_queue_size))
            core.__init__(self, *args, **kwargs)

        def on_epoch_begin(self) -> None:
            core.on_epoch_begin(self)

        def on_epoch_end(self) -> None:
            core.on_epoch_end(self)

    Feed.__module__, Feed.__name__, Feed.__qualname__ = module, name, name
    Feed.__doc__ = doc
    return Feed


class Batching:
    """Which positions of an epoch's order make batch ``i``.

    Every batch holds a multiple of ``multiple`` samples (the number of data-parallel
    replicas, which split each batch evenly). A partial last batch is padded with repeats
    of its last sample when ``pad`` (prediction: the caller drops the extra rows) and else
    trimmed to a multiple (training: at most ``multiple - 1`` samples of an epoch are
    skipped, different ones each epoch since the order changes).
    """

    def __init__(self, n: int, batch_size: int, multiple: int = 1, pad: bool = False):
        self.n = int(n)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.multiple = check_positive_int("batch_multiple", multiple)
        if self.batch_size % self.multiple:
            raise ConfigError(f"batch_size {self.batch_size} does not split evenly over "
                              f"{self.multiple} replicas; choose a multiple of {self.multiple}")
        self.pad = bool(pad)
        full, rest = divmod(self.n, self.batch_size)
        self.count = full + (1 if rest and (self.pad or rest >= self.multiple) else 0)

    def __len__(self) -> int:
        return self.count

    def positions(self, index: int) -> np.ndarray:
        """Positions (into the epoch's order) of batch ``index``."""
        if not 0 <= index < self.count:
            raise IndexError(f"batch {index} out of range (0..{self.count - 1})")
        start = index * self.batch_size
        stop = min(start + self.batch_size, self.n)
        size = stop - start
        if size % self.multiple:
            size = (math.ceil(size / self.multiple) if self.pad
                    else size // self.multiple) * self.multiple
        return np.minimum(np.arange(start, start + size), stop - 1)


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """``float32`` one-hot rows of class indices ``labels``."""
    y = np.zeros((len(labels), classes), dtype=np.float32)
    y[np.arange(len(labels)), labels] = 1.0
    return y


def flip_codes(seed: int, epoch: int, index: int, size: int) -> np.ndarray:
    """The random element of the square's symmetry group (0-7) of each sample of a batch,
    seeded by ``(seed, epoch, batch index)``."""
    return np.random.default_rng([seed, epoch, index, 8]).integers(0, 8, size)


def _as_pixels(x: np.ndarray) -> np.ndarray:
    """``(B, H, W, C)`` seen as ``(B, H, W)`` whole pixels: moving one pixel is one copy of
    ``C * itemsize`` bytes, several times faster than moving ``C`` separate values."""
    return x.view(np.dtype((np.void, x.shape[-1] * x.itemsize)))[..., 0]


def dihedral(x: np.ndarray, codes: Sequence[int]) -> np.ndarray:
    """Flip and turn each image of a batch by a multiple of 90 degrees.

    Parameters
    ----------
    x : (B, S, S, C) ndarray
        Square images.
    codes : sequence of int
        One code 0-7 per image, bits: 1 swap rows and columns (a transpose), 2 flip
        vertically, 4 flip horizontally. The eight codes are the eight symmetries of the
        square (0 leaves the image as it is; 3 is a quarter turn anticlockwise, as
        ``numpy.rot90``; 6 a half turn).

    Returns
    -------
    ndarray
        A new array of the same shape and dtype.

    Examples
    --------
    >>> x = np.arange(4).reshape(1, 2, 2, 1)
    >>> dihedral(x, [6])[0, :, :, 0]  # a half turn
    array([[3, 2],
           [1, 0]])
    """
    x = np.ascontiguousarray(x)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected a batch of square images (B, S, S, C), got {x.shape}")
    out = np.empty_like(x)
    src, dst = _as_pixels(x), _as_pixels(out)
    for j, code in enumerate(codes):
        v = src[j]
        if code & 1:
            v = v.T
        if code & 2:
            v = v[::-1]
        if code & 4:
            v = v[:, ::-1]
        dst[j] = v
    return out


def check_jitter(value: Any) -> float:
    """A stain-jitter strength: a number in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not 0.0 <= v < 1.0:
        raise ConfigError(f"jitter must be a number in [0, 1), got {value!r}")
    return v


def jitter_gains(seed: int, epoch: int, index: int, size: int, strength: float) -> np.ndarray:
    """``(size, 3)`` factors in ``[1 - strength, 1 + strength]``, one per channel of each
    sample of a batch, seeded by ``(seed, epoch, batch index)``."""
    rng = np.random.default_rng([seed, epoch, index, 9])
    return (1.0 + rng.uniform(-strength, strength, (size, 3))).astype(np.float32)


def stain_jitter(x: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Scale each image's red, green and blue by its row of ``gains``: the stain and camera
    differences between slides and labs.

    Parameters
    ----------
    x : (B, H, W, 3) ndarray
        ``uint8`` or float images (0-255).
    gains : (B, 3) ndarray
        Factors per image and channel (around 1).

    Returns
    -------
    ndarray
        A new array of ``x``'s dtype, clipped to 0-255. Black stays black, and a ``uint8``
        channel that was not 0 stays at least 1 (the cell's mask is kept).

    Examples
    --------
    >>> x = np.full((1, 1, 1, 3), 100, np.uint8)
    >>> stain_jitter(x, np.array([[1.1, 1.0, 0.5]]))[0, 0, 0].tolist()
    [110, 100, 50]
    """
    gains = np.asarray(gains, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or gains.shape != (len(x), 3):
        raise ValueError(f"expected images (B, H, W, 3) and gains (B, 3), got {x.shape} and "
                         f"{gains.shape}")
    out = np.clip(x * gains[:, None, None, :], 0, 255)
    if x.dtype != np.uint8:
        return out.astype(x.dtype, copy=False)
    out = np.rint(out).astype(np.uint8)
    np.maximum(out, x > 0, out=out)
    return out
