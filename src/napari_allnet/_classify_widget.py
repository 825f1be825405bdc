"""The "Classify cells" widget: ALL/HEM for every white cell of an RGB image.

Keras never loads into napari's process: the image (and the labels, when chosen) are
written to a temporary folder and the deep-learning worker process
(:mod:`allnet_core.worker`, through :class:`~allnet_core.worker.WorkerClient`)
classifies them with :mod:`allnet_core.inference`. A napari ``thread_worker`` only watches
that process, so the viewer stays responsive and Cancel works. If the worker crashes, a
notification shows why and no layer is touched.

Before and after a run the widget shows the model card's headline and warnings (untested,
leaky split, at chance; :func:`allnet_core.model.card.assess`), "research use only", and a
colour legend.

Output: a Labels layer ``"<image> classes"`` whose ``features`` hold one row per cell
(``label``, ``class``, ``call``, ``p_all``, ``oos_score``, ``area``, ...), filled by call
at a low opacity so the nuclei show through (ALL vermillion, HEM blue, uncertain grey, out
of scope unfilled); hovering a cell shows its row, P(ALL) and call included, in the status
bar. Out-of-scope cells are outlined in yellow on a Labels layer
``"<image> out of scope"``. Its ``metadata["allnet_image"]`` names the image (its
file name, else the layer's name): the exported CSV's ``image`` column. With
Grad-CAM, an Image layer ``"<image> Grad-CAM"`` lies over the image: inferno colours
whose opacity rises with the evidence (zero evidence is transparent), scaled to the
image's strongest evidence.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton, create_widget

from napari_allnet import _session as session
from napari_allnet._colors import (
    class_colormap,
    gradcam_colormap,
    legend_html,
    outline_colormap,
)
from napari_allnet._common import LayerProblem, layer_pixels, place_like, upsert_layer
from napari_allnet._job_widget import JobWidget, full_width, wrap_text
from napari_allnet._large import classify_large_layer
from napari_allnet._writer import IMAGE_KEY

if TYPE_CHECKING:
    import napari

__all__ = ["ClassifyWidget", "assessment_html", "image_name", "run_classification",
           "summary_line"]

MODEL_FILE = "model file"
SESSION_MODEL = "last model trained in this session"
#: Opacity of the class fill: low enough for the nuclear detail to show through.
CLASS_OPACITY = 0.35


def image_name(layer) -> str:
    """The image's file name (``layer.source.path``), else the layer's name."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return Path(str(path)).name if path else str(layer.name)


def summary_line(table) -> str:
    """``"n cells: n ALL, n HEM, n uncertain, n out of scope; ALL fraction among the k
    confident in-scope cells x % (95 % CI a to b %)"`` for a per-cell table."""
    from allnet_core.inference.calls import call_counts, counts_text

    calls = table["call"] if "call" in table else table["class"]
    return counts_text(call_counts(calls))


def assessment_html(headline: str, warnings) -> str:
    """The model card's headline and warnings as rich text (warnings in bold orange)."""
    from html import escape

    lines = [escape(headline)]
    lines += [f'<b style="color:#e69f00">&#9888; {escape(w)}</b>' for w in warnings]
    return "<br>".join(lines)


