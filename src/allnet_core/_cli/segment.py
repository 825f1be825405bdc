"""``allnet segment``: find white blood cells in images and cut them out.

For every input image ``NAME.ext`` it writes into ``--out``:

* ``--method auto`` (default) or ``otsu``: ``NAME_labels.tif`` (int32 instance labels),
  ``NAME_cells/NAME_cell_001.png ...`` (``--size`` square crops, black outside the cell)
  and ``NAME_cells.csv`` (one row per cell: label, bounding box, area, centroid,
  touches_border, scale, crop file).
* ``--method paper``: the paper's pipeline instead, ``NAME_mask.png`` (0/255) and
  ``NAME_segmented.png`` (the image times the mask).

Every file is written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# allnet_core.segmentation.METHODS, kept literal so that --help loads no scipy (a test checks
# that the two agree)
_METHODS = ("auto", "otsu", "paper")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment white blood cells and write labels, crops and a table",
        description="Find white blood cells in images and cut them out."
        " Writes NAME_labels.tif, NAME_cells/*.png and NAME_cells.csv per input "
        "(with --method paper: NAME_mask.png and NAME_segmented.png).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", type=Path, help="input images")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument(
        "--method",
        choices=_METHODS,
        default="auto",
        help="auto: adaptive default; otsu: Otsu on HSI saturation; paper: the paper's "
        "fixed HSI rule, writing its mask and segmented image (default: auto)",
    )
    p.add_argument(
        "--size", type=int, default=450, help="side of the square cell crops (default: 450)"
    )
    p.add_argument(
        "--crop-format",
        choices=("png", "bmp"),
        default="png",
        help="file format of the crops (default: png)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        stem = path.stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        out.append(stem if n == 0 else f"{stem}_{n + 1}")
    return out


def run(args: argparse.Namespace) -> int:
    import warnings

    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import ConfigError, ImageReadError
    from allnet_core.io import read_rgb
    from allnet_core.segmentation import SegmentationWarning

    if args.size < 1:
        raise ConfigError(f"--size must be a positive integer, got {args.size}")
    for path in args.images:
        if not path.is_file():
            raise ImageReadError(path, "no such file")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    bar = None if args.quiet else ProgressBar(len(args.images), "segment")
    total = 0
    for i, (path, stem) in enumerate(zip(args.images, _unique_stems(args.images), strict=True)):
        rgb = read_rgb(path)
        # what segmentation could not do (stain not recognised, paper rule selects nothing)
        # goes on the image's line
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SegmentationWarning)
            n, summary = _segment_one(args, rgb, path, stem, out)
        total += n
        notes = [str(w.message) for w in caught if issubclass(w.category, SegmentationWarning)]
        if notes:
            summary += " (" + "; ".join(notes) + ")"
        if bar is not None:
            bar.update(i + 1, summary)
        else:
            print(summary)
    if bar is not None:
        bar.close()
    if args.method != "paper":
        print(f"{total} cells from {len(args.images)} images written to {out}")
    else:
        print(f"paper masks of {len(args.images)} images written to {out}")
    return 0


def _segment_one(args, rgb, path: Path, stem: str, out: Path) -> tuple[int, str]:
    """Segment one image and write its files; return its cell count and summary line."""
    import numpy as np

    from allnet_core.io import write_csv, write_image, write_tiff
    from allnet_core.segmentation import extract_cells, label_cells, segment_paper

    if args.method == "paper":
        mask, segmented = segment_paper(rgb)
        write_image(out / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
        write_image(out / f"{stem}_segmented.png", segmented)
        return 0, f"{path.name}: {mask.mean():.1%} of pixels selected"
    labels = label_cells(rgb, method=args.method)
    crops, table = extract_cells(rgb, labels, size=args.size)
    crop_dir = out / f"{stem}_cells"
    names = []
    for crop, lab in zip(crops, table["label"], strict=True):
        name = f"{stem}_cell_{int(lab):03d}.{args.crop_format}"
        write_image(crop_dir / name, crop)
        names.append(f"{crop_dir.name}/{name}")
    table.insert(0, "image", str(path))
    table["crop"] = names
    write_tiff(out / f"{stem}_labels.tif", labels)
    write_csv(out / f"{stem}_cells.csv", table)
    return len(table), f"{path.name}: {len(table)} cells"
