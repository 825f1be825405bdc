"""Feed images/s against ALLNet training images/s at 450x450, in the same run.

The feed must never be the bottleneck: it should deliver at least 10x the images per
second that one ALLNet training step consumes on the same machine. This script writes 64
synthetic 450x450 cells (BMP), then measures, in one process:

* the feed, worst case: every sample read from disk (no cache) and augmented on the fly
  (``Augmenter()`` defaults, at least one kind each), resized and batched (16) — once on
  one thread and once with ``--workers`` threads calling ``__getitem__`` as Keras'
  enqueuer does;
* ALLNet (paper size, 95 M parameters) ``train_on_batch`` on batches of 16 at 450x450 with
  Adam and categorical cross-entropy, after a warm-up step.

Usage::

    python benchmarks/feed_speed.py [--steps 3] [--workers 2] [--feed-batches 24]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def write_cells(folder: Path, n: int) -> tuple[list[str], list[str]]:
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cell

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        label = "ALL" if i % 2 else "HEM"
        path = folder / f"cell_{i:03d}.bmp"
        write_image(path, synth_cell(label, rng, size=450))
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def feed_rate(feed, batches: int, workers: int) -> float:
    """Images per second over ``batches`` batches (cycling), with ``workers`` threads."""
    indices = [i % len(feed) for i in range(batches)]
    feed[0]  # warm imports
    t0 = time.perf_counter()
    n = 0
    if workers <= 1:
        for i in indices:
            n += len(feed[i][0])
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for x, _ in pool.map(feed.__getitem__, indices):
                n += len(x)
    return n / (time.perf_counter() - t0)


def train_rate(x: np.ndarray, y: np.ndarray, steps: int) -> float:
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet

    keras = get_keras()
    model = build_allnet((450, 450, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="categorical_crossentropy")
    model.train_on_batch(x, y)  # build and compile the step
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed ALLNet training steps")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--feed-batches", type=int, default=24)
    args = ap.parse_args()

    from allnet_core.augment import Augmenter
    from allnet_core.backend import backend_name
    from allnet_core.feed import make_feed

    with tempfile.TemporaryDirectory(prefix="feed_speed_") as tmp:
        paths, labels = write_cells(Path(tmp), 64)
        feed = make_feed(paths, labels, augmenter=Augmenter(seed=0), batch_size=16,
                         input_size=450, seed=0, workers=args.workers)
        one = feed_rate(feed, args.feed_batches, 1)
        many = feed_rate(feed, args.feed_batches, args.workers)
        plain = make_feed(paths, labels, batch_size=16, input_size=450, shuffle=False,
                          workers=args.workers)
        plain_rate = feed_rate(plain, args.feed_batches, args.workers)
        x, y = feed[0]
    train = train_rate(x, y, args.steps)
    print(f"CPU cores: {os.cpu_count()}, Keras backend: {backend_name()}")
    print(f"feed, every sample augmented, 1 thread:        {one:8.1f} images/s")
    print(f"feed, every sample augmented, {args.workers} threads:       {many:8.1f} images/s")
    print(f"feed, no augmentation (validation), {args.workers} threads: {plain_rate:8.1f} images/s")
    print(f"ALLNet training step at 450x450, batch 16:     {train:8.1f} images/s")
    ratio = many / train
    print(f"feed / training: {ratio:.1f}x with {args.workers} threads, {one / train:.1f}x on one "
          f"thread (target >= 10x: {'PASS' if ratio >= 10 else 'FAIL'})")
    return 0 if ratio >= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
