"""Speed and memory of WBC segmentation (issue 3), each against a baseline in the same run.

(a) The paper's saturation + mask + multiply step on 450x450 cells, against the
    straightforward scikit-image path (``skimage.color.rgb2hsv``, threshold, multiply).
    Goal: ratio >= 20x.
(b) Whole-field ``label_cells`` on BCCD 640x480 fields on one core, against a naive
    Otsu + morphology + label pipeline. Goal: >= 50 fields/s.
(c) Peak extra memory of ``label_cells`` on an 8000x8000 field (BCCD fields tiled),
    measured with ``tracemalloc`` (numpy allocations) and as the growth of the process'
    peak RSS. Goal: < ~16 bytes per pixel.

Usage::

    ALLNET_DATA_DIR=/path/to/data python benchmarks/segmentation_speed.py [--quick]

Without ``ALLNET_DATA_DIR`` the cells and fields are synthetic (random colours), which
still times (a) fairly; (b) and (c) then use ``allnet_core.synthetic`` smears if present.
"""

from __future__ import annotations

import os

# one core: set before numpy/scipy load their thread pools
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bccd  # noqa: E402

from allnet_core.segmentation import label_cells, segment_paper  # noqa: E402


def _best_rate(fn, items, repeat: int = 3, clock=time.perf_counter) -> float:
    """Items per second of ``fn`` over ``items``, best of ``repeat`` passes."""
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        for it in items:
            fn(it)
        best = min(best, clock() - t0)
    return len(items) / max(best, 1e-9)


def _rates(fn, items, repeat: int = 3) -> tuple[float, float]:
    """``(wall, cpu)`` items per second. With one thread the CPU-time rate is the one-core
    throughput, unaffected by other processes sharing the machine."""
    return (
        _best_rate(fn, items, repeat, time.perf_counter),
        _best_rate(fn, items, repeat, time.process_time),
    )


# ----------------------------------------------------------------------------- inputs


def load_cells(root, n: int = 20) -> list[np.ndarray]:
    if root is not None:
        paths = sorted((Path(root) / "cnmc").rglob("*.bmp"))[:n]
        if paths:
            return [_bccd.load_rgb(p) for p in paths]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (450, 450, 3), dtype=np.uint8) for _ in range(n)]


