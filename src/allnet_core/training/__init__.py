"""Training ALLNet: hold-out split, k-fold cross-validation, resumable run folders.

The protocol of :func:`cross_validate` (defaults are the paper's, see :class:`TrainConfig`):

1. Split off a class-stratified hold-out set. With ``split="subject"`` (the default) the
   split is grouped by subject: no donor's cells are on both sides
   (:class:`sklearn.model_selection.StratifiedGroupKFold`; the hold-out is one of its
   ``round(1 / holdout)`` folds). With ``split="image"`` cells are split one by one, as the
   paper did (:func:`sklearn.model_selection.train_test_split`); the report then says that
   subjects are shared between splits.
2. Split the rest into ``folds`` folds the same way (``StratifiedGroupKFold`` or
   ``StratifiedKFold``).
3. For each fold, balance and augment the *training* part only
   (:func:`allnet_core.augment.balance_plan`, ``per_class`` images per class) and validate on
   the untouched validation part after every epoch. The epoch with the best validation
   score (``monitor``: F1 by default, or loss) is the fold's model; optionally the learning
   rate halves on a plateau and the fold stops early (:mod:`~allnet_core.training.schedule`).
4. The fold with the best validation score is scored on the hold-out set.
5. Every fold, the mean and standard deviation over folds, and the hold-out are reported
   (``report.md``, ``report.json``, ``curves.png``, ``confusion.png``).

Run folder (every file is written atomically: a crash never leaves a half-written file)::

    config.json  environment.json  splits.csv  report.md  report.json  curves.png
    confusion.png
    fold_<k>/plan.csv history.csv metrics.json model.keras
    fold_<k>/state.json ckpt_e<NNN>.keras   (only while the fold is unfinished)
    fold_<k>/train_cache.npy val_cache.npy  (feed="cached", only while the fold trains)
    holdout/metrics.json predictions.csv per_subject.csv
    .lock  .lock.owner   (the run's lock, held while a process trains in it; the owner
                          file, which names that process, only while it is held)

A run folder is locked while a process trains in it (an OS-level lock on ``.lock``,
released on any exit, SIGKILL included): a second writer is refused with
:class:`~allnet_core.errors.RunInUseError`, naming the process that holds it.

Resuming (``resume=True``) skips folds whose ``metrics.json`` exists and continues an
unfinished fold from the checkpoint named in its ``state.json``. ``state.json`` is the
commit point of an epoch: it is written after the epoch's checkpoint, so a process killed
at any moment loses at most the epoch it was in.

Batch size is global: with several devices (``tf.distribute.MirroredStrategy`` over GPUs
on TensorFlow, ``keras.distribution.DataParallel`` over all devices on JAX) each of ``n``
replicas sees ``batch_size / n`` images per step, and the learning rate is not rescaled.

Modules, in the order of the data flow:

- :mod:`~allnet_core.training.profiles`: :data:`PROFILES` (``paper``, ``quick``, ``cpu``)
  and what each is for.
- :mod:`~allnet_core.training.config`: :class:`TrainConfig`,
  :func:`config_from_request` (how the CLI and the worker turn a request into a config).
- :mod:`~allnet_core.training.estimate`: how long a run takes (the one estimator).
- :mod:`~allnet_core.training.splits`: :func:`check_dataset`, :func:`make_splits`.
- :mod:`~allnet_core.training.feeds`: each fold's feeds, cached (built once on disk) or
  streamed.
- :mod:`~allnet_core.training.runtime`: precision policy, devices, model building,
  :func:`load_model`, :func:`predict_p_all`.
- :mod:`~allnet_core.training.callbacks`: per-epoch scoring, selection and commit.
- :mod:`~allnet_core.training.schedule`: learning-rate schedule and early stopping (Keras'
  callbacks, rebuilt from the committed history on resume).
- :mod:`~allnet_core.training.rundir`: the run folder on disk.
- :mod:`~allnet_core.training.loop`: :func:`cross_validate`.
"""

from __future__ import annotations

from allnet_core.training.config import (
    FEEDS,
    LR_SCHEDULES,
    MONITORS,
    PRECISIONS,
    PROFILES,
    RUNTIME_FIELDS,
    SPLITS,
    TrainConfig,
    config_from_request,
    resume_config,
)
from allnet_core.training.loop import TrainResult, cross_validate
from allnet_core.training.runtime import _dtype_policy, load_model, predict_p_all  # noqa: F401  (benchmarks/train_speed.py)
from allnet_core.training.splits import check_dataset, make_splits

__all__ = [
    "FEEDS",
    "LR_SCHEDULES",
    "MONITORS",
    "PRECISIONS",
    "PROFILES",
    "RUNTIME_FIELDS",
    "SPLITS",
    "TrainConfig",
    "TrainResult",
    "check_dataset",
    "config_from_request",
    "cross_validate",
    "load_model",
    "make_splits",
    "predict_p_all",
    "resume_config",
]
