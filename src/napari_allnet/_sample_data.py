"""Sample data for napari: synthetic smear and cells, and one real BCCD smear field.

Each function returns napari layer-data tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_allnet._colors import class_colormap

__all__ = ["bccd_smear", "synthetic_cells", "synthetic_smear"]

DATA_DIR = Path(__file__).parent / "data"
BCCD_FIELD = DATA_DIR / "BloodImage_00000.jpg"


def synthetic_smear(seed: int = 0):
    """A synthetic BCCD-like smear field and its ground-truth WBC labels.

    The labels layer's features hold each cell's true class and it is coloured by class
    (ALL orange, HEM blue, as in "Classify cells").
    """
    from allnet_core.synthetic import synth_smear

    rgb, labels, classes = synth_smear(seed=seed)
    ids = sorted(classes)
    features = {"index": ids, "label": ids, "class": [classes[i] for i in ids]}
    return [
        (rgb, {"name": "synthetic smear", "rgb": True}, "image"),
        (labels, {"name": "synthetic smear ground truth", "features": features,
                  "colormap": class_colormap(dict(classes)), "opacity": 0.5}, "labels"),
    ]


def synthetic_cells(seed: int = 0, size: int = 450):
    """One synthetic ALL (blast) cell and one synthetic HEM (healthy) cell.

    C-NMC-like single-cell images: the cell centred on an exactly black background.
    """
    from allnet_core.synthetic import synth_cell

    rng = np.random.default_rng(seed)
    return [
        (synth_cell("ALL", rng, size=size), {"name": "synthetic ALL cell", "rgb": True},
         "image"),
        (synth_cell("HEM", rng, size=size), {"name": "synthetic HEM cell", "rgb": True},
         "image"),
    ]


def bccd_smear():
    """A real 640x480 blood-smear field from the BCCD dataset (MIT licence, see
    ``data/README.md``) with one white blood cell."""
    from allnet_core.io import read_rgb

    return [(read_rgb(BCCD_FIELD), {"name": "BCCD BloodImage_00000", "rgb": True}, "image")]
