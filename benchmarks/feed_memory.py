"""Peak memory of training through a feed, for a small and a ten times larger dataset.

Memory must not grow with the dataset. This script writes distinct synthetic cells (BMP,
like C-NMC) to a temporary folder, then, in a fresh child process per dataset size (peak
RSS is per process), imports Keras, builds a tiny classifier and runs one warm-up step
(the framework's baseline), reads the table and balances it into a plan (paths, labels
and augmentation parameters: a few hundred bytes of text per cell, which any trainer
holds), then:

* ``--feed cached`` (default; 2,000 vs 20,000 cells of 48 px): balances and augments the
  cells into an image cache on disk (:func:`allnet_core.feed.build_cache`) and trains one
  epoch from it (:class:`allnet_core.feed.CachedFeed`). The cache lives on disk and is
  read with positional reads, so neither building nor reading it keeps images in memory.
* ``--feed stream`` (200 vs 2,000 cells of 450 px): one epoch through
  :class:`allnet_core.feed.TrainingFeed`, which reads and augments every batch.

Both use the paper's batch size (16), balancing (the minority class filled with augmented
copies) and threads (Keras' enqueuer). The feed's *growth* is the peak of the child's
resident set (RSS, sampled every 5 ms from ``/proc/self/statm`` while the feed is built
and the epoch runs) minus its RSS just before: the framework's baseline (about 1 GB of
TensorFlow, the model, the warm-up step) and the table and plan are subtracted, and an
earlier, higher peak (``ru_maxrss``) cannot hide it. The criterion: the larger dataset's
growth exceeds the smaller one's by less than a tenth of what its extra samples take as
``uint8`` images (a feed that kept every image it read would add all of it). It also
prints each child's RSS after the warm-up, what the table and plan added, and the ratios
``growth(large) / growth(small)`` and ``peak(large) / peak(small)`` (the latter includes
the framework, so it says little).

Usage::

    python benchmarks/feed_memory.py [--feed cached|stream] [--sizes 2000 20000]
                                     [--cell-size 48] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rss import RssPeak, rss_bytes  # noqa: E402


def _synth_cells(n_base: int, seed: int, size: int) -> list[np.ndarray]:
    try:
        from allnet_core.synthetic import synth_cell
    except ImportError:  # pragma: no cover - fallback for trees without the generator
        synth_cell = None
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n_base):
        label = "ALL" if i % 10 < 7 else "HEM"
        if synth_cell is not None:
            cells.append(synth_cell(label, rng, size=size))
        else:
            yy, xx = np.mgrid[0:size, 0:size]
            disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < rng.uniform(.18, .24) * size**2
            img = np.zeros((size, size, 3), np.uint8)
            img[disc] = rng.integers(40, 230, size=(int(disc.sum()), 3))
            cells.append(img)
    return cells


def write_cells(folder: Path, n: int, size: int = 450,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct cells: 200 synthetic ones, turned/flipped/re-lit for more."""
    from allnet_core.io import write_image

    base = _synth_cells(min(n, 200), seed, size)
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
    return rss_bytes() / 2**20


