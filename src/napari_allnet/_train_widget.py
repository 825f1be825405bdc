"""The "Train ALLNet" widget: cross-validated training in the deep-learning worker process.

Every training field is named after a :class:`allnet_core.training.TrainConfig` field and
its type, default and profile values come from ``TrainConfig`` and
:data:`~allnet_core.training.PROFILES` (nothing is copied here). Before training starts,
the dataset is checked in this process with :func:`allnet_core.datasets.scan` and
:func:`allnet_core.training.check_dataset` (empty folder, one class, too few subjects for
the folds), so problems show at once. Training itself runs in the worker process
(:func:`allnet_core.training.cross_validate`), watched by a ``thread_worker``: a napari
progress bar over folds and epochs, live fold/epoch/loss/accuracy, and a Cancel that stops
at the next batch and leaves a run that "resume" continues.

The profile starts as ``cpu`` (real cells in under an hour on a CPU) and switches to
``paper`` when the worker reports a GPU, unless the user chose a profile. Under the profile
one line says what it is for, its input size, epochs and expected time on the device;
below the fields, an estimate of the run's length follows the profile, the fields and the
device (both from :mod:`allnet_core.training.estimate`). Messages from core code that name
command-line flags are shown with the widget's field names ("use --folds 3" -> "set
'folds' to 3").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
    Table,
)

from napari_allnet import _session as session
from napari_allnet._job_widget import JobWidget, full_width, wrap_text
from napari_allnet._train_summary import (
    METRICS,
    compact_table,
    metrics_table,
    model_verdict,
    plain_table,
)
from napari_allnet._wording import in_field_words

if TYPE_CHECKING:
    import napari

__all__ = ["METRICS", "TRAIN_FIELDS", "TrainWidget", "metrics_table", "run_training"]

#: The TrainConfig fields shown in the widget (others come from the chosen profile).
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "folds", "holdout", "split", "input_size",
                "per_class", "seed")
_LABELS = {"lr": "learning rate", "holdout": "hold-out fraction", "split": "split by",
           "per_class": "images per class", "input_size": "input size (px)",
           "batch_size": "batch size"}
#: Command-line flags (without dashes) of the other controls, with the widget's labels.
_CONTROL_LABELS = {"data": "dataset folder", "out": "run folder", "profile": "profile",
                   "resume": "resume"}
#: The profile on a CPU (or before the device is known), and on a GPU.
CPU_PROFILE, GPU_PROFILE = "cpu", "paper"
_STEPS = {"lr": 1e-6, "holdout": 0.05}
_LIMITS = {"holdout": (0.05, 0.95), "lr": (1e-8, 1.0)}


def _config_fields() -> dict[str, dataclasses.Field]:
    from allnet_core.training import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def _field_widget(name: str, default: Any):
    """A magicgui widget for one TrainConfig field, chosen from its default's type."""
    label = _LABELS.get(name, name.replace("_", " "))
    if name == "split":
        from allnet_core import training

        choices = list(training.SPLITS)
        return ComboBox(name=name, label=label, choices=choices, value=default,
                        tooltip="subject: no donor's cells in two splits (honest); image: "
                                "cells split one by one, as the paper did")
    if isinstance(default, bool):
        return CheckBox(name=name, text=label, value=default)
    if isinstance(default, int):
        lo = 0 if name == "seed" else 1
        return SpinBox(name=name, label=label, min=lo, max=10_000_000, value=default)
    if isinstance(default, float):
        lo, hi = _LIMITS.get(name, (0.0, 1e6))
        return FloatSpinBox(name=name, label=label, min=lo, max=hi,
                            step=_STEPS.get(name, 0.01), value=default)
    raise TypeError(f"no widget for TrainConfig field {name!r} of type {type(default)}")


def check_dataset_folder(data: str | Path, config) -> list[str]:
    """Problems of a dataset folder found before training (errors raise DatasetError).

    Returns the warnings (as text). Decoding every image is left to the worker, which
    does it before its first epoch.
    """
    from allnet_core.datasets import scan
    from allnet_core.training import check_dataset

    report = scan(data, verify=False, duplicates=False)
    report.raise_if_errors()
    check_dataset(report.table, config)
    return [str(w) for w in report.warnings]


