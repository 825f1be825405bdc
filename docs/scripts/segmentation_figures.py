"""Regenerate the figures of ``docs/segmentation.md`` from real data.

The paper's figure sequence (original, saturation, thresholded, segmented) for one real
BCCD smear field and one real C-NMC cell, the paper's method and the default ("auto")
method side by side, plus the cell crops ``extract_cells`` makes from the field.

Usage::

    ALLNET_DATA_DIR=/path/to/shared/data python docs/scripts/segmentation_figures.py

Writes ``docs/images/segmentation_bccd.png``, ``segmentation_cnmc.png``,
``segmentation_crops.png`` and ``segmentation_bluish.png`` (the default method on the
BCCD field re-coloured by the "bluish red cells" perturbation of
``benchmarks/_perturb.py``, and on a synthetic field whose red cells look like nuclei),
and prints where the paper's rule works (the table of ``docs/segmentation.md``).
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
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
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


def _outlined(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[find_boundaries(labels, mode="inner")] = (0, 255, 0)
    return out


def bluish_figure(field: np.ndarray, path: Path) -> None:
    """The default method on a bluish re-colouring of a real field and on a synthetic
    field of purple red cells without any white cell (stain not recognised)."""
    import warnings

    import _perturb

    from allnet_core.segmentation import AutoParams, SegmentationWarning
    from allnet_core.segmentation._features import normalise_white, white_point
    from allnet_core.segmentation._morphology import subsample
    from allnet_core.segmentation._scale import choose_downscale
    from allnet_core.segmentation._thresholds import thresholds
    from allnet_core.synthetic import synth_smear

    bluish = _perturb.bluish_red_cells(field)
    purple = synth_smear(seed=0, n_wbc=0, rbc_rgb=(120, 90, 180))[0]
    panels = []
    for rgb, name in ((field, "original"), (bluish, "bluish red cells"),
                      (purple, "synthetic: purple red cells, no WBC")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SegmentationWarning)
            labels = label_cells(rgb)
        said = [w.message.reason for w in caught if issubclass(w.category, SegmentationWarning)]
        balanced = normalise_white(rgb, white_point(rgb, 10))
        p = AutoParams()
        # the nucleus feature the method chose for this image (blue-green, or purple)
        feature = thresholds(subsample(balanced, choose_downscale(balanced, p)), p).feature
        note = f"{labels.max()} cell(s)" + (f", warns: {said[0]}" if said else "")
        panels.append((rgb, name, _outlined(rgb, labels), note, feature(balanced),
                       feature.__name__.replace("_", "-")))
    fig, axes = plt.subplots(3, 3, figsize=(13, 10), dpi=80)
    for row, (rgb, name, outlined, note, feat, fname) in zip(axes, panels, strict=True):
        for ax, img, title, cmap in zip(row, (rgb, feat, outlined),
                                         (name, f"nucleus feature ({fname}), white-balanced",
                                          note), (None, "magma", None), strict=True):
            ax.imshow(img, cmap=cmap)
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Default method under a bluish red-cell stain", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def paper_rule_table(root: Path) -> None:
    """Where the paper's rule works: selected fraction and Dice per data set (printed)."""
    import warnings

    import _bccd

    from allnet_core.segmentation import SegmentationWarning

    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SegmentationWarning)
        for path in _bccd.zheng_cells(root, 1):
            rgb = read_rgb(path)
            cell, nuc = _bccd.zheng_truth(path)
            mask = segment_paper(rgb)[0]
            yellow = np.median(rgb[~cell], axis=0)[2] < 180
            key = "Zheng set 1, yellow background" if yellow else "Zheng set 1, white background"
            rows.setdefault(key, []).append((mask.mean(), _bccd.dice(mask, nuc),
                                             _bccd.dice(mask, cell)))
        for field in _bccd.bccd_fields(root)[::10]:
            rows.setdefault("BCCD fields", []).append(
                (segment_paper(read_rgb(field.image))[0].mean(), np.nan, np.nan))
        for path in sorted((root / "cnmc").rglob("*.bmp"))[:20]:
            rows.setdefault("C-NMC cells", []).append(
                (segment_paper(read_rgb(path))[0].mean(), np.nan, np.nan))
    print("| images | n | selected | nucleus Dice | cell Dice |\n|---|---|---|---|---|")
    for key, v in rows.items():
        v = np.array(v, np.float64)
        dice = [f"{np.nanmean(v[:, i]):.2f}" if np.isfinite(v[:, i]).any() else "-"
                for i in (1, 2)]
        print(f"| {key} | {len(v)} | {100 * v[:, 0].mean():.2f} % | {dice[0]} | {dice[1]} |")


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
    bluish_figure(field, OUT / "segmentation_bluish.png")
    paper_rule_table(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
