"""Synthetic single cells and blood-smear fields for demos, tests and napari sample data.

Everything here is deterministic under a seed: the same arguments give the same bytes.

Single cells imitate the C-NMC 2019 images: 450x450 RGB, an exactly black background, one
stained lymphocyte-like cell with a purple nucleus inside a paler cytoplasm. Blasts (ALL)
and healthy cells (HEM) differ the way real ones tend to, and overlap enough that no
classifier can be perfect:

* each cell draws a coarse and a fine latent "blastness" (both shifted by class), so the
  best possible accuracy is about 96 %, and about 84 % from the coarse cues alone;
* the coarse cues (cell size, nucleus-to-cytoplasm ratio) survive any input size; the fine
  ones (clumped chromatin in healthy cells, smooth in blasts; nucleoli; a notched nuclear
  contour) are a few pixels
  of a 450 px frame wide, as in real cells, so a 64 px model input loses most of them;
* each subject (patient or healthy donor) has its own stain tint, brightness and
  magnification, shared by all its cells, so that splitting by subject matters.

Smear fields imitate BCCD: a pale pink background crowded with red cells (with central
pallor), a few white cells (some touching each other or the border) and platelets. Each
field comes with its ground-truth WBC instance mask and the class of every WBC.

Modules: :mod:`~allnet_core.synthetic.cells` (single cells), :mod:`~allnet_core.synthetic.cnmc`
(a dataset in the C-NMC layout on disk), :mod:`~allnet_core.synthetic.smears` (smear fields).
"""

from allnet_core.synthetic.cells import SubjectStyle, make_subject_style, synth_cell, synth_cells
from allnet_core.synthetic.cnmc import write_cnmc_dataset
from allnet_core.synthetic.smears import synth_smear

__all__ = [
    "SubjectStyle",
    "make_subject_style",
    "synth_cell",
    "synth_cells",
    "synth_smear",
    "write_cnmc_dataset",
]
