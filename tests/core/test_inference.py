"""Tests of allnet_core.inference and ``allnet classify``.

One small ALLNet (64x64 input, dense_units=32) is trained once per module on synthetic
cells (about 10 s on 2 CPU cores) and reused by every test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import (
    CancelledError,
    ConfigError,
    ImageReadError,
    ModelError,
)
from allnet_core.inference import (
    Classifier,
    find_model_file,
    gradcam_to_field,
    image_cells,
    is_single_cell_image,
)
from allnet_core.progress import CancelToken
from allnet_core.synthetic import synth_cells

SIZE = 64
TABLE_COLUMNS = ["label", "class", "p_all", "area", "centroid_row", "centroid_col",
                 "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
                 "touches_border"]


@pytest.fixture(scope="module")
def keras():
    from allnet_core.backend import get_keras

    return get_keras()


@pytest.fixture(scope="module")
def trained(keras, tmp_path_factory):
    """A tiny ALLNet trained on synthetic cells, saved as ``.keras``: (path, Classifier)."""
    from allnet_core.model import build_allnet

    images, labels, _ = synth_cells(80, seed=1, size=SIZE)
    keras.utils.set_random_seed(0)
    model = build_allnet((SIZE, SIZE, 3), dense_units=32)
    for layer in model.layers:
        if layer.name.startswith("bn"):
            layer.momentum = 0.6  # moving statistics settle within a few dozen steps
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    y = keras.utils.to_categorical(labels == "ALL", 2)
    model.fit(images.astype("float32"), y, batch_size=16, epochs=4, verbose=0, shuffle=True)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path, Classifier(model, source="fixture")


@pytest.fixture(scope="module")
def test_cells():
    images, labels, _ = synth_cells(24, seed=7, size=SIZE)
    return images, labels


# --------------------------------------------------------------------------- classification


def test_classifies_synthetic_cells_better_than_chance(trained):
    _, clf = trained
    images, labels, _ = synth_cells(96, seed=8, size=SIZE)  # cells the model never saw
    p = clf.classify_cells(images)
    assert p.dtype == np.float32 and p.shape == (len(images),)
    assert np.all((p >= 0) & (p <= 1))
    accuracy = np.mean((p >= 0.5) == (labels == "ALL"))
    print(f"accuracy on 96 new synthetic cells: {accuracy:.3f}")
    # The cues a 64 px input keeps allow about 84 % (allnet_core.synthetic). Measured 0.81
    # on TensorFlow with the clumped-chromatin cells of issue 17 (0.77 with the cells
    # before; 0.81 and 0.73 on TensorFlow and JAX earlier still: the backends draw other
    # random numbers from the same seed). The floor sits well under these and still far
    # above chance: a model that learned nothing reaches 0.7 on 96 cells with probability
    # about 5e-5 (binomial).
    assert accuracy >= 0.7


def test_batches_and_padding_do_not_change_results(trained, test_cells):
    _, clf = trained
    images = test_cells[0][:11]
    ref = clf.classify_cells(images, batch_size=16)
    for bs in (1, 4, 11):
        np.testing.assert_allclose(clf.classify_cells(images, batch_size=bs), ref, atol=1e-5)
    # a list of crops works as well as a stack
    np.testing.assert_allclose(clf.classify_cells(list(images), batch_size=4), ref, atol=1e-5)
    assert clf.classify_cells(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0,)
    assert clf.classify_cells([]).shape == (0,)


def test_crops_of_other_size_are_resized_as_in_training(trained, test_cells):
    from allnet_core.feed import resize_for_model

    _, clf = trained
    big = synth_cells(3, seed=11, size=150)[0]
    expected = clf.classify_cells(np.stack([resize_for_model(c, SIZE) for c in big]))
    np.testing.assert_allclose(clf.classify_cells(big), expected, atol=1e-6)
    # non-square crops: padded with black to a square first, as in training
    wide = big[:, 20:130]
    expected = clf.classify_cells(np.stack([resize_for_model(c, SIZE) for c in wide]))
    np.testing.assert_allclose(clf.classify_cells(list(wide)), expected, atol=1e-6)


#: The 8 symmetries of the square (the dihedral group D4) on the image axes of an NHWC
#: batch, written out one by one, independently of TTA_TRANSFORMS.
DIHEDRAL = {
    "identity": lambda b: b,
    "flip left-right": lambda b: b[:, :, ::-1],
    "flip up-down": lambda b: b[:, ::-1, :],
    "rotate 180": lambda b: b[:, ::-1, ::-1],
    "transpose": lambda b: b.transpose(0, 2, 1, 3),
    "rotate 90 (transpose, flip up-down)": lambda b: b.transpose(0, 2, 1, 3)[:, ::-1, :],
    "rotate 270 (transpose, flip left-right)": lambda b: b.transpose(0, 2, 1, 3)[:, :, ::-1],
    "anti-transpose": lambda b: b.transpose(0, 2, 1, 3)[:, ::-1, ::-1],
}


def test_tta_transforms_are_the_eight_symmetries_of_the_square():
    from allnet_core.inference.tta import apply_transform, tta_transforms

    probe = np.arange(2 * 5 * 5 * 3).reshape(2, 5, 5, 3)  # no symmetry of its own
    expected = {np.ascontiguousarray(f(probe)).tobytes() for f in DIHEDRAL.values()}
    assert len(expected) == 8
    got = [apply_transform(probe, k, flip).tobytes() for k, flip in tta_transforms((5, 5))]
    assert len(got) == 8 and set(got) == expected
    # a non-square input keeps its shape: identity, both flips, 180 degrees
    wide = probe[:, :4]
    keep = {DIHEDRAL[n](wide).tobytes() for n in ("identity", "flip left-right",
                                                    "flip up-down", "rotate 180")}
    assert {apply_transform(wide, k, f).tobytes() for k, f in tta_transforms((4, 5))} == keep


def test_tta_is_the_mean_over_the_eight_transforms(trained, test_cells):
    _, clf = trained
    images = test_cells[0][:6]
    singles = [clf.classify_cells(np.ascontiguousarray(f(images))) for f in DIHEDRAL.values()]
    assert len({s.tobytes() for s in singles}) > 1  # the model is not invariant already
    tta = clf.classify_cells(images, tta=True, batch_size=4)
    np.testing.assert_allclose(tta, np.mean(singles, axis=0), atol=1e-5)


def test_a_probability_on_the_threshold_is_called_all(keras):
    """``p_all >= threshold`` is ALL: a cell exactly on the threshold is called ALL."""
    from allnet_core.model import build_allnet

    clf = Classifier(build_allnet((32, 32, 3), dense_units=4), source="untrained")
    probs = np.array([[0.5, 0.5], [0.75, 0.25], [0.25, 0.75], [0.5 + 1e-7, 0.5 - 1e-7]])
    pos = clf.positive_index
    probs = probs if pos == 0 else probs[:, ::-1]
    assert list(clf.classes_of(probs)) == ["ALL", "ALL", "HEM", "ALL"]
    assert list(clf.classes_of(probs, threshold=0.75)) == ["HEM", "ALL", "HEM", "HEM"]


def test_progress_and_cancel(trained, test_cells):
    _, clf = trained
    events = []
    clf.classify_cells(test_cells[0][:10], batch_size=4, progress=events.append)
    assert [e["done"] for e in events] == [4, 8, 10]
    assert all(e["kind"] == "batch" and e["total"] == 10 for e in events)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        clf.classify_cells(test_cells[0][:4], cancel=token)


# --------------------------------------------------------------------------- images


@pytest.mark.realdata
def test_single_cell_detection(cnmc_dir, bccd_dir):
    from allnet_core.io import read_rgb

    cell = read_rgb(next(cnmc_dir.rglob("*.bmp")))
    field = read_rgb(bccd_dir / "JPEGImages" / "BloodImage_00000.jpg")
    assert is_single_cell_image(cell)
    assert not is_single_cell_image(field)
    with pytest.raises(ConfigError):
        is_single_cell_image(cell, black_fraction=0)


@pytest.mark.realdata
def test_classify_image_on_a_real_bccd_field(trained, bccd_dir):
    from allnet_core.io import read_rgb
    from allnet_core.segmentation import label_cells

    _, clf = trained
    rgb = read_rgb(bccd_dir / "JPEGImages" / "BloodImage_00000.jpg")
    reference = label_cells(rgb)
    result = clf.classify_image(rgb)
    labels, table = result  # unpacks as (labels, table)
    assert result.mode == "smear"
    np.testing.assert_array_equal(labels, reference)
    ids = np.unique(reference[reference > 0])
    assert len(ids) >= 1
    assert len(table) == len(ids)
    assert table["label"].tolist() == ids.tolist()
    assert list(table.columns[: len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert table["class"].isin(["ALL", "HEM"]).all()
    assert table["p_all"].between(0, 1).all()
    assert (table["class"] == "ALL").tolist() == (table["p_all"] >= 0.5).tolist()
    for row in table.itertuples(index=False):
        assert row.area == int((reference == row.label).sum())
        assert row.bbox_min_row <= row.centroid_row < row.bbox_max_row


@pytest.mark.realdata
def test_classify_image_single_cell_and_empty(trained, cnmc_dir):
    from allnet_core.io import read_rgb

    _, clf = trained
    path = next(cnmc_dir.rglob("*.bmp"))
    rgb = read_rgb(path)
    result = clf.classify_image(rgb)
    assert result.mode == "cells" and len(result.table) == 1
    row = result.table.iloc[0]
    assert row["area"] == int(rgb.any(axis=-1).sum())
    np.testing.assert_allclose(row["p_all"], clf.classify_cells(rgb[None])[0], atol=1e-6)
    empty = clf.classify_image(np.zeros((80, 80, 3), np.uint8), mode="cells")
    assert len(empty.table) == 0 and list(empty.table.columns[:3]) == ["label", "class", "p_all"]
    with pytest.raises(ConfigError):
        clf.classify_image(rgb, mode="whole")


def test_classify_image_with_given_labels(trained):
    from allnet_core.synthetic import synth_smear

    _, clf = trained
    rgb, truth, _ = synth_smear(seed=3, n_wbc=3)
    result = clf.classify_image(rgb, labels=truth)
    assert result.table["label"].tolist() == np.unique(truth[truth > 0]).tolist()
    with pytest.raises(ConfigError):
        clf.classify_image(rgb, labels=truth[:-1])


# --------------------------------------------------------------------------- Grad-CAM


def test_gradcam_properties(trained, test_cells):
    _, clf = trained
    images, labels = test_cells
    maps = clf.gradcam(images, batch_size=8)
    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and maps.min() >= 0 and maps.max() <= 1
    # evidence for ALL in ALL cells lies in the cell, not on the black background
    is_all = labels == "ALL"
    all_maps = clf.gradcam(images[is_all], class_index=clf.positive_index)
    inside = images[is_all].any(axis=-1)
    diffs = np.array([m[c].mean() - m[~c].mean() for m, c in zip(all_maps, inside, strict=True)])
    print(f"Grad-CAM inside - background: mean {diffs.mean():.3f}, "
          f"positive in {np.mean(diffs > 0):.0%} of ALL cells")
    assert diffs.mean() > 0.1
    assert np.mean(diffs > 0) >= 0.8
    # one crop at a time gives the same maps as a batch
    np.testing.assert_allclose(clf.gradcam(images[:1]), maps[:1], atol=1e-4)


def test_gradcam_at_other_crop_sizes_and_bad_arguments(trained):
    _, clf = trained
    crops = synth_cells(1, seed=5, size=100)[0]
    maps = clf.gradcam(crops)
    assert maps.shape == (2, 100, 100)
    assert clf.gradcam(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, SIZE, SIZE)
    with pytest.raises(ConfigError):
        clf.gradcam(crops, class_index=2)
    with pytest.raises(ConfigError):
        clf.gradcam(crops, layer="no_such_layer")


@pytest.mark.realdata
def test_gradcam_maps_back_into_the_field(trained, bccd_dir):
    from allnet_core.io import read_rgb

    _, clf = trained
    rgb = read_rgb(bccd_dir / "JPEGImages" / "BloodImage_00000.jpg")
    result = clf.classify_image(rgb, gradcam=True)
    heat = result.heatmap
    assert heat.shape == rgb.shape[:2] and heat.dtype == np.float32
    assert np.all(np.isfinite(heat)) and heat.min() >= 0 and heat.max() <= 1
    assert not heat[result.labels == 0].any()  # only inside the cells
    assert result.cell_heatmaps.shape == (len(result.table), 450, 450)


def test_gradcam_to_field_geometry():
    # a 30x20 cell at rows 10..40, cols 50..70 of a 100x100 image, crop size 64 (scale 1):
    # extract_cells centres it at rows 17..47, cols 22..42 of the crop
    table = pd.DataFrame([dict(label=1, bbox_min_row=10, bbox_min_col=50, bbox_max_row=40,
                               bbox_max_col=70, scale=1.0)])
    crop_map = np.zeros((64, 64), np.float32)
    crop_map[17:47, 22:42] = np.linspace(0, 1, 30)[:, None]
    field = gradcam_to_field(crop_map[None], table, (100, 100), crop_size=64)
    np.testing.assert_allclose(field[10:40, 50:70], crop_map[17:47, 22:42])
    assert field.sum() == pytest.approx(crop_map.sum())
    # a cell shrunk by extract_cells (scale 0.5) is stretched back onto its box
    big = pd.DataFrame([dict(label=1, bbox_min_row=0, bbox_min_col=0, bbox_max_row=128,
                             bbox_max_col=128, scale=0.5)])
    field = gradcam_to_field(np.ones((1, 64, 64), np.float32), big, (130, 130), crop_size=64)
    assert field[:128, :128].min() == pytest.approx(1.0) and field[128:].max() == 0
    with pytest.raises(ConfigError):
        gradcam_to_field(np.ones((2, 64, 64)), table, (100, 100), crop_size=64)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="JAX is not installed: the JAX Grad-CAM path is not tested here")
def test_gradcam_on_jax(trained, tmp_path):
    path, _ = trained
    code = (
        "import numpy as np\n"
        "from allnet_core.inference import Classifier\n"
        "from allnet_core.synthetic import synth_cells\n"
        f"clf = Classifier.load({str(path)!r})\n"
        f"x = synth_cells(2, seed=7, size={SIZE})[0]\n"
        "m = clf.gradcam(x)\n"
        "np.save('maps.npy', m); np.save('p.npy', clf.classify_cells(x))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                   timeout=300)
    maps = np.load(tmp_path / "maps.npy")
    clf = Classifier.load(path)
    x = synth_cells(2, seed=7, size=SIZE)[0]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), clf.classify_cells(x), atol=1e-4)
    np.testing.assert_allclose(maps, clf.gradcam(x), atol=2e-3)


# --------------------------------------------------------------------------- loading


def test_load_reads_input_size_and_class_names(trained, tmp_path):
    path, ref = trained
    clf = Classifier.load(path)
    assert clf.input_size == (SIZE, SIZE)
    assert clf.class_names == ("HEM", "ALL") and clf.positive_index == 1
    x = synth_cells(2, seed=9, size=SIZE)[0]
    np.testing.assert_allclose(clf.classify_cells(x), ref.classify_cells(x), atol=1e-6)
    # class names from the run folder's config.json (here: the reverse order)
    run = tmp_path / "run"
    (run / "fold_1").mkdir(parents=True)
    (run / "fold_1" / "model.keras").write_bytes(path.read_bytes())
    (run / "config.json").write_text(json.dumps({"class_names": ["ALL", "HEM"]}))
    flipped = Classifier.load(run / "fold_1" / "model.keras")
    assert flipped.class_names == ("ALL", "HEM") and flipped.positive_index == 0
    np.testing.assert_allclose(flipped.classify_cells(x), 1 - ref.classify_cells(x), atol=1e-5)


def test_load_run_folder_picks_the_best_fold(trained, tmp_path):
    path, _ = trained
    run = tmp_path / "run"
    for k in (1, 2, 3):
        (run / f"fold_{k}").mkdir(parents=True)
        (run / f"fold_{k}" / "model.keras").write_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="3 models"):
        find_model_file(run)
    (run / "report.json").write_text(json.dumps({"best_fold": 2,
                                                 "best_model": "/elsewhere/model.keras"}))
    assert find_model_file(run) == run / "fold_2" / "model.keras"
    assert Classifier.load(run).source == str(run / "fold_2" / "model.keras")
    (run / "report.json").write_text(json.dumps({"best_fold": 5}))
    with pytest.raises(ModelError, match="missing"):
        Classifier.load(run)
    single = tmp_path / "single"
    (single / "sub").mkdir(parents=True)
    (single / "sub" / "net.keras").write_bytes(path.read_bytes())
    (single / "sub" / "ckpt_e001.keras").write_bytes(b"checkpoint")
    assert find_model_file(single) == single / "sub" / "net.keras"


def test_load_refuses_wrong_output_shape(keras, tmp_path):
    from allnet_core.model import build_allnet

    model = build_allnet((32, 32, 3), num_classes=3, dense_units=4)
    path = tmp_path / "three.keras"
    model.save(path)
    with pytest.raises(ModelError, match="wrong output shape"):
        Classifier.load(path)
    with pytest.raises(ModelError, match="wrong output shape"):
        Classifier(model)
    assert Classifier(model, class_names=["a", "b", "ALL"]).positive_index == 2


def test_load_refuses_a_lambda_layer(keras, tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    # our own check, before Keras deserialises anything (Keras' safe mode would also refuse
    # it, with a message that names Lambda too)
    with pytest.raises(ModelError, match="contains a Lambda layer, which can run arbitrary"):
        Classifier.load(path)


def test_lambda_check_runs_before_keras_deserialises(keras, tmp_path, monkeypatch):
    inputs = keras.Input((16, 16, 3))
    inner = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs), name="inner")
    outer_in = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(inner(outer_in))  # the Lambda sits in a nested model
    path = tmp_path / "nested_lambda.keras"
    keras.Model(outer_in, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    calls = []
    monkeypatch.setattr(keras.saving, "load_model", lambda *a, **k: calls.append(a))
    with pytest.raises(ModelError, match="refusing to load it"):
        Classifier.load(path)
    assert calls == []


def test_models_load_in_keras_safe_mode(keras, tmp_path, monkeypatch):
    from allnet_core.model import build_allnet

    path = tmp_path / "plain.keras"
    build_allnet((32, 32, 3), dense_units=4).save(path)
    seen, real = [], keras.saving.load_model

    def spy(*args, **kwargs):
        seen.append(kwargs.get("safe_mode"))
        return real(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", spy)
    Classifier.load(path)
    assert seen == [True]


def test_load_refuses_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="not a Keras model"):
        Classifier.load(text)
    archive = tmp_path / "archive.keras"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelError, match="no config.json"):
        Classifier.load(archive)
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Functional", "config": {}}')
    with pytest.raises(ModelError, match="cannot load"):
        Classifier.load(broken)
    with pytest.raises(ModelError, match="no such"):
        Classifier.load(tmp_path / "missing.keras")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no .keras"):
        Classifier.load(empty)


def test_bad_inputs(trained):
    _, clf = trained
    with pytest.raises(ImageReadError):
        clf.classify_cells(np.zeros((2, SIZE, SIZE), np.uint8))  # grayscale stack
    with pytest.raises(ImageReadError):
        clf.classify_cells(np.zeros((SIZE, SIZE, 3), np.uint8))  # one crop, no batch axis
    with pytest.raises(ImageReadError):
        clf.classify_cells(np.full((1, SIZE, SIZE, 3), 300.0))  # outside 0-255
    with pytest.raises(ImageReadError):
        clf.classify_cells(np.full((1, SIZE, SIZE, 3), np.nan, np.float32))
    with pytest.raises(ConfigError):
        clf.classify_cells(np.zeros((1, SIZE, SIZE, 3), np.uint8), batch_size=0)
    with pytest.raises(ImageReadError):
        clf.classify_image(np.zeros((40, 40), np.uint8))
    with pytest.raises(ModelError):
        Classifier(clf.model, positive_class="blast")
    with pytest.raises(ConfigError):
        image_cells(np.zeros((8, 8, 3), np.uint8), mode="field")


# --------------------------------------------------------------------------- CLI


def _write_cells(folder: Path, n: int = 3) -> list[Path]:
    from allnet_core.io import write_image

    images, labels, _ = synth_cells(n, seed=21, size=96)
    paths = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        subject = "h4" if lab == "HEM" else "7"
        p = folder / f"UID_{subject}_{i}_1_{lab.lower()}.bmp"
        paths.append(write_image(p, img))
    return paths


@pytest.mark.realdata
def test_cli_classify_folder_with_a_corrupt_file(trained, tmp_path, capsys, bccd_dir):
    from allnet_core.cli import main

    path, _ = trained
    data = tmp_path / "data"
    (data / "deep").mkdir(parents=True)
    cells = _write_cells(data / "deep")
    smear = data / "field.jpg"
    smear.write_bytes((bccd_dir / "JPEGImages" / "BloodImage_00000.jpg").read_bytes())
    bad = data / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "cells.csv"

    code = main(["classify", str(path), str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "broken.png" in err and "--skip-bad" in err
    assert "Traceback" not in err and not out.exists()

    gradcam_dir = tmp_path / "cams"
    code = main(["classify", str(path), str(data), "--out", str(out), "--skip-bad",
                 "--batch-size", "4", "--gradcam", str(gradcam_dir), "--tta"])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped" in captured.err and "broken.png" in captured.err
    table = pd.read_csv(out, keep_default_na=False)
    assert table.columns[:5].tolist() == ["source", "subject", "mode", "label", "class"]
    by_source = table.groupby("source").size()
    assert all(by_source[str(p)] == 1 for p in cells)
    assert set(table.loc[table["source"].isin([str(p) for p in cells]), "subject"]) == {"h4", "7"}
    assert (table.loc[table["source"] == str(smear), "mode"] == "smear").all()
    assert (table.loc[table["source"] != str(smear), "mode"] == "cells").all()
    assert "Per image" in captured.out and "Per subject" in captured.out
    assert "h4" in captured.out and "ALL fraction" in captured.out
    assert sorted(p.name for p in gradcam_dir.iterdir()) == sorted(
        f"{p.stem}_gradcam.png" for p in [*cells, smear])


def test_cli_classify_modes_and_errors(trained, tmp_path, capsys):
    from allnet_core.cli import main

    path, clf = trained
    cells = _write_cells(tmp_path)
    out = tmp_path / "cells.csv"
    assert main(["classify", str(path), str(cells[0]), "--out", str(out), "--mode", "cells"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 1 and table["mode"][0] == "cells"
    from allnet_core.io import read_rgb

    p_expected = clf.classify_cells(read_rgb(cells[0])[None])[0]
    assert table["p_all"][0] == pytest.approx(p_expected, abs=1e-5)
    capsys.readouterr()
    for argv, text in [
        ([str(tmp_path / "nothing.keras"), str(cells[0])], "no such model"),
        ([str(path), str(tmp_path / "missing.png")], "no such file"),
        ([str(path), str(cells[0]), "--batch-size", "0"], "--batch-size"),
    ]:
        assert main(["classify", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["classify", str(path), str(empty), "--out", str(out)]) == 2
    assert "no image files" in capsys.readouterr().err


def test_cli_import_is_light():
    code = ("import sys, allnet_core._cli.classify as c, argparse; "
            "p = argparse.ArgumentParser(); c.register(p.add_subparsers()); "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- classify_images


def test_classify_images_pools_files_and_reports(trained, tmp_path):
    from allnet_core.inference import BATCH_COLUMNS, classify_images
    from allnet_core.io import read_rgb

    path, clf = trained
    cells = _write_cells(tmp_path / "in", n=2)
    n = len(cells)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageReadError, match="stopped at file"):
        classify_images(clf, [tmp_path / "in"])
    events = []
    result = classify_images(clf, [tmp_path / "in", cells[0]], batch_size=4, skip_bad=True,
                             gradcam_dir=tmp_path / "cams", progress=events.append)
    table, per_image, per_subject, problems = result
    assert len(problems) == 1 and "broken.png" in problems[0]
    assert list(table.columns[: len(BATCH_COLUMNS)]) == BATCH_COLUMNS
    assert table["source"].tolist() == [str(p) for p in sorted(cells)]  # cells[0] once
    expected = clf.classify_cells(np.stack([read_rgb(p) for p in sorted(cells)]))
    np.testing.assert_allclose(table["p_all"], expected, atol=1e-5)
    assert per_image["cells"].tolist() == [1] * n
    assert per_image["ALL"].tolist() == (table["call"] == "ALL").astype(int).tolist()
    assert set(per_subject["subject"]) == set(table["subject"]) <= {"h4", "7"}
    assert per_subject["cells"].sum() == n
    assert sorted(p.name for p in result.gradcam_files) == sorted(
        f"{p.stem}_gradcam.png" for p in cells)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("file") == n + 1
    assert events[0]["total"] == n + 1
    assert events[-1] == {"kind": "done", "images": n, "cells": n, "skipped": 1}
    assert [e["skipped"] for e in events if e["kind"] == "file"].count(True) == 1
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        classify_images(clf, cells, cancel=token)
    with pytest.raises(ConfigError):
        classify_images(clf, cells, mode="field")


# --------------------------------------------------------------------------- one loader, one
# predictor, one model-file finder for classify and evaluate


def _dataset_table(folder: Path, n: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` synthetic cells of each class at the model's input size as PNG files, and
    their table."""
    from allnet_core.io import write_image

    images, labels, _ = synth_cells(n, seed=31, size=SIZE)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(write_image(folder / f"cell_{i}.png", img)) for i, img in enumerate(images)]
    subjects = [f"s{i % 3}" for i in range(len(images))]
    return pd.DataFrame({"path": paths, "label": labels, "subject": subjects}), images


