"""The training configuration: :class:`TrainConfig`, its presets, and the one way a request
(``allnet train`` flags, a worker ``train`` request from napari) becomes a config.

Only the standard library, NumPy and :mod:`allnet_core.errors` /
:mod:`allnet_core.validation` are imported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allnet_core.errors import ConfigError
from allnet_core.training._values import _typed
from allnet_core.training.profiles import PROFILES
from allnet_core.validation import check_choice

__all__ = [
    "FEEDS",
    "LOSSES",
    "LR_SCHEDULES",
    "MONITORS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PROFILES",
    "RUNTIME_FIELDS",
    "SPLITS",
    "TrainConfig",
    "config_from_request",
    "resume_config",
]

#: Values of :attr:`TrainConfig.split`.
SPLITS: tuple[str, ...] = ("subject", "image")
#: Values of :attr:`TrainConfig.precision`.
PRECISIONS: tuple[str, ...] = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")
#: Values of :attr:`TrainConfig.feed`.
FEEDS: tuple[str, ...] = ("cached", "stream")
#: Values of :attr:`TrainConfig.optimizer`: Keras optimizer names.
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta",
                               "adamax", "nadam", "ftrl", "lion")
#: Values of :attr:`TrainConfig.loss`: Keras losses for one-hot targets and a softmax output.
LOSSES: tuple[str, ...] = ("categorical_crossentropy", "categorical_focal_crossentropy",
                           "kl_divergence", "categorical_hinge")
#: Fields that do not change what is computed: they may differ when a run is resumed.
RUNTIME_FIELDS: tuple[str, ...] = ("workers", "cache_bytes", "checkpoint_every", "profile",
                                   "feed", "cache_dir")

#: Values of :attr:`TrainConfig.monitor`: the validation score that picks a fold's best epoch.
MONITORS: tuple[str, ...] = ("val_f1", "val_loss")
#: Values of :attr:`TrainConfig.lr_schedule`.
LR_SCHEDULES: tuple[str, ...] = ("constant", "plateau")

# Numeric fields and the range each must lie in, checked in this order by validate().
_RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "lr": ("> 0", lambda v: v > 0),
    "batch_size": (">= 1", lambda v: v >= 1),
    "epochs": (">= 1", lambda v: v >= 1),
    "holdout": ("in (0, 1)", lambda v: 0.0 < v < 1.0),
    "folds": (">= 2", lambda v: v >= 2),
    "per_class": (">= 1", lambda v: v >= 1),
    "input_size": (">= 9", lambda v: v >= 9),
    "conv_dropout": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "dense_dropout": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "dense_units": (">= 1", lambda v: v >= 1),
    "bn_momentum": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "lr_patience": (">= 1", lambda v: v >= 1),
    "early_stopping": (">= 0", lambda v: v >= 0),
    "stain_jitter": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "checkpoint_every": (">= 1", lambda v: v >= 1),
    "workers": (">= 1", lambda v: v >= 1),
    "cache_bytes": (">= 0", lambda v: v >= 0),
    # seed * 1000 + fold * 100 + epoch seeds NumPy, which takes seeds below 2**32
    "seed": ("in [0, 4000000)", lambda v: 0 <= v < 4_000_000),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run; defaults are the paper's protocol.

    Every ``allnet train`` flag and every field of the napari "Train ALLNet" widget has the
    name of one of these fields (``--batch-size`` -> ``batch_size``).

    Attributes
    ----------
    optimizer : str
        Keras optimizer name (``"adam"`` in the paper).
    lr : float
        Learning rate (1e-5).
    batch_size : int
        Global batch size (16); split across GPUs when there are several.
    epochs : int
        Epochs per fold (65).
    loss : str
        Keras loss name (``"categorical_crossentropy"``).
    holdout : float
        Fraction of the data kept out of cross-validation (0.2). With ``split="subject"``
        it is realised as one of ``round(1 / holdout)`` subject-grouped folds.
    folds : int
        Cross-validation folds on the rest (5).
    per_class : int
        Training images per class after balancing and augmentation (6000).
    input_size : int
        Side of the square model input (450).
    split : {"subject", "image"}
        ``"subject"`` keeps every subject's cells on one side of every split (honest);
        ``"image"`` splits cells one by one as the paper did. See :data:`SPLITS`.
    seed : int
        Seed of splits, balancing, augmentation, shuffling and weight initialisation.
    precision : {"float32", "mixed", "mixed_float16", "mixed_bfloat16"}
        ``"mixed"`` means ``mixed_bfloat16`` where the device computes in bfloat16 (CPUs,
        NVIDIA GPUs from compute capability 8.0, Ampere, on) and ``mixed_float16`` (with
        automatic loss scaling) on older GPUs. The softmax output stays float32. See
        :data:`PRECISIONS`.
    conv_dropout, dense_dropout : float
        Dropout rates (the paper gives none; see :mod:`allnet_core.model`).
    dense_units : int
        Width of the two hidden dense layers (4096 in the paper; smaller in ``quick``).
    bn_momentum : float
        Momentum of the batch-normalisation moving statistics (Keras' 0.99 by default).
        Short runs with few steps per epoch (the ``quick`` profile) use 0.9, otherwise the
        moving statistics used at validation lag far behind the weights.
    augment : bool
        Apply the paper's augmentations to the balanced training set (``True``). When
        ``False`` minority classes are filled with unaugmented repeats.
    checkpoint_every : int
        Save a resumable checkpoint every this many epochs (1: a crash loses at most one
        epoch). Larger values save disk time on fast GPUs.
    workers : int
        Threads reading batches for the training feed; with ``feed="cached"`` also the
        processes that build the image cache.
    cache_bytes : int
        Memory the on-the-fly feed may use to keep decoded images (0: none).
    feed : {"cached", "stream"}
        ``"cached"`` (default) builds each fold's balanced, augmented training set and its
        validation set once as ``uint8`` arrays on disk (``S * S * 3`` bytes per image:
        12,000 cells at 450 px take 7.3 GB) and only shuffles and reads them each epoch:
        the paper's augment-once protocol, fast enough for a GPU. ``"stream"`` reads,
        augments and resizes every batch from the image files (no extra disk, tens of
        450 px images per second per core). Both compute the same images (the cache
        rounds resized images to whole grey levels). See :data:`FEEDS`.
    cache_dir : str or None
        Folder of the image caches. ``None``: each fold's own folder in the run
        (``fold_<k>/train_cache.npy``, ``val_cache.npy``), deleted when the fold is
        complete. A folder: caches are named by their content's fingerprint, kept, and
        reused by any run that needs the same images.
    epoch_flips : bool
        Flip and turn every training image by a random symmetry of the square, anew every
        epoch (cheap, on the batch). Off in the paper's protocol.
    monitor : {"val_f1", "val_loss"}
        The validation score that picks each fold's best epoch (its weights become the
        fold's model) and the best fold, and that early stopping and the ``plateau``
        schedule watch: F1 (ties: lower loss) or cross-entropy (ties: higher F1).
    lr_schedule : {"constant", "plateau"}
        ``"plateau"``: halve the learning rate after ``lr_patience`` epochs without
        improvement, down to ``lr / 32`` (Keras' ``ReduceLROnPlateau``; beyond the paper).
    lr_patience : int
        Epochs without improvement before the ``plateau`` schedule halves the rate.
    early_stopping : int
        Stop a fold after this many epochs without improvement (Keras' ``EarlyStopping``),
        keeping its best epoch. 0 (the paper): train all ``epochs``.
    stain_jitter : float
        Scale the red, green and blue of every training image by random factors in
        ``[1 - s, 1 + s]``, anew every epoch (stain and camera differences between labs;
        beyond the paper). 0: off.
    profile : str
        Name of the preset the values came from (informational; see :data:`PROFILES`).
    """

    optimizer: str = "adam"
    lr: float = 1e-5
    batch_size: int = 16
    epochs: int = 65
    loss: str = "categorical_crossentropy"
    holdout: float = 0.2
    folds: int = 5
    per_class: int = 6000
    input_size: int = 450
    split: str = "subject"
    seed: int = 0
    precision: str = "float32"
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    dense_units: int = 4096
    bn_momentum: float = 0.99
    augment: bool = True
    checkpoint_every: int = 1
    workers: int = 2
    cache_bytes: int = 0
    feed: str = "cached"
    cache_dir: str | None = None
    epoch_flips: bool = False
    monitor: str = "val_f1"
    lr_schedule: str = "constant"
    lr_patience: int = 2
    early_stopping: int = 0
    stain_jitter: float = 0.0
    profile: str = "paper"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first value of a wrong type or out of range.

        Integer fields take whole numbers (``2.0`` becomes ``2``; ``2.5``, ``True``, ``"3"``
        are refused), float fields finite numbers (no NaN or infinity), ``augment`` a bool,
        the others strings; NumPy scalars become plain Python values.
        """
        for f in dataclasses.fields(self):
            setattr(self, f.name, _typed(f.name, getattr(self, f.name), f.type))
        for name, (rule, ok) in _RANGES.items():
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"{name} must be {rule}, got {value!r}")
        check_choice(self.split, SPLITS, "split")
        check_choice(self.precision, PRECISIONS, "precision")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.loss, LOSSES, "loss")
        check_choice(self.feed, FEEDS, "feed")
        check_choice(self.monitor, MONITORS, "monitor")
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")

    @classmethod
    def from_profile(cls, profile: str = "paper", **overrides: Any) -> TrainConfig:
        """A config from a preset of :data:`PROFILES`, with some fields overridden
        (``None`` values are ignored).

        Examples
        --------
        >>> TrainConfig.from_profile("quick", epochs=2).epochs
        2
        """
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        values = {**PROFILES[profile], "profile": profile}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text of the fields (what ``config.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error that names them."""
        _check_field_names(values)
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> TrainConfig:
        """Build from JSON text or from a ``config.json`` file."""
        text, where = str(text_or_path), None
        if not text.lstrip().startswith("{"):
            where = Path(text_or_path)
            try:
                text = where.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}: cannot read the config ({exc})") from exc
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{where or 'config'}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(values)
        except ConfigError as exc:
            if where is None:
                raise
            raise ConfigError(f"{where}: {exc}") from None