def run_training(client, data: str, out: str, config: dict[str, Any], resume: bool,
                 cancel=None):
    """Generator run in a ``thread_worker``: check, ask for the device, train.

    Yields dicts: ``{"kind": "warnings", ...}``, ``{"kind": "device_info", ...}`` and the
    trainer's progress events; returns the worker's result (``run_dir``, ``best_model``,
    ``folds``, ``holdout`` ...) or ``{"cancelled": message}``.
    """
    from allnet_core.training import TrainConfig

    warnings = check_dataset_folder(data, TrainConfig.from_dict(config))
    if warnings:
        yield {"kind": "warnings", "warnings": warnings}
    yield {"kind": "stage", "stage": "starting the worker"}
    info = client.call("device_info", cancel=cancel).get("result")  # Cancel stops start-up
    if info is not None:
        yield {"kind": "device_info", **info}
    if cancel is not None and cancel.is_set():
        return {"cancelled": "cancelled before training started", "run_dir": str(out)}
    result = yield from client.events("train", cancel=cancel, data=str(data), out=str(out),
                                      config=config, resume=bool(resume))
    if "cancelled" in result:
        result["run_dir"] = str(out)
    return result


def flag_labels() -> dict[str, str]:
    """``{command-line flag without dashes: field label}`` for this widget's fields."""
    fields = {name.replace("_", "-"): _LABELS.get(name, name.replace("_", " "))
              for name in TRAIN_FIELDS}
    return {**fields, **_CONTROL_LABELS}


