"""How long a training run takes: the one estimator, used by ``allnet train --help``, the
napari "Train ALLNet" widget (before Start) and the run report (expected beside actual).

The estimate is ``folds x epochs x 2 x per_class`` training images (the balanced training
part of every fold and epoch, so it does not grow with the number of cells) at a measured
training speed, times :data:`OVERHEAD` for validation after every epoch, checkpoints, the
image caches and the hold-out scoring. With early stopping, ``epochs`` is a maximum, so the
estimate is an upper bound.

Where the figures come from (all on 2 shared CPU cores, TensorFlow 2.21 CPU, batch 16):

* 64 px input, 256-unit dense layers (the ``quick`` profile's model): 86.2 images/s;
  64 px, 4096-unit dense layers: 34.7 images/s. ``docs/training.md``, section "Speed"
  (``python benchmarks/train_speed.py [--dense-units 256]``).
* 128 px input, 256-unit dense layers (the ``cpu`` profile's model): 17.9 images/s,
  ``python benchmarks/train_speed.py --input-size 128 --dense-units 256`` (load average
  about 2; docs/training.md, "Choosing a profile").
* 450 px input, 4096-unit dense layers (ALLNet as in the paper): 1.0 images/s.
  ``docs/augmentation.md``, the ``benchmarks/feed_speed.py`` row (ALLNet
  ``train_on_batch`` at 450x450).
* :data:`OVERHEAD` = 1.2: ``allnet demo`` (quick profile, 15 epochs x 3 folds x 600
  training images = 27,000 images) took 6.2 min (``docs/training.md``, "The demo"), which
  is 1.19 x the time of its training images alone at 86.2 images/s.

Other input sizes scale from the nearest measured size by the number of pixels (the
convolutions dominate). No GPU speed has been measured yet, so on a GPU the text says so
and gives the CPU figure as an upper bound.

Only the standard library is imported here.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CPU_SPEEDS", "OVERHEAD", "estimate_seconds", "estimate_text", "format_duration",
           "profile_line"]

#: Measured CPU training speeds, ``{(input_size, dense_units): images per second}``.
CPU_SPEEDS: dict[tuple[int, int], float] = {
    (64, 256): 86.2,
    (64, 4096): 34.7,
    (128, 256): 17.9,
    (450, 4096): 1.0,
}
#: Validation, checkpoints and hold-out scoring on top of the training images.
OVERHEAD = 1.2


def _speed(input_size: int, dense_units: int) -> float:
    """Training images/s on 2 CPU cores, from the nearest measured model."""
    def distance(key: tuple[int, int]) -> tuple[float, float]:
        size, dense = key
        return (abs(math.log(dense / dense_units)), abs(math.log(size / input_size)))

    size, dense = min(CPU_SPEEDS, key=distance)
    same_dense = {s: v for (s, d), v in CPU_SPEEDS.items() if d == dense}
    size = min(same_dense, key=lambda s: abs(math.log(s / input_size)))
    return same_dense[size] * (size / input_size) ** 2


def estimate_seconds(config: dict[str, Any]) -> float:
    """Seconds a run of ``config`` (TrainConfig fields) takes on 2 CPU cores, at most (all
    ``epochs`` of every fold)."""
    images = config["folds"] * config["epochs"] * 2 * config["per_class"]
    return OVERHEAD * images / _speed(int(config["input_size"]), int(config["dense_units"]))


def format_duration(seconds: float) -> str:
    """``"about 6 min"``, ``"about 2.5 h"``, ``"about 54 days"``."""
    minutes = seconds / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"about {hours:.1f} h"
    return f"about {hours / 24:.0f} days"


def _bound(config: dict[str, Any]) -> str:
    return "at most " if config.get("early_stopping") else ""


def estimate_text(config: dict[str, Any], device: str | None = None) -> str:
    """One line on the run's expected length on ``device`` ("CPU", "GPU" or None)."""
    images = config["folds"] * config["epochs"] * 2 * config["per_class"]
    cpu = _bound(config) + format_duration(estimate_seconds(config))
    work = (f"{config['folds']} folds x {config['epochs']} epochs x "
            f"{2 * config['per_class']:,} images ({images:,} at {config['input_size']} px)")
    if device == "GPU":
        return (f"Estimated length: {work}; no GPU speed has been measured yet, on 2 CPU "
                f"cores it would take {cpu}.")
    where = "the CPU" if device == "CPU" else "a CPU"
    return (f"Estimated length on {where}: {cpu} for {work} (speed measured on 2 cores; "
            "more cores are faster).")


def profile_line(name: str, device: str | None = None) -> str:
    """One line on a preset of :data:`~allnet_core.training.PROFILES`: what it is for, its
    input size, epochs and expected time on ``device`` ("CPU", "GPU" or None: a CPU)."""
    from allnet_core.training.config import TrainConfig
    from allnet_core.training.profiles import PROFILE_USES

    c = TrainConfig.from_profile(name).to_dict()
    epochs = f"up to {c['epochs']}" if c["early_stopping"] else str(c["epochs"])
    cpu = _bound(c) + format_duration(estimate_seconds(c))
    when = (f"GPU speed not measured, {cpu} on 2 CPU cores" if device == "GPU"
            else f"{cpu} on 2 CPU cores")
    return (f"{name}: {PROFILE_USES.get(name, '')}; {c['input_size']} px, {epochs} epochs x "
            f"{c['folds']} folds; {when}")
