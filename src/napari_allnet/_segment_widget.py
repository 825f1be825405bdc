"""The "Segment cells" widget: white-blood-cell instance labels from an RGB image.

A thin adapter over :func:`allnet_core.segmentation.label_cells` and
:func:`~allnet_core.segmentation.segment_paper`. Segmentation needs only scikit-image, so it
runs in this process, in a napari ``thread_worker`` (the viewer stays responsive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, PushButton, SpinBox, create_widget

from napari_allnet._common import LayerProblem, default_of, layer_pixels, place_like
from napari_allnet._job_widget import JobWidget, full_width
from napari_allnet._large import segment_large_layer

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget", "paper_hint", "segment"]

#: Columns of the cell table that describe a cell in the field (not its crop).
_TABLE_COLUMNS = ("label", "area", "centroid_row", "centroid_col", "bbox_min_row",
                  "bbox_min_col", "bbox_max_row", "bbox_max_col", "touches_border")
#: The paper rule "selected almost nothing" below this fraction of the image's pixels.
_ALMOST_NOTHING = 1e-3
#: Pixels whose brightest channel is at most this are a cut-out's black background.
_BLACK_LEVEL = 10


def segment(rgb, method: str = "auto", min_area: float | None = None, low: float = 180,
            high: float = 255, space: str = "hsi", segmented: bool = False) -> dict[str, Any]:
    """Run the core segmentation with the widget's settings.

    Returns a dict with ``labels`` (int32), ``table`` (one row per cell: label, area,
    centroid, bounding box, touches_border), ``segmented`` (the image with everything
    but the selected pixels black, or None) and, for ``method="paper"``, ``paper``: the
    fraction of pixels the rule selected and the 1st, 95th and 99th percentiles of the
    image's saturation on the rule's 0-255 scale (``p1``, ``p95``, ``p99``).
    """
    from allnet_core.segmentation import cell_table, label_cells, saturation, segment_paper

    paper = {"low": low, "high": high, "space": space}
    labels = label_cells(rgb, method=method, min_area=min_area or None, **paper)
    table = cell_table(labels)[list(_TABLE_COLUMNS)]
    out: dict[str, Any] = {"labels": labels, "table": table, "segmented": None, "paper": None}
    if method == "paper":
        mask, masked = segment_paper(rgb, **paper)
        sat = 255 * saturation(rgb, space)[rgb.max(axis=-1) > _BLACK_LEVEL]
        pct = np.percentile(sat, [1, 95, 99]) if sat.size else np.zeros(3)
        out["paper"] = {"selected": float(mask.mean()),
                        **dict(zip(("p1", "p95", "p99"), map(float, pct), strict=True)), **paper}
        selected = out["paper"]["selected"] >= _ALMOST_NOTHING
    else:
        mask = labels > 0
        masked = rgb * mask[..., None]
        selected = bool(mask.any())
    if segmented and selected:  # never an (almost) all-black layer over the canvas
        out["segmented"] = masked
    return out


def paper_hint(paper: dict[str, Any]) -> str:
    """What to try when the paper rule selected (almost) nothing; ``""`` otherwise."""
    if paper["selected"] >= _ALMOST_NOTHING:
        return ""
    space = str(paper["space"]).upper()
    return (f"The paper rule ({space} saturation {paper['low']:g}-{paper['high']:g}) selected "
            f"{100 * paper['selected']:.2f} % of the pixels: in this image {space} saturation "
            f"(0-255) runs from {paper['p1']:.0f} to {paper['p99']:.0f} (1st-99th "
            "percentile). Try the auto method, or a paper low near the 95th percentile, "
            f"{max(1, int(paper['p95']))} (nuclei are the most saturated pixels; lower it if "
            "cells come out cut).")


class SegmentWidget(JobWidget):
    """Segment white blood cells in an RGB image layer.

    Output: a Labels layer ``"<image> WBC"`` (updated in place when run again) whose
    features hold one row per cell, and optionally the segmented image
    ``"<image> segmented"``: the selected pixels on black, the C-NMC look.
    """

    task = "Segment cells"
    failed_prefix = "Segment cells failed"
    failed_status = "Segmentation failed"
    refused_status = "Cannot segment"

    def __init__(self, viewer: napari.viewer.Viewer):
        from allnet_core.segmentation import METHODS, label_cells, segment_paper

        super().__init__(viewer)
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.method = ComboBox(
            label="method", choices=list(METHODS), value=default_of(label_cells, "method", "auto"),
            tooltip="auto: adaptive, works on real smears (default). paper: the ALLNet paper's "
                    "fixed saturation threshold. otsu: Otsu on saturation (reference).")
        self.space = ComboBox(label="colour space", choices=["hsi", "hsv"],
                              value=default_of(segment_paper, "space", "hsi"),
                              tooltip="Saturation of the paper method: HSI (the paper) or HSV")
        self.low = SpinBox(label="paper low", min=0, max=255,
                           value=int(default_of(segment_paper, "low", 180)),
                           tooltip="Paper method: keep saturation (0-255) from this value...")
        self.high = SpinBox(label="paper high", min=0, max=255,
                            value=int(default_of(segment_paper, "high", 255)),
                            tooltip="...up to this value")
        self.min_area = SpinBox(
            label="min cell area (px)", min=0, max=10_000_000, step=50, value=0,
            tooltip="Smallest nucleus area that counts as a white cell; 0 = automatic "
                    "(scales with the image size)")
        self.add_segmented = CheckBox(
            text="add the segmented image (cells on black)", value=False,
            tooltip="The pixels the method selected, everything else black (the C-NMC look)")
        self.run_button = PushButton(text="Segment")
        self._controls(self.run_button)
        self.extend([self.image, self.method, self.space, self.low, self.high, self.min_area,
                     self.add_segmented, self.run_button, self.status])
        full_width(self.status)
        self.run_button.changed.connect(self.run)
        self.method.changed.connect(self._sync_paper_fields)
        self._sync_paper_fields()

    def _sync_paper_fields(self, *_: Any) -> None:
        """The paper's range and colour space only mean something for the paper method."""
        paper = self.method.value == "paper"
        for widget in (self.space, self.low, self.high):
            widget.visible = paper

    def run(self) -> None:
        """Segment the chosen image in a background thread."""
        if self.busy:
            return
        layer = self.image.value
        try:
            rgb, lazy = layer_pixels(layer, "Segment cells")  # a large layer: in tiles
        except LayerProblem as exc:
            self._refuse(exc)
            return
        params = {"method": self.method.value, "min_area": self.min_area.value or None,
                  "low": self.low.value, "high": self.high.value, "space": self.space.value,
                  "segmented": self.add_segmented.value}
        self.status.value = f"Segmenting {layer.name}" + (" in tiles..." if lazy else "...")
        job = segment_large_layer if lazy else segment
        self._launch(job, rgb, returned=lambda r: self._show(layer, r, params), **params)

    def _show(self, layer, result: dict[str, Any], params: dict[str, Any]) -> None:
        from napari_allnet._common import upsert_layer

        table = result["table"]
        features = table.assign(index=table["label"]) if len(table) else None
        name = f"{layer.name} WBC"
        upsert_layer(self._viewer, name, result["labels"], "labels",
                     features=features if features is not None else {}, **place_like(layer))
        if result["segmented"] is not None:
            upsert_layer(self._viewer, f"{layer.name} segmented",
                         result["segmented"], "image", rgb=True, **place_like(layer))
        n = len(table)
        border = int(table["touches_border"].sum()) if n else 0
        text = (f"{n} white cell{'s' if n != 1 else ''}"
                + (f" ({border} touching the border)" if border else "")
                + f" -> layer '{name}'")
        hint = paper_hint(result["paper"]) if result["paper"] is not None else ""
        if hint:
            text += f". {hint}"
        if params["segmented"] and result["segmented"] is None:
            text += " No segmented image added: (almost) nothing was selected."
        self.status.value = text
