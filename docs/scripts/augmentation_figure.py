"""Regenerate the figures of docs/augmentation.md from one real C-NMC cell.

Writes ``docs/images/augmentation_kinds.png`` (the paper's four kinds, like its Figure 8)
and ``docs/images/augmentation_random.png`` (draws of the default ``Augmenter`` with their
parameters).

Usage::

    ALLNET_DATA_DIR=/path/to/data python docs/scripts/augmentation_figure.py [--cell NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"
DEFAULT_CELL = "UID_11_1_1_all.bmp"


def find_cell(name: str) -> Path:
    root = os.environ.get("ALLNET_DATA_DIR")
    if not root:
        sys.exit("set ALLNET_DATA_DIR to the folder holding cnmc/ (see data/README.md)")
    matches = sorted((Path(root) / "cnmc").rglob(name))
    if not matches:
        sys.exit(f"{name} not found under {root}/cnmc")
    return matches[0]


def kinds_figure(cell: np.ndarray, title: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    from allnet_core.augment import (
        adjust_brightness,
        flip,
        gaussian_blur,
        rotate,
        salt_and_pepper,
    )

    panels = [
        ("original", cell),
        ("vertical flip", flip(cell, axis=0)),
        ("horizontal flip", flip(cell, axis=1)),
        ("clockwise 40°", rotate(cell, -40)),
        ("anticlockwise 75°", rotate(cell, 75)),
        ("brightness x0.8", adjust_brightness(cell, 0.8)),
        ("brightness x1.2", adjust_brightness(cell, 1.2)),
        ("blur σ=1.5 + salt & pepper 1%",
         salt_and_pepper(gaussian_blur(cell, 1.5), rng=0, amount=0.01)),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.8), dpi=100, layout="constrained")
    for ax, (name, img) in zip(axes.ravel(), panels, strict=True):
        ax.imshow(img)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=11)
    fig.savefig(out)
    plt.close(fig)


def random_figure(cell: np.ndarray, out: Path, seed: int = 0) -> None:
    import matplotlib.pyplot as plt

    from allnet_core.augment import Augmenter, apply_params

    aug = Augmenter()
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, 4, figsize=(12, 7.8), dpi=100, layout="constrained")
    for ax in axes.ravel():
        params = aug.sample_params(rng)
        ax.imshow(apply_params(cell, params))
        text = []
        if "flip_axis" in params:
            text.append("flip " + ("vertical" if params["flip_axis"] == 0 else "horizontal"))
        if "rotate_angle" in params:
            text.append(f"rotate {params['rotate_angle']:+.1f}°")
        if "brightness_factor" in params:
            text.append(f"brightness x{params['brightness_factor']:.2f}")
        if "blur_sigma" in params:
            text.append(f"blur σ={params['blur_sigma']:.2f}, noise {params['noise_amount']:.2%}")
        ax.set_title("\n".join(text), fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"Augmenter() defaults, draws from numpy.random.default_rng({seed})",
                 fontsize=11)
    fig.savefig(out)
    plt.close(fig)


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    from allnet_core.io import read_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default=DEFAULT_CELL, help=f"C-NMC file name ({DEFAULT_CELL})")
    args = ap.parse_args()
    path = find_cell(args.cell)
    cell = read_rgb(path)
    IMAGES.mkdir(parents=True, exist_ok=True)
    kinds_figure(cell, f"C-NMC cell {path.name} (450x450) and the paper's four kinds of "
                       "augmentation", IMAGES / "augmentation_kinds.png")
    random_figure(cell, IMAGES / "augmentation_random.png")
    print(f"wrote {IMAGES / 'augmentation_kinds.png'} and {IMAGES / 'augmentation_random.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
