"""``allnet classify``: classify the white cells of image files and folders into a CSV table.

Only argparse and pathlib at import time; Keras loads when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Columns of the CSV, in order (cell-table columns as in allnet_core.inference).
CSV_COLUMNS = [
    "source", "subject", "mode", "label", "class", "p_all", "area", "centroid_row",
    "centroid_col", "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
    "touches_border", "scale",
]


def register(subparsers) -> None:
    """Add the ``classify`` command."""
    p = subparsers.add_parser(
        "classify", help="classify the white cells of images (single cells or smear fields)",
        description="Classify every white blood cell of the given images as ALL or HEM and "
        "write one CSV row per cell. Single-cell images (a cell on a black background, like "
        "C-NMC's) are classified whole; smear fields are segmented first. A demo model trained "
        "on synthetic data is not a diagnostic tool.")
    p.add_argument("model", type=Path, help="a .keras model or a training run folder")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help="image files or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="CSV file to write (one row per cell)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over flips and 90-degree rotations")
    p.add_argument("--gradcam", type=Path, default=None, metavar="DIR",
                   help="also write a Grad-CAM overlay PNG per image into DIR")
    p.add_argument("--batch-size", type=int, default=16, help="cells per forward pass (16)")
    p.add_argument("--mode", choices=("auto", "cells", "smear"), default="auto",
                   help="cells: each image is one cut-out cell; smear: segment first; "
                   "auto (default): decide per image by its black background")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="P(ALL) at or above which a cell is called ALL (0.5)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable images and go on (default: stop at the first)")
    p.add_argument("--max-rows", type=int, default=30,
                   help="most per-image summary lines to print (30; all are in the CSV)")
    p.set_defaults(func=run_classify)


def _collect_inputs(inputs: list[Path]) -> list[Path]:
    from allnet_core.errors import ConfigError
    from allnet_core.io import find_images

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = find_images(item, recursive=True)
            if not found:
                raise ConfigError(f"{item}: the folder holds no image files "
                                  "(.bmp, .png, .jpg, .jpeg, .tif, .tiff)")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _subject_of(path: Path) -> str:
    from allnet_core.datasets import parse_cnmc_name

    info = parse_cnmc_name(path.name)
    return info["subject"] if info else ""


class _Pending:
    """Cells read from files but not yet classified (pooled across files into batches)."""

    def __init__(self):
        self.items: list[tuple[Path, object, list, object, str, object]] = []
        self.n_cells = 0

    def add(self, path, rgb, crops, table, mode, labels) -> None:
        self.items.append((path, rgb, crops, table, mode, labels))
        self.n_cells += len(crops)


def run_classify(args: argparse.Namespace) -> int:
    import pandas as pd

    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import AllnetError, ConfigError, ImageReadError
    from allnet_core.inference import Classifier, image_cells
    from allnet_core.io import read_rgb, write_csv

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: give a .csv file name")
    files = _collect_inputs(args.inputs)
    clf = Classifier.load(args.model)
    print(f"model: {clf.source} (input {clf.input_size[0]}x{clf.input_size[1]})",
          file=sys.stderr)

    tables: list[pd.DataFrame] = []
    per_image: list[dict] = []
    skipped: list[str] = []
    pending = _Pending()
    gradcam_names: set[str] = set()
    bar = ProgressBar(len(files), label="classify")
    every = max(1, len(files) // 100)  # at most ~100 lines when stderr is not a terminal

    def flush() -> None:
        crops = [c for item in pending.items for c in item[2]]
        probs = clf.predict_proba(crops, batch_size=args.batch_size, tta=args.tta)
        start = 0
        for path, rgb, item_crops, table, mode, labels in pending.items:
            p = probs[start:start + len(item_crops)]
            start += len(item_crops)
            t = clf.cell_table(table, p, threshold=args.threshold)
            t.insert(0, "mode", mode)
            t.insert(0, "subject", _subject_of(path))
            t.insert(0, "source", str(path))
            tables.append(t)
            n_all = int((t["class"] == "ALL").sum())
            per_image.append({"source": str(path), "subject": _subject_of(path), "mode": mode,
                              "cells": len(t), "ALL": n_all})
            if args.gradcam is not None:
                _write_gradcam(clf, args, path, rgb, item_crops, t, labels, mode,
                               gradcam_names)
        pending.items.clear()
        pending.n_cells = 0

    try:
        for i, path in enumerate(files):
            try:
                rgb = read_rgb(path)
                labels, crops, table, mode = image_cells(rgb, mode=args.mode)
            except ImageReadError as exc:
                if not args.skip_bad:
                    raise AllnetError(
                        f"{exc}\n(stopped at file {i + 1} of {len(files)}; use --skip-bad to "
                        "report unreadable images and go on)") from exc
                skipped.append(str(exc))
                bar.update(i + 1, f"skipped {path.name}")
                continue
            pending.add(path, rgb if args.gradcam is not None else None, crops, table, mode,
                        labels if args.gradcam is not None else None)
            if pending.n_cells >= args.batch_size:
                flush()
            if (i + 1) % every == 0 or i + 1 == len(files):
                bar.update(i + 1, path.name)
        if pending.items:
            flush()
    finally:
        bar.close()

    cells = (pd.concat(tables, ignore_index=True) if tables
             else pd.DataFrame({c: [] for c in CSV_COLUMNS}))
    cells = cells[CSV_COLUMNS + [c for c in cells.columns if c not in CSV_COLUMNS]]
    write_csv(args.out, cells)
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    _print_summaries(pd.DataFrame(per_image), cells, args.max_rows)
    print(f"wrote {len(cells)} cell(s) from {len(per_image)} image(s) to {args.out}"
          + (f"; {len(skipped)} unreadable file(s) skipped" if skipped else ""))
    return 0


def _fraction(n_all: int, n: int) -> str:
    return f"{n_all / n:.3f}" if n else "-"


def _print_summaries(per_image, cells, max_rows: int) -> None:
    if per_image.empty:
        print("no image classified")
        return
    print(f"\nPer image ({len(per_image)}):")
    print(f"  {'cells':>5} {'ALL':>5} {'ALL fraction':>12}  image")
    shown = per_image.head(max(max_rows, 0))
    for r in shown.itertuples(index=False):
        print(f"  {r.cells:>5} {r.ALL:>5} {_fraction(r.ALL, r.cells):>12}  {r.source}")
    if len(per_image) > len(shown):
        print(f"  ... {len(per_image) - len(shown)} more image(s): see the CSV")
    with_subject = per_image[per_image["subject"] != ""]
    if not with_subject.empty:
        groups = with_subject.groupby("subject", sort=True)[["cells", "ALL"]].sum()
        print(f"\nPer subject ({len(groups)}):")
        print(f"  {'cells':>5} {'ALL':>5} {'ALL fraction':>12}  subject")
        for subject, r in groups.iterrows():
            print(f"  {int(r.cells):>5} {int(r.ALL):>5} "
                  f"{_fraction(int(r.ALL), int(r.cells)):>12}  {subject}")
    total, n_all = int(per_image["cells"].sum()), int(per_image["ALL"].sum())
    print(f"\nAll images: {total} cell(s), {n_all} ALL, ALL fraction {_fraction(n_all, total)}")


def _write_gradcam(clf, args, path: Path, rgb, crops, table, labels, mode,
                   used: set[str]) -> None:
    """Write ``<DIR>/<name>_gradcam.png``: the image with its Grad-CAM heatmap overlaid."""
    import numpy as np

    from allnet_core.inference import CELL_CROP_SIZE, gradcam_to_field
    from allnet_core.io import write_image

    if len(crops):
        maps = clf.gradcam(crops, batch_size=args.batch_size)
        field = gradcam_to_field(maps, table, rgb.shape[:2], labels=labels,
                                 crop_size=CELL_CROP_SIZE if mode == "smear" else None)
    else:
        field = np.zeros(rgb.shape[:2], np.float32)
    name = f"{path.stem}_gradcam.png"
    k = 1
    while name in used:  # two inputs with the same file name in different folders
        k += 1
        name = f"{path.stem}_{k}_gradcam.png"
    used.add(name)
    write_image(args.gradcam / name, overlay_heatmap(rgb, field))


def overlay_heatmap(rgb, heatmap, alpha: float = 0.45):
    """Blend a [0, 1] heatmap (matplotlib's ``jet``) over an RGB image, as uint8."""
    import numpy as np
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    weight = alpha * (heatmap > 0)[..., None]
    out = rgb.astype(np.float32) * (1 - weight) + colours * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
