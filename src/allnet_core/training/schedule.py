"""The learning-rate schedule and early stopping of a fold: Keras' own
``ReduceLROnPlateau`` and ``EarlyStopping``, made resumable.

Both watch :attr:`TrainConfig.monitor <allnet_core.training.TrainConfig.monitor>`, which the
fold's callback (:mod:`~allnet_core.training.callbacks`) puts into every epoch's logs. Their
state (epochs without improvement, the best score, the learning rate) is a function of the
fold's validation history, which ``state.json`` commits with every checkpoint. So, rather
than saving the callbacks' counters, each callback is rebuilt when training (re)starts:
the learning rate is set back to ``lr`` and the committed epochs are replayed through the
callback, which leaves it, and the optimizer's rate, exactly where the uninterrupted run
had them after those epochs.
"""

from __future__ import annotations

from typing import Any

from allnet_core.training.config import TrainConfig

__all__: list[str] = []

#: The ``plateau`` schedule halves the learning rate, down to ``lr / 32``.
PLATEAU_FACTOR, PLATEAU_FLOOR = 0.5, 1 / 32


def _mode(config: TrainConfig) -> str:
    return "min" if config.monitor == "val_loss" else "max"


def _resumable(base: type, config: TrainConfig, history: list[dict[str, Any]],
               sets_lr: bool = False) -> type:
    """``base`` (a Keras callback class) that replays ``history`` when training begins,
    from the learning rate ``lr`` when it is the one that ``sets_lr``."""

    class Resumable(base):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if sets_lr:
                self.model.optimizer.learning_rate = config.lr
            for row in history:  # the committed epochs, as they were seen then
                super().on_epoch_end(int(row["epoch"]) - 1,
                                     {config.monitor: float(row[config.monitor])})

        def on_epoch_end(self, epoch, logs=None):
            if config.monitor in (logs or {}):  # not an epoch cut short by a cancel
                super().on_epoch_end(epoch, logs)

    Resumable.__name__ = Resumable.__qualname__ = f"Resumable{base.__name__}"
    return Resumable


def fold_schedule(model, config: TrainConfig, history: list[dict[str, Any]]):
    """``(callbacks, stopped)``: the fold's schedule and early-stopping callbacks, rebuilt
    from its committed ``history``, and whether that history already ends the fold (it
    was stopped early, then interrupted before the fold was finished)."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    callbacks = []
    if config.lr_schedule == "plateau":
        cls = _resumable(keras.callbacks.ReduceLROnPlateau, config, history, sets_lr=True)
        callbacks.append(cls(monitor=config.monitor, mode=_mode(config),
                             factor=PLATEAU_FACTOR, patience=config.lr_patience,
                             min_delta=0.0, min_lr=config.lr * PLATEAU_FLOOR, verbose=0))
    stopped = False
    if config.early_stopping:
        cls = _resumable(keras.callbacks.EarlyStopping, config, history)
        stopper = cls(monitor=config.monitor, mode=_mode(config),
                      patience=config.early_stopping, min_delta=0.0, verbose=0)
        stopper.set_model(model)
        stopper.on_train_begin()  # fit calls it again; here: does the history end the fold?
        stopped = stopper.stopped_epoch > 0
        model.stop_training = False
        callbacks.append(stopper)
    return callbacks, stopped
