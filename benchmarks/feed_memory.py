"""Peak memory of one training epoch through the feed: 200 vs 2,000 cells of 450x450.

Memory must not grow with the dataset: the feed holds paths, labels and a plan, and reads
images per batch. This script writes 2,000 distinct synthetic 450x450 cells (BMP, like
C-NMC) to a temporary folder, then runs one ``model.fit`` epoch through
:class:`allnet_core.feed.TrainingFeed` on the first 200 and on all 2,000, each in a fresh
child process of this run (peak RSS is per process), with the paper's batch size (16),
balancing (minority class filled with augmented copies) and threads (Keras' enqueuer).
The model is a tiny classifier at 450x450 so that the feed, not the model, is measured.

It prints both peaks, their growth over the RSS before the epoch, and the ratio
``peak(2000) / peak(200)`` against the issue's limit of 1.3.

Usage::

    python benchmarks/feed_memory.py [--sizes 200 2000] [--workers 2] [--keep DIR]
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


def _synth_cells(n_base: int, seed: int) -> list[np.ndarray]:
    try:
        from allnet_core.synthetic import synth_cell
    except ImportError:  # pragma: no cover - fallback for trees without the generator
        synth_cell = None
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n_base):
        label = "ALL" if i % 10 < 7 else "HEM"
        if synth_cell is not None:
            cells.append(synth_cell(label, rng, size=450))
        else:
            yy, xx = np.mgrid[0:450, 0:450]
            disc = (yy - 225) ** 2 + (xx - 225) ** 2 < rng.uniform(80, 110) ** 2
            img = np.zeros((450, 450, 3), np.uint8)
            img[disc] = rng.integers(40, 230, size=(int(disc.sum()), 3))
            cells.append(img)
    return cells


def write_cells(folder: Path, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct 450x450 cells: 200 synthetic ones, turned/flipped/re-lit for more."""
    from allnet_core.io import write_image

    base = _synth_cells(min(n, 200), seed)
    paths, labels = [], []
    for i in range(n):
        b = i % len(base)
        variant = i // len(base)
        img = np.rot90(base[b], k=variant % 4)
        if variant % 8 >= 4:
            img = img[:, ::-1]
        if variant >= 8:  # brightness step keeps files distinct beyond 8 variants
            img = np.clip(img.astype(np.int16) + (variant // 8) * (img > 0), 0, 255)
        label = "ALL" if b % 10 < 7 else "HEM"
        path = folder / f"cell_{i:05d}_{label.lower()}.bmp"
        write_image(path, np.ascontiguousarray(img, dtype=np.uint8))
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(listing: Path, n: int, workers: int) -> dict:
    """One epoch on the first ``n`` cells; returns peak RSS figures (MiB)."""
    from allnet_core.augment import balance_plan
    from allnet_core.backend import get_keras
    from allnet_core.feed import make_feed

    keras = get_keras()
    table = json.loads(listing.read_text())
    paths, labels = table["paths"][:n], table["labels"][:n]
    plan = balance_plan(labels, per_class=n // 2, seed=0)
    feed = make_feed(paths, labels, plan=plan, batch_size=16, input_size=450, seed=0,
                     workers=workers)
    model = keras.Sequential([
        keras.Input((450, 450, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.AveragePooling2D(15), keras.layers.Flatten(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(feed, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    now = rss_mb()
    t0 = time.perf_counter()
    model.fit(feed, epochs=1, shuffle=False, verbose=0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "samples": feed.num_samples, "batches": len(feed), "rss_before": now,
            "peak_before": before, "peak": peak, "seconds": seconds,
            "images_per_s": feed.num_samples / seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=(200, 2000))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="write the cells here and keep them")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--listing", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.listing, args.child, args.workers)))
        return 0

    small, large = args.sizes
    with tempfile.TemporaryDirectory(prefix="feed_memory_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths, labels = write_cells(folder, large)
        print(f"wrote {large} distinct 450x450 cells to {folder} in "
              f"{time.perf_counter() - t0:.0f} s")
        listing = folder / "listing.json"
        listing.write_text(json.dumps({"paths": paths, "labels": labels}))
        results = {}
        for n in (small, large):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--listing", str(listing),
                 "--workers", str(args.workers)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            results[n] = r = json.loads(out)
            print(f"{n:>5} cells -> {r['samples']:>5} samples, {r['batches']} batches: "
                  f"RSS before epoch {r['rss_before']:.0f} MiB, peak {r['peak']:.0f} MiB "
                  f"(growth {r['peak'] - r['rss_before']:.0f} MiB), {r['seconds']:.1f} s, "
                  f"{r['images_per_s']:.0f} images/s")
    ratio = results[large]["peak"] / results[small]["peak"]
    growth = ((results[large]["peak"] - results[large]["rss_before"])
              / max(results[small]["peak"] - results[small]["rss_before"], 1.0))
    as_floats = large * 450 * 450 * 3 * 4 / 2**20
    print(f"peak RSS ratio {large}/{small}: {ratio:.2f} (limit 1.3: "
          f"{'PASS' if ratio <= 1.3 else 'FAIL'}); growth ratio {growth:.2f}; holding "
          f"{large} cells as float32 would take {as_floats:.0f} MiB")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