def test_predictor_honours_the_positive_index(trained, test_cells):
    from allnet_core.model import Predictor, load_model, predict_p_all

    path, clf = trained
    images = test_cells[0][:9]
    x = images.astype(np.float32)
    ref = clf.classify_cells(images)
    loaded = load_model(path)
    assert loaded.positive_class == "ALL" and loaded.input_size == (SIZE, SIZE)
    np.testing.assert_allclose(predict_p_all(loaded, x), ref, atol=1e-5)
    batches = [(x[:4], None), (x[4:8], None), (x[8:], None)]  # a feed's (x, y) batches
    np.testing.assert_allclose(predict_p_all(loaded.model, batches), ref, atol=1e-5)
    np.testing.assert_allclose(predict_p_all(loaded, x, positive_index=0), 1 - ref, atol=1e-5)
    probs = Predictor(loaded).proba(x, batch_size=4)
    assert probs.shape == (9, 2) and probs.dtype == np.float32
    assert predict_p_all(loaded, np.zeros((0, SIZE, SIZE, 3), np.float32)).shape == (0,)


def _refusals(keras, tmp_path) -> dict[str, Path]:
    from allnet_core.model import build_allnet

    three = tmp_path / "three.keras"
    build_allnet((32, 32, 3), num_classes=3, dense_units=4).save(three)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    lam = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(lam)
    return {"wrong output shape": three, "Lambda": lam}


