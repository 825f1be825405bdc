"""The feeds of one fold: the training feed and the validation feed, cached or streamed
(:attr:`TrainConfig.feed <allnet_core.training.TrainConfig>`).

With ``feed="cached"`` (the default) :func:`build_fold_caches` builds the fold's balanced,
augmented training set and its validation set once as ``uint8`` arrays on disk
(:func:`allnet_core.feed.build_cache`: in parallel, resumable, reused on ``--resume``),
and :func:`make_fold_feeds` reads them back every epoch. With ``feed="stream"`` every batch
is read, augmented and resized from the image files (:class:`allnet_core.feed.TrainingFeed`).

Caches live in the fold's folder (``fold_<k>/train_cache.npy``, ``val_cache.npy`` and their
``.json`` records) and are deleted when the fold is complete; with ``cache_dir`` they are
named by their content's fingerprint there, kept, and reused by any run that needs the same
images (a lock file serialises two runs that build the same cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from allnet_core.feed.cache import CacheInfo
from allnet_core.training.config import TrainConfig

__all__: list[str] = []

_PARTS = ("train", "val")


@dataclass
class FoldCaches:
    """The two caches of a fold and the labels of their rows."""

    train: CacheInfo
    train_labels: list
    val: CacheInfo
    val_labels: list


def _cache_path(config: TrainConfig, fold_dir: Path, part: str, paths: list,
                params: list) -> Path:
    if config.cache_dir is None:
        return fold_dir / f"{part}_cache.npy"
    from allnet_core.feed import cache_fingerprint

    fingerprint = cache_fingerprint(paths, params, config.input_size)
    return Path(config.cache_dir) / f"{part}_{config.input_size}px_{fingerprint[:24]}.npy"


def _build(run, fold: int, fold_dir: Path, part: str, paths: list, params: list) -> CacheInfo:
    from allnet_core.feed import build_cache

    config: TrainConfig = run.config
    path = _cache_path(config, fold_dir, part, paths, params)
    kwargs = dict(workers=config.workers, progress=run.progress, cancel=run.cancel,
                  fold=fold, folds=config.folds, part=part)
    if config.cache_dir is None:
        return build_cache(path, paths, params, config.input_size, **kwargs)
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        return build_cache(path, paths, params, config.input_size, **kwargs)


def build_fold_caches(run, fold: int, fold_dir: Path, train: pd.DataFrame, val: pd.DataFrame,
                      plan: pd.DataFrame) -> FoldCaches | None:
    """Build (or continue, or reuse) the fold's caches; None with ``feed="stream"``."""
    if run.config.feed != "cached":
        return None
    rows = plan["index"].to_numpy(int)
    paths = train["path"].astype(str).to_numpy()[rows].tolist()
    labels = train["label"].to_numpy()[rows].tolist()
    train_cache = _build(run, fold, fold_dir, "train", paths, plan["params"].tolist())
    val_paths = val["path"].astype(str).tolist()
    val_cache = _build(run, fold, fold_dir, "val", val_paths, ["{}"] * len(val_paths))
    return FoldCaches(train_cache, labels, val_cache, val["label"].tolist())


def make_fold_feeds(config: TrainConfig, train: pd.DataFrame, plan: pd.DataFrame, augmenter,
                    caches: FoldCaches | None, seed: int, epoch: int):
    """``(training feed, validation feed or None)``; call inside the distribution scope,
    whose replicas each batch is split over. Without a validation feed, validation reads
    the images with :func:`~allnet_core.training.runtime.predict_p_all`."""
    from allnet_core.training.runtime import _data_parallel, _feed

    replicas, shard = _data_parallel()
    if caches is None:
        feed = _feed(train, config, plan=plan, augmenter=augmenter, shuffle=True, seed=seed,
                     epoch=epoch, flips=config.epoch_flips, jitter=config.stain_jitter)
        return feed, None
    from allnet_core.feed import make_cached_feed

    feed = make_cached_feed(caches.train.path, caches.train_labels,
                            batch_size=config.batch_size, shuffle=True, seed=seed, epoch=epoch,
                            flips=config.epoch_flips, batch_multiple=replicas, shard=shard,
                            workers=config.workers, jitter=config.stain_jitter)
    val_feed = make_cached_feed(caches.val.path, caches.val_labels,
                                batch_size=config.batch_size * max(1, 64 // config.batch_size),
                                shuffle=False,
                                batch_multiple=replicas, pad=True, shard=shard,
                                workers=config.workers)
    return feed, val_feed


def remove_fold_caches(fold_dir: Path) -> None:
    """Delete the caches in a fold's folder (not those of a ``cache_dir``)."""
    for part in _PARTS:
        for suffix in (".npy", ".json"):
            (fold_dir / f"{part}_cache{suffix}").unlink(missing_ok=True)
