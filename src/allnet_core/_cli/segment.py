"""``allnet segment``: find white blood cells in images and cut them out.

Inputs are image files and folders (searched recursively, the file finder of ``allnet
classify``). For every image ``NAME.ext`` it writes into ``--out``:

* ``--method auto`` (default) or ``otsu``: ``NAME_labels.tif`` (int32 instance labels),
  ``NAME_cells/NAME_cell_001.png ...`` (``--size`` square crops, black outside the cell)
  and ``NAME_cells.csv`` (one row per cell: label, bounding box, area, centroid,
  touches_border, scale, crop file).
* ``--method paper``: the paper's pipeline instead, ``NAME_mask.png`` (0/255) and
  ``NAME_segmented.png`` (the image times the mask).

Images over 8192 x 8192 pixels, ``.zarr`` arrays, and every image with ``--tile`` are
segmented in tiles (:func:`allnet_core.segmentation.tiled.label_cells_tiled`, read region
by region, never whole): their labels go to ``NAME_labels.zarr`` (chunked) instead of a
TIFF; the crops and the table are as above.

Every file is written atomically. An unreadable image stops the run, or with ``--skip-bad``
is listed at the end and skipped (exit code 0, as ``allnet classify``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# allnet_core.segmentation.METHODS, kept literal so that --help loads no scipy (a test checks
# that the two agree)
_METHODS = ("auto", "otsu", "paper")


def register(subparsers) -> None:
    from allnet_core._cli._help import HelpFormatter, examples

    p = subparsers.add_parser(
        "segment",
        help="segment white blood cells and write labels, crops and a table",
        description="Find white blood cells in images and cut them out."
        " Writes NAME_labels.tif, NAME_cells/*.png and NAME_cells.csv per input "
        "(with --method paper: NAME_mask.png and NAME_segmented.png).",
        formatter_class=HelpFormatter, epilog=examples(
            "allnet segment smear_01.jpg --out seg/",
            "allnet segment smears/ --out seg/ --skip-bad      # a folder, searched recursively",
            "allnet segment smears/ --out seg/ --method paper  # the paper's mask and image"),
    )
    p.add_argument("images", nargs="+", metavar="INPUT", type=Path,
                   help="image files or folders (searched recursively)")
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
    p.add_argument("--tile", type=int, default=None, metavar="SIZE",
                   help="segment in tiles of SIZE pixels with overlap, labels to "
                   "NAME_labels.zarr (default: only images over 8192x8192 and .zarr arrays, "
                   "in tiles of 4096)")
    p.add_argument("--skip-bad", action="store_true",
                   help="report unreadable images and go on (default: stop at the first)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no line per image; only the final summary")
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


def _segment_one(path: Path, stem: str, out: Path,
                 args: argparse.Namespace) -> tuple[str, int, bool]:
    """Segment one image and write its files; ``(summary line, cells, in tiles)``."""
    import numpy as np

    from allnet_core.io import read_rgb, write_image, write_tiff
    from allnet_core.io_lazy import is_large_image
    from allnet_core.segmentation import extract_cells, label_cells, segment_paper

    if args.method != "paper" and (args.tile is not None or is_large_image(path)):
        n = _segment_tiled(path, stem, out, args)
        return f"{path.name}: {n} cells (in tiles)", n, True
    rgb = read_rgb(path)
    if args.method == "paper":
        mask, segmented = segment_paper(rgb)
        write_image(out / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
        write_image(out / f"{stem}_segmented.png", segmented)
        return f"{path.name}: {mask.mean():.1%} of pixels selected", 0, False
    labels = label_cells(rgb, method=args.method)
    crops, table = extract_cells(rgb, labels, size=args.size)
    names = _write_crops(out, stem, crops, table["label"], args.crop_format)
    _write_table(out, stem, path, table, names)
    write_tiff(out / f"{stem}_labels.tif", labels)
    return f"{path.name}: {len(table)} cells", len(table), False


def _write_crops(out: Path, stem: str, crops, labels, crop_format: str) -> list[str]:
    """Write ``NAME_cells/NAME_cell_<label>.<format>``; return the names for the table."""
    from allnet_core.io import write_image

    crop_dir = out / f"{stem}_cells"
    names = []
    for crop, lab in zip(crops, labels, strict=True):
        name = f"{stem}_cell_{int(lab):03d}.{crop_format}"
        write_image(crop_dir / name, crop)
        names.append(f"{crop_dir.name}/{name}")
    return names


def _write_table(out: Path, stem: str, path: Path, table, names: list[str]) -> None:
    """Write ``NAME_cells.csv``: the image, the cell table and the crop files."""
    from allnet_core.io import write_csv

    table = table.copy()
    table.insert(0, "image", str(path))
    table["crop"] = names
    write_csv(out / f"{stem}_cells.csv", table)


def _segment_tiled(path: Path, stem: str, out: Path, args: argparse.Namespace) -> int:
    """Segment one image in tiles: ``NAME_labels.zarr``, crops, ``NAME_cells.csv``.

    The crops are cut and written tile by tile, so memory never holds them all."""
    import pandas as pd

    from allnet_core.segmentation.tiled import TILE, label_cells_tiled, tiled_cell_crops

    seg = label_cells_tiled(path, tile=args.tile or TILE, method=args.method,
                            out=out / f"{stem}_labels.zarr")
    tables, names = [seg.table.iloc[:0]], []
    for crops, rows in tiled_cell_crops(path, seg.labels, seg.table, size=args.size):
        names += _write_crops(out, stem, crops, rows["label"], args.crop_format)
        tables.append(rows)
    if seg.cut:
        print(f"{path.name}: {seg.cut} cell(s) larger than the tiles' overlap "
              f"({seg.overlap} px) may be cut; give a larger --tile", file=sys.stderr)
    table = pd.concat(tables, ignore_index=True)
    _write_table(out, stem, path, table, names)
    return len(table)


def _segment_with_notes(path: Path, stem: str, out: Path,
                        args: argparse.Namespace) -> tuple[str, int, bool]:
    """:func:`_segment_one`, with what segmentation could not do (stain not recognised, the
    paper rule selecting nothing: :class:`SegmentationWarning`) on the image's line."""
    import warnings

    from allnet_core.segmentation import SegmentationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SegmentationWarning)
        summary, cells, tiled = _segment_one(path, stem, out, args)
    notes = [str(w.message) for w in caught if issubclass(w.category, SegmentationWarning)]
    return (summary + " (" + "; ".join(notes) + ")" if notes else summary), cells, tiled


