"""Regenerate the figures of ``docs/segmentation.md`` from real data.

The paper's figure sequence (original, saturation, thresholded, segmented) for one real
BCCD smear field and one real C-NMC cell, the paper's method and the default ("auto")
method side by side, plus the cell crops ``extract_cells`` makes from the field.

Usage::

    ALLNET_DATA_DIR=/path/to/shared/data python docs/scripts/segmentation_figures.py

Writes ``docs/images/segmentation_bccd.png``, ``segmentation_cnmc.png`` and
``segmentation_crops.png``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from allnet_core.io import read_rgb  # noqa: E402
from allnet_core.segmentation import (  # noqa: E402
    extract_cells,
    label_cells,
    saturation,
    segment_paper,
)

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "images"
BCCD_FIELD = "bccd/JPEGImages/BloodImage_00250.jpg"
CNMC_CELL = "cnmc/C-NMC_Leukemia/training_data/fold_0/all/UID_11_1_1_all.bmp"


def blue_green(rgb: np.ndarray) -> np.ndarray:
    """The auto method's nucleus feature ``(B - G) / (B + G)`` in [-1, 1] (float32)."""
    b = rgb[..., 2].astype(np.float32)
    g = rgb[..., 1].astype(np.float32)
    tot = b + g
    return np.divide(b - g, tot, out=np.zeros_like(tot), where=tot > 0)


def sequence(rgb: np.ndarray) -> dict[str, list]:
    """Panels (image, title, colour map) per method."""
    s = saturation(rgb, "hsi")
    mask, seg = segment_paper(rgb)
    labels, nuclei = label_cells(rgb, return_nuclei=True)
    cells = labels > 0
    # thresholded: white = whole cell, grey = nucleus (the auto method's two masks)
    thr = np.zeros(cells.shape, np.float32)
    thr[cells] = 1.0
    thr[nuclei > 0] = 0.6
    outline = rgb.copy()
    outline[find_boundaries(labels, mode="inner")] = (0, 255, 0)
    return {
        "paper (HSI S in 180-255)": [
            (rgb, "original", None),
            (s, f"HSI saturation (max {255 * s.max():.0f}/255)", "gray"),
            (mask, f"thresholded 180-255 ({mask.mean():.2%} of pixels)", "gray"),
            (seg, "segmented (image x mask)", None),
        ],
        "auto (default)": [
            (outline, f"original, {labels.max()} cell(s) outlined", None),
            (blue_green(rgb), "nucleus feature (B-G)/(B+G)", "magma"),
            (thr, "thresholded: cell (white), nucleus (grey)", "gray"),
            (rgb * cells[..., None], "segmented (image x cell mask)", None),
        ],
    }


def figure(rgb: np.ndarray, title: str, path: Path) -> None:
    panels = sequence(rgb)
    h, w = rgb.shape[:2]
    fig, axes = plt.subplots(2, 4, figsize=(16, 4.3 * h / w * 2 + 0.6), dpi=80)
    for row, (method, items) in zip(axes, panels.items(), strict=True):
        for ax, (img, sub, cmap) in zip(row, items, strict=True):
            kw = {"cmap": cmap} if cmap else {}
            if cmap and img.dtype == bool:
                kw.update(vmin=0, vmax=1)
            ax.imshow(img, **kw)
            ax.set_title(sub, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(method, fontsize=11)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def crops_figure(rgb: np.ndarray, path: Path) -> None:
    labels = label_cells(rgb)
    crops, table = extract_cells(rgb, labels, size=450)
    n = max(len(crops), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), dpi=80, squeeze=False)
    for ax, crop, row in zip(axes[0], crops, table.itertuples(), strict=False):
        ax.imshow(crop)
        ax.set_title(f"label {row.label}: {row.area} px, scale {row.scale:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> int:
    root = os.environ.get("ALLNET_DATA_DIR")
    if not root:
        print("set ALLNET_DATA_DIR to the shared data folder", file=sys.stderr)
        return 1
    root = Path(root)
    field = read_rgb(root / BCCD_FIELD)
    cell = read_rgb(root / CNMC_CELL)
    figure(field, f"BCCD smear field {Path(BCCD_FIELD).name} (640x480)",
           OUT / "segmentation_bccd.png")
    figure(cell, f"C-NMC cell {Path(CNMC_CELL).name} (450x450, black background)",
           OUT / "segmentation_cnmc.png")
    crops_figure(field, OUT / "segmentation_crops.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
