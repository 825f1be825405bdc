"""Images per second per CPU core of the two training feeds at 450x450, against a plain
memory copy of the same bytes in the same run, and the cores a GPU would need.

An H100 that runs the paper's protocol (5 folds x 65 epochs x ~9,600 images) in 15
minutes consumes about 3,500 images per second. This script writes 64 synthetic 450x450
cells (BMP, like C-NMC), a plan of ``--rows`` augmented samples of them, and measures on
one thread (images/s per core: per second of the thread's CPU time):

* **on the fly** (``feed="stream"``): every batch of 16 read from the files, augmented by
  its plan row, resized and cast to float32 (:class:`allnet_core.feed.FeedCore`); the
  files' pages are dropped from the page cache first, so the first reads come from the
  disk (64 files, each read several times, so most reads hit the page cache again);
* **building the cache**: the same work once, written as ``uint8`` to disk
  (:func:`allnet_core.feed.build_cache`; with ``--workers`` processes too);
* **cached** (``feed="cached"``): every batch of 16 read from the cache in the epoch's
  shuffled order (:class:`allnet_core.feed.CachedFeedCore`), without and with random
  flips/quarter turns. *Cold*: before timing, the cache file's pages are dropped from the
  page cache (``posix_fadvise(POSIX_FADV_DONTNEED)`` on the fsync-ed file), so reads come
  from the disk; *warm*: a second pass, from the page cache (the usual case in training:
  a fold's cache of 7.3 GB fits the RAM of a GPU machine);
* whether a drop worked is checked, not assumed: after each drop the script counts the
  file's pages still resident (``mincore``) and prints that fraction; where the drop
  fails (no ``posix_fadvise``, a tmpfs, dirty pages) the "cold" figures are page-cache
  reads and the report says so;
* **memory copy**: copying a batch's bytes from one array in RAM to another (``np.copyto``),
  the ceiling of any feed that delivers those bytes.

Usage::

    python benchmarks/feed_speed.py [--rows 512] [--workers 2] [--target 3500] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import mmap
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 450
BATCH = 16


def write_cells(folder: Path, n: int = 64) -> tuple[list[str], list[str]]:
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cell

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        label = "ALL" if i % 2 else "HEM"
        path = folder / f"cell_{i:03d}.bmp"
        write_image(path, synth_cell(label, rng, size=SIZE))
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def rate(get, batches: int, drop=None) -> tuple[float, float]:
    """Images per second of ``get(i)`` over batches ``0 .. batches - 1`` on this thread:
    per second of this thread's CPU time (per core: what other processes on a shared
    machine take does not count) and per second of wall-clock time (waits for the disk
    count). ``drop()``, when given, runs after the warm-up call, just before timing."""
    get(0)  # warm imports and caches of the code (drop() then evicts the data again)
    if drop is not None:
        drop()
    t0, c0 = time.perf_counter(), time.thread_time()
    n = sum(len(get(i)[0]) for i in range(batches))
    return n / (time.thread_time() - c0), n / (time.perf_counter() - t0)


def drop_page_cache(path: Path) -> bool:
    """Ask the kernel to drop ``path``'s pages from the page cache (clean pages only)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def resident_fraction(path: Path) -> float | None:
    """Fraction of ``path``'s pages in the page cache (``mincore``); None where unknown."""
    size = path.stat().st_size
    libc_name = ctypes.util.find_library("c")
    if not size or not libc_name:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(addr, size, vec) != 0:
                return None
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / pages


def drop_files(paths) -> float | None:
    """Drop every file's pages; the largest resident fraction left (None if unknown)."""
    fractions = []
    for path in paths:
        if not drop_page_cache(Path(path)):
            return None
        fractions.append(resident_fraction(Path(path)))
    return None if None in fractions else max(fractions)