def run(args: argparse.Namespace) -> int:
    """Run ``allnet segment``: every image of the inputs, a line or a bar per image."""
    from allnet_core._cli._progress import ProgressBar
    from allnet_core.errors import ConfigError, ImageReadError
    from allnet_core.inference.batch import find_image_files
    from allnet_core.io import check_output_dir

    if args.size < 1:
        raise ConfigError(f"--size must be a positive integer, got {args.size}")
    for path in args.images:  # an image that is not there is an unreadable image
        if not path.exists():
            raise ImageReadError(path, "no such file or folder")
    if args.tile is not None and args.tile < 64:
        raise ConfigError(f"--tile must be at least 64 pixels, got {args.tile}")
    # a .zarr array is one image (a folder on disk); other folders are searched for images
    arrays = [p for p in args.images if p.suffix.lower() == ".zarr" and p.is_dir()]
    others = [p for p in args.images if p not in arrays]
    files = arrays + (find_image_files(others) if others else [])  # empty folder: fails fast
    out = check_output_dir(args.out)  # a file, a read-only folder: refused up front
    out.mkdir(parents=True, exist_ok=True)

    bar = None if args.quiet else ProgressBar(len(files), "segment")
    total, tiled, problems = 0, 0, []
    try:
        for i, (path, stem) in enumerate(zip(files, _unique_stems(files), strict=True)):
            try:
                summary, cells, in_tiles = _segment_with_notes(path, stem, out, args)
            except ImageReadError as exc:
                if not args.skip_bad:
                    raise ImageReadError(exc.path, f"{exc.problem}\n(stopped at file {i + 1} of "
                                         f"{len(files)}; use --skip-bad to report unreadable "
                                         "images and go on)") from exc
                problems.append(str(exc))
                summary, cells, in_tiles = f"skipped {path.name}", 0, False
            total, tiled = total + cells, tiled + in_tiles
            if bar is not None:
                bar.update(i + 1, summary)
    finally:
        if bar is not None:
            bar.close()
    for message in problems:
        print(f"skipped: {message}", file=sys.stderr)
    done = len(files) - len(problems)
    what = f"{total} cells from {done} images" if args.method != "paper" else \
        f"paper masks of {done} images"
    skipped = f"; {len(problems)} unreadable file(s) skipped" if problems else ""
    skipped += f"; {tiled} image(s) segmented in tiles" if tiled else ""
    print(f"{what} written to {out}{skipped}")
    return 0
