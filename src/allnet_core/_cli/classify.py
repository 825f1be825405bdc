"""``allnet classify``: classify the white cells of image files and folders into a CSV table.

A thin adapter around :func:`allnet_core.inference.classify_images`: argument checks, a
progress bar, the CSV and the printed summaries. Only argparse and pathlib at import time;
Keras loads when the command runs, Dask only with ``--workers`` or ``--scheduler``.

Results stream into ``TABLE.parquet/`` beside the CSV as they finish (see
:mod:`allnet_core.inference.store`); a rerun with the same ``--out`` skips the images
already done. ``--workers N`` runs on a local Dask cluster of N processes,
``--scheduler ADDRESS`` on a running ``dask.distributed`` cluster (docs/screening.md).
"""

from __future__ import annotations

import argparse
import contextlib
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
                   help="calibrated P(ALL) at or above which a cell is called ALL (0.5)")
    p.add_argument("--uncertain", type=float, nargs=2, default=(0.35, 0.65),
                   metavar=("LOW", "HIGH"),
                   help="call a cell 'uncertain' when its calibrated P(ALL) lies strictly "
                   "between LOW and HIGH (0.35 0.65; 0.5 0.5 for no band)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable images and go on (default: stop at the first)")
    p.add_argument("--max-rows", type=int, default=30,
                   help="most per-image summary lines to print (30; all are in the CSV)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run on a local Dask cluster of N worker processes "
                       "(default: in this process)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on a running dask.distributed cluster, e.g. "
                       "tcp://10.0.0.5:8786 (its workers must see the images and the model)")
    p.add_argument("--images-per-task", type=int, default=None, metavar="K",
                   help="images per Dask task with --workers/--scheduler (default: the batch "
                   "size, fewer when that leaves under 4 tasks per worker thread)")
    p.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import AllnetError, ConfigError, ImageReadError
    from allnet_core.inference import classify_images, find_image_files
    from allnet_core.inference.store import store_path
    from allnet_core.io import check_output_dir, check_output_file, write_csv

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {args.out}: give a .csv file name")
    from allnet_core.inference.calls import check_band

    uncertain = check_band(args.uncertain, args.threshold)
    check_output_file(args.out)  # a folder, a read-only place: refused before the work
    if args.gradcam is not None:
        check_output_dir(args.gradcam, "--gradcam")
    for flag, value in (("--workers", args.workers), ("--images-per-task", args.images_per_task)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
    files = find_image_files(args.inputs)  # before the model loads: fail fast
    model = _model(args)
    bar = ProgressBar(len(files), label="classify")
    try:
        with _dask_client(args) as client:
            result = classify_images(model, files, mode=args.mode, tta=args.tta,
                                     batch_size=args.batch_size, threshold=args.threshold,
                                     gradcam_dir=args.gradcam, skip_bad=args.skip_bad,
                                     progress=_progress_to(bar), out=store_path(args.out),
                                     client=client, images_per_task=args.images_per_task,
                                     uncertain=uncertain)
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


def _model(args: argparse.Namespace):
    """The classifier loaded here, or (on Dask workers, which load it) the model file."""
    from allnet_core.inference import Classifier, find_model_file
    from allnet_core.model.card import assess, read_card

    if args.workers is None and args.scheduler is None:
        clf = Classifier.load(args.model)
        print(f"model: {clf.source} (input {clf.input_size[0]}x{clf.input_size[1]})",
              file=sys.stderr)
        print_assessment(clf.assessment)
        return clf
    path = find_model_file(args.model)
    print(f"model: {path} (loaded once by every Dask worker)", file=sys.stderr)
    print_assessment(assess(read_card(path)))  # the card the workers apply
    return path


def _progress_to(bar):
    """The progress callback that drives ``bar``."""
    state = {"every": 1}

    def progress(event: dict) -> None:
        if event["kind"] == "resume":
            if event.get("discarded"):
                print(f"{event['store']}: results of other settings "
                      f"({', '.join(event['discarded'])}) discarded", file=sys.stderr)
            if event["done"]:
                print(f"resuming: {event['done']} of {event['total']} image(s) already done "
                      f"in {event['store']}", file=sys.stderr)
        elif event["kind"] == "start":
            bar.reset(event["total"])
            state["every"] = max(1, event["total"] // 100)  # ~100 lines when piped
        elif event["kind"] == "file" and (event["done"] % state["every"] == 0 or
                                          event["done"] == event["total"] or event["skipped"]):
            name = Path(event["path"]).name
            bar.update(event["done"], f"skipped {name}" if event["skipped"] else name)

    return progress


@contextlib.contextmanager
def _dask_client(args: argparse.Namespace):
    """A ``distributed.Client`` for ``--workers``/``--scheduler``, else None."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        from allnet_core.errors import ConfigError

        raise ConfigError("--workers and --scheduler need dask.distributed: "
                          "pip install 'dask[distributed]'") from exc
    if args.scheduler is not None:
        with Client(args.scheduler, timeout="30s") as client:
            print(f"dask: {len(client.nthreads())} worker(s) at "
                  f"{args.scheduler}", file=sys.stderr)
            yield client
        return
    from allnet_core.inference.distributed import local_cluster

    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        print(f"dask: local cluster of {args.workers} worker process(es)", file=sys.stderr)
        yield client


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
