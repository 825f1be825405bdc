"""Tests of allnet_core.augment: the augmentations, the Augmenter, balancing, `allnet augment`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from allnet_core.augment import (
    Augmenter,
    adjust_brightness,
    apply_params,
    balance_plan,
    flip,
    gaussian_blur,
    rotate,
    salt_and_pepper,
    write_balanced_dataset,
)
from allnet_core.errors import ConfigError, DatasetError, ImageReadError
from allnet_core.io import write_csv
from allnet_core.synthetic import synth_cell, write_cnmc_dataset


@pytest.fixture(scope="module")
def cell() -> np.ndarray:
    """A synthetic C-NMC-like cell, 96x96, on an exactly black background."""
    return synth_cell("ALL", rng=3, size=96)


def elongated_cell(size=120, centre=(60, 60), half_axes=(50, 12), angle_deg=0.0):
    """A textured ellipse (the cell) on black; angle turns it anticlockwise on screen."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    t = np.deg2rad(angle_deg)
    dx, dy = xx - centre[0], yy - centre[1]
    u = dx * np.cos(t) - dy * np.sin(t)
    v = dx * np.sin(t) + dy * np.cos(t)
    inside = (u / half_axes[0]) ** 2 + (v / half_axes[1]) ** 2 <= 1
    rng = np.random.default_rng(0)
    img = np.zeros((size, size, 3), np.uint8)
    img[inside] = rng.integers(60, 220, size=(int(inside.sum()), 3))
    return img


def background(image):
    return ~image.any(axis=-1)


AUGMENTATIONS = {
    "flip": lambda im: flip(im, axis=1),
    "rotate": lambda im: rotate(im, 33.3),
    "brightness": lambda im: adjust_brightness(im, 1.15),
    "blur": lambda im: gaussian_blur(im, 1.2),
    "salt_and_pepper": lambda im: salt_and_pepper(im, rng=7, amount=0.02),
}


# --------------------------------------------------------------------------- each augmentation


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_shape_dtype_new_array(cell, name):
    before = cell.copy()
    out = AUGMENTATIONS[name](cell)
    assert out.shape == cell.shape and out.dtype == np.uint8
    assert out is not cell and not np.shares_memory(out, cell)
    np.testing.assert_array_equal(cell, before)  # input untouched
    assert not np.array_equal(out, cell)  # it did something


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_deterministic(cell, name):
    assert AUGMENTATIONS[name](cell).tobytes() == AUGMENTATIONS[name](cell).tobytes()


@pytest.mark.parametrize("name", ["flip", "rotate", "brightness", "blur"])
def test_background_stays_black(cell, name):
    out = AUGMENTATIONS[name](cell)
    if name == "flip":
        np.testing.assert_array_equal(background(out), np.flip(background(cell), axis=1))
    elif name in ("brightness", "blur"):  # the cell mask is kept exactly
        np.testing.assert_array_equal(background(out), background(cell))
    else:  # rotation: the background is still pure black, and as large (+-interpolation rim)
        grown = abs(int(background(out).sum()) - int(background(cell).sum()))
        assert grown < 0.05 * cell.shape[0] ** 2
        assert set(np.unique(out[background(out)])) <= {0}


def test_salt_and_pepper_background_choice(cell):
    noisy = salt_and_pepper(cell, rng=1, amount=0.05)
    bg = background(cell)
    # By default noise falls on the whole frame: background pixels are black or white salt.
    assert np.isin(noisy[bg], [0, 255]).all()
    assert (noisy[bg] == 255).all(axis=-1).any()
    # cell_only=True keeps the background exactly black.
    clean = salt_and_pepper(cell, rng=1, amount=0.05, cell_only=True)
    assert (clean[bg] == 0).all()
    assert not np.array_equal(clean[~bg], cell[~bg])


def test_flip_axes_and_rng(cell):
    np.testing.assert_array_equal(flip(cell, axis=0), cell[::-1])
    np.testing.assert_array_equal(flip(cell, axis=1), cell[:, ::-1])
    np.testing.assert_array_equal(flip(flip(cell, axis=1), axis=1), cell)
    assert flip(cell, rng=5).tobytes() == flip(cell, rng=5).tobytes()
    drawn = {flip(cell, rng=s).tobytes() for s in range(10)}
    assert drawn == {cell[::-1].tobytes(), cell[:, ::-1].tobytes()}


