"""``allnet data check`` and ``allnet data synth``."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Example paths per kind of problem when --show is not given.
_EXAMPLES = 3
#: Paths per listing category when --show is not given.
_LISTED = 10


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    from allnet_core._cli._help import CLASSES_HELP, HelpFormatter, examples

    p = sub.add_parser("data", help="check a dataset folder or write a synthetic one",
                       description="Check a dataset folder or write a synthetic one.",
                       formatter_class=HelpFormatter, epilog=examples(
                           "allnet data check data/C-NMC_Leukemia",
                           "allnet data synth data/synthetic --subjects 16"))
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    c = data_sub.add_parser(
        "check", help="summarise a dataset and list its problems",
        description="Print counts per class, fold and subject and every problem found "
        "(unreadable, unlabelled or duplicate files, unknown class folders, one class only). "
        "Repeated problems are grouped: one line with the count and a few example paths. "
        "Exits with 1 when there are errors.",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet data check data/C-NMC_Leukemia",
            "allnet data check data/zheng --classes blast=ALL,normal=HEM --show 5",
            "allnet data check data/C-NMC_Leukemia --against-listing kaggle_listing.tsv",
            "allnet data check data/big --no-verify --show 0     # counts only, fast"))
    c.add_argument("root", type=Path, help="dataset folder (C-NMC layout or class folders)")
    c.add_argument("--classes", metavar="MAP", help=CLASSES_HELP)
    c.add_argument("--against-listing", type=Path, metavar="FILE",
                   help="official sha256 listing (TSV: sha256, size_bytes, path) to compare with")
    c.add_argument("--no-verify", action="store_true",
                   help="do not decode every image (faster, misses unreadable files)")
    c.add_argument("--show", type=_count, default=None, metavar="N",
                   help=f"example paths per kind of problem (default {_EXAMPLES}) and paths "
                   f"per listing category (default {_LISTED}); 0 shows counts only")
    c.set_defaults(func=_check)

    s = data_sub.add_parser(
        "synth", help="write a synthetic dataset in the C-NMC layout",
        description="Write synthetic C-NMC-like cells (half patients with ALL cells, half "
        "healthy donors with HEM cells, one stain style per subject).",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet data synth data/synthetic",
            "allnet data synth /tmp/tiny --subjects 4 --cells-per-subject 5 --size 96"))
    s.add_argument("out", type=Path, help="output folder")
    s.add_argument("--subjects", type=int, default=8, help="number of subjects (default 8)")
    s.add_argument("--cells-per-subject", type=int, default=20,
                   help="cells per subject (default 20)")
    s.add_argument("--size", type=int, default=450, help="image size in pixels (default 450)")
    s.add_argument("--folds", type=int, default=3, help="number of fold_N folders (default 3)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(func=_synth)


def _check(args: argparse.Namespace) -> int:
    from allnet_core.datasets import compare_with_listing, parse_class_map, scan

    classes = parse_class_map(args.classes)
    report = scan(args.root, verify=not args.no_verify, classes=classes)
    print(report.summary(show=_EXAMPLES if args.show is None else args.show))
    if args.against_listing is not None:
        args.show = _LISTED if args.show is None else args.show
        cmp = compare_with_listing(args.root, args.against_listing)
        print(f"Listing {args.against_listing}: {cmp['expected']} official file(s) in scope, "
              f"{len(cmp['matching'])} match, {len(cmp['differing'])} differ, "
              f"{len(cmp['missing'])} missing, {len(cmp['extra'])} not in the listing")
        for key in ("differing", "missing", "extra"):
            paths = cmp[key]
            for path in paths[: args.show]:
                print(f"  {key}: {path}")
            if len(paths) > args.show:
                print(f"  {key}: ... and {len(paths) - args.show} more")
        if cmp["differing"]:
            return 1
    return 1 if report.errors else 0


def _synth(args: argparse.Namespace) -> int:
    from allnet_core.synthetic import write_cnmc_dataset

    for name in ("subjects", "cells_per_subject", "size", "folds"):
        if getattr(args, name) < 1:
            from allnet_core.errors import ConfigError

            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    try:
        out = write_cnmc_dataset(args.out, subjects=args.subjects,
                                 cells_per_subject=args.cells_per_subject, seed=args.seed,
                                 size=args.size, folds=args.folds)
    except ValueError as exc:
        from allnet_core.errors import ConfigError

        raise ConfigError(str(exc)) from exc
    n = args.subjects * args.cells_per_subject
    print(f"Wrote {n} synthetic cells of {args.subjects} subjects to {out}")
    return 0
