"""Synthetic C-NMC-like single cells: :func:`synth_cell`, :func:`synth_cells`.

450x450 RGB, an exactly black background, one stained lymphocyte-like cell with a purple
nucleus inside a paler cytoplasm. Blasts (ALL) and healthy cells (HEM) differ the way real
ones tend to, and overlap enough that no classifier can be perfect:

* each cell draws two latent "blastness" scores, a coarse one ``z_c`` from ``N(+-1, 1)``
  and a fine one ``z_f`` from ``N(+-1.45, 1)`` (``+`` for ALL, ``-`` for HEM), so the
  best possible accuracy is about ``Phi(1.76)`` = 96 % with both, and ``Phi(1)`` = 84 %
  from the coarse cues alone;
* from ``z_c`` follow the cell size and the nucleus-to-cytoplasm ratio: cues that survive
  any input size;
* from ``z_f`` follow the fine-scale cues, as in real cells (:data:`FINE_CUES`): the
  chromatin (smooth and finely dispersed in blasts, condensed into dense dark clumps in
  healthy cells), nucleoli (small pale spots, mostly in blasts) and the nuclear contour
  (notched in blasts, smooth in healthy cells). They are a few pixels wide at 450 px and
  zero-mean on larger scales, so a 64 px model input (7 frame pixels to one of its pixels)
  keeps much less of them than a 128 px one (3.5): drawing cells
  large and training at two input sizes shows how much a model loses at 64 px
  (``docs/training.md``, "Choosing a profile");
* each subject (patient or healthy donor) has its own stain tint, brightness and
  magnification (:class:`SubjectStyle`), shared by all its cells, so that splitting by
  subject matters.

The renderer (``_render_cell``) also draws the white cells of :mod:`.smears`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from allnet_core.classes import CLASS_NAMES, NEGATIVE_CLASS, POSITIVE_CLASS

__all__ = ["FINE_CUES", "SubjectStyle", "make_subject_style", "synth_cell", "synth_cells"]

_COARSE_SHIFT = 1.0  # class separation of the coarse cues: Phi(1.0) ~ 0.84 alone
_FINE_SHIFT = 1.45  # of the fine cues; both: Phi(hypot(1.0, 1.45)) = Phi(1.76) ~ 0.96

_SHADE_FLOOR = 0.4  # darkest chromatin, relative to the nucleus colour

#: The fine-scale class cues and their size (diameter, or depth of the notches) in pixels
#: of a 450 px frame, where the cell is about 200 px wide. One pixel of a 128 px model input
#: spans 3.5 of them, one of a 64 px input 7: the chromatin clumps keep more than half of
#: their contrast at 128 px and less than a third at 64 px.
FINE_CUES = {"chromatin clumps": 3.5, "nucleoli": 5.0, "nuclear notches": 3.0}

_CLUMP_DEPTH = 0.6  # depth of the clumps of a fully healthy cell (f = 0), in nucleus shade


@dataclass(frozen=True)
class SubjectStyle:
    """Stain and optics of one subject: applied to all of its cells.

    Attributes
    ----------
    tint : tuple of float
        Per-channel multiplicative stain tint (around 1).
    brightness : float
        Overall brightness factor (around 1).
    scale : float
        Magnification factor applied to cell size (around 1).
    """

    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: float = 1.0
    scale: float = 1.0


def make_subject_style(rng: np.random.Generator, strength: float = 1.0) -> SubjectStyle:
    """Draw a subject's stain/brightness/magnification shift.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    strength : float
        0 gives the neutral style; 1 the default spread (tint +-10 %, brightness +-12 %,
        scale +-7 %).
    """
    tint = 1.0 + strength * rng.uniform(-0.10, 0.10, size=3)
    return SubjectStyle(
        tint=tuple(float(t) for t in tint),
        brightness=float(1.0 + strength * rng.uniform(-0.12, 0.12)),
        scale=float(1.0 + strength * rng.uniform(-0.07, 0.07)),
    )


def _check_label(label: str) -> str:
    up = str(label).upper()
    if up not in CLASS_NAMES:
        raise ValueError(f"label must be 'ALL' or 'HEM', got {label!r}")
    return up


def _cell_traits(label: str, rng: np.random.Generator) -> dict:
    """Morphology of one cell, driven by its coarse and fine latent blastness."""
    sign = 1.0 if label == "ALL" else -1.0
    z_c = rng.normal(sign * _COARSE_SHIFT, 1.0)
    z_f = rng.normal(sign * _FINE_SHIFT, 1.0)
    u = float(np.clip(0.5 + z_c / 4.0, 0.0, 1.0))  # coarse: HEM ~ 0.25, ALL ~ 0.75
    f = float(np.clip(0.5 + z_f / 5.0, 0.0, 1.0))  # fine: HEM ~ 0.21, ALL ~ 0.79
    return {
        "radius": 0.165 + 0.11 * u + rng.normal(0, 0.008),  # fraction of the frame
        "nc_ratio": 0.60 + 0.30 * u + rng.normal(0, 0.02),
        "mottle_amp": rng.uniform(0.08, 0.2),  # medium-scale shading, no class signal
        "grain": f,  # chromatin: finely dispersed (blasts, 1) to clumped (healthy cells, 0)
        "nucleoli": int(rng.poisson(3.5 * f**2)),
        "notches": f,  # contour irregularity (1: notches of FINE_CUES' depth)
        "elongation": 1.0 + abs(rng.normal(0, 0.08)),
    }


def _smear_traits(label: str, rng: np.random.Generator) -> dict:
    """Morphology of a smear field's white cell: one latent blastness ``z`` from
    ``N(+-1.75, 1)``, as all synthetic cells were drawn before the fine cues."""
    z = rng.normal(1.75 if label == "ALL" else -1.75, 1.0)
    u = float(np.clip((z + 3.5) / 7.0, 0.0, 1.0))  # HEM ~ 0.25, ALL ~ 0.75
    return {
        "radius": 0.165 + 0.11 * u + rng.normal(0, 0.008),  # fraction of the frame
        "nc_ratio": 0.60 + 0.30 * u + rng.normal(0, 0.02),
        "chromatin_sigma": 6.5 - 5.0 * u,  # px at 450: coarse (HEM) to fine (ALL)
        "chromatin_amp": 0.42 - 0.26 * u,
        "nucleoli": int(rng.poisson(3.0 * u**2)),
        "elongation": 1.0 + abs(rng.normal(0, 0.08)),
    }


def _wobbly_disc(shape, center, radius, elong, angle, rng, harmonics=4, wobble=0.05,
                 notches=0.0):
    """Boolean mask of a perturbed ellipse and the normalised radial coordinate;
    ``notches`` adds a fine irregular contour (harmonics 9-16, relative amplitude)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    dy = (yy - center[0]).astype(np.float32)
    dx = (xx - center[1]).astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    u = (dx * ca + dy * sa) / elong
    v = -dx * sa + dy * ca
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    edge = np.ones_like(theta)
    for k in range(2, 2 + harmonics):
        edge = edge + (wobble / k) * rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if notches:  # notches: relative amplitude of the fine contour
        for k in range(9, 17):
            edge = edge + notches / 3 * rng.normal() * np.cos(k * theta + rng.uniform(0, 6.3))
    r = rho / (radius * edge)
    return r < 1.0, r