def test_rotate_direction():
    img = np.zeros((21, 21, 3), np.uint8)
    img[10, 8:15] = 100
    img[10, 14] = 250  # bright tip right of the centre
    up = rotate(img, 90)  # anticlockwise: the tip goes to the top
    down = rotate(img, -90)  # clockwise: to the bottom
    (r_up, c_up), = np.argwhere(up[..., 0] == 250)
    (r_dn, c_dn), = np.argwhere(down[..., 0] == 250)
    centre_row = np.argwhere(up.any(-1))[:, 0].mean()
    assert r_up < centre_row < r_dn and c_up == c_dn


def test_rotate_multiples_of_90_are_lossless(cell):
    out = cell
    for _ in range(4):
        out = rotate(out, 90)
        # lossless: same multiset of pixels
        np.testing.assert_array_equal(np.sort(out.reshape(-1, 3), axis=0),
                                      np.sort(cell.reshape(-1, 3), axis=0))
    np.testing.assert_array_equal(out, cell)
    np.testing.assert_array_equal(rotate(cell, 180), rotate(rotate(cell, 90), 90))
    np.testing.assert_array_equal(rotate(cell, 360), cell)


@pytest.mark.parametrize("angle", [-170.0, -90.0, -45.0, 10.0, 33.3, 90.0, 135.0])
def test_rotate_keeps_cell_whole_near_corner(angle):
    # A long cell lying near the top-left corner: a naive rotation about the image centre
    # would throw part of it out of the frame.
    img = elongated_cell(size=120, centre=(40, 30), half_axes=(34, 14), angle_deg=20)
    out = rotate(img, angle)
    mask = out.any(-1)
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    # nothing lost: total intensity preserved (no shrink needed here); the area grows only
    # by the one-pixel rim that bilinear interpolation adds
    assert out.astype(float).sum() == pytest.approx(img.astype(float).sum(), rel=0.02)
    assert mask.sum() == pytest.approx(img.any(-1).sum(), rel=0.12)


def test_naive_rotation_would_cut_these_cells():
    from skimage.transform import rotate as sk_rotate

    # the near-corner cell leaves the frame when turned about its own centre
    img = elongated_cell(size=120, centre=(40, 30), half_axes=(34, 14), angle_deg=20)
    mask = img.any(-1)
    rows, _ = np.nonzero(mask)
    centre_row = rows.mean()
    assert centre_row - 34 < 0  # turned upright about its centre, it would stick out
    # the long diagonal cell loses its ends under a plain rotation about the image centre
    long = elongated_cell(size=120, centre=(60, 60), half_axes=(75, 10), angle_deg=45)
    naive = sk_rotate(long, -45, preserve_range=True, order=1)
    assert naive.sum() < 0.9 * long.astype(float).sum()


@pytest.mark.parametrize("angle", [-45.0, 45.0, 135.0])
def test_rotate_shrinks_a_cell_longer_than_the_frame(angle):
    # Along the diagonal the cell is 150 px long; the frame is 120 px wide: turned by 45
    # degrees it lies along an axis and must shrink to fit.
    img = elongated_cell(size=120, centre=(60, 60), half_axes=(75, 16), angle_deg=45)
    out = rotate(img, angle)
    mask = out.any(-1)
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    rows, cols = np.nonzero(mask)
    extent = max(np.ptp(rows), np.ptp(cols))
    assert 110 <= extent <= 117
    # shrunk by (frame - 1 - 2 * margin) / length: the whole cell is there, smaller
    scale = (120 - 1 - 2 * 2) / 150
    assert out.astype(float).sum() == pytest.approx(img.astype(float).sum() * scale**2,
                                                    rel=0.05)


@pytest.mark.realdata
@pytest.mark.parametrize("angle", [-67.5, 45.0, 90.0])
def test_rotate_real_cnmc_cell_whole(cnmc_dir, angle):
    from allnet_core.io import find_images, read_rgb

    img = read_rgb(find_images(cnmc_dir)[0])
    out = rotate(img, angle)
    assert out.astype(float).sum() == pytest.approx(img.astype(float).sum(), rel=0.01)
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()


