"""One prepared check for a GPU machine: how fast ALLNet trains there, and what the paper's
protocol would take. Prints ONE JSON line.

Run it on the GPU machine through ``benchmarks/gpu_check.sh`` (installs keras and this
project from the wheels in ``.whl/``, then runs this script with ``KERAS_BACKEND=jax``);
``--tiny`` proves it end to end on a CPU in a minute or two (48 px input, a few steps).

What it measures, in one process and one child process (``allnet train``):

1. ``matmul_bf16_tflops``: an 8192x8192x8192 bfloat16 matrix product (``jax.numpy``),
   the mean of 10 after 2 warm-ups.
2. ``train``: ALLNet (the paper's model, 450x450) training images/s through
   ``model.fit`` with Adam, for batch 16 and ``--big-batch``, in float32 and in mixed
   bfloat16 (``--precision mixed``); one epoch of ``--steps`` steps after a compile epoch.
   Batches are ``uint8``, as the cached feed gives them. ``tflops`` counts only FLOPs that
   are computed: 2 per multiply-add of the convolutions and dense layers, 3x the forward
   pass for training (forward, input gradients, weight gradients) less conv1's input
   gradient, which is not computed. ``mfu`` divides by the device's dense bf16 peak (989
   TFLOP/s for an H100 or H200 SXM; the measured matmul where the device is unknown).
3. ``allnet_train``: a real ``allnet train`` (subprocess) on synthetic 450 px cells, 2
   folds x 2 epochs, the cached feed, mixed precision: its wall clock, the cache build,
   and the feed's wait: epoch 2's training time less its steps at the rate measured in 2.
4. ``projection``: the paper's protocol (5 folds x 65 epochs x 9,600 training images,
   1,700 validation images per epoch) from the measured rates: cache build, compile,
   training, validation and checkpoints per fold.

Usage::

    bash benchmarks/gpu_check.sh                 # on the GPU machine
    python benchmarks/gpu_check.py --tiny        # here, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

#: Dense bfloat16 peak, TFLOP/s, by a name in ``jax.Device.device_kind``.
PEAK_BF16 = {"H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.1}
#: The paper's protocol.
PAPER = {"folds": 5, "epochs": 65, "train_images": 9600, "val_images": 1700}


def settings(tiny: bool) -> dict:
    if tiny:
        return dict(size=48, dense=64, batches=(4, 8), steps=4, matmul=512, subjects=10,
                    cells=6, per_class=24, workers=1)
    return dict(size=450, dense=4096, batches=(16, 128), steps=30, matmul=8192, subjects=16,
                cells=40, per_class=1000, workers=max(1, min(14, (os.cpu_count() or 2) - 2)))


def matmul_tflops(n: int) -> float:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    f = jax.jit(jnp.matmul)
    for _ in range(2):
        f(a, b).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(10):
        out = f(a, b)
    out.block_until_ready()
    return 10 * 2 * n**3 / (time.perf_counter() - t0) / 1e12


def train_flops_per_image(model) -> float:
    """FLOPs of one training image: 3x the convolutions' and dense layers' forward
    multiply-adds (x2), less conv1's input gradient (not computed)."""
    forward, first = 0.0, None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            f = 2.0 * h * w * c_out * kh * kw * layer.input.shape[-1]
        elif kind == "Dense":
            f = 2.0 * layer.input.shape[-1] * layer.units
        else:
            continue
        forward += f
        first = f if first is None else first
    return 3 * forward - (first or 0.0)


def _repeat_feed(keras, x, y):
    class Repeat(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1)

        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            return x, y

    return Repeat()


def train_rate(size: int, dense: int, batch: int, precision: str, steps: int) -> dict:
    """Images/s of ``model.fit`` on one repeated uint8 batch (timed: the second epoch)."""
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet
    from allnet_core.training.runtime import _dtype_policy

    keras = get_keras()
    with _dtype_policy(precision) as policy:
        model = build_allnet((size, size, 3), dense_units=dense)
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    y = np.eye(2, dtype=np.float32)[np.arange(batch) % 2]
    times = []
    stamp = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    t0 = time.perf_counter()
    model.fit(_repeat_feed(keras, x, y), epochs=2, steps_per_epoch=steps, verbose=0,
              callbacks=[stamp])
    seconds = times[3] - times[2]
    save = _save_seconds(model)
    return {"batch": batch, "precision": policy, "images_per_s": steps * batch / seconds,
            "step_ms": 1000 * seconds / steps, "compile_s": times[1] - t0 - seconds,
            "checkpoint_s": save, "flops_per_image": train_flops_per_image(model)}


def _save_seconds(model) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model.save(Path(tmp) / "m.keras")
        return time.perf_counter() - t0