def run_classification(client, rgb: np.ndarray, labels: np.ndarray | None, model: str,
                       tta: bool = False, gradcam: bool = False, cancel=None):
    """Generator run in a ``thread_worker``: hand the job to the worker process.

    Yields the worker's progress events (dicts with ``"kind"``); returns a dict with
    ``labels``, ``table`` and ``heatmap`` (or ``{"cancelled": message}``). ``cancel`` is a
    :class:`~allnet_core.progress.CancelToken` that the Cancel button sets.
    """
    import pandas as pd
    import tifffile

    from allnet_core.io import write_tiff

    tmp = Path(tempfile.mkdtemp(prefix="allnet-classify-"))
    try:
        image_path = write_tiff(tmp / "image.tif", rgb, photometric="rgb")
        labels_path = None
        if labels is not None:
            labels_path = write_tiff(tmp / "input_labels.tif", labels.astype(np.int32))
        request = {"image_path": str(image_path), "model": str(model), "tta": bool(tta),
                   "gradcam": bool(gradcam), "out_dir": str(tmp / "out"),
                   "labels_path": None if labels_path is None else str(labels_path)}
        res = yield from client.events("classify", cancel=cancel, **request)
        if "cancelled" in res:
            return res
        out = {
            "labels": np.asarray(tifffile.imread(res["labels_path"])).astype(np.int32),
            "table": pd.read_csv(res["table_path"]),
            "heatmap": None,
        }
        if res.get("heatmap_path"):
            out["heatmap"] = np.asarray(tifffile.imread(res["heatmap_path"]), np.float32)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ClassifyWidget(JobWidget):
    """Classify the white cells of an RGB image layer as ALL (blast) or HEM (healthy)."""

    task = "Classify cells"
    failed_prefix = "Classify cells failed"
    failed_status = "Classification failed"
    refused_status = "Cannot classify"

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer)
        self.result_layer = None
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.labels = create_widget(annotation="napari.layers.Labels | None",
                                    label="cells (labels)",
                                    options={"tooltip": "Leave empty to segment automatically"})
        self.model_source = ComboBox(label="model", choices=[MODEL_FILE, SESSION_MODEL],
                                     value=SESSION_MODEL if session.last_model() else MODEL_FILE)
        self.model_file = FileEdit(label="model file", mode="r", filter="*.keras",
                                   tooltip="A .keras model (e.g. fold_k/model.keras of a run)")
        self.session_model = Label(label="session model", value=self._session_text())
        self.card_info = Label(value="")
        self.research = Label(value="<i>Research use only, not for diagnosis.</i>")
        self.legend = Label(value=legend_html())
        self.tta = CheckBox(text="test-time augmentation (flips and rotations)", value=False)
        self.gradcam = CheckBox(text="Grad-CAM heatmap", value=False)
        self.run_button = PushButton(text="Classify")
        self.cancel_button = PushButton(text="Cancel")
        self.summary = Label(value="")
        self.export_button = PushButton(text="Export CSV...", enabled=False)
        wrap_text(self.summary, self.session_model, self.card_info, self.legend)
        self._controls(self.run_button, cancel=self.cancel_button)
        self.extend([self.image, self.labels, self.model_source, self.model_file,
                     self.session_model, self.card_info, self.tta, self.gradcam,
                     self.run_button, self.cancel_button, self.status, self.summary,
                     self.legend, self.research, self.export_button])
        full_width(self.status, self.summary, self.card_info, self.legend, self.research)
        self.run_button.changed.connect(self.run)
        self.export_button.changed.connect(self._export_dialog)
        self.model_source.changed.connect(self._sync_model_fields)
        self.model_file.changed.connect(self._show_card)
        session.model_registered.connect(self._on_model_registered)
        self._sync_model_fields()

    # ------------------------------------------------------------------ model choice
    @staticmethod
    def _session_text() -> str:
        last = session.last_model()
        return last if last else "(none yet: train one with 'Train ALLNet')"

    def _on_model_registered(self, path: str) -> None:
        try:
            self.session_model.value = self._session_text()
            self.model_source.value = SESSION_MODEL
            self._show_card()
        except RuntimeError:  # the widget was closed: its Qt objects are gone
            session.model_registered.disconnect(self._on_model_registered)

    def _sync_model_fields(self, *_: Any) -> None:
        from_file = self.model_source.value == MODEL_FILE
        self.model_file.visible = from_file
        self.session_model.visible = not from_file
        self._show_card()

    def _show_card(self, *_: Any) -> None:
        """Show the chosen model's card headline and warnings (read without the model)."""
        from allnet_core.model.card import assess, read_card

        try:
            path = self._model_path()
        except LayerProblem:
            self.card_info.value = ""
            return
        verdict = assess(read_card(path, verify=False))  # the worker checks the SHA-256
        self.card_info.value = assessment_html(verdict.headline, verdict.warnings)

    def _model_path(self) -> str:
        if self.model_source.value == SESSION_MODEL:
            last = session.last_model()
            if not last:
                raise LayerProblem("Classify cells: no model has been trained in this session "
                                   "yet. Train one with 'Train ALLNet', or choose 'model file' "
                                   "and pick a .keras file.")
            return last
        path = Path(str(self.model_file.value))
        if not str(self.model_file.value) or not path.is_file():
            raise LayerProblem(f"Classify cells: choose a model file (.keras); {path} is not a "
                               "file.")
        return str(path)

    # ------------------------------------------------------------------ running
    @property
    def client(self):
        """The session's classification worker client."""
        return session.get_client("classify")

    def run(self) -> None:
        """Classify the chosen image in the worker process (non-blocking)."""
        if self.busy:
            return
        image = self.image.value
        try:
            rgb, lazy = layer_pixels(image, "Classify cells")  # a large layer: in tiles
            labels = self._no_labels() if lazy else self._labels_for(rgb)
            model = self._model_path()
        except LayerProblem as exc:
            self._refuse(exc)
            return
        self.status.value = ("Classifying..." if self.client.is_alive()
                             else "Starting the worker...")
        job = classify_large_layer if lazy else run_classification
        self._launch(job, self.client, rgb, labels, model, self.tta.value,
                     self.gradcam.value, yielded=self._on_event,
                     returned=lambda r: self._show(image, r), progress=0, cancellable=True)

    def _labels_for(self, rgb: np.ndarray) -> np.ndarray | None:
        layer = self.labels.value
        if layer is None:
            return None
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
        if data.shape != rgb.shape[:2]:
            raise LayerProblem(
                f"Classify cells: labels layer {layer.name!r} has shape {data.shape} but the "
                f"image is {rgb.shape[0]}x{rgb.shape[1]}; choose matching layers or leave "
                "'cells' empty to segment automatically.")
        if not data.any():
            raise LayerProblem(
                f"Classify cells: the labels layer {layer.name!r} is empty: segment first "
                "(or choose no labels layer to segment automatically).")
        return data

    def _no_labels(self) -> None:
        """A large image is segmented by the worker: refuse a chosen labels layer."""
        if self.labels.value is not None:
            raise LayerProblem("Classify cells: the image is large (tiled); leave 'cells' "
                               "empty, it is segmented in tiles by the worker.")

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        done = event.get("done", event.get("n"))
        total = event.get("total")
        if total:
            self._progress_to(done or 0, total)
        if kind == "stage":
            self.status.value = f"{str(event.get('stage', '')).capitalize()}..."
            if self._pbar is not None:
                self._pbar.set_description(f"Classify cells: {event.get('stage', '')}")
        elif total:
            self.status.value = f"{kind}: {done}/{total}"

    def _show(self, image, result: dict[str, Any]) -> None:
        from napari.utils.notifications import show_info

        if "cancelled" in result:
            self.status.value = "Cancelled"
            show_info(f"Classify cells: {result['cancelled']}")
            return
        table = result["table"]
        calls = table["call"] if "call" in table else table["class"]
        classes = dict(zip(table["label"].astype(int), calls.astype(str), strict=True))
        features = table.assign(index=table["label"].astype(int))
        self.result_layer = upsert_layer(
            self._viewer, f"{image.name} classes", result["labels"], "labels",
            features=features, colormap=class_colormap(classes), opacity=CLASS_OPACITY,
            metadata={IMAGE_KEY: image_name(image)}, **place_like(image))
        self._outline_out_of_scope(image, result["labels"], table, calls)
        if result.get("assessment"):
            verdict = result["assessment"]
            self.card_info.value = assessment_html(verdict["headline"], verdict["warnings"])
        if result["heatmap"] is not None:
            heat = result["heatmap"]
            top = float(heat.max()) if heat.size else 0.0
            upsert_layer(self._viewer, f"{image.name} Grad-CAM", heat, "image",
                         colormap=gradcam_colormap(), blending="translucent", opacity=0.8,
                         contrast_limits=(0.0, top if top > 0 else 1.0), **place_like(image))
        self.summary.value = summary_line(table)
        self.status.value = (f"Done: layer '{self.result_layer.name}'; colours in the legend "
                             "below, hover a cell for its P(ALL) and call")
        if not len(table):
            self.status.value = ("Done: no white cell found in this image (try 'Segment "
                                 "cells' and choose its labels layer)")
        if result["heatmap"] is not None and not result["heatmap"].any():
            self.status.value += ("; Grad-CAM found no positive evidence for the predicted "
                                  "class (the heatmap is empty)")
        self.export_button.enabled = True

    def _outline_out_of_scope(self, image, labels: np.ndarray, table, calls) -> None:
        """Outline the out-of-scope cells on their own layer (emptied when there are none)."""
        name = f"{image.name} out of scope"
        out = table["label"].to_numpy()[np.asarray(calls) == "out_of_scope"].astype(int)
        if not len(out) and name not in self._viewer.layers:
            return
        data = _only(labels, out)
        layer = upsert_layer(self._viewer, name, data, "labels",
                             colormap=outline_colormap(out), opacity=1.0, **place_like(image))
        layer.contour = 2  # outlined, not filled (not an argument of add_labels)

    # ------------------------------------------------------------------ export
    def export_csv(self, path: str | Path) -> Path:
        """Save the per-cell table of the last result as CSV (atomically)."""
        from napari_allnet._writer import write_cells_csv

        if self.result_layer is None:
            raise LayerProblem("Classify cells: nothing to export yet; classify first")
        meta = {"features": self.result_layer.features, "name": self.result_layer.name,
                "metadata": self.result_layer.metadata}
        return Path(write_cells_csv(str(path), self.result_layer.data, meta)[0])

    def _export_dialog(self, *_: Any) -> None:
        from napari.utils.notifications import show_error, show_info
        from qtpy.QtWidgets import QFileDialog

        if self.result_layer is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.native, "Export cell table",
                                              f"{self.result_layer.name}.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            saved = self.export_csv(path)
        except (OSError, ValueError) as exc:
            show_error(f"Export CSV failed: {exc}")
        else:
            show_info(f"Saved {saved}")


def _only(labels, keep: np.ndarray):
    """``labels`` with every label but ``keep`` set to 0: an array, or lazily a dask array
    or a pyramid of them (the labels of a large image)."""
    if isinstance(labels, np.ndarray):
        return np.where(np.isin(labels, keep), labels, 0).astype(np.int32)
    import dask.array as da

    levels = [da.where(da.isin(level, keep), level, 0).astype(np.int32)
              for level in (labels if isinstance(labels, list) else [labels])]
    return levels if isinstance(labels, list) else levels[0]