def test_brightness_moves_mean_by_factor(cell):
    mask = cell.any(-1)
    for factor in (0.6, 0.8, 0.95):  # no clipping below 1: the mean scales by the factor
        out = adjust_brightness(cell, factor)
        assert out[mask].mean() / cell[mask].mean() == pytest.approx(factor, abs=0.01)
    bright = adjust_brightness(cell, 1.3)
    assert 1.0 < bright[mask].mean() / cell[mask].mean() <= 1.3 + 0.01
    np.testing.assert_array_equal(adjust_brightness(cell, 1.0), cell)


def test_augmenter_brightness_within_configured_range(cell):
    aug = Augmenter(flip_p=0, rotate_p=0, blur_noise_p=0, brightness_p=1,
                    brightness_range=(0.7, 1.1))
    mask = cell.any(-1)
    ratios = []
    for seed in range(40):
        params = aug.sample_params(np.random.default_rng(seed))
        assert set(params) == {"brightness_factor"}
        assert 0.7 <= params["brightness_factor"] <= 1.1
        out = apply_params(cell, params)
        ratios.append(out[mask].mean() / cell[mask].mean())
    ratios = np.array(ratios)
    assert ratios.min() >= 0.7 - 0.01 and ratios.max() <= 1.1 + 0.01
    assert ratios.min() < 0.8 and ratios.max() > 1.0  # it does span the range