def _texture(shape, sigma, rng):
    """Zero-mean, unit-ish smooth noise with correlation length ``sigma`` pixels."""
    noise = rng.standard_normal(shape).astype(np.float32)
    tex = ndi.gaussian_filter(noise, sigma=max(sigma, 0.5), mode="reflect")
    sd = float(tex.std()) or 1.0
    return tex / sd


def _band(shape, size: float, rng) -> np.ndarray:
    """Zero-mean band-pass noise of features about ``size`` pixels wide, unit deviation:
    averaged over blocks a few times ``size`` wide it nearly vanishes."""
    noise = rng.standard_normal(shape).astype(np.float32)
    sigma = size / 2.5
    band = ndi.gaussian_filter(noise, sigma) - ndi.gaussian_filter(noise, 2 * sigma)
    return band / (float(band.std()) or 1.0)


def _chromatin(shape, traits: dict, px_scale: float, rng) -> np.ndarray:
    """Multiplicative shading of the nucleus: a medium-scale mottle that carries no class
    signal, and dense dark clumps of condensed chromatin, deep in healthy cells (``grain``
    0) and absent in blasts (``grain`` 1, finely dispersed chromatin: smooth at this
    resolution). The clumps are a few pixels of a 450 px frame wide, and their blur at
    twice that width (Gaussian sigma) is subtracted, so they are zero-mean on larger scales
    (dark clumps, slightly paler surroundings): averaging over a 64 px input's pixels
    removes most of them and the nucleus' mean shade says nothing."""
    mottle = np.tanh(_texture(shape, 7.0 * px_scale, rng))
    size = FINE_CUES["chromatin clumps"] * px_scale
    clumps = np.clip(_band(shape, size, rng) - 0.5, 0, None)
    clumps -= ndi.gaussian_filter(clumps, 2 * size)
    shade = 1.0 + traits["mottle_amp"] * mottle - _CLUMP_DEPTH * (1 - traits["grain"]) * clumps
    return np.maximum(shade, _SHADE_FLOOR)  # clumps are dark, never black


