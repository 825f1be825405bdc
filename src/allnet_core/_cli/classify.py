"""``allnet classify``: classify the white cells of image files and folders into a CSV table.

A thin adapter around :func:`allnet_core.inference.classify_images`: argument checks, a
progress bar, the CSV and the printed summaries. Only argparse and pathlib at import time;
Keras loads when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``classify`` command."""
    from allnet_core._cli._help import HelpFormatter, examples

    p = subparsers.add_parser(
        "classify", help="classify the white cells of images (single cells or smear fields)",
        description="Classify every white blood cell of the given images as ALL or HEM and "
        "write one CSV row per cell. Single-cell images (a cell on a black background, like "
        "C-NMC's) are classified whole; smear fields are segmented first. A demo model trained "
        "on synthetic data is not a diagnostic tool.",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet classify runs/demo cells/ smear_01.jpg --out cells.csv",
            "allnet classify runs/demo/fold_2/model.keras data/ --out cells.csv --skip-bad",
            "allnet classify runs/demo smears/ --out cells.csv --tta --gradcam cams/"))
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


def run_classify(args: argparse.Namespace) -> int:
    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import AllnetError, ConfigError, ImageReadError
    from allnet_core.inference import Classifier, classify_images, find_image_files
    from allnet_core.io import check_output_dir, check_output_file, write_csv

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: give a .csv file name")
    check_output_file(args.out)  # a folder, a read-only place: refused before the work
    if args.gradcam is not None:
        check_output_dir(args.gradcam, "--gradcam")
    files = find_image_files(args.inputs)  # before the model loads: fail fast
    clf = Classifier.load(args.model)
    print(f"model: {clf.source} (input {clf.input_size[0]}x{clf.input_size[1]})",
          file=sys.stderr)
    bar = ProgressBar(len(files), label="classify")
    every = max(1, len(files) // 100)  # at most ~100 lines when stderr is not a terminal

    def progress(event: dict) -> None:
        if event["kind"] == "file" and (event["done"] % every == 0 or
                                        event["done"] == event["total"] or event["skipped"]):
            name = Path(event["path"]).name
            bar.update(event["done"], f"skipped {name}" if event["skipped"] else name)

    try:
        result = classify_images(clf, files, mode=args.mode, tta=args.tta,
                                 batch_size=args.batch_size, threshold=args.threshold,
                                 gradcam_dir=args.gradcam, skip_bad=args.skip_bad,
                                 progress=progress)
    except ImageReadError as exc:
        raise AllnetError(f"{exc}\n(use --skip-bad to report unreadable images and go on)") \
            from exc
    finally:
        bar.close()
    write_csv(args.out, result.cells)
    for message in result.problems:
        print(f"skipped: {message}", file=sys.stderr)
    _print_summaries(result.per_image, result.per_subject, args.max_rows)
    skipped = len(result.problems)
    print(f"wrote {len(result.cells)} cell(s) from {len(result.per_image)} image(s) to "
          f"{args.out}" + (f"; {skipped} unreadable file(s) skipped" if skipped else ""))
    return 0


def _fraction(n_all: int, n: int) -> str:
    return f"{n_all / n:.3f}" if n else "-"


def _print_summaries(per_image, per_subject, max_rows: int) -> None:
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
    if not per_subject.empty:
        print(f"\nPer subject ({len(per_subject)}):")
        print(f"  {'cells':>5} {'ALL':>5} {'ALL fraction':>12}  subject")
        for r in per_subject.itertuples(index=False):
            print(f"  {int(r.cells):>5} {int(r.ALL):>5} "
                  f"{_fraction(int(r.ALL), int(r.cells)):>12}  {r.subject}")
    total, n_all = int(per_image["cells"].sum()), int(per_image["ALL"].sum())
    print(f"\nAll images: {total} cell(s), {n_all} ALL, ALL fraction {_fraction(n_all, total)}")