def test_evaluate_refuses_what_classify_refuses(keras, tmp_path, capsys):
    from allnet_core.cli import main
    from allnet_core.evaluation import evaluate
    from allnet_core.synthetic import write_cnmc_dataset

    data = write_cnmc_dataset(tmp_path / "data", subjects=4, cells_per_subject=2, seed=0,
                              size=32)
    table = pd.DataFrame({"path": ["x.png"], "label": ["ALL"], "subject": ["s"]})
    for text, model in _refusals(keras, tmp_path).items():
        with pytest.raises(ModelError, match=text) as by_classify:
            Classifier.load(model)
        with pytest.raises(ModelError) as by_evaluate:
            evaluate(model, table)
        assert str(by_evaluate.value) == str(by_classify.value)
        for command in ("evaluate", "classify"):
            argv = [command, str(model), str(data), "--out", str(tmp_path / "out.csv")]
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"allnet: error: {by_classify.value}" in err and "Traceback" not in err


def test_evaluate_reads_the_column_that_the_class_names_give_to_all(trained, tmp_path):
    from allnet_core.evaluation import evaluate

    path, clf = trained
    table, images = _dataset_table(tmp_path / "cells")
    ref = clf.classify_cells(images)
    plain = evaluate(path, table)
    np.testing.assert_allclose(plain.predictions["p_all"], ref, atol=1e-5)
    run = tmp_path / "run"
    (run / "fold_1").mkdir(parents=True)
    (run / "fold_1" / "model.keras").write_bytes(path.read_bytes())
    (run / "config.json").write_text(json.dumps({"class_names": ["ALL", "HEM"]}))
    flipped = evaluate(run / "fold_1" / "model.keras", table)
    np.testing.assert_allclose(flipped.predictions["p_all"], 1 - ref, atol=1e-5)
    p_classify = Classifier.load(run / "fold_1" / "model.keras").classify_cells(images)
    np.testing.assert_allclose(flipped.predictions["p_all"], p_classify, atol=1e-5)
    assert (flipped.predictions["class"] == np.where(p_classify >= 0.5, "ALL", "HEM")).all()
    (run / "config.json").write_text(json.dumps({"class_names": ["ALL", "blast"]}))
    with pytest.raises(ModelError, match="ALL against HEM"):
        evaluate(run / "fold_1" / "model.keras", table)


def test_evaluate_and_classify_find_the_same_model_file(trained, tmp_path):
    from allnet_core import evaluation
    from allnet_core.model import find_model_file

    path, _ = trained
    assert evaluation.resolve_model is find_model_file
    table, _ = _dataset_table(tmp_path / "cells", n=2)
    run = tmp_path / "run"  # no report.json, one model below the folder, one checkpoint
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "net.keras").write_bytes(path.read_bytes())
    (run / "sub" / "ckpt_e001.keras").write_bytes(b"checkpoint")
    assert evaluation.evaluate(run, table).model == run / "sub" / "net.keras"
    assert Classifier.load(run).source == str(run / "sub" / "net.keras")
    # a moved run folder: report.json names the best model where it was written
    (run / "fold_3").mkdir()
    (run / "fold_3" / "model.keras").write_bytes(path.read_bytes())
    (run / "report.json").write_text(json.dumps({"best_model": "/old/run/fold_3/model.keras"}))
    assert evaluation.evaluate(run, table).model == run / "fold_3" / "model.keras"
    assert Classifier.load(run).source == str(run / "fold_3" / "model.keras")
