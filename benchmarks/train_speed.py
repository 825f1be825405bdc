"""Training speed of ALLNet: images/s and model FLOP utilisation (MFU).

The baseline, measured in the same process on the same device, is the rate of a large
float32 (or, with --precision mixed, reduced-precision) matrix product through
``keras.ops.matmul``. MFU = (training images/s x training FLOPs per image) / that rate, with
training FLOPs counting only what is computed: the forward pass, the gradient with respect
to every layer's weights, and the gradient with respect to every layer's input except the
first convolution's (the input image needs none): 3 x forward less conv1's forward.

It also projects the paper's full protocol (5 folds x 65 epochs x ~9,600 balanced training
images, plus a validation pass over ~2,100 images per epoch) from the measured rates.

Usage::

    python benchmarks/train_speed.py                       # CPU: 64 px input
    KERAS_BACKEND=jax python benchmarks/train_speed.py --input-size 450 --batch-size 16
    KERAS_BACKEND=jax python benchmarks/train_speed.py --input-size 450 --precision mixed

Data are random arrays already in memory (the feed's own speed is measured by
benchmarks/feed_speed.py), so this is the model's ceiling on the device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def forward_flops(model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers of one forward pass."""
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            h, w, cout = layer.output.shape[1:]
            cin = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            flops += 2 * h * w * cout * cin * kh * kw
        elif kind == "Dense":
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)


def train_flops(model) -> int:
    """FLOPs of one training image: forward, weight gradients (one product each) and input
    gradients (one product each) except the first convolution's, which is not computed."""
    first = next(layer for layer in model.layers if type(layer).__name__ == "Conv2D")
    h, w, cout = first.output.shape[1:]
    kh, kw = first.kernel_size
    conv1 = 2 * h * w * cout * first.input.shape[-1] * kh * kw
    return 3 * forward_flops(model) - int(conv1)


def _sync(x):
    import keras

    return keras.ops.convert_to_numpy(keras.ops.sum(x))


PASSES = 3


def best_seconds(fn, passes: int) -> float:
    """The shortest wall time of ``passes`` calls of ``fn`` (already warmed up)."""
    best = float("inf")
    for _ in range(passes):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_rate(n: int, dtype: str, repeats: int) -> float:
    """FLOP/s of an n x n matrix product (best of ``repeats``)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    _sync(keras.ops.matmul(a, b))
    return 2.0 * n**3 / best_seconds(lambda: _sync(keras.ops.matmul(a, b)), repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dense-units", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps (default 10 on CPU, 100 on GPU)")
    parser.add_argument("--precision", choices=("float32", "mixed"), default="float32")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="side of the baseline matrices (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from allnet_core.backend import visible_devices
    from allnet_core.model import build_allnet
    from allnet_core.training import _dtype_policy

    devices = visible_devices()
    device = devices[0]
    gpu = device["type"] == "GPU"
    steps = args.steps or (100 if gpu else 10)
    n = args.matmul_size or (8192 if gpu else 2048)
    print(f"backend {keras.backend.backend()}, device {device['type']} ({device['name']})")

    with _dtype_policy(args.precision) as policy:
        compute = keras.config.dtype_policy().compute_dtype
        rate = matmul_rate(n, compute, repeats=PASSES)
        s = args.input_size
        model = build_allnet((s, s, 3), dense_units=args.dense_units)
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="categorical_crossentropy",
                      metrics=["accuracy"])
    print(f"baseline: {n}x{n} {compute} matmul {rate / 1e12:.2f} TFLOP/s; policy {policy}")

    rng = np.random.default_rng(0)
    b = args.batch_size
    x = rng.uniform(0, 255, (b * 4, s, s, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, b * 4), 2)
    batches = [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(4)]
    for xb, yb in batches[:2]:  # compile / warm up
        model.train_on_batch(xb, yb)

    def train_pass():
        for i in range(steps):
            xb, yb = batches[i % 4]
            logs = model.train_on_batch(xb, yb, return_dict=True)
        float(logs["loss"])  # wait for the device

    def predict_pass():
        for i in range(max(2, steps // 2)):
            _ = np.asarray(model.predict_on_batch(x[(i % 4) * b:(i % 4 + 1) * b]))

    # every path (matmul, training, inference) warmed up and timed alike: best of passes
    train_ips = steps * b / best_seconds(train_pass, PASSES)
    model.predict_on_batch(x[:b])
    pred_ips = max(2, steps // 2) * b / best_seconds(predict_pass, PASSES)

    fwd, train = forward_flops(model), train_flops(model)
    mfu = train_ips * train / rate
    print(f"model: {model.count_params():,} parameters, {fwd / 1e9:.2f} GFLOP forward and "
          f"{train / 1e9:.2f} GFLOP training per image (3x forward less conv1's input "
          f"gradient, {(3 * fwd - train) / 1e9:.2f} GFLOP, not computed)")
    print(f"training: {train_ips:.1f} images/s (batch {b}, best of {PASSES} passes of {steps} "
          f"steps); "
          f"inference {pred_ips:.1f} images/s")
    print(f"MFU (training FLOP/s / measured matmul FLOP/s): {100 * mfu:.1f} % (counting conv1's "
          f"input gradient too, as before issue 18: {100 * train_ips * 3 * fwd / rate:.1f} %)")

    train_images, val_images = 5 * 65 * 9600, 5 * 65 * 2130
    projected = train_images / train_ips + val_images / pred_ips
    print(f"paper protocol projected (5 folds x 65 epochs x 9,600 + validation): "
          f"{projected / 60:.1f} min at input {s}")
    if args.json:
        print(json.dumps({"backend": keras.backend.backend(), "device": device,
                          "input_size": s, "batch_size": b, "precision": policy,
                          "matmul_tflops": rate / 1e12, "train_images_per_s": train_ips,
                          "predict_images_per_s": pred_ips, "forward_gflop": fwd / 1e9,
                          "train_gflop": train / 1e9,
                          "mfu": mfu, "projected_paper_minutes": projected / 60}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
