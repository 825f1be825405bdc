"""The training presets (:data:`PROFILES`) and what each is for (:data:`PROFILE_USES`).

Only the standard library is imported here: ``allnet train --help`` lists the presets
without loading the training code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROFILES", "PROFILE_USES"]

#: Presets: values that differ from :class:`~allnet_core.training.TrainConfig`'s defaults.
#:
#: ``paper`` is the paper's protocol: nothing changed (Adam 1e-5, batch 16, 65 epochs, 450 px,
#: no early stopping, no learning-rate schedule, no stain jitter).
#:
#: ``quick`` is a CPU demo, *not* the paper's model: a small input (64 px), narrow dense
#: layers (256 units, about 3 M parameters), 3 folds, 300 images per class, 15 epochs, a
#: higher learning rate (1e-4) and a lower batch-norm momentum (0.9, for runs of a few
#: hundred steps), so that a subject-structured synthetic dataset trains in minutes on two
#: CPU cores (``allnet demo``). It keeps the dense dropout of 0.5: without it the demo
#: model's best epoch by validation F1 came early and under-confident (measured, see
#: ``docs/training.md``).
#:
#: ``cpu`` is for real cells on a CPU: 128 px, where the chromatin texture, nucleoli and
#: nuclear contour that separate blasts from normal lymphocytes survive (64 px averages them
#: away; 192 px would take more than twice as long), the quick profile's narrow model
#: without dropout after its 256-unit dense layers (with half of so few units dropped,
#: ALLNet learnt little of the synthetic cells' fine cues in 10 epochs; measured), 400
#: images per class and at most 20 epochs per fold, chosen so that the whole run fits in an
#: hour on two CPU cores whatever the number of cells (the balanced training set has the
#: same size; 17.9 training images/s measured at 128 px). The fold's best epoch is the one
#: of lowest validation loss (smoother than F1 on a few hundred validation cells), the
#: learning rate halves after 2 epochs without improvement, a fold stops after 5, and
#: every training image gets a random flip or quarter turn and a random stain shift anew
#: every epoch (beyond the paper).
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "input_size": 64,
        "dense_units": 256,
        "epochs": 15,
        "per_class": 300,
        "folds": 3,
        "batch_size": 16,
        "lr": 1e-4,
        "bn_momentum": 0.9,
        "cache_bytes": 512 * 2**20,
    },
    "cpu": {
        "input_size": 128,
        "dense_units": 256,
        "dense_dropout": 0.0,
        "epochs": 20,
        "per_class": 400,
        "folds": 3,
        "batch_size": 16,
        "lr": 1e-4,
        "bn_momentum": 0.9,
        "monitor": "val_loss",
        "lr_schedule": "plateau",
        "lr_patience": 2,
        "early_stopping": 5,
        "epoch_flips": True,
        "stain_jitter": 0.1,
    },
}

#: What each preset is for, in a few words (``allnet train --help`` and the napari widget).
PROFILE_USES: dict[str, str] = {
    "paper": "the paper's protocol (the default), for a GPU",
    "quick": "a CPU demo on synthetic cells (allnet demo), too coarse for real cells",
    "cpu": "real cells on a CPU: early stopping, learning-rate schedule, stain jitter",
}
