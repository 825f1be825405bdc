"""How fast ALLNet classifies 450x450 cells on this machine, against its matmul rate.

Prints, all measured in this one run:

* the machine's float32 matmul rate (the best of NumPy/BLAS and the Keras backend, 2048^3);
* the model's FLOPs per cell, computed from its layer shapes (about 12.9 GFLOP at 450x450);
* baseline ``model.predict(x, batch_size=16)`` and our ``Classifier.classify_cells`` (uint8
  crops in, P(ALL) out): cells/s and achieved GFLOP/s divided by the matmul rate;
* ``classify_cells`` at several batch sizes;
* where the time goes: a per-layer profile of one batch;
* latency of one BCCD smear field from file to table (read, segment, crop, classify).

The CPU may be shared, so the baseline, ours and the matmul reference are run interleaved,
several rounds, and medians are reported; each ratio uses the matmul rate measured right
next to it. A second ratio uses FLOPs per CPU second of this process (``time.process_time``)
for both the model and the matmul, which other jobs on the same cores disturb far less.

Usage::

    python benchmarks/inference_speed.py [--rounds 3] [--batch-size 8] [--size 450]

Runs in about 1-3 minutes on 2 cores. Set ALLNET_DATA_DIR for the BCCD latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def model_flops(model) -> float:
    """Multiply-adds x 2 of the convolutional and dense layers for one image."""
    keras = _keras()
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * h * w * cout * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def _keras():
    from allnet_core.backend import get_keras

    return get_keras()


def _timed(fn, reps: int = 1) -> float:
    """Median wall time of ``reps`` calls."""
    return _timed2(fn, reps)[0]


def _timed2(fn, reps: int = 1) -> tuple[float, float]:
    """Median wall time and median process CPU time (all threads) of ``reps`` calls."""
    walls, cpus = [], []
    for _ in range(reps):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def matmul_rate(n: int = 2048, reps: int = 3) -> tuple[float, float]:
    """Best float32 matmul GFLOP/s of NumPy (BLAS) and the Keras backend.

    Returns the rate per wall-clock second and per CPU second of the whole process (the
    second is robust against other jobs sharing the cores).
    """
    keras = _keras()
    rng = np.random.default_rng(0)
    a = rng.random((n, n), np.float32)
    b = rng.random((n, n), np.float32)
    ta, tb = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    walls, cpus = [], []
    for fn in (lambda: a @ b,
               lambda: keras.ops.convert_to_numpy(keras.ops.matmul(ta, tb))):
        fn()
        wall, cpu = _timed2(fn, reps)
        walls.append(2 * n**3 / wall / 1e9)
        cpus.append(2 * n**3 / cpu / 1e9)
    return max(walls), max(cpus)


def layer_profile(model, x: np.ndarray) -> list[tuple[str, float, float]]:
    """(layer, seconds, GFLOP) for every layer, each called on its real input."""
    keras = _keras()
    h = keras.ops.convert_to_tensor(x)
    rows = []
    for layer in model.layers[1:]:
        layer(h, training=False)  # warm up the kernel
        out = None

        def call(layer=layer, h=h):
            nonlocal out
            out = layer(h, training=False)
            keras.ops.convert_to_numpy(keras.ops.sum(out))

        t = min(_timed(call) for _ in range(2))
        flops = 0.0
        if isinstance(layer, keras.layers.Conv2D):
            _, hh, ww, cout = out.shape
            flops = 2.0 * hh * ww * cout * layer.kernel_size[0] * layer.kernel_size[1] \
                * h.shape[-1] * len(x)
        elif isinstance(layer, keras.layers.Dense):
            flops = 2.0 * h.shape[-1] * layer.units * len(x)
        rows.append((layer.name, t, flops / 1e9))
        h = out
    return rows


def bccd_latency(clf, reps: int = 3) -> tuple[float, int, str] | None:
    """Median seconds for one BCCD field, file to table (read, segment, classify)."""
    data = os.environ.get("ALLNET_DATA_DIR")
    if not data:
        return None
    path = Path(data) / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    if not path.is_file():
        return None
    from allnet_core.io import read_rgb

    n = 0

    def run():
        nonlocal n
        n = len(clf.classify_image(read_rgb(path)).table)

    run()
    return _timed(run, reps), n, path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="ours (default 16)")
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--scan", default="1,4,8", help="extra batch sizes for ours")
    args = parser.parse_args()

    keras = _keras()
    from allnet_core.backend import backend_name
    from allnet_core.inference import Classifier
    from allnet_core.model import build_allnet

    size, bs = args.size, args.batch_size
    model = build_allnet((size, size, 3))
    clf = Classifier(model)
    flops = model_flops(model)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    x16 = crops.astype(np.float32)
    print(f"backend {backend_name()}, keras {keras.__version__}, {os.cpu_count()} CPU(s); "
          f"ALLNet {size}x{size}: {flops / 1e9:.2f} GFLOP per cell")

    def baseline():
        model.predict(x16, batch_size=16, verbose=0)

    def ours():
        clf.classify_cells(crops, batch_size=bs)

    t = time.perf_counter()
    baseline()
    ours()
    print(f"warm-up (tracing, first runs): {time.perf_counter() - t:.1f} s")

    results: dict[str, list[float]] = {"baseline": [], "ours": []}
    cpu_results: dict[str, list[float]] = {"baseline": [], "ours": []}
    rates: list[float] = []
    for r in range(args.rounds):
        for name, fn in (("baseline", baseline), ("ours", ours)):
            rate, cpu_rate = matmul_rate()
            rates.append(rate)
            wall, cpu = _timed2(fn)
            cells = len(crops) / wall
            results[name].append(cells * flops / 1e9 / rate)
            cpu_results[name].append(len(crops) * flops / cpu / 1e9 / cpu_rate)
            print(f"  round {r + 1} {name:8s}: {cells:6.2f} cells/s, "
                  f"{cells * flops / 1e9:6.1f} GFLOP/s, matmul {rate:6.1f} GFLOP/s "
                  f"-> ratio {results[name][-1]:.2f} (per CPU second: "
                  f"{cpu_results[name][-1]:.2f})")
    m_rate = statistics.median(rates)
    print(f"\nfloat32 matmul (median over the run): {m_rate:.1f} GFLOP/s")
    for name, label in (("baseline", "model.predict, batch 16"),
                        ("ours", f"classify_cells, batch {bs}")):
        ratio = statistics.median(results[name])
        print(f"{label:28s}: {ratio * m_rate * 1e9 / flops:6.2f} cells/s, "
              f"model/matmul ratio {ratio:.2f} (wall clock), "
              f"{statistics.median(cpu_results[name]):.2f} (per CPU second)")
    print(f"speed-up ours/baseline: "
          f"{statistics.median(results['ours']) / statistics.median(results['baseline']):.2f}x")

    print("\nclassify_cells by batch size (cells/s, ratio to the matmul rate):")
    for b in [int(v) for v in args.scan.split(",") if v]:
        clf.classify_cells(crops[:b], batch_size=b)  # compile this shape
        rate = matmul_rate()[0]
        dt = _timed(lambda b=b: clf.classify_cells(crops, batch_size=b))
        cells = len(crops) / dt
        print(f"  batch {b:3d}: {cells:6.2f} cells/s, ratio {cells * flops / 1e9 / rate:.2f}")

    print(f"\nper-layer profile (batch {bs}, eager layer calls):")
    rows = layer_profile(model, x16[:bs])
    total = sum(t for _, t, _ in rows)
    for name, t, gf in rows:
        if t / total < 0.005:
            continue
        speed = f"{gf / t:7.1f} GFLOP/s" if gf else ""
        print(f"  {name:14s} {t * 1000:8.1f} ms  {100 * t / total:5.1f} %  {speed}")
    print(f"  {'sum':14s} {total * 1000:8.1f} ms")

    lat = bccd_latency(clf)
    if lat is None:
        print("\nBCCD latency: skipped (ALLNET_DATA_DIR not set)")
    else:
        seconds, n, name = lat
        print(f"\nBCCD field {name}, file to table: {seconds * 1000:.0f} ms ({n} cell(s))")


if __name__ == "__main__":
    main()
