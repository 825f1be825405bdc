"""Regenerate docs/images/gradcam_cnmc.png and docs/images/gradcam_bccd.png.

Trains a small ALLNet (128x128 input, dense_units=64) on synthetic cells for a few
epochs (a few minutes on 2 CPU cores), then draws Grad-CAM heatmaps of real C-NMC cells
and of a real BCCD smear field from ``$ALLNET_DATA_DIR``.

The model has never seen a real cell: the picture shows what the tool draws, not what a
diagnostic model would look at.

Usage::

    ALLNET_DATA_DIR=/path/to/data python docs/scripts/gradcam_figure.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

SIZE = 128


def train_demo_model(seed: int = 0):
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet
    from allnet_core.synthetic import synth_cells

    keras = get_keras()
    images, labels, _ = synth_cells(150, seed=seed, size=SIZE)
    keras.utils.set_random_seed(seed)
    model = build_allnet((SIZE, SIZE, 3), dense_units=64)
    for layer in model.layers:
        if layer.name.startswith("bn"):
            layer.momentum = 0.8
    model.compile(keras.optimizers.Adam(5e-4), "categorical_crossentropy", metrics=["accuracy"])
    y = keras.utils.to_categorical(labels == "ALL", 2)
    model.fit(images.astype("float32"), y, batch_size=16, epochs=6, verbose=2, shuffle=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "images")
    args = parser.parse_args()
    data = Path(os.environ.get("ALLNET_DATA_DIR", ""))
    cnmc = data / "cnmc" / "C-NMC_Leukemia" / "training_data"
    bccd = data / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    if not cnmc.is_dir() or not bccd.is_file():
        raise SystemExit("set ALLNET_DATA_DIR to the shared data folder (cnmc/ and bccd/)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from allnet_core.inference import (
        Classifier,
        gradcam_figure,
        outline_cells,
        overlay_heatmap,
    )
    from allnet_core.inference.gradcam import HEATMAP_CMAP
    from allnet_core.io import atomic_write, read_rgb
    from allnet_core.synthetic import synth_cells

    model = train_demo_model()
    clf = Classifier(model, source="synthetic demo model")
    test, truth, _ = synth_cells(40, seed=99, size=SIZE)
    acc = np.mean((clf.classify_cells(test) >= 0.5) == (truth == "ALL"))
    print(f"demo model accuracy on new synthetic cells: {acc:.2f}")

    paths = [sorted(cnmc.rglob("*_all.bmp"))[0], sorted(cnmc.rglob("*_all.bmp"))[1],
             sorted(cnmc.rglob("*_hem.bmp"))[0]]
    cells = [read_rgb(p) for p in paths]
    p_all = clf.classify_cells(cells)
    maps = clf.gradcam(cells, class_index=clf.positive_index)
    fig, axes = plt.subplots(2, len(cells), figsize=(3.2 * len(cells) + 0.8, 6.6))
    for j, (path, cell, m, p) in enumerate(zip(paths, cells, maps, p_all, strict=True)):
        axes[0, j].imshow(cell)
        axes[0, j].set_title(f"{path.name}\n(true class {path.stem.rsplit('_', 1)[-1].upper()})",
                             fontsize=8)
        mask = cell.any(axis=-1).astype(np.int32)  # C-NMC cells lie on black
        axes[1, j].imshow(outline_cells(overlay_heatmap(cell, m), mask))
        axes[1, j].set_title(f"Grad-CAM for ALL, P(ALL) = {p:.2f}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.colorbar(ScalarMappable(Normalize(0, 1), HEATMAP_CMAP), ax=axes[1, :].tolist(),
                 fraction=0.03, pad=0.02, label="Grad-CAM (relative)")
    fig.suptitle("Demo model trained on synthetic cells only - not a diagnostic tool",
                 fontsize=10)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "gradcam_cnmc.png") as tmp:
        fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")
    plt.close(fig)

    # the smear field as `allnet classify --gradcam` draws it
    rgb = read_rgb(bccd)
    result = clf.classify_image(rgb, gradcam=True)
    fig = gradcam_figure(rgb, result.heatmap, result.labels, result.table, dpi=80)
    fig.suptitle("Demo model trained on synthetic cells only - not a diagnostic tool",
                 fontsize=9, y=1.0, va="bottom")
    with atomic_write(args.out / "gradcam_bccd.png") as tmp:
        fig.savefig(tmp, dpi=80, format="png", bbox_inches="tight", pad_inches=0.05)
    print(f"wrote {args.out / 'gradcam_cnmc.png'} and {args.out / 'gradcam_bccd.png'}")


if __name__ == "__main__":
    main()