def _render_cell(
    box_shape: tuple[int, int],
    label: str,
    rng: np.random.Generator,
    radius_px: float,
    style: SubjectStyle,
    px_scale: float,
    fine_cues: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one cell in a box; returns (rgb float32 0-255, cell mask, nucleus mask).
    Without ``fine_cues`` (smear fields) the cell is drawn as before the fine cues were
    added (one latent score, :func:`_smear_traits`), so the smears that the segmentation
    is measured on keep their look."""
    t = _cell_traits(label, rng) if fine_cues else _smear_traits(label, rng)
    h, w = box_shape
    center = (h / 2 + rng.normal(0, 0.02 * h), w / 2 + rng.normal(0, 0.02 * w))
    angle = rng.uniform(0, np.pi)
    r_cell = radius_px * t["radius"] / 0.22
    cell, r_c = _wobbly_disc(box_shape, center, r_cell, t["elongation"], angle, rng)
    r_nuc = r_cell * float(np.clip(t["nc_ratio"], 0.45, 0.95))
    offset = (r_cell - r_nuc) * rng.uniform(0.0, 0.8)
    phi = rng.uniform(0, 2 * np.pi)
    n_center = (center[0] + offset * np.sin(phi), center[1] + offset * np.cos(phi))
    nucleus, r_n = _wobbly_disc(
        box_shape, n_center, r_nuc, 1.0 + abs(rng.normal(0, 0.06)), rng.uniform(0, np.pi), rng,
        wobble=0.08,
        notches=t.get("notches", 0.0) * FINE_CUES["nuclear notches"] * px_scale / r_nuc,
    )
    nucleus &= cell

    tint = np.asarray(style.tint, np.float32) * style.brightness
    cyto_rgb = np.array([168, 150, 200], np.float32) * tint
    nuc_rgb = np.array([112, 58, 150], np.float32) * tint

    if fine_cues:
        shade = _chromatin(box_shape, t, px_scale, rng)
    else:
        chrom = _texture(box_shape, t["chromatin_sigma"] * px_scale, rng)
        shade = 1.0 + t["chromatin_amp"] * np.tanh(chrom)
    # Nucleoli: small pale round spots inside the nucleus (mostly in blasts).
    ys, xs = np.nonzero(nucleus)
    for _ in range(t["nucleoli"]):
        if ys.size == 0:
            break
        i = rng.integers(ys.size)
        yy, xx = np.ogrid[:h, :w]
        d2 = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2
        if not fine_cues:
            rr = max(2.0, 0.09 * r_nuc * rng.uniform(0.7, 1.3))
            shade = np.where((d2 < rr**2) & nucleus, shade * 1.35, shade)
            continue
        rr = max(0.6, FINE_CUES["nucleoli"] / 2 * px_scale * rng.uniform(0.8, 1.2))
        # a pale spot in a darker ring of chromatin: zero mean over the two
        ring = (d2 >= rr**2) & (d2 < (1.8 * rr) ** 2)
        shade = np.where((d2 < rr**2) & nucleus, shade * 1.4, shade)
        shade = np.where(ring & nucleus, shade * 0.82, shade)

    cyto_tex = 1.0 + 0.06 * _texture(box_shape, 2.0 * px_scale, rng)
    rim = 1.0 - 0.18 * np.clip(r_c - 0.85, 0, 0.15) / 0.15  # darker membrane edge
    img = np.zeros((h, w, 3), np.float32)
    img[cell] = (cyto_rgb[None, :] * (cyto_tex * rim)[cell][:, None])
    nuc_shade = (shade * (1.0 - 0.12 * np.clip(r_n, 0, 1) ** 4))[nucleus]
    img[nucleus] = nuc_rgb[None, :] * nuc_shade[:, None]
    img += rng.normal(0, 3.0, img.shape).astype(np.float32) * cell[..., None]
    return img, cell, nucleus


def synth_cell(
    label: str,
    rng: np.random.Generator | int | None = None,
    size: int = 450,
    style: SubjectStyle | None = None,
) -> np.ndarray:
    """One C-NMC-like single-cell image.

    Parameters
    ----------
    label : {"ALL", "HEM"}
        Blast or healthy cell.
    rng : numpy.random.Generator or int, optional
        Generator or seed.
    size : int
        Height and width of the square image (450 like C-NMC).
    style : SubjectStyle, optional
        Subject's stain shift; neutral when omitted.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array ``(size, size, 3)``; every pixel outside the cell is exactly 0.

    Examples
    --------
    >>> img = synth_cell("ALL", rng=0, size=96)
    >>> img.shape, img.dtype, bool((img[0, 0] == 0).all())
    ((96, 96, 3), dtype('uint8'), True)
    """
    label = _check_label(label)
    rng = np.random.default_rng(rng)
    style = style or SubjectStyle()
    size = int(size)
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    radius_px = 0.22 * size * style.scale
    img, cell, _ = _render_cell((size, size), label, rng, radius_px, style, size / 450.0)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    out[~cell] = 0
    out[cell & (out.max(axis=-1) == 0)] = 1  # a stained pixel is never pure black
    return out


def synth_cells(
    n_per_class: int,
    seed: int = 0,
    size: int = 450,
    n_subjects: int = 4,
    style_strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A balanced stack of synthetic cells with labels and subject ids.

    Parameters
    ----------
    n_per_class : int
        Cells per class.
    seed : int
        Seed; same seed, same bytes.
    size : int
        Image size.
    n_subjects : int
        Subjects per class; cells are dealt to them round-robin.
    style_strength : float
        Spread of the per-subject stain shift (see :func:`make_subject_style`).

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` ``(2 * n_per_class, size, size, 3)``, HEM cells first.
    labels : numpy.ndarray
        ``"HEM"``/``"ALL"`` strings.
    subjects : numpy.ndarray
        Subject ids like ``"h1"`` (healthy) and ``"1"`` (patient).
    """
    rng = np.random.default_rng(seed)
    images, labels, subjects = [], [], []
    for label, prefix in ((NEGATIVE_CLASS, "h"), (POSITIVE_CLASS, "")):
        styles = [make_subject_style(rng, style_strength) for _ in range(n_subjects)]
        for i in range(n_per_class):
            s = i % n_subjects
            images.append(synth_cell(label, rng, size=size, style=styles[s]))
            labels.append(label)
            subjects.append(f"{prefix}{s + 1}")
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.array([], str), np.array([], str)
    return np.stack(images), np.array(labels), np.array(subjects)