def _check_field_names(values: Mapping[str, Any]) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError("a training config must be a mapping (a JSON object) of TrainConfig "
                          f"fields, got {type(values).__name__} {values!r:.80}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")


def config_from_request(fields: Mapping[str, Any], profile: str | None = None,
                        resume_dir: str | os.PathLike | None = None) -> TrainConfig:
    """The config a training request asks for: how ``allnet train`` and the worker's
    ``train`` request (the napari widget) both build it.

    Parameters
    ----------
    fields : mapping
        :class:`TrainConfig` field values by name; ``None`` means "not given". A
        ``"profile"`` entry (as in ``TrainConfig.to_dict()``) counts as ``profile``.
    profile : str, optional
        The preset of :data:`PROFILES` whose values fill the fields not given: ``"paper"``
        for a new run, the run's own profile when resuming.
    resume_dir : path-like, optional
        The run folder to continue, or ``None`` for a new run. Without a ``config.json``
        in it (nothing started yet) the request is a new run.

    Returns
    -------
    TrainConfig
        For a new run, ``TrainConfig.from_profile(profile or "paper", **fields)``. When
        resuming, the run's saved ``config.json`` with the runtime fields
        (:data:`RUNTIME_FIELDS`: ``workers``, ``cache_bytes``, ``checkpoint_every``,
        ``feed``, ``cache_dir``) of the request applied. Any other field is ignored when it
        equals its profile's value: a form sends every field, most of them untouched
        defaults, so a run started with ``--dense-units 512`` resumes from a form showing
        the profile's 4096.

    Raises
    ------
    ConfigError
        A field name that :class:`TrainConfig` lacks (named), an unknown profile, a value
        out of range; when resuming, a profile other than the run's, or a field that
        changes what the run computes (named, with the run's and the asked value).

    Examples
    --------
    >>> config_from_request({"epochs": 3, "seed": None}, "quick").epochs
    3
    """
    _check_field_names(fields)
    values = {k: v for k, v in fields.items() if v is not None}
    in_fields = values.pop("profile", None)
    if profile is not None and in_fields is not None and profile != in_fields:
        raise ConfigError(f"the request names two profiles, {profile!r} and {in_fields!r}")
    profile = profile or in_fields
    saved_path = None if resume_dir is None else Path(resume_dir) / "config.json"
    if saved_path is None or not saved_path.is_file():
        return TrainConfig.from_profile(profile or "paper", **values)
    saved = TrainConfig.from_json(saved_path)
    if profile is not None and profile != saved.profile:
        raise ConfigError(
            f"{resume_dir} was started with profile {saved.profile!r}, not {profile!r}; "
            "resume it with that profile or without one (no --profile)")
    defaults = (TrainConfig.from_profile(saved.profile) if saved.profile in PROFILES
                else saved)
    asked = dataclasses.replace(saved, **{
        k: v for k, v in values.items()
        if k in RUNTIME_FIELDS or v != getattr(defaults, k)})
    check_same_computation(resume_dir, saved, asked)
    return asked


def check_same_computation(run_dir: str | os.PathLike, saved: TrainConfig,
                           asked: TrainConfig) -> None:
    """Raise :class:`ConfigError` if ``asked`` differs from the run's ``saved`` config in a
    field other than :data:`RUNTIME_FIELDS` (a resumed run must compute the same thing)."""
    diff = [f.name for f in dataclasses.fields(TrainConfig)
            if f.name not in RUNTIME_FIELDS
            and getattr(saved, f.name) != getattr(asked, f.name)]
    if diff:
        details = ", ".join(f"{n}: run has {getattr(saved, n)!r}, asked {getattr(asked, n)!r}"
                            for n in diff)
        raise ConfigError(
            f"{run_dir}: cannot resume with a different configuration ({details}); resume "
            "without changing these options, or start a new run with another --out")


def resume_config(run_dir: str | os.PathLike, profile: str | None = None,
                  **overrides: Any) -> TrainConfig:
    """The config to continue the run in ``run_dir`` with:
    ``config_from_request(overrides, profile, run_dir)`` (see :func:`config_from_request`).

    Without a run in ``run_dir`` yet, ``TrainConfig.from_profile(profile or "paper",
    **overrides)``.
    """
    return config_from_request(overrides, profile, run_dir)