def test_blur_strength_grows_with_sigma(cell):
    from scipy import ndimage as ndi

    inner = ndi.binary_erosion(cell.any(-1), iterations=4)

    def roughness(im):
        return np.abs(ndi.laplace(im[..., 0].astype(float)))[inner].mean()

    values = [roughness(gaussian_blur(cell, s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values, reverse=True) and values[-1] < 0.5 * values[0]
    np.testing.assert_array_equal(gaussian_blur(cell, 0), cell)
    # masked blur: the rim of the cell does not darken towards the background
    rim = cell.any(-1) & ~ndi.binary_erosion(cell.any(-1))
    assert gaussian_blur(cell, 2.0)[rim].mean() == pytest.approx(cell[rim].mean(), rel=0.15)


@pytest.mark.parametrize("amount", [0.01, 0.05, 0.2])
def test_salt_and_pepper_amount(amount):
    img = np.full((200, 200, 3), 120, np.uint8)
    out = salt_and_pepper(img, rng=0, amount=amount)
    salt, pepper = (out == 255).all(-1), (out == 0).all(-1)
    assert (salt | pepper).mean() == pytest.approx(amount, rel=0.15)
    assert salt.sum() == pytest.approx(pepper.sum(), rel=0.3)
    assert ((out == 120).all(-1) | salt | pepper).all()  # nothing else changed
    assert not np.array_equal(out, salt_and_pepper(img, rng=1, amount=amount))


# --------------------------------------------------------------------------- Augmenter


def test_augmenter_deterministic_same_seed_same_bytes(cell):
    images = [cell, synth_cell("HEM", rng=1, size=96), synth_cell("ALL", rng=9, size=96)]
    a, b, c = Augmenter(seed=11), Augmenter(seed=11), Augmenter(seed=12)
    out_a = [a(im).tobytes() for im in images]
    out_b = [b(im).tobytes() for im in images]
    out_c = [c(im).tobytes() for im in images]
    assert out_a == out_b and out_a != out_c
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert a(cell, rng1).tobytes() == b(cell, rng2).tobytes()


def test_params_json_roundtrip_replays_bytes(cell):
    aug = Augmenter()
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(40):
        params = aug.sample_params(rng)
        assert params, "at_least_one: every draw changes the image"
        kinds |= set(params)
        text = json.dumps(params)
        assert apply_params(cell, text).tobytes() == apply_params(cell, params).tobytes()
    # the paper's four kinds all occur with the defaults
    assert {"flip_axis", "rotate_angle", "brightness_factor", "blur_sigma"} <= kinds
    assert {"noise_amount", "noise_seed"} <= kinds
    assert apply_params(cell, "").tobytes() == cell.tobytes()
    assert apply_params(cell, "{}").tobytes() == cell.tobytes()
    assert apply_params(cell, None).tobytes() == cell.tobytes()


def test_augmenter_settings_roundtrip():
    aug = Augmenter(flip_p=0.2, brightness_range=(0.9, 1.1), seed=4)
    settings = json.loads(json.dumps(aug.to_dict()))
    assert Augmenter.from_dict(settings) == aug


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["flip_p", "rotate_p", "brightness_p", "blur_noise_p"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "often", float("nan")])
def test_probability_outside_0_1(name, value):
    with pytest.raises(ConfigError, match=name):
        Augmenter(**{name: value})


@pytest.mark.parametrize("kwargs", [
    {"brightness_range": (1.2, 0.8)},
    {"brightness_range": (0.0, 1.2)},
    {"sigma_range": (-1, 1)},
    {"noise_amount_range": (0.1, 2.0)},
    {"rotate_range": (10,)},
])
def test_bad_ranges(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        Augmenter(**kwargs)


@pytest.mark.parametrize("bad", [
    np.zeros((20, 20), np.uint8),  # grayscale
    np.zeros((20, 20, 4), np.uint8),  # RGBA
    np.zeros((20, 20, 3), np.float32),  # float
    np.zeros((20, 20, 3), np.uint16),
])
@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_not_rgb_uint8_is_a_clear_error(name, bad):
    with pytest.raises(ImageReadError, match="HxWx3 uint8"):
        AUGMENTATIONS[name](bad)


def test_bad_parameter_values(cell):
    with pytest.raises(ConfigError, match="axis"):
        flip(cell, axis=2)
    with pytest.raises(ConfigError, match="factor"):
        adjust_brightness(cell, -1)
    with pytest.raises(ConfigError, match="sigma"):
        gaussian_blur(cell, -0.5)
    with pytest.raises(ConfigError, match="amount"):
        salt_and_pepper(cell, rng=0, amount=1.5)
    with pytest.raises(ConfigError, match="unknown augmentation parameter"):
        apply_params(cell, {"zoom": 2})
    with pytest.raises(ConfigError, match="JSON"):
        apply_params(cell, "{not json")


# --------------------------------------------------------------------------- balancing


def test_balance_counts_subsample_and_fill():
    labels = ["ALL"] * 30 + ["HEM"] * 7
    plan = balance_plan(labels, per_class=20, seed=0)
    assert plan.groupby("label").size().to_dict() == {"ALL": 20, "HEM": 20}
    all_rows, hem_rows = plan[plan.label == "ALL"], plan[plan.label == "HEM"]
    # ALL: subsampled, distinct originals, no augmentation
    assert not all_rows["augment"].any() and all_rows["index"].is_unique
    assert set(all_rows["params"]) == {"{}"}
    # HEM: every original once as is, then copies spread evenly
    originals = hem_rows[~hem_rows["augment"]]
    assert sorted(originals["index"]) == list(range(30, 37))
    copies = hem_rows[hem_rows["augment"]]
    per_original = copies.groupby("index").size()
    assert len(copies) == 13 and per_original.max() - per_original.min() <= 1
    assert set(per_original.index) == set(range(30, 37))
    assert all(json.loads(p) for p in copies["params"])
    # copies of one original differ from each other
    assert not copies.duplicated(["index", "params"]).any()


def test_balance_is_deterministic_and_seeded():
    labels = np.array(["ALL"] * 12 + ["HEM"] * 5)
    a = balance_plan(labels, per_class=10, seed=3)
    pd.testing.assert_frame_equal(a, balance_plan(labels, per_class=10, seed=3))
    assert not a.equals(balance_plan(labels, per_class=10, seed=4))


def test_balance_per_class_none_matches_largest_class():
    plan = balance_plan(["HEM"] * 4 + ["ALL"] * 9, per_class=None)
    assert plan.groupby("label").size().to_dict() == {"ALL": 9, "HEM": 9}
    assert not plan[plan.label == "ALL"]["augment"].any()


def test_plan_csv_roundtrip_replays(tmp_path, cell):
    plan = balance_plan(["ALL"] * 2 + ["HEM"] * 6, per_class=6, seed=1)
    write_csv(tmp_path / "plan.csv", plan)  # as allnet train saves fold_<k>/plan.csv
    back = pd.read_csv(tmp_path / "plan.csv", keep_default_na=False)
    assert list(back["index"]) == list(plan["index"])
    assert back["augment"].dtype == bool and list(back["augment"]) == list(plan["augment"])
    for p1, p2 in zip(plan["params"], back["params"], strict=True):
        assert apply_params(cell, p1).tobytes() == apply_params(cell, p2).tobytes()


@pytest.mark.parametrize("per_class", [0, -5, 2.5, True, "100"])
def test_balance_per_class_must_be_positive(per_class):
    with pytest.raises(ConfigError, match="per_class"):
        balance_plan(["ALL", "HEM"], per_class=per_class)


def test_balance_class_with_no_images():
    with pytest.raises(DatasetError, match="HEM"):
        balance_plan(["ALL"] * 5, per_class=10)
    with pytest.raises(DatasetError, match="empty"):
        balance_plan([], per_class=10)
    with pytest.raises(DatasetError, match="not among"):
        balance_plan(["ALL", "HEM", "MONO"], per_class=3, classes=("HEM", "ALL"))


# --------------------------------------------------------------------------- files on disk


@pytest.fixture(scope="module")
def tiny_cnmc(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnmc")
    return write_cnmc_dataset(root, subjects=4, cells_per_subject=3, seed=0, size=64, folds=2)


def test_write_balanced_dataset_is_a_dataset(tiny_cnmc, tmp_path):
    from allnet_core.datasets import discover

    source = discover(tiny_cnmc)
    out = tmp_path / "aug"
    plan = write_balanced_dataset(source, out, per_class=10, seed=0)
    table = discover(out)  # raises on duplicates, unlabeled or unreadable files
    assert table.groupby("label").size().to_dict() == {"ALL": 10, "HEM": 10}
    assert set(table["subject"]) == set(source["subject"])
    # every written file keeps the subject and fold of its source
    src = source.set_index("path")
    by_file = table.assign(file=[p[len(str(out)) + 1:] for p in table["path"]]).set_index("file")
    for row in plan.itertuples():
        assert by_file.at[row.file, "subject"] == src.at[row.source, "subject"]
        assert by_file.at[row.file, "fold"] == src.at[row.source, "fold"]
        assert by_file.at[row.file, "label"] == row.label
        if row.augment:
            subject = src.at[row.source, "subject"]
            assert "_aug" in row.file and f"uid_{subject}_" in row.file.lower()
    # originals are copied byte for byte
    first = plan[~plan["augment"]].iloc[0]
    assert (out / first.file).read_bytes() == open(first.source, "rb").read()
    assert (out / "augment_plan.csv").is_file() and (out / "augment.json").is_file()


def test_cli_augment(tiny_cnmc, tmp_path):
    from allnet_core.cli import main

    out = tmp_path / "cli"
    assert main(["augment", str(tiny_cnmc), "--out", str(out), "--per-class", "8",
                 "--seed", "2"]) == 0
    from allnet_core.datasets import discover

    assert discover(out).groupby("label").size().to_dict() == {"ALL": 8, "HEM": 8}


def test_cli_augment_bad_input(tiny_cnmc, tmp_path, capsys):
    from allnet_core.cli import main

    assert main(["augment", str(tiny_cnmc), "--out", str(tmp_path / "x"),
                 "--per-class", "0"]) == 2
    assert "per-class" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert main(["augment", str(tiny_cnmc), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.realdata
def test_cli_augment_real_cnmc(cnmc_dir, tmp_path):
    from allnet_core.datasets import discover

    source = discover(cnmc_dir)
    plan = write_balanced_dataset(source, tmp_path / "real", per_class=30, seed=0)
    table = discover(tmp_path / "real")
    assert table.groupby("label").size().to_dict() == {"ALL": 30, "HEM": 30}
    assert set(table["subject"]) == set(source["subject"])
    assert int(plan["augment"].sum()) == 60 - len(source)


def test_import_does_not_load_keras():
    code = ("import sys, allnet_core.augment, allnet_core.feed, allnet_core._cli.augment; "
            "print('keras' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False False"
