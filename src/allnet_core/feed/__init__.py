"""Training batches for Keras: streamed from image files, or read from a cache on disk.

Two feeds, one contract (``keras.utils.PyDataset`` yielding ``(images, one_hot)``, shuffled
once per epoch under ``(seed, epoch)``):

- **cached** (:func:`build_cache` + :class:`CachedFeed`): the fold's balanced, augmented
  training set is built once as a ``uint8`` array on disk, in parallel and resumably; each
  epoch then only shuffles, reads and batches (optionally flipping and turning each image).
  This is the paper's protocol (augment once to a fixed set) and fast enough to keep a GPU
  busy. It needs disk: ``N * S * S * 3`` bytes (12,000 cells at 450 px: 7.3 GB).
- **stream** (:class:`TrainingFeed`): every batch is read, augmented and resized from the
  image files, in constant memory and with no disk beyond the images. For users short of
  disk; tens of 450 px images per second per core.

Modules: :mod:`~allnet_core.feed.stream` (the on-the-fly feed),
:mod:`~allnet_core.feed.cache` (building the cache), :mod:`~allnet_core.feed.cached` (the
cached feed), ``_batching`` and ``_samples`` (what both share).

``import allnet_core.feed`` does not import Keras: :class:`TrainingFeed` and
:class:`CachedFeed` are created on first access (PEP 562), :func:`make_feed` and
:func:`make_cached_feed` import Keras when called. :class:`FeedCore` and
:class:`CachedFeedCore` hold all the logic without Keras.
"""

from __future__ import annotations

from allnet_core.feed._batching import dihedral
from allnet_core.feed.cache import CacheInfo, build_cache, cache_fingerprint, is_complete
from allnet_core.feed.cached import CachedFeedCore, make_cached_feed
from allnet_core.feed.stream import DEFAULT_CLASS_NAMES, FeedCore, make_feed
from allnet_core.preprocess import resize_for_model

__all__ = [  # noqa: F822 - TrainingFeed and CachedFeed come from __getattr__
    "DEFAULT_CLASS_NAMES",
    "CacheInfo",
    "CachedFeed",
    "CachedFeedCore",
    "FeedCore",
    "TrainingFeed",
    "build_cache",
    "cache_fingerprint",
    "dihedral",
    "is_complete",
    "make_cached_feed",
    "make_feed",
    "resize_for_model",
]


def __getattr__(name: str):
    if name == "TrainingFeed":
        from allnet_core.feed.stream import _feed_class

        return _feed_class()
    if name == "CachedFeed":
        from allnet_core.feed.cached import _cached_feed_class

        return _cached_feed_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["CachedFeed", "TrainingFeed"])
