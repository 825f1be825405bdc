"""The on-the-fly feed: a constant-memory source of batches, read, augmented, resized and
one-hot encoded for every batch of every epoch.

:class:`TrainingFeed` is a :class:`keras.utils.PyDataset`: Keras' ``fit``/``evaluate``/
``predict`` pull batches from it with worker threads (or processes), on every backend
(TensorFlow, JAX, PyTorch). It holds only file paths, labels and a plan; images are read
from disk for each batch, so memory does not grow with the dataset (12,000 cells of
450x450x3 would take 29 GB as float32). An optional cache keeps decoded ``uint8`` images
up to a byte limit.

Lazy Keras import
-----------------
``import allnet_core.feed`` does not import Keras. :class:`TrainingFeed` is created on
first access through the module's ``__getattr__`` (PEP 562), so
``from allnet_core.feed import TrainingFeed`` and :func:`make_feed` import Keras only then.
:func:`resize_for_model` and :class:`FeedCore` (all of the feed's logic, without the
Keras base class) work without Keras.

What one sample goes through
----------------------------
1. :func:`allnet_core.io.read_rgb` (``HxWx3 uint8``; a clear error names a bad file);
2. augmentation at the image's own resolution: the plan's parameters for that sample
   (see :func:`allnet_core.augment.balance_plan`), or, without a plan, parameters drawn by
   ``augmenter`` from a generator seeded by ``(seed, epoch, sample)``, or nothing
   (validation and hold-out feeds);
3. :func:`~allnet_core.preprocess.resize_for_model` to ``input_size`` (float32, 0-255, as
   ALLNet expects; shared with inference and re-exported here).

Order: samples are shuffled once per epoch under ``seed`` (``on_epoch_begin`` moves to the
next epoch from the second epoch on; :meth:`FeedCore.set_epoch` jumps to one, e.g. when a
run resumes; :meth:`FeedCore.epoch_callback` pins epochs to Keras' own count, which JAX
needs). Pass
``shuffle=False`` to ``model.fit`` so that Keras does not reorder the batches again with
an unseeded generator; the feed's own shuffle already mixes samples across batches.
The last, partial batch is included (see :class:`~allnet_core.feed._batching.Batching`
for data-parallel replicas). ``flips=True`` turns each image of a batch by a random
symmetry of the square every epoch (:func:`~allnet_core.feed.dihedral`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence

import numpy as np

from allnet_core.augment import Augmenter, parse_params
from allnet_core.classes import CLASS_NAMES
from allnet_core.errors import ConfigError, DatasetError
from allnet_core.feed._batching import (
    Batching,
    EpochOrder,
    check_class_names,
    check_jitter,
    check_positive_int,
    dihedral,
    encode_labels,
    flip_codes,
    jitter_gains,
    keras_feed_class,
    one_hot,
    stain_jitter,
)
from allnet_core.feed._samples import augment_sample, read_sample
from allnet_core.preprocess import resize_for_model

# TrainingFeed is created on first access (module __getattr__), so Keras loads only then.
__all__ = ["DEFAULT_CLASS_NAMES", "FeedCore", "TrainingFeed", "make_feed"]  # noqa: F822

#: Class order of the one-hot labels (index 1 = ALL), as ALLNet's output: an alias of
#: :data:`allnet_core.classes.CLASS_NAMES`.
DEFAULT_CLASS_NAMES = CLASS_NAMES


class FeedCore(EpochOrder):
    """Everything :class:`TrainingFeed` does, without the Keras base class.

    Parameters
    ----------
    paths : sequence of path-like
        Image files, one per row of the training (or validation) table.
    labels : sequence
        Class of each file: names from ``class_names`` (e.g. ``"ALL"``) or class indices.
    plan : pandas.DataFrame, optional
        From :func:`~allnet_core.augment.balance_plan` (or such a plan saved as CSV and
        read back with ``pandas.read_csv(path, keep_default_na=False)``): one row per
        sample, ``index`` into ``paths`` and ``params``. Without a plan every file is one
        sample.
    batch_size : int
        Samples per batch (the paper: 16). The last batch may be smaller.
    input_size : int
        Side length of the model input; images are resized with :func:`resize_for_model`.
    augmenter : Augmenter, optional
        Without a plan: draws fresh parameters for every sample and epoch (on-the-fly
        augmentation). With a plan it is not used: the plan's parameters are replayed
        with :func:`~allnet_core.augment.apply_params`. None and no plan: no augmentation
        (validation and hold-out feeds).
    shuffle : bool
        Shuffle the samples once per epoch under ``seed``.
    seed : int
        Seed of the per-epoch order and of on-the-fly augmentation.
    cache_bytes : int
        Keep up to this many bytes of decoded ``uint8`` originals in memory (first come,
        first kept; no eviction, so a random order still hits the cache at the rate
        ``cache_bytes / dataset bytes``). 0 disables the cache. With
        ``use_multiprocessing`` each worker process has its own cache.
    class_names : sequence of str
        Order of the one-hot columns (index 1 = ALL by default, like ALLNet's output).
    epoch : int
        Epoch to start at (for resumed runs).
    check_files : bool
        Check that every file exists when the feed is made, so a missing file fails
        before training starts rather than hours into it.
    flips : bool
        Flip and turn each image by a random symmetry of the square, anew every epoch.
    jitter : float
        Stain jitter: scale each image's red, green and blue by random factors in
        ``[1 - jitter, 1 + jitter]``, anew every epoch (0: off).
    batch_multiple : int
        Every batch holds a multiple of this many samples (the data-parallel replicas).
    pad : bool
        Pad a partial last batch to ``batch_multiple`` with repeats of its last sample
        (prediction) instead of trimming it (training).
    """

    def __init__(self, paths: Sequence, labels: Sequence, plan=None, batch_size: int = 16,
                 input_size: int = 450, augmenter: Augmenter | None = None,
                 shuffle: bool = True, seed: int = 0, cache_bytes: int = 0,
                 class_names: Sequence[str] = DEFAULT_CLASS_NAMES, epoch: int = 0,
                 check_files: bool = True, flips: bool = False, batch_multiple: int = 1,
                 pad: bool = False, jitter: float = 0.0):
        self._plan_given = plan is not None
        self.paths = [os.fspath(p) for p in paths]
        n = len(self.paths)
        if len(labels) != n:
            raise DatasetError(f"{n} paths but {len(labels)} labels; they must match")
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.input_size = check_positive_int("input_size", input_size)
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, (int, np.integer)) \
                or cache_bytes < 0:
            raise ConfigError(f"cache_bytes must be an integer >= 0, got {cache_bytes!r}")
        self.cache_bytes = int(cache_bytes)
        self.class_names = check_class_names(class_names)
        if augmenter is not None and not hasattr(augmenter, "sample_params"):
            raise ConfigError(f"augmenter must be an Augmenter, got {augmenter!r}")
        self.augmenter = augmenter
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.flips = bool(flips)
        self.jitter = check_jitter(jitter)
        self._y = encode_labels(labels, self.class_names, self.paths)
        self._rows, self._params = self._read_plan(plan, labels)
        if len(self._rows) == 0:
            raise DatasetError("the feed has no samples (empty file list or plan)")
        self._batching = Batching(len(self._rows), self.batch_size, batch_multiple, pad)
        if check_files:
            missing = [p for p in self.paths if not os.path.isfile(p)]
            if missing:
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                raise DatasetError(f"{len(missing)} image file(s) do not exist: "
                                   f"{', '.join(missing[:3])}{more}")
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}
        self._cache_used = 0
        self.set_epoch(epoch)

    # -- construction helpers ------------------------------------------------------------

    def _read_plan(self, plan, labels) -> tuple[np.ndarray, list[dict | None]]:
        n = len(self.paths)
        if plan is None:
            return np.arange(n, dtype=np.int64), [None] * n
        cols = set(getattr(plan, "columns", ()))
        if not {"index", "params"} <= cols:
            raise ConfigError(
                "plan must be a table with columns 'index' and 'params' (from balance_plan)"
            )
        rows = np.asarray(plan["index"])
        if rows.size and (not np.issubdtype(rows.dtype, np.integer)
                          or rows.min() < 0 or rows.max() >= n):
            raise ConfigError(
                f"plan refers to rows outside 0..{n - 1}: it was made for another table"
            )
        rows = rows.astype(np.int64)
        if "label" in cols:
            plan_labels = np.asarray(plan["label"]).astype(str)
            given = np.array([str(lab) for lab in labels], dtype=object)
            bad = np.flatnonzero(plan_labels != given[rows].astype(str))
            if bad.size:
                r = int(bad[0])
                raise ConfigError(
                    f"plan row {r} says label {plan_labels[r]!r} but {self.paths[rows[r]]} is "
                    f"{given[rows[r]]!r}: the plan was made for another table"
                )
        params = [parse_params(p) or None for p in plan["params"]]
        return rows, params

    @property
    def num_samples(self) -> int:
        """Samples per epoch (plan rows, or files without a plan)."""
        return len(self._rows)

    def __len__(self) -> int:
        return len(self._batching)

    def sample_indices(self) -> np.ndarray:
        """Row positions into ``paths`` of this epoch's samples, in feed order."""
        return self._rows[self._order]

    def targets(self) -> np.ndarray:
        """Class indices of this epoch's samples, in feed order (for metrics)."""
        return self._y[self.sample_indices()]

    # -- reading -------------------------------------------------------------------------

    def _read(self, row: int) -> np.ndarray:
        cached = self._cache.get(row)
        if cached is not None:
            return cached
        image = read_sample(self.paths[row])
        if self.cache_bytes and self._cache_used + image.nbytes <= self.cache_bytes:
            with self._lock:
                if row not in self._cache and self._cache_used + image.nbytes <= self.cache_bytes:
                    image.setflags(write=False)
                    self._cache[row] = image
                    self._cache_used += image.nbytes
        return image

    def load_sample(self, position: int) -> np.ndarray:
        """The ``uint8`` image of sample ``position`` (in this epoch's order), augmented."""
        sample = int(self._order[position])
        row = int(self._rows[sample])
        image = self._read(row)
        params = self._params[sample]
        if params is None and self.augmenter is not None and not self._plan_given:
            rng = np.random.default_rng([self.seed, self.epoch, sample])
            params = self.augmenter.sample_params(rng)
        return augment_sample(image, params, self.paths[row])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        positions = self._batching.positions(index)
        size = self.input_size
        x = np.empty((len(positions), size, size, 3), dtype=np.float32)
        for j, pos in enumerate(positions):
            image = self.load_sample(int(pos))
            if image.shape == (size, size, 3):
                x[j] = image  # cast on assignment: no intermediate float copy
            else:
                x[j] = resize_for_model(image, size)
        if self.flips:
            x = dihedral(x, flip_codes(self.seed, self.epoch, index, len(x)))
        if self.jitter:
            x = stain_jitter(x, jitter_gains(self.seed, self.epoch, index, len(x), self.jitter))
        labels = self._y[self._rows[self._order[positions]]]
        return x, one_hot(labels, len(self.class_names))

    # -- pickling for multiprocessing workers ---------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_cache"], state["_cache_used"] = {}, 0
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


@functools.cache
def _feed_class() -> type:
    doc = _TRAINING_FEED_DOC.format(
        parameters=(FeedCore.__doc__ or "").split("\n", 2)[2].rstrip())
    return keras_feed_class(FeedCore, "TrainingFeed", __name__, doc)


_TRAINING_FEED_DOC = """Batches ``(images, one_hot)`` for ``fit``: a ``keras.utils.PyDataset``.

    ``images`` is float32 ``(B, input_size, input_size, 3)`` in 0-255, ``one_hot`` float32
    ``(B, len(class_names))`` (index 1 = ALL).

{parameters}
    workers : int, optional
        Threads (or processes) that prepare batches; default ``min(4, cpu_count)``.
    use_multiprocessing : bool
        Use processes instead of threads (the feed pickles; the cache is per process).
    max_queue_size : int, optional
        Batches prepared ahead; default ``2 * workers``. Memory use is bounded by it.

    Examples
    --------
    >>> from allnet_core.augment import balance_plan
    >>> plan = balance_plan(table["label"], per_class=6000, seed=0)      # doctest: +SKIP
    >>> train = TrainingFeed(table["path"], table["label"], plan=plan)   # doctest: +SKIP
    >>> val = TrainingFeed(val_table["path"], val_table["label"], shuffle=False)  # doctest: +SKIP
    >>> model.fit(train, validation_data=val, epochs=65, shuffle=False)  # doctest: +SKIP
"""


def make_feed(paths: Sequence, labels: Sequence, plan=None, **kwargs):
    """Make a :class:`TrainingFeed` (imports Keras); same parameters."""
    return _feed_class()(paths, labels, plan=plan, **kwargs)


def __getattr__(name: str):
    if name == "TrainingFeed":
        return _feed_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["TrainingFeed"])
