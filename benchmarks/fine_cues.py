"""Can ALLNet learn the synthetic cells' fine cues, and at which input size?

Draws *fine-only* synthetic cells (the coarse cues, cell size and nucleus-to-cytoplasm
ratio, switched off: ``allnet_core.synthetic.cells._COARSE_SHIFT = 0``), so that the class
signal lives only in the chromatin clumps, nucleoli and nuclear notches (best possible
accuracy about 93 %), and trains the narrow ALLNet of the ``quick`` and ``cpu`` profiles
(256 dense units, convolutional dropout 0.25, Adam 1e-4, batch 16, batch-norm momentum 0.9,
a random flip or quarter turn per image and epoch; no stain jitter, schedule or early
stopping) on the cells of 70 % of the subjects, scoring the cells of the others after every
epoch. Three models:

* 128 px, no dropout after the dense layers (the ``cpu`` profile);
* 128 px, dropout 0.5 after the dense layers (the paper's rate; the ``quick`` profile's, and
  the ``cpu`` profile's before);
* 64 px, no dense dropout.

Alongside, a logistic regression on a few texture statistics of the cell (high-pass standard
deviation and 2nd/98th percentiles at two scales) shows how much of the fine signal each
input size keeps, whatever the network does with it.

Usage::

    python benchmarks/fine_cues.py [--epochs 10] [--subjects 40] [--cells 15] [--size 450]

About 6 minutes on 2 CPU cores (1 to draw the cells). Prints one line per model and epoch
and a Markdown table of the validation ROC AUC (final epoch and best epoch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

_TRAIN_SHARE = 0.7  # of the subjects; the others validate


def _cells(subjects: int, cells: int, size: int, seed: int = 3):
    """Fine-only cells of ``subjects`` subjects (alternately HEM and ALL), at 64 and 128 px."""
    from allnet_core.preprocess import resize_for_model
    from allnet_core.synthetic import cells as synthetic

    synthetic._COARSE_SHIFT = 0.0  # fine cues only
    rng = np.random.default_rng(seed)
    x = {64: [], 128: []}
    y, subject = [], []
    for s in range(subjects):
        label = "ALL" if s % 2 else "HEM"
        style = synthetic.make_subject_style(rng)
        for _ in range(cells):
            image = synthetic.synth_cell(label, rng, size=size, style=style)
            for side in x:
                x[side].append(resize_for_model(image, side))
            y.append(int(label == "ALL"))
            subject.append(s)
    return {k: np.stack(v) for k, v in x.items()}, np.array(y), np.array(subject)


def _texture_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression on texture statistics of the cell."""
    from scipy import ndimage as ndi
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = []
    for image in x.mean(axis=-1):
        inside = ndi.binary_erosion(image > 0, iterations=2)
        row = []
        for sigma in (0.7, 1.4):
            band = image - ndi.gaussian_filter(image, sigma)
            row += [band[inside].std(), np.percentile(band[inside], 2),
                    np.percentile(band[inside], 98)]
        rows.append(row)
    features = np.array(rows)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[train], y[train])
    return float(model.score(features[~train], y[~train]))


def _train(x: np.ndarray, y: np.ndarray, train: np.ndarray, dense_dropout: float,
           epochs: int, label: str) -> list[float]:
    """Validation ROC AUC after each epoch."""
    import keras
    from sklearn.metrics import roc_auc_score

    from allnet_core.feed import dihedral
    from allnet_core.training import TrainConfig
    from allnet_core.training.runtime import _new_model

    keras.utils.set_random_seed(0)
    config = TrainConfig.from_profile("cpu", input_size=x.shape[1],
                                      dense_dropout=dense_dropout)
    model = _new_model(config)
    x_train, y_train = x[train], keras.utils.to_categorical(y[train], 2)
    rng = np.random.default_rng(0)
    aucs = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        flipped = dihedral(x_train, rng.integers(0, 8, len(x_train)))
        history = model.fit(flipped, y_train, batch_size=config.batch_size, epochs=1,
                            verbose=0, shuffle=True)
        p_all = model.predict(x[~train], verbose=0)[:, 1]
        aucs.append(float(roc_auc_score(y[~train], p_all)))
        print(f"{label}: epoch {epoch + 1} training accuracy "
              f"{history.history['accuracy'][0]:.3f}, validation ROC AUC {aucs[-1]:.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return aucs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--cells", type=int, default=15, help="cells per subject")
    parser.add_argument("--size", type=int, default=450, help="side the cells are drawn at")
    args = parser.parse_args(argv)
    n_train = round(_TRAIN_SHARE * args.subjects)
    if min(n_train, args.subjects - n_train) < 2:
        parser.error(f"--subjects {args.subjects} leaves too few subjects on one side: "
                     "use 8 or more")

    t0 = time.perf_counter()
    x, y, subject = _cells(args.subjects, args.cells, args.size)
    train = subject < n_train  # subjects alternate HEM and ALL: both classes on both sides
    print(f"{len(y)} fine-only cells of {args.subjects} subjects drawn at {args.size} px in "
          f"{time.perf_counter() - t0:.0f} s; training on {int(train.sum())} cells of "
          f"{n_train} subjects, validating on {int((~train).sum())}", flush=True)
    texture = {side: _texture_accuracy(x[side], y, train) for side in (64, 128)}
    print(f"texture statistics, held-out accuracy: 64 px {texture[64]:.3f}, "
          f"128 px {texture[128]:.3f}", flush=True)
    rows = []
    for side, dropout in ((128, 0.0), (128, 0.5), (64, 0.0)):
        label = f"{side} px, dense dropout {dropout:g}"
        aucs = _train(x[side], y, train, dropout, args.epochs, label)
        rows.append((label, aucs[-1], max(aucs), int(np.argmax(aucs)) + 1))
    print(f"\n| model | validation ROC AUC after {args.epochs} epochs | best (epoch) |")
    print("|---|---|---|")
    for label, last, best, at in rows:
        print(f"| {label} | {last:.3f} | {best:.3f} ({at}) |")


if __name__ == "__main__":
    main()
