"""Synthetic BCCD-like blood-smear fields with ground truth: :func:`synth_smear`.

A pale pink background crowded with red cells (with central pallor), a few white cells
(some touching each other or the border) and platelets. Each field comes with its
ground-truth WBC instance mask and the class of every WBC.
"""

from __future__ import annotations

import numpy as np

from allnet_core.synthetic.cells import SubjectStyle, _render_cell, _texture

__all__ = ["synth_smear"]


def _platelet_clumps(img: np.ndarray, n: int, r_rbc: float, scale: float, rng) -> None:
    """Paint ``n`` clumps of overlapping platelets (granular, lilac) into ``img``."""
    h, w = img.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(0.15 * h, 0.85 * h), rng.uniform(0.15 * w, 0.85 * w)
        spread = 0.45 * r_rbc
        for _ in range(int(rng.integers(15, 31))):
            py, px = cy + rng.normal(0, spread), cx + rng.normal(0, spread)
            r = rng.uniform(3, 5.5) * scale
            disc = (yy - py) ** 2 + (xx - px) ** 2 < r**2
            img[disc] = np.array([165, 110, 185], np.float32) * rng.uniform(0.9, 1.05)


def synth_smear(
    seed: int = 0,
    shape: tuple[int, int] = (480, 640),
    n_wbc: int = 4,
    rbc_density: float = 0.55,
    n_platelets: int = 8,
    touching_pair: bool = True,
    border_cell: bool = True,
    rbc_rgb: tuple[float, float, float] = (214, 128, 134),
    platelet_clumps: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """A BCCD-like blood-smear field with ground truth.

    Parameters
    ----------
    seed : int
        Seed; same arguments give the same bytes.
    shape : (int, int)
        Field size (BCCD fields are 480x640).
    n_wbc : int
        Number of white cells.
    rbc_density : float
        Approximate fraction of the field covered by red cells.
    n_platelets : int
        Number of platelets.
    touching_pair : bool
        Place the first two WBCs so that they touch.
    border_cell : bool
        Place the last WBC so that the image border cuts it.
    rbc_rgb : (float, float, float)
        Colour of the red cells (rim; the pale centre is lighter). The default is a
        BCCD-like pink; e.g. ``(150, 120, 190)`` gives the bluish red cells of a
        LISC-like stain.
    platelet_clumps : int
        Number of platelet clumps: 15-30 overlapping platelets each, about half a red
        cell's area in all (``n_wbc=0`` with clumps is a platelet-only field).

    Returns
    -------
    rgb : numpy.ndarray
        ``uint8`` ``(H, W, 3)`` field.
    labels : numpy.ndarray
        ``int32`` WBC instance mask (0 background, 1..n_wbc cells).
    classes : dict
        ``{label: "ALL" | "HEM"}`` for every WBC.
    """
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in shape)
    scale = min(h, w) / 480.0
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.array([232, 216, 214], np.float32)
    img += 4.0 * _texture((h, w), 20 * scale, rng)[..., None]

    # Red cells: pink discs with pale centres, placed by rejection on overlap.
    r_rbc = 28 * scale
    n_rbc = int(rbc_density * h * w / (np.pi * r_rbc**2))
    yy, xx = np.ogrid[:h, :w]
    occupied = np.zeros((h, w), bool)
    for _ in range(n_rbc * 3):
        if n_rbc <= 0:
            break
        cy, cx = rng.uniform(-r_rbc, h + r_rbc), rng.uniform(-r_rbc, w + r_rbc)
        r = r_rbc * rng.uniform(0.85, 1.15)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        if (disc & occupied).sum() > 0.15 * disc.sum():
            continue
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        pallor = 1.0 + 0.25 * np.clip(1.0 - d / 0.55, 0, 1)
        rbc = np.asarray(rbc_rgb, np.float32) * rng.uniform(0.95, 1.05)
        colour = np.clip(rbc[None, :] * pallor[disc][:, None], 0, 255)
        img[disc] = colour
        occupied |= disc
        n_rbc -= 1

    # Platelets: small purple specks.
    for _ in range(n_platelets):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(3, 6) * scale
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = np.array([150, 90, 170], np.float32)

    _platelet_clumps(img, platelet_clumps, r_rbc, scale, rng)

    # White cells: the same renderer as single cells, pasted with their mask.
    labels = np.zeros((h, w), np.int32)
    classes: dict[int, str] = {}
    box = int(round(200 * scale)) | 1
    radius_px = 0.22 * box * 0.75
    centres: list[tuple[float, float]] = []
    for i in range(n_wbc):
        label = "ALL" if rng.random() < 0.5 else "HEM"
        cell_img, cell, _ = _render_cell(
            (box, box), label, rng, radius_px, SubjectStyle(), box / 450.0, fine_cues=False
        )
        if touching_pair and i == 1 and centres:
            ang = rng.uniform(0, 2 * np.pi)
            dist = radius_px * 1.45
            cy = centres[0][0] + dist * np.sin(ang)
            cx = centres[0][1] + dist * np.cos(ang)
        elif border_cell and i == n_wbc - 1 and n_wbc > 1:
            cy, cx = rng.uniform(0.3 * h, 0.7 * h), rng.choice([0.0, float(w)])
        else:
            for _ in range(50):
                cy, cx = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.15 * w, 0.85 * w)
                if all(np.hypot(cy - a, cx - b) > 2.6 * radius_px for a, b in centres):
                    break
        centres.append((cy, cx))
        y0, x0 = int(round(cy)) - box // 2, int(round(cx)) - box // 2
        ys, xs = slice(max(y0, 0), min(y0 + box, h)), slice(max(x0, 0), min(x0 + box, w))
        sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        m = cell[sub] & (labels[ys, xs] == 0)
        if not m.any():
            continue
        lab = len(classes) + 1
        img[ys, xs][m] = cell_img[sub][m]
        labels[ys, xs][m] = lab
        classes[lab] = label

    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return rgb, labels, classes
