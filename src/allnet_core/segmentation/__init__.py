"""White-blood-cell (WBC) segmentation: the paper's HSI rule, a robust default, cell crops.

Two methods are offered:

``"paper"``
    Exactly the rule of the ALLNet paper: convert RGB to HSI, take the saturation
    ``S = 1 - 3 min(R, G, B) / (R + G + B)``, scale it to 0-255, keep the pixels whose
    value lies in ``[180, 255]`` and multiply that mask with the image
    (:func:`segment_paper`). On real smears this fixed range often selects nothing: it
    does not carry over between microscopes and stains.
``"auto"`` (default)
    An adaptive method that works on full smear fields and on single-cell images with a
    black background, and adapts to the stain and the camera:

    0. *White balance.* Each channel is scaled so that the bright smear background becomes
       grey (a camera's white balance and exposure cancel out).
    1. *Nucleus.* WBC nuclei absorb green far more than blue in every Romanowsky-type
       stain, so the feature ``(B - G) / (B + G)`` separates nuclei (and platelets) from
       red cells, cytoplasm and background under very different stains. It is
       thresholded with Otsu's method on the histogram of the non-black pixels only, so
       a black background never shifts the threshold. When that split puts the red cells
       on the nucleus side (bluish red cells), it is taken again among the stained
       material only, by ``min((B - G) / (B + G), (R - G) / (R + G))`` where that works
       (nuclei absorb green more than red too, bluish red cells do not). A pale stain
       whose nuclei stand out only relative to the spread of the rest keeps only what
       stands out clearly, with twice the size floor.
    2. *Cells.* Nucleus fragments (lobes of a neutrophil) closer than a fraction of the
       largest fragment's radius are grouped; groups smaller than a fifth of a typical
       red cell (measured in the image) or a tenth of the largest group are platelets
       or debris and dropped; so are groups that are not compact (a group smaller
       than a red cell must be the rounder the smaller it is: lobed nuclei are large)
       or lack one lobe-sized piece (platelet clumps are granules).
    3. *Cytoplasm.* Everything darker than the bright smear background in the green
       channel (Otsu again, non-black, non-nucleus pixels) is cell material; a linear
       rule learnt from the image (material next to a nucleus versus material out of
       every nucleus' reach) drops red cells. A cell is the material within a distance
       proportional to its nucleus size and nearer to its own nucleus than to any other.
    4. *Touching cells* are split by a watershed on the distance transform where it has
       several deep maxima and every part holds a nucleus.
    5. *Cut-out cells.* Images without a bright background, or with a black surround
       and mostly nucleus inside (C-NMC), take every non-black pixel of a component
       holding a nucleus as the cell.
    6. Detection runs on a reduced image (by a factor chosen from the measured red-cell
       size) for speed; each cell is then refined at full resolution inside its
       bounding box.

Neither method fails silently: when the candidate white cells look like the red cells
(the stain is not recognised), or the paper's range selects (almost) nothing, a
:class:`SegmentationWarning` says so (:mod:`~allnet_core.segmentation.status`).

The plain ``"otsu"`` method (Otsu's threshold on HSI saturation) is kept as a reference.

The auto method's parameters, with their one set of defaults, are the fields of
:class:`AutoParams`; :func:`label_cells` and :func:`segment_wbc` take them as keywords.

Functions that take an image take ``HxWx3`` ``uint8`` RGB arrays (an alpha channel is
ignored) and never make float64 copies of the whole image.

The package, one job per module:

- :mod:`~allnet_core.segmentation.paper`: saturation and the paper's rule;
- :mod:`~allnet_core.segmentation.labels`: masks and instance labels by any method;
- :mod:`~allnet_core.segmentation.cells`: the cell table, the crop geometry and the crops;
- :mod:`~allnet_core.segmentation.status`: :class:`SegmentationWarning` and its reasons;
- :mod:`~allnet_core.segmentation.tiled`: images too large for memory, segmented in tiles
  with overlap, each cell owned by the one tile whose core holds its centroid;
- private modules, in the order the auto method runs them: ``_params`` (its parameters),
  ``_scale`` (red-cell size, reduction factor, area floor), ``_thresholds``, ``_nuclei``,
  ``_reject`` (candidates that are not white cells), ``_cytoplasm``, ``_split``,
  ``_cutout``, ``_refine`` and ``_pipeline`` (the driver), on
  top of ``_features`` (pixel features, histogram thresholds) and ``_morphology``;
  ``_otsu`` is the reference method.
"""

from allnet_core.segmentation._params import AutoParams
from allnet_core.segmentation.cells import (
    CELL_COLUMNS,
    CropGeometry,
    cell_table,
    crop_geometry,
    empty_cell_table,
    extract_cells,
    whole_cell,
)
from allnet_core.segmentation.labels import METHODS, label_cells, segment_wbc
from allnet_core.segmentation.paper import saturation, segment_paper
from allnet_core.segmentation.status import (
    PAPER_SELECTS_NOTHING,
    STAIN_NOT_RECOGNISED,
    SegmentationWarning,
)
from allnet_core.segmentation.tiled import (
    TiledLabels,
    label_cells_tiled,
    tile_overlap,
    tiled_cell_crops,
)

__all__ = [
    "CELL_COLUMNS",
    "METHODS",
    "PAPER_SELECTS_NOTHING",
    "STAIN_NOT_RECOGNISED",
    "AutoParams",
    "CropGeometry",
    "TiledLabels",
    "cell_table",
    "crop_geometry",
    "empty_cell_table",
    "extract_cells",
    "label_cells",
    "label_cells_tiled",
    "saturation",
    "SegmentationWarning",
    "segment_paper",
    "segment_wbc",
    "tile_overlap",
    "tiled_cell_crops",
    "whole_cell",
]
