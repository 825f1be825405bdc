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
    black background:

    1. *Nucleus.* WBC nuclei absorb green far more than blue in every Romanowsky-type
       stain, so the feature ``(B - G) / (B + G)`` separates nuclei (and platelets) from
       red cells, cytoplasm and background under very different stains. It is
       thresholded with Otsu's method on the histogram of the non-black pixels only, so
       a black background never shifts the threshold.
    2. *Cells.* Nucleus fragments (lobes of a neutrophil) closer than a fraction of the
       largest fragment's radius are grouped; groups smaller than a fifth of a typical
       red cell (measured in the image) or a tenth of the largest group are platelets
       or debris and dropped.
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

The plain ``"otsu"`` method (Otsu's threshold on HSI saturation) is kept as a reference.

All functions take ``HxWx3`` ``uint8`` RGB arrays (an alpha channel is ignored) and never
make float64 copies of the whole image.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage as ndi

from allnet_core.errors import ConfigError, ImageReadError

__all__ = [
    "METHODS",
    "extract_cells",
    "label_cells",
    "saturation",
    "segment_paper",
    "segment_wbc",
]

#: Methods accepted by :func:`segment_wbc` and :func:`label_cells`.
METHODS = ("auto", "otsu", "paper")
_SPACES = ("hsi", "hsv")
_PARTS = ("cell", "nucleus")


# --------------------------------------------------------------------------- validation


def _check_rgb(rgb, name: str = "rgb") -> np.ndarray:
    """Return ``rgb`` as a ``HxWx3`` uint8 view, or raise a clear error."""
    a = np.asarray(rgb)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 2)):
        raise ImageReadError(
            name,
            f"grayscale image (shape {a.shape}); saturation needs a colour (RGB) image",
        )
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ImageReadError(
            name, f"expected an RGB image of shape (H, W, 3), got an array of shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageReadError(name, f"the image is empty (shape {a.shape})")
    if a.dtype != np.uint8:
        raise ImageReadError(
            name,
            f"expected uint8 pixels (0-255), got dtype {a.dtype}; convert with "
            "allnet_core.io.as_rgb_uint8 first",
        )
    return a[..., :3]


def _check_choice(value, choices, what: str) -> str:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _channels(a: np.ndarray):
    return a[..., 0], a[..., 1], a[..., 2]


# --------------------------------------------------------------------------- saturation


def saturation(rgb, space: str = "hsi") -> np.ndarray:
    """Colour saturation of an RGB image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        RGB image (a fourth, alpha channel is ignored).
    space : {"hsi", "hsv"}
        ``"hsi"``: ``S = 1 - 3 min(R, G, B) / (R + G + B)`` (the paper's definition).
        ``"hsv"``: ``S = (max - min) / max``.

    Returns
    -------
    (H, W) float32 array
        Saturation in ``[0, 1]``; black pixels get 0 (never NaN).

    Raises
    ------
    ImageReadError
        For grayscale input (saturation needs colour), a wrong shape or a dtype other
        than uint8.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[255, 0, 0], [0, 0, 0], [90, 90, 90]]], dtype=np.uint8)
    >>> saturation(rgb).tolist()
    [[1.0, 0.0, 0.0]]
    """
    a = _check_rgb(rgb)
    _check_choice(space, _SPACES, "space")
    r, g, b = _channels(a)
    mn = np.minimum(np.minimum(r, g), b)
    if space == "hsi":
        total = r.astype(np.float32)
        total += g
        total += b
        num = mn.astype(np.float32)
        num *= 3.0
    else:
        total = np.maximum(np.maximum(r, g), b).astype(np.float32)
        num = mn.astype(np.float32)
    out = np.zeros(a.shape[:2], np.float32)
    np.divide(num, total, out=out, where=total > 0)
    np.subtract(1.0, out, out=out, where=total > 0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


@functools.lru_cache(maxsize=32)
def _paper_luts(low: float, high: float, space: str) -> tuple[np.ndarray, np.ndarray]:
    """Per ``min`` value, the smallest and largest ``sum`` (HSI) or ``max`` (HSV) kept.

    ``255 * S >= low`` with ``S = 1 - 3 m / s`` is ``(255 - low) * s >= 765 m``: an integer
    inequality, so the paper's rule needs no division per pixel. The tables hold, for each
    ``m``, the range of ``s`` (or of ``max`` for HSV, where ``S = 1 - m / max``) that
    satisfies both bounds.
    """
    k = 3 if space == "hsi" else 1
    top = 765 if space == "hsi" else 255
    m = np.arange(256, dtype=np.float64)
    lo = np.zeros(256, np.int64)
    hi = np.full(256, top, np.int64)
    # low bound: (255 - low) * s >= 255 * k * m
    if low >= 255:
        lo[:] = np.where(m == 0, 1, top + 1)  # S = 1 only where min is 0 and s > 0
    else:
        lo = np.ceil(255.0 * k * m / (255.0 - low) - 1e-9).astype(np.int64)
    # high bound: (255 - high) * s <= 255 * k * m
    if high < 255:
        hi = np.floor(255.0 * k * m / (255.0 - high) + 1e-9).astype(np.int64)
    # s = 0 (black) has S = 0 by definition: kept only if low <= 0 <= high.
    if low > 0:
        lo = np.maximum(lo, 1)
    lo = np.clip(lo, 0, top + 1).astype(np.uint16)
    hi = np.clip(hi, 0, top).astype(np.uint16)
    lo.flags.writeable = False
    hi.flags.writeable = False
    return lo, hi


def _paper_mask(a: np.ndarray, low: float, high: float, space: str) -> np.ndarray:
    r, g, b = _channels(a)
    mn = np.minimum(np.minimum(r, g), b)
    if space == "hsi":
        s = r.astype(np.uint16)
        s += g
        s += b
    else:
        s = np.maximum(np.maximum(r, g), b).astype(np.uint16)
    lo, hi = _paper_luts(float(low), float(high), space)
    mask = s >= lo[mn]
    if high < 255:
        mask &= s <= hi[mn]
    return mask


def segment_paper(rgb, low: float = 180, high: float = 255, space: str = "hsi"):
    """The paper's segmentation: threshold the saturation and multiply with the image.

    This is exactly the rule of the ALLNet paper: saturation ``S`` (HSI by default, see
    :func:`saturation`) scaled to 0-255, pixels with ``low <= 255 * S <= high`` set to 1,
    the rest to 0, and the mask multiplied with the original image. The comparison is
    done exactly, with integers, on the unrounded ``255 * S``.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        RGB image.
    low, high : float
        Inclusive range of ``255 * S`` that is kept (the paper: 180 and 255).
    space : {"hsi", "hsv"}
        Colour space of the saturation; the paper uses HSI.

    Returns
    -------
    mask : (H, W) bool array
    segmented : (H, W, 3) uint8 array
        ``rgb * mask``: the image with every pixel outside the mask set to black.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[200, 20, 200], [200, 180, 190]]], dtype=np.uint8)
    >>> mask, seg = segment_paper(rgb)
    >>> mask.tolist(), seg[0, 1].tolist()
    ([[True, False]], [0, 0, 0])
    """
    a = _check_rgb(rgb)
    _check_choice(space, _SPACES, "space")
    low, high = float(low), float(high)
    if not (0 <= low <= 255 and 0 <= high <= 255 and low <= high):
        raise ConfigError(f"need 0 <= low <= high <= 255, got low={low}, high={high}")
    mask = _paper_mask(a, low, high, space)
    segmented = a * mask[..., None]
    return mask, segmented


# --------------------------------------------------------------------------- features


@functools.lru_cache(maxsize=1)
def _blue_green_lut() -> np.ndarray:
    """``128 + 127 * (B - G) / (B + G)`` as uint8, indexed by ``B * 256 + G``."""
    b = np.arange(256, dtype=np.float32)[:, None]
    g = np.arange(256, dtype=np.float32)[None, :]
    tot = b + g
    ratio = np.divide(b - g, tot, out=np.zeros_like(tot), where=tot > 0)
    lut = np.rint(128.0 + 127.0 * ratio).astype(np.uint8).ravel()
    lut.flags.writeable = False
    return lut


def _blue_green(a: np.ndarray) -> np.ndarray:
    """Nucleus feature of an RGB image as uint8 (128 = neutral, higher = bluer than green)."""
    idx = a[..., 2].astype(np.uint16)
    idx <<= 8
    idx |= a[..., 1]
    return _blue_green_lut()[idx]


def _otsu_hist(counts: np.ndarray) -> int:
    """Otsu's threshold (an integer level; ``> t`` is the upper class) from a histogram."""
    counts = counts.astype(np.float64)
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        nz = np.flatnonzero(counts)
        return int(nz[-1]) if nz.size else 255
    from skimage.filters import threshold_otsu

    t = threshold_otsu(hist=(counts, np.arange(counts.size)))
    return int(math.floor(t))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a ``(2 radius + 1)`` square (separable, fast)."""
    if radius <= 0:
        return mask.copy()
    return ndi.maximum_filter(mask.view(np.uint8), size=2 * radius + 1).view(bool)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a ``(2 radius + 1)`` square; outside the image counts as set."""
    if radius <= 0:
        return mask.copy()
    return ndi.minimum_filter(mask.view(np.uint8), size=2 * radius + 1, mode="nearest").view(
        bool
    )


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a boolean mask (like ``ndi.binary_fill_holes``, much faster).

    A hole is a connected background region (4-connected) that does not reach the image
    border.
    """
    mask = np.asarray(mask, bool)
    if mask.size == 0 or mask.all():
        return mask.copy()
    bg, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[bg] | mask


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels 1..N in increasing order of their old id (int32)."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    if present.all() if present.size <= 1 else present[1:].all():
        return labels.astype(np.int32, copy=False)
    ids = np.cumsum(present, dtype=np.int32)
    ids[~present] = 0
    return ids[labels]


def _downscale(a: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return a
    return np.ascontiguousarray(a[factor // 2 :: factor, factor // 2 :: factor])


# --------------------------------------------------------------------------- auto method


class _Params:
    """Parameters of the auto method, validated once."""

    def __init__(
        self,
        min_area,
        black_level,
        min_contrast,
        relative_area,
        group_distance,
        cell_radius,
        downscale,
        shape,
        split_depth=0.25,
        border_factor=0.5,
    ):
        h, w = shape
        if downscale is not None and int(downscale) < 1:
            raise ConfigError(f"downscale must be a positive integer, got {downscale!r}")
        for name, v in (
            ("min_area", 0.0 if min_area is None else min_area),
            ("relative_area", relative_area),
            ("group_distance", group_distance),
            ("cell_radius", cell_radius),
        ):
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        self.min_area = None if min_area is None else float(min_area)
        self.black_level = int(black_level)
        self.min_contrast = int(min_contrast)
        self.relative_area = float(relative_area)
        self.group_distance = float(group_distance)
        self.cell_radius = float(cell_radius)
        self.downscale = None if downscale is None else int(downscale)
        self.split_depth = float(split_depth)
        self.border_factor = float(border_factor)
        self.cutout_nucleus = 0.25
        self.rbc_pixels = 18.0


def _class_means(counts: np.ndarray, t: int) -> tuple[float, float]:
    """Mean level of the classes ``<= t`` and ``> t`` of a histogram."""
    x = np.arange(counts.size, dtype=np.float64)
    lo, hi = counts[: t + 1], counts[t + 1 :]
    m_lo = float((lo * x[: t + 1]).sum() / lo.sum()) if lo.sum() else float(t)
    m_hi = float((hi * x[t + 1 :]).sum() / hi.sum()) if hi.sum() else float(t)
    return m_lo, m_hi


def _hysteresis(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Connected pieces of ``low`` (8-connected) that contain a pixel of ``high``."""
    comp, n = ndi.label(low, structure=np.ones((3, 3), bool))
    if n == 0:
        return low
    keep = np.zeros(n + 1, bool)
    keep[comp[high & low]] = True
    keep[0] = False
    return keep[comp]


def _red_cell_radius(material: np.ndarray) -> float | None:
    """Typical red-cell radius (pixels) from the mask of stained, non-nucleus material.

    The 90th percentile of the distance to the background inside a disc of radius ``r``
    is ``0.68 r``; red cells dominate the material of a smear, clumps and chains do not
    change their width. Works on every second pixel. ``None`` when there is too little
    material to tell.
    """
    sub = _fill_holes(material[::2, ::2])
    if sub.sum() < 50:
        return None
    d = ndi.distance_transform_edt(sub)
    return float(np.percentile(d[sub], 90)) * 2.0 / 0.68


def _area_floor(p: _Params, valid_count: int, scale: float, rbc_radius=None) -> float:
    """Smallest nucleus (or cut-out cell) area in reduced-image pixels.

    The default scales with the image: a fifth of a typical red cell's area (platelets
    are smaller, WBC nuclei larger) when red cells can be measured, else 2000 full-size
    pixels (BCCD-like magnification); never more than 4 % of the non-black area, so that
    small single-cell images keep their cell. Black pixels never count.
    """
    if p.min_area is not None:
        return p.min_area / scale**2
    absolute = 2000.0 / scale**2
    if rbc_radius is not None:
        absolute = 0.2 * math.pi * rbc_radius**2
    return min(absolute, 0.04 * valid_count)


def _thresholds(a: np.ndarray, p: _Params):
    """Masks and global thresholds of an (already reduced) image.

    Returns ``valid`` (non-black), ``nuc`` (nucleus pixels), the nucleus threshold on
    :func:`_blue_green`, the green threshold of cell material (``255`` when the image has
    no bright background), whether nuclei stand out at all (``False`` when the Otsu
    classes differ by less than ``min_contrast``) and whether the image is a cut-out
    (no bright background: cells on black).
    """
    r, g, b = _channels(a)
    valid = np.maximum(np.maximum(r, g), b) > p.black_level
    gcounts = np.bincount(g[valid], minlength=256)
    t_g = _otsu_hist(gcounts)
    has_background = _class_means(gcounts, t_g)[1] >= 128
    feat = _blue_green(a)
    counts = np.bincount(feat[valid], minlength=256)
    t_nuc = _otsu_hist(counts)
    lo, hi = _class_means(counts, t_nuc)
    contrast_ok = hi - lo >= p.min_contrast
    nuc = feat > t_nuc
    nuc &= valid
    if contrast_ok:
        # hysteresis: keep the pieces that reach the mean of the nucleus class
        nuc = _hysteresis(nuc, feat > int(hi))
    if has_background:
        # cell material: darker in green than the bright background (non-nucleus pixels)
        t_g = _otsu_hist(np.bincount(g[valid & ~nuc], minlength=256))
    else:
        t_g = 255  # a cut-out cell on black: every non-black pixel is cell material
    # A cell cut out on black: no bright background at all, or a black surround with
    # nuclei making up a large part of what is left (a smear's nuclei are a few percent).
    n_valid = int(np.count_nonzero(valid))
    cutout = not has_background or (
        n_valid <= 0.9 * valid.size and np.count_nonzero(nuc) >= p.cutout_nucleus * n_valid
    )
    if cutout:
        t_g = 255
    return valid, nuc, t_nuc, t_g, contrast_ok, cutout


def _group_nuclei(nuc: np.ndarray, p: _Params, area_floor: float) -> tuple[np.ndarray, int]:
    """Group nucleus fragments (lobes) and drop small groups; return labels and count."""
    from skimage.measure import label

    # thin lines (blue fringes of red-cell edges) are not nuclei
    nuc = _dilate(_erode(nuc, 1), 1)
    nuc = _fill_holes(nuc)
    comp, n = label(nuc, return_num=True, connectivity=2)
    if n == 0:
        return comp.astype(np.int32), 0
    areas = np.bincount(comp.ravel())[1:]
    # join fragments closer than a fraction of the largest fragment's radius
    r_big = math.sqrt(areas.max() / math.pi)
    gap = max(1, int(round(p.group_distance * r_big)))
    joined = _dilate(nuc, gap)
    groups, n = label(joined, return_num=True, connectivity=2)
    groups = groups.astype(np.int32)
    groups[~nuc] = 0
    garea = np.bincount(groups.ravel(), minlength=n + 1)
    garea[0] = 0
    floor = np.full(n + 1, max(area_floor, p.relative_area * garea.max()))
    # a cell cut by the image border shows only part of its nucleus
    for edge in (groups[0], groups[-1], groups[:, 0], groups[:, -1]):
        floor[edge] = max(area_floor, p.relative_area * garea.max()) * p.border_factor
    keep = garea >= floor
    keep[0] = False
    new_ids = np.zeros(n + 1, np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[groups], int(keep.sum())


def _cytoplasm_rule(ring_px: np.ndarray, far_px: np.ndarray, min_separation: float = 6.0):
    """A linear rule that tells cytoplasm from red cells, learnt from the image itself.

    ``ring_px`` are RGB pixels of cell material right next to a nucleus (cytoplasm),
    ``far_px`` cell material out of every nucleus' reach (red cells), both ``(N, 3)``.
    Pixels are described by ``(B - R, G)``; the rule is the perpendicular bisector of the
    two class means. Returns ``(w, c)`` (a pixel is cytoplasm when ``w . x >= c``) or
    ``None`` when either sample is too small or the means differ by less than
    ``min_separation`` levels.
    """
    n_ring, n_far = len(ring_px), len(far_px)
    if n_ring < 10 or n_far < max(10, n_ring // 2):
        return None

    def mean_feat(px):
        px = px.astype(np.float32)
        return np.array([(px[:, 2] - px[:, 0]).mean(), px[:, 1].mean()], np.float32)

    mu_c, mu_r = mean_feat(ring_px), mean_feat(far_px)
    w = mu_c - mu_r
    if float(np.hypot(*w)) < min_separation:
        return None
    c = float(w @ (mu_c + mu_r) / 2)
    return w, c


def _apply_rule(px: np.ndarray, rule) -> np.ndarray:
    """Which of the RGB pixels ``px`` (``(..., 3)``) the cytoplasm rule accepts."""
    w, c = rule
    x = (px[..., 2].astype(np.float32) - px[..., 0]) * w[0]
    x += px[..., 1].astype(np.float32) * w[1]
    return x >= c


def _expand(groups: np.ndarray, n: int, cell: np.ndarray, small: np.ndarray, p: _Params):
    """Cell labels: cell pixels nearest to a nucleus group and within its reach.

    Works inside the bounding box of all nuclei grown by the largest reach. Returns the
    labels and the cytoplasm rule (see :func:`_cytoplasm_rule`) or ``None``.
    """
    areas = np.bincount(groups.ravel(), minlength=n + 1)
    r_nuc = np.sqrt(areas / np.pi).astype(np.float32)
    reach = int(math.ceil(float(r_nuc.max()) * p.cell_radius * 1.5)) + 2
    rows_any = np.flatnonzero(groups.any(axis=1))
    cols_any = np.flatnonzero(groups.any(axis=0))
    h, w = groups.shape
    r0, r1 = max(rows_any[0] - reach, 0), min(rows_any[-1] + 1 + reach, h)
    c0, c1 = max(cols_any[0] - reach, 0), min(cols_any[-1] + 1 + reach, w)
    box = (slice(r0, r1), slice(c0, c1))
    grp, mat, img = groups[box], cell[box], small[box]

    idx = ndi.distance_transform_edt(grp == 0, return_distances=False, return_indices=True)
    nearest = grp[idx[0], idx[1]]
    d2 = (idx[0] - np.arange(r1 - r0, dtype=np.int32)[:, None]) ** 2
    d2 += (idx[1] - np.arange(c1 - c0, dtype=np.int32)[None, :]) ** 2
    del idx
    rn = r_nuc[nearest]
    lim = rn * p.cell_radius
    within = d2 <= lim * lim
    nucleus = grp > 0
    ring = (d2 <= np.maximum(rn * 0.15, 1.5) ** 2) & mat & ~nucleus
    far = (d2 > (lim * 1.5) ** 2) & mat
    far_px = [img[far]]
    del d2, lim, rn
    # material outside the box is out of every nucleus' reach too (sampled sparsely)
    outside = np.ones((h, w), bool)
    outside[box] = False
    outside &= cell
    far_px.append(small[::2, ::2][outside[::2, ::2]])
    rule = _cytoplasm_rule(img[ring], np.concatenate(far_px))
    del ring, far, outside, far_px
    m = mat & within
    if rule is not None:
        m[m] = _apply_rule(img[m], rule)
    m |= nucleus
    m = _fill_holes(m)
    # keep only cell material connected to a nucleus
    comp, _ = ndi.label(m)
    has_nuc = np.zeros(comp.max() + 1, bool)
    has_nuc[comp[nucleus]] = True
    has_nuc[0] = False
    m = has_nuc[comp]
    labels = np.zeros((h, w), np.int32)
    labels[box] = np.where(m, nearest, 0)
    return labels, rule


def _refine(a, low_labels, low_nuc, n, t_nuc, t_g, rule, p: _Params, want_nuclei: bool = True):
    """Full-resolution cell and nucleus labels from the reduced-resolution labels."""
    f = p.downscale
    h, w = a.shape[:2]
    cells = np.zeros((h, w), np.int32)
    nuclei = np.zeros((h, w), np.int32) if want_nuclei else None
    if n == 0:
        return cells, nuclei
    objs = ndi.find_objects(low_labels)
    off = f // 2
    new_id = 0
    for lab, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        # low-res bbox grown by one pixel, mapped to full resolution
        r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, low_labels.shape[0])
        c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, low_labels.shape[1])
        R0, R1 = max(r0 * f + off - f, 0), min(r1 * f + off + f, h)
        C0, C1 = max(c0 * f + off - f, 0), min(c1 * f + off + f, w)
        sub = a[R0:R1, C0:C1]
        # nearest low-res label of every full-res pixel of the box
        rr = np.clip((np.arange(R0, R1) - off + f // 2) // f, 0, low_labels.shape[0] - 1)
        cc = np.clip((np.arange(C0, C1) - off + f // 2) // f, 0, low_labels.shape[1] - 1)
        up = low_labels[rr[:, None], cc[None, :]]
        own = up == lab
        allowed = _dilate(own, f) & ((up == 0) | own)
        r, g, b = _channels(sub)
        valid = np.maximum(np.maximum(r, g), b) > p.black_level
        near_nuc = _dilate(low_nuc[rr[:, None], cc[None, :]] == lab, f)
        nuc = (_blue_green(sub) > t_nuc) & valid & allowed & near_nuc
        cell = (g <= t_g) & valid & allowed
        if rule is not None:
            cell[cell] = _apply_rule(sub[cell], rule)
        cell |= nuc
        cell = _fill_holes(cell)
        comp, k = ndi.label(cell)
        if k > 1:
            # keep the pieces that overlap the reduced-resolution cell
            hit = np.bincount(comp[own], minlength=k + 1)
            hit[0] = 0
            cell = hit[comp] > 0
        nuc = _fill_holes(nuc) & cell
        view_c = cells[R0:R1, C0:C1]
        cell &= view_c == 0
        if not cell.any():
            continue
        new_id += 1  # ids stay sequential even when a cell vanishes at full resolution
        view_c[cell] = new_id
        if want_nuclei:
            nuclei[R0:R1, C0:C1][nuc & cell] = new_id
    return cells, nuclei


def _cutout_labels(valid: np.ndarray, nuc: np.ndarray, p: _Params, scale: float) -> np.ndarray:
    """Cells of an image without bright background: large non-black components that
    hold nucleus pixels."""
    from skimage.measure import label

    comp, n = label(_fill_holes(valid), return_num=True, connectivity=2)
    if n == 0:
        return comp.astype(np.int32)
    areas = np.bincount(comp.ravel())
    areas[0] = 0
    keep = areas >= max(_area_floor(p, int(valid.sum()), scale), p.relative_area * areas.max())
    keep &= np.bincount(comp[nuc], minlength=n + 1) > 0
    keep[0] = False
    ids = np.cumsum(keep, dtype=np.int32)
    ids[~keep] = 0
    return ids[comp]


def _split_touching(low: np.ndarray, low_nuc: np.ndarray, floor: float, p: _Params):
    """Split cells that are two touching round cells (distance-transform watershed).

    A cell whose distance transform has several maxima standing out by more than
    ``p.split_depth`` of the highest is cut along the watershed between them, but only if
    every part keeps a nucleus of at least ``floor`` pixels and a quarter of the largest
    part's (lobes of one nucleus never make a cell of their own). Returns new ``(low, low_nuc)``.
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    if p.split_depth <= 0:
        return low, low_nuc
    objs = ndi.find_objects(low)
    out, out_nuc = low, low_nuc
    next_id = len(objs) + 1
    changed = False
    for lab, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(q.start - 1, 0), q.stop + 1) for q in sl)
        m = low[sl] == lab
        # quarter-pixel integer distances: h-maxima on integers is exact
        d = np.rint(ndi.distance_transform_edt(m) * 4).astype(np.int32)
        dmax = int(d.max())
        if dmax < 12:
            continue
        # regional maxima of the h-dome reconstruction: maxima deeper than h, with
        # near-equal neighbouring tops merged into one plateau
        h = max(1, int(p.split_depth * dmax))
        rec = reconstruction(np.maximum(d - h, 0), d, method="dilation")
        peaks = local_maxima(rec, connectivity=2) & m
        markers, k = ndi.label(peaks, structure=np.ones((3, 3), bool))
        if k < 2:
            continue
        parts = watershed(-d, markers, mask=m)
        nuc_area = np.bincount(parts[low_nuc[sl] == lab], minlength=k + 1)[1:]
        if nuc_area.min() < max(floor, 0.25 * nuc_area.max()):
            continue
        if not changed:
            out, out_nuc, changed = low.copy(), low_nuc.copy(), True
        for j in range(2, k + 1):
            part = parts == j
            out[sl][part] = next_id
            out_nuc[sl][part & (low_nuc[sl] == lab)] = next_id
            next_id += 1
    if changed:
        out = _relabel_sequential(out)
        out_nuc = np.where(out_nuc > 0, out, 0).astype(np.int32)
    return out, out_nuc


def _choose_downscale(a: np.ndarray, p: _Params) -> int:
    """Reduction factor for detection, from the size of the red cells.

    Measured on every 4th pixel: the 75th percentile of the distance transform of the
    stained material is half a red cell's radius. The factor makes that radius about
    ``rbc_pixels`` (18) reduced pixels, whatever the magnification (3 for BCCD fields,
    2 for the 120x120 Zheng crops). When no red cells can be measured (cut-out cells,
    small images): 2 for images of 256 pixels or more on the short side, else 1.
    """
    if p.downscale is not None:
        return p.downscale
    fallback = 2 if min(a.shape[:2]) >= 256 else 1
    if min(a.shape[:2]) < 64:
        return 1
    coarse = a[::4, ::4]
    g = coarse[..., 1]
    valid = coarse.max(axis=-1) > p.black_level
    counts = np.bincount(g[valid], minlength=256)
    t_g = _otsu_hist(counts)
    if _class_means(counts, t_g)[1] < 128:
        return fallback  # no bright background: a cut-out cell
    material = _fill_holes(valid & (g <= t_g))
    if material.sum() < 50:
        return fallback
    d = ndi.distance_transform_edt(material)
    radius = float(np.percentile(d[material], 75)) * 4 / 0.5
    return int(np.clip(round(radius / p.rbc_pixels), 1, 4))


def _auto_labels(a: np.ndarray, p: _Params, want_nuclei: bool = True):
    f = p.downscale = _choose_downscale(a, p)
    small = _downscale(a, f)
    valid, nuc, t_nuc, t_g, contrast_ok, cutout = _thresholds(small, p)
    empty = np.zeros(a.shape[:2], np.int32)
    none = empty.copy() if want_nuclei else None
    rule = None
    if cutout:
        low = _cutout_labels(valid, nuc, p, scale=f)
    else:
        if not contrast_ok:
            return empty, none
        material = valid & (small[..., 1] <= t_g)
        rbc_radius = _red_cell_radius(material & ~nuc) if p.min_area is None else None
        floor = _area_floor(p, int(valid.sum()), f, rbc_radius)
        groups, n = _group_nuclei(nuc, p, floor)
        if n == 0:
            return empty, none
        low, rule = _expand(groups, n, material, small, p)
    n = int(low.max())
    if n == 0:
        return empty, none
    if cutout:
        floor = _area_floor(p, int(valid.sum()), f)
        low_nuc = np.where(_fill_holes(nuc) & (low > 0), low, 0).astype(np.int32)
    else:
        low_nuc = np.where(groups > 0, low, 0).astype(np.int32)
    low, low_nuc = _split_touching(low, low_nuc, floor, p)
    n = int(low.max())
    if f == 1:
        return low, (low_nuc if want_nuclei else None)
    del empty, none, valid, nuc, small
    return _refine(a, low, low_nuc, n, t_nuc, t_g, rule, p, want_nuclei)


# --------------------------------------------------------------------------- public API


_AUTO_DEFAULTS = dict(
    min_area=None,
    black_level=10,
    min_contrast=14,
    relative_area=0.1,
    group_distance=0.3,
    cell_radius=1.2,
    downscale=None,
    split_depth=0.25,
)


def _auto(a, want_nuclei: bool = True, **kw):
    opts = dict(_AUTO_DEFAULTS)
    opts.update(kw)
    p = _Params(shape=a.shape[:2], **opts)
    return _auto_labels(a, p, want_nuclei)


def _otsu_mask(a: np.ndarray, black_level: int = 10) -> np.ndarray:
    """Reference method: Otsu's threshold on HSI saturation of the non-black pixels."""
    s = saturation(a, "hsi")
    s8 = np.rint(s * 255).astype(np.uint8)
    valid = a.max(axis=-1) > black_level
    t = _otsu_hist(np.bincount(s8[valid], minlength=256))
    return (s8 > t) & valid


def segment_wbc(rgb, method: str = "auto", part: str = "cell", **kwargs) -> np.ndarray:
    """Boolean mask of the white blood cells in an RGB image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        A blood-smear field or a single-cell image (a black background is ignored when
        thresholds are computed).
    method : {"auto", "otsu", "paper"}
        ``"auto"``: the adaptive method described in the module docstring (default).
        ``"otsu"``: Otsu's threshold on HSI saturation (reference). ``"paper"``: the
        paper's fixed HSI rule (:func:`segment_paper`).
    part : {"cell", "nucleus"}
        Whole cells (nucleus plus cytoplasm) or nuclei only. ``"otsu"`` and ``"paper"``
        make no such distinction and return the same mask for both.
    **kwargs
        Parameters of the auto method, see :func:`label_cells`.

    Returns
    -------
    (H, W) bool array

    Examples
    --------
    >>> from allnet_core.io import read_rgb
    >>> rgb = read_rgb("BloodImage_00000.jpg")  # doctest: +SKIP
    >>> segment_wbc(rgb).mean()  # doctest: +SKIP
    0.14
    """
    a = _check_rgb(rgb)
    _check_choice(method, METHODS, "method")
    _check_choice(part, _PARTS, "part")
    if method == "paper":
        return segment_paper(a, **kwargs)[0]
    if method == "otsu":
        return _otsu_mask(a)
    cells, nuclei = _auto(a, want_nuclei=part == "nucleus", **kwargs)
    return (nuclei if part == "nucleus" else cells) > 0


def label_cells(
    rgb,
    method: str = "auto",
    *,
    min_area: float | None = None,
    black_level: int = 10,
    min_contrast: int = 14,
    relative_area: float = 0.1,
    group_distance: float = 0.3,
    cell_radius: float = 1.2,
    downscale: int | None = None,
    split_depth: float = 0.25,
    low: float = 180,
    high: float = 255,
    space: str = "hsi",
    return_nuclei: bool = False,
):
    """Instance labels of the white blood cells, one id per cell.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        A blood-smear field or a single-cell image.
    method : {"auto", "otsu", "paper"}
        ``"auto"`` (default) is described in the module docstring; ``"otsu"`` and
        ``"paper"`` label the connected components of their masks (larger than
        ``min_area``) and do not split touching cells.
    min_area : float, optional
        Smallest nucleus area in pixels (full resolution) that counts as a WBC; smaller
        purple objects are platelets or debris. Default: ``min(2000, 0.04 * A)`` with
        ``A`` the number of non-black pixels, i.e. an absolute floor for smear fields at
        BCCD-like magnification that shrinks for small single-cell images.
    black_level : int
        Pixels whose brightest channel is at most this are background (cut-out images)
        and take no part in any threshold.
    min_contrast : int
        Least difference between the mean ``(B - G) / (B + G)`` (scaled to +-127) of the
        two Otsu classes for nuclei to count as present; keeps red cells out when a field
        holds no WBC at all.
    relative_area : float
        Nucleus groups smaller than this fraction of the largest group are dropped.
    group_distance : float
        Nucleus fragments closer than this fraction of the largest fragment's radius
        belong to the same cell (lobes of a neutrophil).
    cell_radius : float
        How far the cytoplasm may reach from the nucleus, as a multiple of the radius of a
        disc of the nucleus' area.
    downscale : int, optional
        Detection runs on the image reduced by this factor, then each cell is refined at
        full resolution. Default: chosen from the measured red-cell size so that a red
        cell's radius spans about 18 reduced pixels (3 for BCCD fields, 2 for Zheng
        crops, at most 4); 2 (1 under 256 pixels) when there are no red cells to measure.
    split_depth : float
        Touching cells are split where the distance transform of their joint mask has
        several maxima deeper than this fraction of the highest (and every part holds a
        nucleus); 0 turns splitting off.
    low, high, space
        The paper's saturation range and colour space (``method="paper"`` only; see
        :func:`segment_paper`).
    return_nuclei : bool
        Also return the nucleus labels (same ids).

    Returns
    -------
    labels : (H, W) int32 array
        0 is background, ``1..N`` are cells. Cells cut by the image border are kept.
    nuclei : (H, W) int32 array
        Only with ``return_nuclei=True``.
    """
    a = _check_rgb(rgb)
    _check_choice(method, METHODS, "method")
    if method == "auto":
        cells, nuclei = _auto(
            a,
            min_area=min_area,
            black_level=black_level,
            min_contrast=min_contrast,
            relative_area=relative_area,
            group_distance=group_distance,
            cell_radius=cell_radius,
            downscale=downscale,
            split_depth=split_depth,
            want_nuclei=return_nuclei,
        )
        if return_nuclei:
            nuclei = np.where(nuclei > 0, cells, 0).astype(np.int32)
            return cells, nuclei
        return cells
    from skimage.measure import label

    paper = {"low": low, "high": high, "space": space} if method == "paper" else {}
    mask = segment_wbc(a, method=method, **paper)
    if min_area is None:
        min_area = min(2000.0, 0.04 * np.count_nonzero(a.max(axis=-1) > black_level))
    mask = _fill_holes(mask)
    lab = label(mask, connectivity=2).astype(np.int32)
    areas = np.bincount(lab.ravel())
    small = areas < min_area
    small[0] = True
    lab[small[lab]] = 0
    lab = _relabel_sequential(lab) if lab.any() else lab
    if return_nuclei:
        return lab, lab.copy()
    return lab


# --------------------------------------------------------------------------- crops


def extract_cells(rgb, labels, size: int = 450):
    """Cut every labelled cell out as a C-NMC-like crop.

    Each crop is ``size x size``: the cell centred (on its bounding box), every pixel
    outside the cell's mask exactly black. A cell larger than the crop is scaled down to
    fit (never cut) and the factor is recorded.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    labels : (H, W) integer array
        Instance labels, 0 = background (e.g. from :func:`label_cells`).
    size : int
        Side of the square crops in pixels.

    Returns
    -------
    crops : (N, size, size, 3) uint8 array
        One crop per label, in increasing label order.
    table : pandas.DataFrame
        One row per label: ``label``, ``bbox_min_row``, ``bbox_min_col``,
        ``bbox_max_row``, ``bbox_max_col`` (max exclusive), ``area``, ``centroid_row``,
        ``centroid_col``, ``touches_border`` and ``scale`` (1.0, or the factor < 1 by
        which the cell was shrunk).
    """
    import pandas as pd

    a = _check_rgb(rgb)
    lab = np.asarray(labels)
    if lab.shape != a.shape[:2]:
        raise ConfigError(f"labels shape {lab.shape} does not match the image {a.shape[:2]}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_):
        raise ConfigError(f"labels must be an integer array, got dtype {lab.dtype}")
    size = int(size)
    if size < 1:
        raise ConfigError(f"size must be a positive integer, got {size}")
    if lab.dtype == np.bool_:
        lab = lab.astype(np.int32)
    if lab.size and lab.min() < 0:
        raise ConfigError("labels must be >= 0 (0 is background)")
    h, w = lab.shape
    columns = [
        "label",
        "bbox_min_row",
        "bbox_min_col",
        "bbox_max_row",
        "bbox_max_col",
        "area",
        "centroid_row",
        "centroid_col",
        "touches_border",
        "scale",
    ]
    objs = ndi.find_objects(lab)
    found = [(i + 1, sl) for i, sl in enumerate(objs) if sl is not None]
    crops = np.zeros((len(found), size, size, 3), np.uint8)
    rows = []
    from skimage.transform import resize

    for i, (lid, sl) in enumerate(found):
        m = lab[sl] == lid
        patch = a[sl] * m[..., None]
        rr, cc = np.nonzero(m)
        area = int(rr.size)
        cen_r = float(rr.mean()) + sl[0].start
        cen_c = float(cc.mean()) + sl[1].start
        ph, pw = m.shape
        scale = 1.0
        if ph > size or pw > size:
            scale = size / max(ph, pw)
            nh = max(1, min(size, int(math.floor(ph * scale + 1e-6))))
            nw = max(1, min(size, int(math.floor(pw * scale + 1e-6))))
            small = resize(
                patch, (nh, nw), order=1, anti_aliasing=True, preserve_range=True
            )
            msmall = resize(m.astype(np.float32), (nh, nw), order=1, anti_aliasing=True) >= 0.5
            patch = (np.rint(small).astype(np.uint8)) * msmall[..., None]
            ph, pw = nh, nw
        top, left = (size - ph) // 2, (size - pw) // 2
        crops[i, top : top + ph, left : left + pw] = patch
        rows.append(
            dict(
                label=int(lid),
                bbox_min_row=sl[0].start,
                bbox_min_col=sl[1].start,
                bbox_max_row=sl[0].stop,
                bbox_max_col=sl[1].stop,
                area=area,
                centroid_row=cen_r,
                centroid_col=cen_c,
                touches_border=bool(
                    sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w
                ),
                scale=float(scale),
            )
        )
    table = pd.DataFrame(rows, columns=columns)
    return crops, table.astype(
        {"label": np.int64, "area": np.int64, "touches_border": bool, "scale": np.float64}
    )