def _tiny_model(keras, size: int):
    model = keras.Sequential([
        keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.AveragePooling2D(max(1, size // 30)), keras.layers.Flatten(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.zeros((16, size, size, 3), np.uint8)
    model.fit(x, np.eye(2, dtype=np.float32)[np.arange(16) % 2], epochs=1, verbose=0)
    return model


def _plan(labels):
    from allnet_core.augment import Augmenter, balance_plan

    return balance_plan(labels, per_class=len(labels) // 2, seed=0, augmenter=Augmenter(seed=0))


def _make_feed(feed: str, paths, labels, plan, size: int, workers: int, folder: Path):
    from allnet_core.feed import build_cache, make_cached_feed, make_feed

    if feed == "stream":
        return make_feed(paths, labels, plan=plan, batch_size=16, input_size=size, seed=0,
                         workers=workers), 0.0
    rows = plan["index"].to_numpy()
    t0 = time.perf_counter()
    info = build_cache(folder / f"cache_{len(labels)}.npy", [paths[i] for i in rows],
                       plan["params"].tolist(), size, workers=workers)
    built = time.perf_counter() - t0
    return make_cached_feed(info.path, [labels[i] for i in rows], batch_size=16, seed=0,
                            workers=workers), built


def child(listing: Path, n: int, workers: int, feed_kind: str, size: int) -> dict:
    """Build the feed of the first ``n`` cells and train one epoch; peak RSS (MiB)."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    model = _tiny_model(keras, size)
    framework = rss_mb()
    table = json.loads(listing.read_text())
    paths, labels = table["paths"][:n], table["labels"][:n]
    plan = _plan(labels)
    before = rss_mb()
    with RssPeak(interval=0.005) as sampled:
        feed, built = _make_feed(feed_kind, paths, labels, plan, size, workers,
                                 listing.parent)
        t0 = time.perf_counter()
        model.fit(feed, epochs=1, shuffle=False, verbose=0, callbacks=[feed.epoch_callback()])
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "samples": feed.num_samples, "batches": len(feed),
            "rss_framework": framework, "rss_before": before, "peak_feed": sampled.peak / 2**20,
            "peak": peak, "seconds": seconds,
            "build_seconds": built, "images_per_s": feed.num_samples / seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feed", choices=("cached", "stream"), default="cached")
    ap.add_argument("--sizes", type=int, nargs=2, help="dataset sizes (cached: 2000 20000, "
                    "stream: 200 2000)")
    ap.add_argument("--cell-size", type=int, help="cell side in px (cached: 48, stream: 450)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="write the cells here and keep them")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--listing", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.cell_size or (48 if args.feed == "cached" else 450)
    if args.child:
        print(json.dumps(child(args.listing, args.child, args.workers, args.feed, size)))
        return 0

    small, large = args.sizes or ((2000, 20000) if args.feed == "cached" else (200, 2000))
    with tempfile.TemporaryDirectory(prefix="feed_memory_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths, labels = write_cells(folder, large, size)
        print(f"wrote {large} distinct {size}x{size} cells to {folder} in "
              f"{time.perf_counter() - t0:.0f} s; feed: {args.feed}")
        listing = folder / "listing.json"
        listing.write_text(json.dumps({"paths": paths, "labels": labels}))
        results = {n: _run_child(listing, n, args, size) for n in (small, large)}
    return _report(results, small, large, size)


def _run_child(listing: Path, n: int, args, size: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), "--listing", str(listing), "--workers",
         str(args.workers), "--feed", args.feed, "--cell-size", str(size)],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    r = json.loads(out)
    print(f"{n:>6} cells -> {r['samples']:>6} samples, {r['batches']} batches: RSS after "
          f"warm-up {r['rss_framework']:.0f} MiB, + table and plan "
          f"{r['rss_before'] - r['rss_framework']:.1f} MiB; feed growth "
          f"{r['peak_feed'] - r['rss_before']:.1f} MiB (sampled peak {r['peak_feed']:.0f} MiB; "
          f"process peak {r['peak']:.0f} MiB); cache built in {r['build_seconds']:.1f} s, "
          f"epoch {r['seconds']:.1f} s, {r['images_per_s']:.0f} images/s")
    return r


def _report(results: dict, small: int, large: int, size: int) -> int:
    def growth(n):
        return results[n]["peak_feed"] - results[n]["rss_before"]

    extra = growth(large) - growth(small)
    extra_samples = results[large]["samples"] - results[small]["samples"]
    extra_images = extra_samples * size * size * 3 / 2**20
    limit = 0.1 * extra_images
    ok = extra < limit
    ratio = results[large]["peak"] / results[small]["peak"]
    print(f"feed growth (sampled peak RSS minus the RSS after the framework, table and plan): "
          f"{growth(small):.1f} MiB for {small} cells, {growth(large):.1f} MiB for {large}; "
          f"{extra:+.1f} MiB for {extra_samples} more samples, whose uint8 images take "
          f"{extra_images:.0f} MiB (limit a tenth: {limit:.1f} MiB: {'PASS' if ok else 'FAIL'})")
    def old(n):  # before issue 18: the process' lifetime peak (ru_maxrss) minus the RSS before
        return max(results[n]["peak"] - results[n]["rss_before"], 1.0)

    print(f"growth ratio {growth(large) / max(growth(small), 1.0):.2f}; process peak RSS "
          f"ratio {ratio:.2f} (includes the framework's ~"
          f"{results[small]['rss_framework']:.0f} MiB); the former measure (lifetime peak "
          f"ru_maxrss minus the RSS before, floored at 1 MiB): {old(small):.1f} vs "
          f"{old(large):.1f} MiB, ratio {old(large) / old(small):.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