def allnet_train(s: dict, folder: Path) -> dict:
    """A real ``allnet train`` (child process) on synthetic cells: wall clock, cache build,
    epoch 2's training time."""
    from allnet_core.synthetic import write_cnmc_dataset

    data = write_cnmc_dataset(folder / "data", subjects=s["subjects"],
                              cells_per_subject=s["cells"], seed=0, size=s["size"])
    out = folder / "run"
    args = [sys.executable, "-m", "allnet_core", "train", str(data), "--out", str(out),
            "--folds", "2", "--epochs", "2", "--per-class", str(s["per_class"]),
            "--input-size", str(s["size"]), "--dense-units", str(s["dense"]),
            "--batch-size", str(s["batches"][0]), "--precision", "mixed", "--feed", "cached",
            "--workers", str(s["workers"]), "--lr", "1e-4"]
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "wall_s": wall}
    import pandas as pd

    history = pd.read_csv(out / "fold_1" / "history.csv")
    built = re.findall(r"train images: cached \d+ in ([\d.]+) s", done.stderr)
    builds = [float(v) for v in built]
    images = 2 * s["per_class"]
    return {"wall_s": wall, "folds": 2, "epochs": 2, "train_images_per_epoch": images,
            "cache_build_s": builds, "cache_build_images_per_s":
                images / max(builds[0], 0.1) if builds else None,
            "epoch_train_s": history["train_seconds"].round(3).tolist(),
            "epoch_s": history["seconds"].round(3).tolist(),
            "environment": json.loads((out / "environment.json").read_text())["distribution"]}


def projection(rates: dict, real: dict, batch: int) -> dict:
    """Minutes of the paper's protocol on this device, from the measured parts."""
    r = rates[(batch, "mixed")]
    train = PAPER["train_images"] / r["images_per_s"]
    val = PAPER["val_images"] / (3 * r["images_per_s"])  # forward only: ~1/3 of a step
    build = (PAPER["train_images"] + PAPER["val_images"]) / (
        real.get("cache_build_images_per_s") or 100.0)
    epoch = train + val + r["checkpoint_s"]
    fold = build + r["compile_s"] + PAPER["epochs"] * epoch
    return {"minutes": PAPER["folds"] * fold / 60, "batch": batch, "precision": r["precision"],
            "per_epoch_s": {"train": train, "validation": val, "checkpoint": r["checkpoint_s"]},
            "per_fold_s": {"cache_build": build, "compile": r["compile_s"],
                           "epochs": PAPER["epochs"] * epoch},
            "minutes_without_checkpoints": PAPER["folds"] * (
                fold - PAPER["epochs"] * r["checkpoint_s"]) / 60, **PAPER}


def feed_wait(real: dict, rates: dict, batch: int) -> float | None:
    """Epoch 2's training time less its steps at the measured step time (seconds)."""
    if "epoch_train_s" not in real:
        return None
    steps = -(-real["train_images_per_epoch"] // batch)
    return real["epoch_train_s"][1] - steps * rates[(batch, "mixed")]["step_ms"] / 1000


def run(tiny: bool, steps: int | None) -> dict:
    import jax
    import keras

    s = settings(tiny)
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    out = {"device": kind, "platform": device.platform, "devices": jax.device_count(),
           "tiny": tiny, "jax": jax.__version__, "keras": keras.__version__,
           "input_size": s["size"], "matmul_bf16_tflops": matmul_tflops(s["matmul"])}
    peak = next((v for k, v in PEAK_BF16.items() if k in kind), None)
    out["peak_bf16_tflops"] = peak
    denominator = peak or out["matmul_bf16_tflops"]
    rates = {}
    for batch in s["batches"]:
        for precision in ("float32", "mixed"):
            r = train_rate(s["size"], s["dense"], batch, precision, steps or s["steps"])
            r["tflops"] = r["images_per_s"] * r["flops_per_image"] / 1e12
            r["mfu"] = r["tflops"] / denominator
            rates[(batch, precision)] = r
    out["train"] = list(rates.values())
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        real = allnet_train(s, Path(tmp))
    real["feed_wait_s_estimate"] = feed_wait(real, rates, s["batches"][0])
    out["allnet_train"] = real
    out["projection"] = projection(rates, real, s["batches"][0])
    out["projection_big_batch"] = projection(rates, real, s["batches"][1])
    return out


def _rounded(v):
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a CPU-sized proof (48 px, few steps)")
    ap.add_argument("--steps", type=int, help="timed training steps per configuration")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = run(args.tiny, args.steps)
    out["check_wall_s"] = time.perf_counter() - t0
    print(json.dumps(_rounded(out)), flush=True)
    return 0 if "error" not in out["allnet_train"] else 1


if __name__ == "__main__":
    sys.exit(main())