def memory_copy_rate(repeats: int = 200) -> tuple[float, float]:
    src = np.random.default_rng(0).integers(0, 255, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    dst = np.empty_like(src)

    def copy(_):
        np.copyto(dst, src)
        return (dst,)

    return rate(copy, repeats)


def measure(folder: Path, rows: int, workers: int) -> dict:
    from allnet_core.augment import Augmenter, balance_plan
    from allnet_core.feed import CachedFeedCore, FeedCore, build_cache

    paths, labels = write_cells(folder)
    plan = balance_plan(labels, per_class=rows // 2, seed=0, augmenter=Augmenter(seed=0))
    row_paths = [paths[i] for i in plan["index"]]
    row_labels = [labels[i] for i in plan["index"]]
    stream = FeedCore(paths, labels, plan=plan, batch_size=BATCH, input_size=SIZE, seed=0)
    out = {"rows": len(plan)}

    def drop_sources():
        out["resident_sources"] = drop_files(paths)

    out["stream"] = rate(stream.__getitem__, min(len(stream), 12), drop=drop_sources)

    t0, c0 = time.perf_counter(), time.thread_time()
    cache = build_cache(folder / "one.npy", row_paths, plan["params"].tolist(), SIZE)
    out["build_1_process"] = (len(plan) / (time.thread_time() - c0),
                              len(plan) / (time.perf_counter() - t0))
    if workers > 1:  # wall clock: the work is in other processes
        t0 = time.perf_counter()
        build_cache(folder / "many.npy", row_paths, plan["params"].tolist(), SIZE,
                    workers=workers)
        out[f"build_{workers}_processes"] = len(plan) / (time.perf_counter() - t0)
        (folder / "many.npy").unlink()

    for flips in (False, True):
        feed = CachedFeedCore(cache.path, row_labels, batch_size=BATCH, seed=1, flips=flips)
        name = "cached_flips" if flips else "cached"

        def drop_cache(name=name):
            out[f"resident_{name}"] = drop_files([cache.path])

        out[f"{name}_cold"] = rate(feed.__getitem__, len(feed), drop=drop_cache)
        out[f"{name}_warm"] = rate(feed.__getitem__, len(feed))
        feed.close()
    out["memory_copy"] = memory_copy_rate()
    return out


def report(r: dict, target: float, workers: int) -> bool:
    print(f"CPU cores here: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; "
          f"{r['rows']} cached 450 px images ({r['rows'] * SIZE * SIZE * 3 / 2**20:.0f} MiB)")
    for what, key in (("source files (on the fly)", "resident_sources"),
                      ("cache (cold passes)", "resident_cached"),
                      ("cache (cold passes with flips)", "resident_cached_flips")):
        left = r.get(key)
        verdict = ("unknown: cold figures may be page-cache reads" if left is None else
                   "reads come from the disk" if left < 0.05 else
                   "NOT dropped: cold figures are page-cache reads")
        shown = "?" if left is None else f"{100 * left:.0f} %"
        print(f"page cache after the drop, {what}: {shown} of the pages resident ({verdict})")
    print("images/s per core = per second of the thread's CPU time; wall = per second of "
          "wall-clock time (includes waiting for the disk and for other processes)")
    print(f"{'one thread':<46} {'per core':>9} {'wall':>7} {'x memcpy':>9} "
          f"{'cores for ' + str(int(target)) + '/s':>16}")
    rows = [("on the fly (read from disk, augment, resize)", "stream"),
            ("building the cache (once per fold)", "build_1_process"),
            ("cached, cold (from disk)", "cached_cold"),
            ("cached, warm (from the page cache)", "cached_warm"),
            ("cached + flips/turns, cold", "cached_flips_cold"),
            ("cached + flips/turns, warm", "cached_flips_warm"),
            ("memory copy of the same bytes", "memory_copy")]
    for text, key in rows:
        core, wall = r[key]
        print(f"{text:<46} {core:9.0f} {wall:7.0f} {core / r['memory_copy'][0]:9.3f} "
              f"{target / core:16.2f}")
    key = f"build_{workers}_processes"
    if key in r:
        print(f"building with {workers} processes: {r[key]:.0f} images/s wall "
              f"({r[key] / r['build_1_process'][1]:.2f}x one process, wall)")
    disk = target * SIZE * SIZE * 3 / 1e9
    print(f"at {target:.0f} images/s the cached feed reads {disk:.1f} GB/s: from the page "
          f"cache when the fold's cache fits in RAM, else the disk must deliver it (here, "
          f"cold: {r['cached_cold'][1] * SIZE * SIZE * 3 / 1e9:.2f} GB/s on one thread)")
    need = target / r["cached_cold"][0]
    ok = need <= 4
    print(f"cached feed: {need:.2f} of the GPU machine's 16 cores for {target:.0f} images/s "
          f"(limit 4: {'PASS' if ok else 'FAIL'}); with flips/turns every epoch "
          f"{target / r['cached_flips_cold'][0]:.2f}; the on-the-fly feed would need "
          f"{target / r['stream'][0]:.0f}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=512, help="cached samples (default 512)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="processes for the parallel cache build")
    ap.add_argument("--target", type=float, default=3500.0, help="images/s the GPU consumes")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="feed_speed_") as tmp:
        result = measure(Path(tmp), args.rows, args.workers)
    ok = report(result, args.target, args.workers)
    if args.json:
        print(json.dumps({k: [round(x, 1) for x in v] if isinstance(v, tuple) else
                          round(v, 1) if isinstance(v, float) else v
                          for k, v in result.items()}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
