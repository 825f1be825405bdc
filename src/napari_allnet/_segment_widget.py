"""The "Segment cells" widget: white-blood-cell instance labels from an RGB image.

A thin adapter over :func:`allnet_core.segmentation.label_cells` and
:func:`~allnet_core.segmentation.segment_paper`. Segmentation needs only scikit-image, so it
runs in this process, in a napari ``thread_worker`` (the viewer stays responsive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, PushButton, SpinBox, create_widget

from napari_allnet._common import LayerProblem, default_of, layer_pixels, place_like
from napari_allnet._job_widget import JobWidget
from napari_allnet._large import segment_large_layer

if TYPE_CHECKING:
    import napari

__all__ = ["SegmentWidget", "segment"]

#: Columns of the cell table that describe a cell in the field (not its crop).
_TABLE_COLUMNS = ("label", "area", "centroid_row", "centroid_col", "bbox_min_row",
                  "bbox_min_col", "bbox_max_row", "bbox_max_col", "touches_border")


def segment(rgb, method: str = "auto", min_area: float | None = None, low: float = 180,
            high: float = 255, space: str = "hsi", segmented: bool = False) -> dict[str, Any]:
    """Run the core segmentation with the widget's settings.

    Returns a dict with ``labels`` (int32), ``table`` (one row per cell: label, area,
    centroid, bounding box, touches_border) and ``segmented`` (the paper-style masked
    image, or None).
    """
    from allnet_core.segmentation import cell_table, label_cells, segment_paper

    paper = {"low": low, "high": high, "space": space}
    labels = label_cells(rgb, method=method, min_area=min_area or None, **paper)
    table = cell_table(labels)[list(_TABLE_COLUMNS)]
    masked = segment_paper(rgb, **paper)[1] if segmented else None
    return {"labels": labels, "table": table, "segmented": masked}


class SegmentWidget(JobWidget):
    """Segment white blood cells in an RGB image layer.

    Output: a Labels layer ``"<image> WBC"`` (updated in place when run again) whose
    features hold one row per cell, and optionally the paper-style segmented image
    ``"<image> segmented (paper)"``.
    """

    task = "Segment cells"
    failed_prefix = "Segment cells failed"
    failed_status = "Segmentation failed: see the notification"

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
        self.add_segmented = CheckBox(text="add the paper-style segmented image", value=False)
        self.run_button = PushButton(text="Segment")
        self._controls(self.run_button)
        self.extend([self.image, self.method, self.space, self.low, self.high, self.min_area,
                     self.add_segmented, self.run_button, self.status])
        self.run_button.changed.connect(self.run)

    def run(self) -> None:
        """Segment the chosen image in a background thread."""
        if self.busy:
            return
        layer = self.image.value
        try:
            rgb, lazy = layer_pixels(layer, "Segment cells")  # a large layer: in tiles
        except LayerProblem as exc:
            self._refuse(exc, status="Cannot segment: see the notification")
            return
        params = {"method": self.method.value, "min_area": self.min_area.value or None,
                  "low": self.low.value, "high": self.high.value, "space": self.space.value,
                  "segmented": self.add_segmented.value}
        self.status.value = f"Segmenting {layer.name}" + (" in tiles..." if lazy else "...")
        job = segment_large_layer if lazy else segment
        self._launch(job, rgb, returned=lambda r: self._show(layer, r), **params)

    def _show(self, layer, result: dict[str, Any]) -> None:
        from napari_allnet._common import upsert_layer

        table = result["table"]
        features = table.assign(index=table["label"]) if len(table) else None
        name = f"{layer.name} WBC"
        upsert_layer(self._viewer, name, result["labels"], "labels",
                     features=features if features is not None else {}, **place_like(layer))
        if result["segmented"] is not None:
            upsert_layer(self._viewer, f"{layer.name} segmented (paper)", result["segmented"],
                         "image", rgb=True, **place_like(layer))
        n = len(table)
        border = int(table["touches_border"].sum()) if n else 0
        self.status.value = (f"{n} white cell{'s' if n != 1 else ''}"
                             + (f" ({border} touching the border)" if border else "")
                             + f" -> layer '{name}'")
