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
                   help="calibrated P(ALL) at or above which a cell is called ALL (0.5)")
    p.add_argument("--uncertain", type=float, nargs=2, default=(0.35, 0.65),
                   metavar=("LOW", "HIGH"),
                   help="call a cell 'uncertain' when its calibrated P(ALL) lies strictly "
                   "between LOW and HIGH (0.35 0.65; 0.5 0.5 for no band)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable images and go on (default: stop at the first)")
    p.add_argument("--max-rows", type=int, default=30,
                   help="most per-image summary lines to print (30; all are in the CSV)")
    p.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import AllnetError, ConfigError, ImageReadError
    from allnet_core.inference import Classifier, classify_images, find_image_files
    from allnet_core.io import write_csv

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: give a .csv file name")
    from allnet_core.inference.calls import check_band

    uncertain = check_band(args.uncertain, args.threshold)
    files = find_image_files(args.inputs)  # before the model loads: fail fast
    clf = Classifier.load(args.model)
    print(f"model: {clf.source} (input {clf.input_size[0]}x{clf.input_size[1]})",
          file=sys.stderr)
    print_assessment(clf.assessment)
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
                                 progress=progress, uncertain=uncertain)
    except ImageReadError as exc:
        raise AllnetError(f"{exc}\n(use --skip-bad to report unreadable images and go on)") \
            from exc
    finally:
        bar.close()
    write_csv(args.out, result.cells)
    for message in result.problems:
        print(f"skipped: {message}", file=sys.stderr)
    _print_summaries(result.per_image, result.per_subject, args.max_rows, result.cells["call"])
    skipped = len(result.problems)
    print(f"wrote {len(result.cells)} cell(s) from {len(result.per_image)} image(s) to "
          f"{args.out}" + (f"; {skipped} unreadable file(s) skipped" if skipped else ""))
    return 0


def print_assessment(verdict) -> None:
    """The model card's headline and warnings, before any result."""
    from allnet_core.model.card import RESEARCH_USE

    print(f"model card: {verdict.headline}")
    for warning in verdict.warnings:
        print(f"WARNING: {warning}")
    print(RESEARCH_USE)


def _row(r) -> str:
    """Counts of each call and the ALL fraction of the confident in-scope cells (the last
    eight columns of a summary row, see :data:`~allnet_core.inference.calls.SUMMARY_COLUMNS`)."""
    cells, pos, neg, unc, oos, frac, low, high = list(r)[-8:]
    ci = ("-" if frac != frac else  # nan: no confident in-scope cell
          f"{100 * frac:.0f} % ({100 * low:.0f}-{100 * high:.0f})")
    return (f"  {int(cells):>5} {int(pos):>5} {int(neg):>5} {int(unc):>5} {int(oos):>5}  "
            f"{ci:<16}")


_HEADER = (f"  {'cells':>5} {'ALL':>5} {'HEM':>5} {'unc.':>5} {'OOS':>5}  "
           f"{'ALL fraction*':<16}")


def _print_summaries(per_image, per_subject, max_rows: int, calls) -> None:
    from allnet_core.inference.calls import call_counts, counts_text

    if per_image.empty:
        print("no image classified")
        return
    print(f"\nPer image ({len(per_image)}):")
    print(_HEADER + "image")
    shown = per_image.head(max(max_rows, 0))
    for r in shown.itertuples(index=False):
        print(_row(r) + r.source)
    if len(per_image) > len(shown):
        print(f"  ... {len(per_image) - len(shown)} more image(s): see the CSV")
    if not per_subject.empty:
        print(f"\nPer subject ({len(per_subject)}):")
        print(_HEADER + "subject")
        for r in per_subject.itertuples(index=False):
            print(_row(r) + r.subject)
    print("* ALL among the confident in-scope cells (ALL + HEM), 95 % CI; unc. = uncertain, "
          "OOS = out of scope")
    print(f"\nAll images: {counts_text(call_counts(calls))}")
