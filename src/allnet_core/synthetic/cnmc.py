"""A synthetic dataset on disk in the C-NMC 2019 layout (``allnet data synth``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from allnet_core.synthetic.cells import make_subject_style, synth_cell

__all__ = ["write_cnmc_dataset"]


def write_cnmc_dataset(
    out: str | os.PathLike,
    subjects: int = 8,
    cells_per_subject: int = 20,
    seed: int = 0,
    size: int = 450,
    folds: int = 3,
    style_strength: float = 1.0,
) -> Path:
    """Write a synthetic dataset in the C-NMC 2019 layout.

    Files go to ``out/C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/``
    ``UID_<subject>_<image>_<cell>_{all,hem}.bmp``. Half of the subjects are patients
    (ids ``1, 2, ...``, all cells ALL), half healthy donors (ids ``H1, H2, ...``, all cells
    HEM), as in the real release; subjects are dealt to folds round-robin.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    subjects : int
        Number of subjects (at least 2: one per class).
    cells_per_subject : int
        Cells written for each subject.
    seed : int
        Seed; same arguments give the same bytes.
    size : int
        Image size (450 like C-NMC; smaller for quick demos).
    folds : int
        Number of ``fold_<k>`` folders.
    style_strength : float
        Spread of the per-subject stain shift.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from allnet_core.io import write_image

    if subjects < 2:
        raise ValueError(f"subjects must be at least 2 (one per class), got {subjects}")
    if cells_per_subject < 1:
        raise ValueError(f"cells_per_subject must be at least 1, got {cells_per_subject}")
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    out = Path(out)
    root = out / "C-NMC_Leukemia" / "training_data"
    n_all = (subjects + 1) // 2
    ids = [(str(i + 1), "ALL") for i in range(n_all)]
    ids += [(f"H{i + 1}", "HEM") for i in range(subjects - n_all)]
    seq = np.random.SeedSequence(seed)
    for k, ((sid, label), child) in enumerate(zip(ids, seq.spawn(len(ids)), strict=True)):
        rng = np.random.default_rng(child)
        style = make_subject_style(rng, style_strength)
        folder = root / f"fold_{k % folds}" / label.lower()
        folder.mkdir(parents=True, exist_ok=True)
        for c in range(cells_per_subject):
            image_no, cell_no = c // 3 + 1, c % 3 + 1
            img = synth_cell(label, rng, size=size, style=style)
            write_image(folder / f"UID_{sid}_{image_no}_{cell_no}_{label.lower()}.bmp", img)
    return out