def load_fields(root, n: int = 100) -> list[np.ndarray]:
    if root is not None:
        fields = _bccd.bccd_fields(root)
        step = max(1, len(fields) // n)
        return [_bccd.load_rgb(f.image) for f in fields[::step][:n]]
    from allnet_core.synthetic import synth_smear

    return [synth_smear(seed=i)[0] for i in range(min(n, 30))]


# ----------------------------------------------------------------------------- (a)


def skimage_paper_step(rgb: np.ndarray, low: float = 180) -> np.ndarray:
    """Baseline: rgb2hsv, threshold the saturation, multiply."""
    from skimage.color import rgb2hsv

    s = rgb2hsv(rgb)[..., 1]
    mask = s >= low / 255.0
    return rgb * mask[..., None]


def numpy_float_step(rgb: np.ndarray, low: float = 180) -> np.ndarray:
    """For reference: plain float32 numpy HSI saturation, threshold, multiply."""
    a = rgb.astype(np.float32)
    total = a.sum(axis=-1)
    s = 1 - 3 * a.min(axis=-1) / np.maximum(total, 1)
    mask = (s * 255 >= low) & (total > 0)
    return rgb * mask[..., None].astype(np.uint8)


def bench_saturation(cells) -> float:
    cpu = time.process_time
    base = _best_rate(skimage_paper_step, cells, clock=cpu)
    flt = _best_rate(numpy_float_step, cells, clock=cpu)
    ours_hsi = _best_rate(lambda a: segment_paper(a, space="hsi"), cells, clock=cpu)
    ours_hsv = _best_rate(lambda a: segment_paper(a, space="hsv"), cells, clock=cpu)
    print(f"(a) saturation + mask + multiply on {len(cells)} cells of {cells[0].shape} "
          "(CPU time, best of 3)")
    print(f"    skimage rgb2hsv path        {base:9.1f} cells/s")
    print(f"    numpy float32 HSI           {flt:9.1f} cells/s  ({flt / base:.1f}x)")
    print(f"    segment_paper(space='hsv')  {ours_hsv:9.1f} cells/s  ({ours_hsv / base:.1f}x)")
    print(f"    segment_paper(space='hsi')  {ours_hsi:9.1f} cells/s  ({ours_hsi / base:.1f}x)")
    ratio = ours_hsi / base
    print(f"    ratio (a): {ratio:.1f}x  (goal >= 20x)")
    return ratio


# ----------------------------------------------------------------------------- (b)


def naive_label(rgb: np.ndarray) -> np.ndarray:
    """Baseline: Otsu on HSI saturation, morphology, label (float64, full resolution)."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import disk, opening, remove_small_objects

    a = rgb.astype(np.float64)
    total = a.sum(axis=-1)
    s = 1 - 3 * a.min(axis=-1) / np.maximum(total, 1)
    mask = s > threshold_otsu(s)
    mask = opening(mask, disk(2))
    mask = ndi.binary_fill_holes(mask)
    mask = remove_small_objects(mask, max_size=800)
    return label(mask)


def bench_fields(fields) -> float:
    label_cells(fields[0])
    base_wall, base_cpu = _rates(naive_label, fields, repeat=1)
    wall, cpu = _rates(label_cells, fields, repeat=3)
    print(f"(b) label_cells on {len(fields)} fields of {fields[0].shape}, one core "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f})")
    print("                                   wall clock     CPU time")
    print(f"    naive Otsu + morphology + label {base_wall:7.1f}      {base_cpu:7.1f}  fields/s")
    print(f"    label_cells (auto)              {wall:7.1f}      {cpu:7.1f}  fields/s")
    print(f"    ratio to naive                  {wall / base_wall:7.1f}x     "
          f"{cpu / base_cpu:7.1f}x")
    print(f"    fields/s (b): {cpu:.1f} per core-second, {wall:.1f} wall  (goal >= 50; "
          "wall figures drop when other processes share the cores)")
    return cpu


# ----------------------------------------------------------------------------- (c)


def big_field(fields, side: int) -> np.ndarray:
    """A ``side x side`` field made of tiled real fields (each tile flipped differently)."""
    h, w = fields[0].shape[:2]
    rows = []
    k = 0
    for _ in range(-(-side // h)):
        row = []
        for _ in range(-(-side // w)):
            f = fields[k % len(fields)]
            row.append(f[:, ::-1] if k % 2 else f)
            k += 1
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:side, :side])


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_memory(fields, side: int) -> float:
    rgb = big_field(fields, side)
    gc.collect()
    rss0 = _rss_peak_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    labels = label_cells(rgb)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _rss_peak_bytes()
    px = side * side
    per_px = peak / px
    print(f"(c) label_cells on a {side}x{side} field ({px / 1e6:.0f} Mpx, {labels.max()} cells, "
          f"{dt:.1f} s)")
    print(f"    tracemalloc peak {peak / 2**20:8.0f} MiB = {per_px:5.1f} bytes/pixel "
          "(the int32 label image itself is 4 bytes/pixel)")
    print(f"    peak RSS growth  {(rss1 - rss0) / 2**20:8.0f} MiB = {(rss1 - rss0) / px:5.1f} "
          "bytes/pixel (0 when an earlier step already peaked higher)")
    print(f"    bytes/pixel (c): {per_px:.1f}  (goal < 16)")
    return per_px


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer items, 4000x4000 memory test")
    ap.add_argument("--side", type=int, default=8000, help="side of the memory-test field")
    args = ap.parse_args(argv)
    root = _bccd.data_root()
    print(f"data: {root or 'synthetic (ALLNET_DATA_DIR unset)'}")
    cells = load_cells(root, 8 if args.quick else 20)
    fields = load_fields(root, 30 if args.quick else 100)
    ra = bench_saturation(cells)
    rb = bench_fields(fields)
    rc = bench_memory(fields, 4000 if args.quick else args.side)
    print()
    print(f"summary: (a) {ra:.1f}x vs skimage [>= 20x]  (b) {rb:.1f} fields/s, CPU time [>= 50]  "
          f"(c) {rc:.1f} bytes/pixel [< 16]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