class TrainWidget(JobWidget):
    """Train ALLNet on a dataset folder with hold-out + k-fold cross-validation."""

    task = "Train ALLNet"
    failed_status = "Stopped"
    refused_status = "Cannot start"
    cancelling_status = "Cancelling at the next batch..."

    def __init__(self, viewer: napari.viewer.Viewer):
        from allnet_core.training import PROFILES, TrainConfig

        super().__init__(viewer)
        self._epochs = 1
        self._device_type: str | None = None  # "CPU" or "GPU" once the worker said
        self._profile_chosen = False  # True once the user picked a profile
        self._training = False  # a run is going: its config is fixed
        self.result: dict[str, Any] | None = None
        self.last_epoch: tuple[int, int] | None = None  # (fold, epoch) of the last epoch_end
        self.data = FileEdit(label="dataset folder", mode="d",
                             tooltip="C-NMC layout or class folders (all/, hem/)")
        self.out = FileEdit(label="run folder", mode="d",
                            tooltip="Where config, models, metrics and report.md are written")
        from allnet_core.training.estimate import profile_line

        profiles = sorted(PROFILES)
        self.profile = ComboBox(
            name="profile", label="profile", choices=profiles,
            value=CPU_PROFILE if CPU_PROFILE in profiles else profiles[0],
            tooltip="\n".join(profile_line(name) for name in profiles))
        self.profile_about = Label(value="")
        defaults = TrainConfig()
        self.fields = {name: _field_widget(name, getattr(defaults, name))
                       for name in TRAIN_FIELDS if name in _config_fields()}
        self.resume = CheckBox(text="resume the run in the run folder", value=False)
        self.device = Label(label="device", value="found when training starts")
        self.detect_button = PushButton(text="Detect device")
        self.estimate = Label(value="")
        self.start_button = PushButton(text="Start")
        self.cancel_button = PushButton(text="Cancel")
        self._controls(self.start_button, self.detect_button, cancel=self.cancel_button)
        self.live = Label(value="")
        self.summary = Table(value={"data": [], "columns": list(METRICS)}, label="summary")
        self.summary.visible = False
        plain_table(self.summary)
        wrap_text(self.live, self.device, self.estimate, self.profile_about)
        self.open_button = PushButton(text="Open report folder", enabled=False)
        self.extend([self.data, self.out, self.profile, self.profile_about,
                     *self.fields.values(), self.resume,
                     self.device, self.detect_button, self.estimate, self.start_button,
                     self.cancel_button, self.status, self.live, self.summary,
                     self.open_button])
        full_width(self.profile_about, self.estimate, self.status, self.live, self.summary)
        self.profile.changed.connect(self._on_profile_chosen)
        for widget in self.fields.values():
            widget.changed.connect(self._update_estimate)
        self.start_button.changed.connect(self.start)
        self.open_button.changed.connect(self.open_report_folder)
        self.detect_button.changed.connect(self.detect_device)
        self._apply_profile(self.profile.value)

    # ------------------------------------------------------------------ config
    def _on_profile_chosen(self, profile: str) -> None:
        self._profile_chosen = True
        self._apply_profile(profile)

    def _apply_profile(self, profile: str) -> None:
        from allnet_core.training import TrainConfig

        cfg = TrainConfig.from_profile(profile)
        for name, widget in self.fields.items():
            with widget.changed.blocked():
                widget.value = getattr(cfg, name)
        self._update_estimate()

    def _update_estimate(self, *_: Any) -> None:
        """Show what the profile is for and how long the form's run would take on the
        (known or assumed) device."""
        from allnet_core.errors import AllnetError
        from allnet_core.training.estimate import estimate_text, profile_line

        self.profile_about.value = profile_line(self.profile.value, self._device_type)
        try:
            self.estimate.value = estimate_text(self.config(), self._device_type)
        except (AllnetError, ValueError) as exc:
            self.estimate.value = f"No estimate: {self._wording(str(exc))}"

    def _wording(self, text: str) -> str:
        return in_field_words(text, flag_labels(), ticks=("resume",))

    def config(self) -> dict[str, Any]:
        """The TrainConfig fields of the form: profile values overridden by the fields."""
        from allnet_core.training import TrainConfig

        values = {name: w.value for name, w in self.fields.items()}
        return TrainConfig.from_profile(self.profile.value, **values).to_dict()

    @property
    def client(self):
        """The session's training worker client."""
        return session.get_client("train")

    # ------------------------------------------------------------------ actions
    def detect_device(self) -> None:
        """Ask the worker which Keras backend and device training would use."""
        if self.busy:
            return

        def ask(client):
            return client.call("device_info").get("result")

        self.device.value = "asking the worker..."
        self._launch(ask, self.client, returned=self._show_device)

    def start(self) -> None:
        """Check the dataset, then train in the worker process (non-blocking)."""
        from allnet_core.errors import AllnetError

        if self.busy:
            return
        data, out = str(self.data.value), str(self.out.value)
        if not data or data == "." or not Path(data).is_dir():
            self._refuse(f"Train ALLNet: choose a dataset folder ({data!r} is not a folder)")
            return
        if not out or out == ".":
            self._refuse("Train ALLNet: choose a run folder for the results")
            return
        try:
            config = self.config()
        except AllnetError as exc:
            self._refuse(f"Train ALLNet: {exc}")
            return
        self.result = None
        self.summary.visible = False
        self.open_button.enabled = False
        self._epochs = config["epochs"]
        self.status.value = "Checking the dataset..."
        self.live.value = ""
        self._training = True
        self._launch(run_training, self.client, data, out, config, self.resume.value,
                     yielded=self._on_event, returned=self._finished,
                     progress=config["folds"] * config["epochs"], cancellable=True)

    def _done(self) -> None:
        super()._done()
        self._training = False
        self._update_estimate()

    def open_report_folder(self, *_: Any) -> bool:
        """Open the run folder in the system's file browser."""
        from qtpy.QtCore import QUrl
        from qtpy.QtGui import QDesktopServices

        folder = (self.result or {}).get("run_dir") or str(self.out.value)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(folder).resolve())))

    # ------------------------------------------------------------------ events
    def _show_device(self, info: dict[str, Any] | None) -> None:
        if not info:
            return
        devices = info.get("devices") or []
        used = info.get("device_used", "CPU")
        name = next((d.get("name", "") for d in devices if d.get("type") == used), "")
        self.device.value = f"Keras {info.get('keras_backend', '?')} backend on {used}" + (
            f" ({name})" if name else "")
        self._device_known(used)

    def _device_known(self, device: str) -> None:
        """Follow the device: the GPU profile on a GPU (unless the user chose one), and
        the estimate for that device. Not while a run is going: its config is fixed."""
        self._device_type = "GPU" if "GPU" in str(device).upper() else "CPU"
        if self._training:
            return
        wanted = GPU_PROFILE if self._device_type == "GPU" else CPU_PROFILE
        if (not self._profile_chosen and wanted in self.profile.choices
                and self.profile.value != wanted):
            with self.profile.changed.blocked():
                self.profile.value = wanted
            self._apply_profile(wanted)
        else:
            self._update_estimate()

    def _on_event(self, event: dict[str, Any]) -> None:
        from napari.utils.notifications import show_warning

        kind = event.get("kind")
        if kind == "warnings":
            show_warning("Train ALLNet: dataset warnings:\n" + "\n".join(event["warnings"]))
        elif kind == "stage":
            self.status.value = f"{str(event['stage']).capitalize()}..."
        elif kind == "device_info":
            self._show_device(event)
        elif kind == "device":
            self.device.value = (f"Keras {event.get('backend')} backend on "
                                 f"{event.get('device')} ({event.get('name')}), "
                                 f"{event.get('precision')}")
            self._device_known(str(event.get("device", "CPU")))
        elif kind == "start":
            self.status.value = (f"Training: {event.get('n_images')} images, "
                                 f"{event.get('folds')} folds x {event.get('epochs')} epochs"
                                 + (" (resumed)" if event.get("resumed") else ""))
        elif kind == "fold_start":
            self._progress_to((event["fold"] - 1) * self._epochs + event.get("start_epoch", 1) - 1)
            self.live.value = f"fold {event['fold']}/{event['folds']}: starting"
        elif kind == "batch_end":
            self.live.value = (
                f"fold {event['fold']}/{event['folds']} · epoch {event['epoch']}/"
                f"{event['epochs']} · batch {event['batch']}/{event['batches']} · "
                f"loss {event.get('loss', float('nan')):.4f} · "
                f"accuracy {event.get('accuracy', float('nan')):.3f}")
        elif kind == "epoch_end":
            self._progress_to((event["fold"] - 1) * self._epochs + event["epoch"])
            self.live.value = (
                f"fold {event['fold']}/{event['folds']} · epoch {event['epoch']}/"
                f"{event['epochs']} · loss {event.get('loss', float('nan')):.4f} · "
                f"accuracy {event.get('accuracy', float('nan')):.3f} · val accuracy "
                f"{event.get('val_accuracy', float('nan')):.3f} · val F1 "
                f"{event.get('val_f1', float('nan')):.3f}")
            self.last_epoch = (event["fold"], event["epoch"])
        elif kind in ("fold_end", "fold_skipped"):
            self._progress_to(event["fold"] * self._epochs)
        elif kind == "holdout_start":
            self.status.value = f"Scoring fold {event.get('fold')}'s model on the hold-out..."

    def _finished(self, result: dict[str, Any] | None) -> None:
        from napari.utils.notifications import show_info

        if result is None:
            return
        self.result = result
        if "cancelled" in result:
            why = self._wording(str(result["cancelled"]))
            self.status.value = (f"Cancelled: {why}. Completed epochs are in "
                                 f"{result.get('run_dir')}; tick 'resume' and Start to continue.")
            self.resume.value = True
            self.open_button.enabled = True
            show_info(f"Train ALLNet: {why}")
            return
        self.summary.value = metrics_table(result.get("folds") or [], result.get("holdout"),
                                           result.get("best_fold"))
        self.summary.visible = True
        compact_table(self.summary)
        self.open_button.enabled = True
        text, offer = model_verdict(result)
        if offer:
            session.register_model(result["best_model"])
        self.status.value = text
