"""The cached feed: batches read from a ``uint8`` image cache on disk
(:func:`~allnet_core.feed.build_cache`).

An epoch only shuffles (under ``(seed, epoch)``, like the on-the-fly feed), reads each
batch's rows and, with ``flips=True``, turns each image by a random symmetry of the square.
Batches are ``uint8``: a quarter of the bytes of ``float32`` to copy and to send to the
device, where the model casts them (Keras converts inputs to the ``Input``'s ``float32``).

Rows are read with positional reads (``os.preadv``) into a fresh batch array rather than
through a memory map: pages of a mapped file count in the process's resident memory as
long as they stay mapped, reads through the page cache do not, so memory does not grow
with the cache (a cache of 12,000 450 px cells is 7.3 GB).

:class:`CachedFeedCore` has all the logic without Keras; :class:`CachedFeed` is it with
:class:`keras.utils.PyDataset` as a second base (created on first access, importing
Keras only then).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Sequence

import numpy as np

from allnet_core.classes import CLASS_NAMES
from allnet_core.errors import ConfigError, DatasetError
from allnet_core.feed._batching import (
    Batching,
    EpochOrder,
    check_class_names,
    check_jitter,
    dihedral,
    encode_labels,
    flip_codes,
    jitter_gains,
    keras_feed_class,
    one_hot,
    stain_jitter,
)
from allnet_core.feed.cache import is_complete, read_cache_header

__all__ = ["CachedFeed", "CachedFeedCore", "make_cached_feed"]  # noqa: F822


class CachedFeedCore(EpochOrder):
    """Everything :class:`CachedFeed` does, without the Keras base class.

    Parameters
    ----------
    cache : path-like
        A complete cache file (``.npy``, ``(N, S, S, 3) uint8``) from
        :func:`~allnet_core.feed.build_cache`.
    labels : sequence
        Class of each of the ``N`` rows: names from ``class_names`` or indices.
    batch_size : int
        Samples per batch (global, over all replicas and processes).
    shuffle : bool
        Shuffle the rows once per epoch under ``seed``.
    seed : int
        Seed of the per-epoch order and flips.
    epoch : int
        Epoch to start at (for resumed runs).
    flips : bool
        Flip and turn each image by a random symmetry of the square, anew every epoch.
    jitter : float
        Stain jitter: scale each image's red, green and blue by random factors in
        ``[1 - jitter, 1 + jitter]``, anew every epoch (0: off).
    class_names : sequence of str
        Order of the one-hot columns (index 1 = ALL by default, like ALLNet's output).
    batch_multiple : int
        Every batch holds a multiple of this many samples (the data-parallel replicas).
    pad : bool
        Pad a partial last batch with repeats of its last sample (prediction) instead of
        trimming it to a multiple of ``batch_multiple`` (training).
    shard : (int, int)
        ``(index, count)``: with several processes (JAX on several hosts), each process
        yields its ``index``-th of ``count`` equal slices of every global batch.
    """

    def __init__(self, cache: str | os.PathLike, labels: Sequence, batch_size: int = 16,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0, flips: bool = False,
                 class_names: Sequence[str] = CLASS_NAMES, batch_multiple: int = 1,
                 pad: bool = False, shard: tuple[int, int] = (0, 1), jitter: float = 0.0):
        self.path = os.fspath(cache)
        if not is_complete(self.path, missing_ok=True):
            raise DatasetError(f"{self.path}: the image cache is incomplete; build it first")
        self.shape, self.offset = read_cache_header(self.path)
        self.input_size = self.shape[1]
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.class_names = check_class_names(class_names)
        if len(labels) != self.shape[0]:
            raise DatasetError(f"{self.path} holds {self.shape[0]} images but "
                               f"{len(labels)} labels were given; they must match")
        self._y = encode_labels(labels, self.class_names)
        index, count = (int(v) for v in shard)
        if not 0 <= index < count:
            raise ConfigError(f"shard must be (index, count) with 0 <= index < count, "
                              f"got {shard!r}")
        self.shard = (index, count)
        self.batch_size = int(batch_size)
        self._batching = Batching(self.shape[0], batch_size,
                                  math.lcm(int(batch_multiple), count), pad)
        self.shuffle, self.seed, self.flips = bool(shuffle), int(seed), bool(flips)
        self.jitter = check_jitter(jitter)
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.set_epoch(epoch)

    @property
    def num_samples(self) -> int:
        """Rows per epoch (all of the cache)."""
        return self.shape[0]

    def __len__(self) -> int:
        return len(self._batching)

    def targets(self) -> np.ndarray:
        """Class indices of this epoch's samples, in feed order (for metrics)."""
        return self._y[self._order]

    def _local(self, values: np.ndarray) -> np.ndarray:
        """This process's slice of a global batch's ``values``."""
        i, count = self.shard
        return values.reshape(count, -1)[i]

    def read_rows(self, rows: Sequence[int]) -> np.ndarray:
        """The cached ``uint8`` images of ``rows``, as ``(len(rows), S, S, 3)``."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        for j, row in enumerate(rows):
            if not 0 <= row < self.shape[0]:
                raise IndexError(f"row {row} out of range (0..{self.shape[0] - 1})")
            view = memoryview(out[j]).cast("B")
            offset = self.offset + int(row) * self.row_bytes
            if hasattr(os, "preadv"):
                got = os.preadv(self._fd, [view], offset)
            else:  # Windows: no positional read; one reader at a time
                with self._lock:
                    os.lseek(self._fd, offset, os.SEEK_SET)
                    got = os.readv(self._fd, [view])
            if got != self.row_bytes:
                raise DatasetError(f"{self.path}: row {row} is truncated (the file is shorter "
                                   "than its header says); delete it to rebuild")
        return out

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._order[self._batching.positions(index)]
        x = self.read_rows(self._local(rows))
        if self.flips:
            x = dihedral(x, self._local(flip_codes(self.seed, self.epoch, index, len(rows))))
        if self.jitter:
            gains = jitter_gains(self.seed, self.epoch, index, len(rows), self.jitter)
            x = stain_jitter(x, self._local(gains).reshape(-1, 3))
        return x, one_hot(self._y[self._local(rows)], len(self.class_names))

    def close(self) -> None:
        """Close the file (it reopens on the next read)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


_CACHED_FEED_DOC = """Batches ``(images, one_hot)`` read from an image cache: a Keras PyDataset.

    ``images`` is ``uint8`` ``(B, S, S, 3)`` (the model casts it to float32 on the device),
    ``one_hot`` float32 ``(B, len(class_names))`` (index 1 = ALL).

{parameters}
    workers : int, optional
        Threads that read batches; default ``min(4, cpu_count)``.
    use_multiprocessing : bool
        Use processes instead of threads.
    max_queue_size : int, optional
        Batches read ahead; default ``2 * workers``. Memory use is bounded by it.

    Examples
    --------
    >>> info = build_cache("fold_1/train_cache.npy", paths, params, 450)  # doctest: +SKIP
    >>> feed = CachedFeed(info.path, labels, batch_size=16, seed=0)     # doctest: +SKIP
    >>> model.fit(feed, epochs=65, shuffle=False)                       # doctest: +SKIP
"""


@functools.cache
def _cached_feed_class() -> type:
    doc = _CACHED_FEED_DOC.format(
        parameters=(CachedFeedCore.__doc__ or "").split("\n", 2)[2].rstrip())
    return keras_feed_class(CachedFeedCore, "CachedFeed", __name__, doc)


def make_cached_feed(cache: str | os.PathLike, labels: Sequence, **kwargs):
    """Make a :class:`CachedFeed` (imports Keras); same parameters."""
    return _cached_feed_class()(cache, labels, **kwargs)


def __getattr__(name: str):
    if name == "CachedFeed":
        return _cached_feed_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["CachedFeed"])
