"""Memory and time of tiled segmentation on a 20,000 x 20,000 synthetic smear (issue 13).

Prints, measured in this run, each case in its own subprocess (peak RSS from
``resource.getrusage``, the whole process, Python and libraries included):

* tiled segmentation (:func:`allnet_core.segmentation.label_cells_tiled`) of a
  ``--side`` x ``--side`` (20,000) smear stored as a tiled TIFF, labels to a zarr folder:
  wall clock and peak RSS (goal <= 2 GB);
* on a size that still fits in memory (``--fits``, 6,000): untiled ``label_cells`` on the
  array against tiled segmentation of the same pixels from a tiled TIFF: wall clock,
  peak RSS, and how well they agree (untiled cells matched at IoU >= 0.9).

The smear is a mosaic of 16 synthetic BCCD-like fields (512 x 512, with red cells,
platelets and white cells), written tile by tile, so it is never whole in memory here.

Usage::

    python benchmarks/tiled_segmentation.py [--side 20000] [--fits 6000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_FIELD = 512


def _fields(n: int = 16) -> list[np.ndarray]:
    from allnet_core.synthetic import synth_smear

    return [synth_smear(seed=s, shape=(_FIELD, _FIELD), n_wbc=3, border_cell=False,
                        touching_pair=False)[0] for s in range(n)]


def write_mosaic(path: Path, side: int) -> None:
    """A ``side x side`` smear as a tiled TIFF (tiles of one field each)."""
    import tifffile

    fields = _fields()
    rng = np.random.default_rng(0)
    n = -(-side // _FIELD)
    picks = rng.integers(0, len(fields), (n, n))

    def tiles():
        for i in range(n):
            for j in range(n):
                yield fields[picks[i, j]]

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype=np.uint8,
                     tile=(_FIELD, _FIELD), photometric="rgb", compression="zlib",
                     bigtiff=True)


def child(mode: str, image: str, out: str, workers: int) -> None:
    """One measurement, in its own process: prints a JSON line. Wall clock from reading
    the file to the labels (imports not counted)."""
    import dask.array  # noqa: F401  (imports are not what is measured)
    import tifffile  # noqa: F401
    import zarr  # noqa: F401

    from allnet_core.io import read_rgb
    from allnet_core.segmentation import label_cells, label_cells_tiled

    t0 = time.perf_counter()
    if mode == "tiled":
        res = label_cells_tiled(image, out=out, num_workers=workers)
        n, extra = len(res.table), {"overlap": res.overlap, "cut": res.cut}
    else:
        lab = label_cells(read_rgb(image))
        np.save(out, lab)
        n, extra = int(lab.max()), {}
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"mode": mode, "wall": wall, "rss_gib": rss, "cells": n, **extra}))


def _run(mode: str, image: Path, out: Path, workers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(image), str(out),
                           str(workers)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agreement(untiled: np.ndarray, tiled: np.ndarray) -> float:
    """The fraction of untiled cells matched in the tiled labels at IoU >= 0.9."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _labels import best_iou

    return float((best_iou(untiled, tiled) >= 0.9).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=20_000)
    parser.add_argument("--fits", type=int, default=6_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, image, out, workers = args.child
        child(mode, image, out, int(workers))
        return 0
    import zarr

    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="allnet-tiled-") as tmp:
        tmp = Path(tmp)
        small = tmp / "fits.tif"
        write_mosaic(small, args.fits)
        untiled = _run("untiled", small, tmp / "untiled.npy", args.workers)
        tiled = _run("tiled", small, tmp / "fits_labels.zarr", args.workers)
        agree = _agreement(np.load(tmp / "untiled.npy"),
                           np.asarray(zarr.open_array(str(tmp / "fits_labels.zarr"))[:]))
        print(f"{args.fits} x {args.fits}: untiled {untiled['wall']:.1f} s, "
              f"{untiled['rss_gib']:.2f} GiB peak; tiled ({args.workers} threads) "
              f"{tiled['wall']:.1f} s, {tiled['rss_gib']:.2f} GiB peak; wall ratio "
              f"untiled/tiled {untiled['wall'] / tiled['wall']:.2f}; cells {untiled['cells']} "
              f"vs {tiled['cells']}, {agree:.1%} of untiled cells matched at IoU >= 0.9")
        (tmp / "fits.tif").unlink()
        big = tmp / "big.tif"
        t0 = time.perf_counter()
        write_mosaic(big, args.side)
        print(f"wrote the {args.side} x {args.side} smear in {time.perf_counter() - t0:.0f} s "
              f"({big.stat().st_size / 2**20:.0f} MiB tiled TIFF)")
        res = _run("tiled", big, tmp / "big_labels.zarr", args.workers)
        print(f"{args.side} x {args.side} tiled ({args.workers} threads): {res['wall']:.1f} s, "
              f"peak RSS {res['rss_gib']:.2f} GiB (goal <= 2 GB), {res['cells']} cells, "
              f"overlap {res['overlap']} px, {res['cut']} cut")
    print(f"load average after:  {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
