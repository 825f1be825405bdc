"""``allnet augment``: write a class-balanced, augmented copy of a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from allnet_core._cli._help import HelpFormatter, examples

    p = sub.add_parser(
        "augment", help="write a class-balanced, augmented copy of a dataset (paper Fig. 8)",
        description=(
            "Balance a dataset to N images per class, as the paper did: classes with more "
            "images are subsampled, classes with fewer are filled with augmented copies "
            "(flips, rotations, brightness, Gaussian blur with salt-and-pepper noise) spread "
            "evenly over their originals. The output folder is a dataset in its own right "
            "(class folders, fold folders kept, subjects.csv, augment_plan.csv). Note: "
            "augmenting before splitting puts near-copies of a cell on both sides of a "
            "per-image split; 'allnet train' balances the training part of each split only."
        ), formatter_class=HelpFormatter, epilog=examples(
            "allnet augment data/C-NMC_Leukemia --out data/balanced     # 6000 per class",
            "allnet augment data/small --out data/small_bal --per-class 500 --seed 1"))
    p.add_argument("data", type=Path, help="dataset folder (C-NMC layout or class folders)")
    p.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    p.add_argument("--per-class", type=int, default=6000, metavar="N",
                   help="images per class after balancing (default 6000, as the paper)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads writing files (default: up to 4)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from allnet_core._cli._progress import ProgressBar
    from allnet_core.augment import write_balanced_dataset
    from allnet_core.datasets import discover
    from allnet_core.errors import ConfigError
    from allnet_core.io import check_output_dir

    if args.per_class <= 0:
        raise ConfigError(f"--per-class must be a positive integer, got {args.per_class}")
    if args.workers is not None and args.workers <= 0:
        raise ConfigError(f"--workers must be a positive integer, got {args.workers}")
    check_output_dir(args.out)  # before every image is decoded
    table = discover(args.data)
    bar = None

    def progress(event: dict) -> None:
        nonlocal bar
        if event["kind"] == "start":
            bar = ProgressBar(event["total"], "augment")
        elif event["kind"] == "file" and bar is not None:
            bar.update(event["done"])

    try:
        plan = write_balanced_dataset(table, args.out, per_class=args.per_class,
                                      seed=args.seed, workers=args.workers, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    counts = plan.groupby("label").size().to_dict()
    copies = int(plan["augment"].sum())
    per_class = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"Wrote {len(plan)} images to {args.out} ({per_class}; {copies} augmented copies, "
          f"{len(plan) - copies} originals).")
    print(f"Plan: {args.out / 'augment_plan.csv'}")
    return 0
