"""The bad-input catalogue: every kind of input a hostile or careless user can give.

Each case is one kind of bad (or odd but legitimate) input. A bad input must give a clear
error: the package's own type (an :class:`~allnet_core.errors.AllnetError`; for an output
the operating system refuses, :class:`~allnet_core.errors.OutputError`, also an
:class:`OSError`), exit code 2 on the command line, a message of one or two lines that
names the file or field, no traceback. A legitimate input must give the right result.

Outcomes are counted as in issue 14: ``clear`` (the wanted error), ``accepted`` (a
legitimate input handled right), ``traceback`` (an exception that is not the package's or
a traceback in the output), ``wrong`` (a silently wrong result, or a bad input accepted),
``unclear`` (the wanted type but a message that does not name the file or field) and
``hang``. Every case asserts its outcome; the counts are printed at the end of the module
(``-rA`` or ``-s`` shows them) and must read 0 traceback, 0 wrong, 0 unclear, 0 hang.

CLI cases run in-process through :func:`allnet_core.cli.main`; the worker cases talk to
one real worker process.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from allnet_core import cli
from allnet_core.errors import (
    AllnetError,
    ConfigError,
    DatasetError,
    ImageReadError,
    ModelError,
    OutputError,
    RunInUseError,
)
from allnet_core.io import read_rgb

OUTCOMES: collections.Counter = collections.Counter()
CASES: list[Case] = []


@dataclass(frozen=True)
class Case:
    """One kind of input. ``build(env)`` returns ``(argv, names)`` for a CLI case,
    ``(callable, names)`` for a library case, or ``None`` after checking an accepted
    input itself (``error`` is then None)."""

    id: str
    area: str
    error: type | None
    build: Callable
    needs: tuple[str, ...] = ()


def case(area: str, error: type | None = None, needs: tuple[str, ...] = ()):
    """Register ``build`` as a case; ``needs`` names fixtures passed after ``env``."""
    def register(build):
        CASES.append(Case(build.__name__.removeprefix("c_"), area, error, build, needs))
        return build
    return register


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and OUTCOMES:
        areas = collections.Counter(c.area for c in CASES)
        areas["worker"] += len(WORKER_CASES) + 2
        by_area = ", ".join(f"{a} {n}" for a, n in areas.items())
        counts = ", ".join(f"{k} {OUTCOMES.get(k, 0)}" for k in
                           ("clear", "accepted", "traceback", "wrong", "unclear", "hang"))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nbad-input catalogue: {areas.total()} kinds ({by_area}); "
                                f"this run: {counts}")


# --------------------------------------------------------------------------- inputs


class Env:
    """Tiny inputs, made on demand in a test's ``tmp_path``."""

    def __init__(self, tmp: Path, data: Path, models: dict[str, Path]):
        self.tmp, self.data, self.models = tmp, data, models

    def path(self, name: str) -> Path:
        return self.tmp / name

    def png(self, name: str, array: np.ndarray) -> Path:
        import imageio.v3 as iio

        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(p, array)
        return p

    def rgb(self, name: str = "img.png", size: int = 24) -> Path:
        rng = np.random.default_rng(0)
        return self.png(name, rng.integers(0, 255, (size, size, 3), dtype=np.uint8))

    def file(self, name: str, content: bytes = b"x") -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return p

    def folder(self, name: str) -> Path:
        p = self.tmp / name
        p.mkdir(parents=True, exist_ok=True)
        return p


TRAIN = ["--input-size", "16", "--dense-units", "4", "--folds", "2", "--per-class", "8",
         "--batch-size", "8", "--holdout", "0.25", "--epochs", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from allnet_core.synthetic import write_cnmc_dataset

    root = tmp_path_factory.mktemp("bad_inputs_data")
    write_cnmc_dataset(root, subjects=8, cells_per_subject=3, seed=1, size=24)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """good (softmax), scores (no softmax), notzip, a run folder with a corrupt report."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    root = tmp_path_factory.mktemp("bad_inputs_models")
    out = {}
    for name, activation in (("good", "softmax"), ("scores", None)):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, activation=activation)(x))
        out[name] = root / f"{name}.keras"
        model.save(out[name])
    out["notzip"] = root / "notzip.keras"
    out["notzip"].write_text("this is not a zip archive")
    run = root / "run_bad_report"
    (run / "fold_1").mkdir(parents=True)
    (run / "fold_1" / "model.keras").write_bytes(out["good"].read_bytes())
    (run / "report.json").write_text('{"best_fold": 1, ')  # cut off mid-write
    out["bad_report_run"] = run
    run = root / "run_folder"
    run.mkdir()
    (run / "model.keras").write_bytes(out["good"].read_bytes())
    out["run_folder"] = run
    return out


@pytest.fixture
def env(tmp_path, tiny_data, models) -> Env:
    return Env(tmp_path, tiny_data, models)


# --------------------------------------------------------------------------- the harness


def run_cli(argv: list[str], monkeypatch) -> tuple[int, BaseException | None]:
    """``cli.main(argv)`` in this process, recording the exception the command raised."""
    parser = cli.build_parser()
    parse = parser.parse_args
    seen: dict[str, BaseException] = {}

    def recording_parse(args):
        ns = parse(args)
        func = ns.func

        def call(a):
            try:
                return func(a)
            except BaseException as exc:
                seen["exc"] = exc
                raise
        ns.func = call
        return ns

    monkeypatch.setattr(parser, "parse_args", recording_parse)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    return code, seen.get("exc")


def judge_cli(c: Case, argv, names, monkeypatch, capsys) -> tuple[str, str]:
    """The outcome of a CLI case, and what the user saw."""
    capsys.readouterr()
    try:
        code, exc = run_cli(argv, monkeypatch)
    except Exception as exc:  # escaped cli.main: a traceback for the user
        return "traceback", repr(exc)
    err = capsys.readouterr().err
    seen = f"exit {code}, {type(exc).__name__}: {err}"
    if "Traceback" in err:
        return "traceback", seen
    if code == 0:
        return "wrong", seen
    if code != 2 or (exc is not None and not isinstance(exc, c.error)):
        return "traceback", seen
    lines = err.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if "error:" in line), 0)
    told = [line for line in lines[first:] if not line.startswith(" ")]  # not list items
    if len(told) > 2 or not all(str(n) in err for n in names):
        return "unclear", seen  # more than two lines of error, or the file or field unnamed
    return "clear", seen


def judge_call(c: Case, call, names) -> tuple[str, str]:
    """The outcome of a library case, and the message."""
    try:
        call()
    except c.error as exc:
        ok = all(str(n) in str(exc) for n in names)
        return ("clear" if ok else "unclear"), f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return "traceback", f"{type(exc).__name__}: {exc}"
    return "wrong", "accepted"


# --------------------------------------------------------------------------- io


def _segment(path):
    return ["segment", path, "--out", Path(path).parent / "seg_out", "--quiet"]


@case("io", ImageReadError)
def c_missing_image(env):
    p = env.path("nowhere.png")
    return _segment(p), [p, "no such file"]


@case("io", ImageReadError)
def c_empty_file(env):
    p = env.file("empty.png", b"")
    return _segment(p), [p, "empty"]


@case("io", ImageReadError)
def c_text_named_png(env):
    p = env.file("notes.png", b"just some text\n")
    return _segment(p), [p, "not a readable image"]


@case("io", ImageReadError)
def c_truncated_png(env):
    full = env.rgb("full.png", 64).read_bytes()
    p = env.file("cut.png", full[: len(full) // 2])
    return (lambda: read_rgb(p)), [p]


@case("io", ImageReadError)
def c_grayscale_png(env):
    p = env.png("gray.png", np.zeros((16, 16), np.uint8))
    return _segment(p), [p, "grayscale"]


@case("io", ImageReadError)
def c_multipage_tiff(env):
    import tifffile

    p = env.path("stack.tif")
    tifffile.imwrite(p, np.zeros((3, 8, 8, 3), np.uint8))
    return _segment(p), [p, "multi-page"]


@case("io", ImageReadError)
def c_nan_tiff(env):
    import tifffile

    p = env.path("nan.tif")
    a = np.zeros((8, 8, 3), np.float32)
    a[0, 0, 0] = np.nan
    tifffile.imwrite(p, a)
    return _segment(p), [p, "NaN"]


@case("io", ImageReadError)
def c_folder_as_image(env):
    p = env.folder("a_folder.png")
    return (lambda: read_rgb(p)), [p, "folder"]


@case("io", ImageReadError)
def c_decompression_bomb(env):
    from PIL import Image

    p = env.rgb("huge.png", 64)
    old = Image.MAX_IMAGE_PIXELS

    def call():
        from allnet_core.io import read_rgb

        Image.MAX_IMAGE_PIXELS = 1000  # 64 x 64 is over twice this
        try:
            read_rgb(p)
        finally:
            Image.MAX_IMAGE_PIXELS = old
    return call, [p, "too large", "2,000 pixels"]


@case("io")
def c_cmyk_jpeg_converted(env):
    from PIL import Image

    from allnet_core.io import read_rgb

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 30, 40)
    rgb[:, 8:] = (20, 60, 220)
    p = env.path("cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(p, quality=100)
    assert Image.open(p).mode == "CMYK"
    got = read_rgb(p).astype(int)
    assert np.abs(got[4:12, 2:6] - rgb[4:12, 2:6]).max() < 40  # not inverted
    assert np.abs(got[4:12, 10:14] - rgb[4:12, 10:14]).max() < 40


@case("io")
def c_sixteen_bit_tiff_scaled(env):
    import tifffile

    a = np.full((8, 8, 3), 65535, np.uint16)
    a[..., 1] = 0
    tifffile.imwrite(env.path("deep.tif"), a, photometric="rgb")
    got = read_rgb(env.path("deep.tif"))
    assert got.dtype == np.uint8 and (got[..., 0] == 255).all() and (got[..., 1] == 0).all()


@case("io")
def c_rgba_png_alpha_dropped(env):
    from allnet_core.io import read_rgb

    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0], a[..., 3] = 100, 0
    got = read_rgb(env.png("rgba.png", a))
    assert got.shape == (8, 8, 3) and (got[..., 0] == 100).all()


@case("io")
def c_channel_first_tiff(env):
    import tifffile

    from allnet_core.io import read_rgb

    a = np.zeros((3, 8, 10), np.uint8)
    a[2] = 77
    p = env.path("planar.tif")
    tifffile.imwrite(p, a, photometric="rgb", planarconfig="separate")
    got = read_rgb(p)
    assert got.shape == (8, 10, 3) and (got[..., 2] == 77).all()


@case("io")
def c_output_mode_follows_umask(env):
    from allnet_core.io import write_text

    old = os.umask(0o022)
    try:
        p = write_text(env.path("report.md"), "hello")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- segmentation


@case("segmentation", ConfigError)
def c_segment_size_zero(env):
    return ["segment", env.rgb(), "--out", env.path("o"), "--size", "0"], ["--size"]


@case("segmentation", OutputError)
def c_segment_out_is_a_file(env):
    out = env.file("taken")
    return ["segment", env.rgb(), "--out", out, "--quiet"], [out, "not a folder"]


@case("segmentation", OutputError, needs=("readonly_dir",))
def c_segment_readonly_out(env, readonly):
    return (["segment", env.rgb(), "--out", readonly / "seg", "--quiet"],
            [readonly, "Read-only" if os.geteuid() == 0 else "ermission"])


@case("segmentation", ImageReadError)
def c_label_cells_float_array(env):
    from allnet_core.segmentation import label_cells

    return (lambda: label_cells(np.zeros((8, 8, 3), np.float64), name="field.npy")), \
        ["float64"]


@case("segmentation", ConfigError)
def c_label_cells_unknown_method(env):
    from allnet_core.segmentation import label_cells

    return (lambda: label_cells(np.zeros((8, 8, 3), np.uint8), method="magic")), ["method"]


@case("segmentation")
def c_black_image_has_no_cells(env):
    from allnet_core.segmentation import label_cells

    assert label_cells(np.zeros((32, 32, 3), np.uint8)).max() == 0


# --------------------------------------------------------------------------- datasets


@case("datasets", DatasetError)
def c_dataset_missing(env):
    p = env.path("no_data")
    return ["train", p, "--out", env.path("r")] + TRAIN, [p, "does not exist"]


@case("datasets", DatasetError)
def c_dataset_empty_folder(env):
    p = env.folder("empty_data")
    return ["train", p, "--out", env.path("r")] + TRAIN, [p]


@case("datasets", DatasetError)
def c_dataset_one_class(env):
    root = env.folder("one_class")
    for i in range(4):
        env.png(f"one_class/all/UID_{i}_1_1_all.png", np.full((8, 8, 3), 90 + i, np.uint8))
    return ["train", root, "--out", env.path("r")] + TRAIN, [root, "only one class"]


@case("datasets", DatasetError)
def c_dataset_unreadable_image(env):
    import shutil

    root = env.path("broken_data")
    shutil.copytree(env.data, root)
    victim = sorted(root.rglob("*.bmp"))[0]
    victim.write_bytes(b"BM garbage")
    return ["train", root, "--out", env.path("r")] + TRAIN, [victim.name]


@case("datasets", DatasetError)
def c_dataset_too_few_subjects(env):
    return (["train", env.data, "--out", env.path("r")] + TRAIN[:4] + ["--folds", "9"]
            + TRAIN[6:], ["--folds"])


@case("datasets", ConfigError)
def c_synth_zero_subjects(env):
    return ["data", "synth", env.path("s"), "--subjects", "0"], ["--subjects"]


# --------------------------------------------------------------------------- augment


@case("augment", ConfigError)
def c_augment_per_class_zero(env):
    return ["augment", env.data, "--out", env.path("a"), "--per-class", "0"], ["--per-class"]


@case("augment", ConfigError)
def c_augment_workers_zero(env):
    return (["augment", env.data, "--out", env.path("a"), "--per-class", "4", "--workers",
             "0"], ["--workers"])


@case("augment", OutputError)
def c_augment_out_is_a_file(env):
    out = env.file("aug_file")
    return ["augment", env.data, "--out", out, "--per-class", "4"], [out, "not a folder"]


@case("augment", ConfigError)
def c_augment_out_not_empty(env):
    out = env.folder("aug_full")
    env.file("aug_full/keep.txt")
    return ["augment", env.data, "--out", out, "--per-class", "4"], [out, "not empty"]


@case("augment", OutputError, needs=("readonly_dir",))
def c_augment_readonly_out(env, readonly):
    return ["augment", env.data, "--out", readonly / "aug", "--per-class", "4"], [readonly]


@case("augment", ImageReadError)
def c_augment_float_array(env):
    from allnet_core.augment import Augmenter

    return (lambda: Augmenter(seed=0)(np.zeros((8, 8, 3), np.float32))), ["float32"]


# --------------------------------------------------------------------------- training


def _config(**kw):
    from allnet_core.training import TrainConfig

    return lambda: TrainConfig(**kw)


@case("training", ConfigError)
def c_config_epochs_fraction(env):
    return _config(epochs=2.5), ["epochs", "2.5"]


@case("training", ConfigError)
def c_config_folds_fraction(env):
    return _config(folds=2.7), ["folds"]


@case("training", ConfigError)
def c_config_per_class_bool(env):
    return _config(per_class=True), ["per_class"]


@case("training", ConfigError)
def c_config_optimizer_unknown(env):
    return _config(optimizer="bogus"), ["optimizer", "bogus"]


@case("training", ConfigError)
def c_config_loss_unknown(env):
    return _config(loss="hinge_me"), ["loss"]


@case("training", ConfigError)
def c_config_lr_nan(env):
    return _config(lr=float("nan")), ["lr"]


@case("training", ConfigError)
def c_config_epochs_overflow(env):
    from allnet_core.training import TrainConfig

    return (lambda: TrainConfig.from_json('{"epochs": 1e400}')), ["epochs"]


@case("training", ConfigError)
def c_config_string_number(env):
    return _config(batch_size="16"), ["batch_size"]


@case("training", ConfigError)
def c_config_unknown_field(env):
    from allnet_core.training import TrainConfig

    return (lambda: TrainConfig.from_dict({"epochs": 2, "epohcs": 3})), ["epohcs"]


@case("training", ConfigError)
def c_config_not_a_mapping(env):
    from allnet_core.training import TrainConfig

    p = env.file("list_config.json", b"[1, 2]")
    return (lambda: TrainConfig.from_json(p)), [p, "mapping"]


@case("training", ConfigError)
def c_config_json_broken(env):
    from allnet_core.training import TrainConfig

    p = env.file("config.json", b'{"epochs": ')
    return (lambda: TrainConfig.from_json(p)), ["JSON"]


@case("training", ConfigError)
def c_train_lr_inf(env):
    out = env.path("r_inf")
    argv = ["train", env.data, "--out", out, *TRAIN, "--lr", "inf"]
    return _and_nothing_written(argv, out), ["lr"]


@case("training", ConfigError)
def c_train_epochs_zero(env):
    return ["train", env.data, "--out", env.path("r"), *TRAIN, "--epochs", "0"], ["epochs"]


@case("training", ConfigError)
def c_train_seed_negative(env):
    return ["train", env.data, "--out", env.path("r"), *TRAIN, "--seed", "-1"], ["seed"]


@case("training", ConfigError)
def c_train_holdout_above_one(env):
    return ["train", env.data, "--out", env.path("r"), *TRAIN, "--holdout", "1.5"], ["holdout"]


@case("training", ConfigError)
def c_train_split_unknown(env):
    return ["train", env.data, "--out", env.path("r"), *TRAIN, "--split", "rows"], ["split"]


@case("training", ConfigError)
def c_train_precision_unknown(env):
    return (["train", env.data, "--out", env.path("r"), *TRAIN, "--precision", "fp8"],
            ["precision"])


@case("training", ConfigError)
def c_train_profile_unknown(env):
    return ["train", env.data, "--out", env.path("r"), "--profile", "turbo"], ["turbo"]


@case("training", SystemExit)
def c_train_epochs_not_a_number(env):
    return ["train", env.data, "--out", env.path("r"), "--epochs", "2.5"], ["--epochs", "2.5"]


@case("training", OutputError)
def c_train_out_is_a_file(env):
    out = env.file("run_file")
    return ["train", env.data, "--out", out, *TRAIN], [out, "not a folder"]


@case("training", OutputError, needs=("readonly_dir",))
def c_train_readonly_out(env, readonly):
    return ["train", env.data, "--out", readonly / "run", *TRAIN], [readonly]


@case("training", ConfigError)
def c_train_out_holds_a_run(env):
    out = _fake_run(env, "held")
    return ["train", env.data, "--out", out, *TRAIN], [out, "--resume"]


@case("training", ConfigError)
def c_train_out_not_empty(env):
    out = env.folder("photos")
    env.file("photos/holiday.jpg")
    return ["train", env.data, "--out", out, *TRAIN], [out, "not empty"]


@case("training", ConfigError)
def c_train_resume_other_config(env):
    out = _fake_run(env, "other")
    return (["train", env.data, "--out", out, *TRAIN[:-4], "--epochs", "3", "--workers", "1",
             "--resume"], [out, "epochs"])


@case("training", RunInUseError)
def c_train_run_in_use(env):
    return _in_use(env, resume=False)


@case("training", RunInUseError)
def c_train_resume_run_in_use(env):
    return _in_use(env, resume=True)


def _fake_run(env: Env, name: str) -> Path:
    """A run folder as `allnet train` leaves it after its start (config.json written)."""
    from allnet_core.training import config_from_request

    out = env.folder(name)
    config = config_from_request({"input_size": 16, "dense_units": 4, "folds": 2,
                                  "per_class": 8, "batch_size": 8, "holdout": 0.25,
                                  "epochs": 1, "workers": 1})
    (out / "config.json").write_text(config.to_json())
    return out


def _in_use(env: Env, resume: bool):
    """Another process holds the run's lock (here: this one, through another lock)."""
    from allnet_core.training.rundir import run_dir_lock

    out = _fake_run(env, "busy")
    argv = ["train", env.data, "--out", out, *TRAIN] + (["--resume"] if resume else [])
    held = run_dir_lock(out)
    held.__enter__()
    _HELD.append(held)  # released after the test
    return argv, [out, "in use", f"process {os.getpid()}"]


_HELD: list = []


@pytest.fixture(autouse=True)
def _release_held_locks():
    yield
    while _HELD:
        _HELD.pop().__exit__(None, None, None)


def _and_nothing_written(argv, out: Path):
    """The argv, and (checked after the run) that ``out`` was not created."""
    _NOT_CREATED.append(out)
    return argv


_NOT_CREATED: list[Path] = []


@pytest.fixture(autouse=True)
def _check_nothing_written():
    yield
    while _NOT_CREATED:
        out = _NOT_CREATED.pop()
        assert not out.exists(), f"{out} was created although the config is invalid"


# --------------------------------------------------------------------------- evaluate


@case("evaluate", ModelError)
def c_evaluate_model_not_a_zip(env):
    m = env.models["notzip"]
    return ["evaluate", m, env.data, "--out", env.path("ev")], [m, "not a Keras model file"]


@case("evaluate", ModelError)
def c_evaluate_corrupt_report(env):
    run = env.models["bad_report_run"]
    return (["evaluate", run, env.data, "--out", env.path("ev")],
            [run / "report.json", "not readable JSON"])


@case("evaluate", ModelError)
def c_evaluate_model_missing(env):
    m = env.path("gone.keras")
    return ["evaluate", m, env.data, "--out", env.path("ev")], [m, "no such"]


@case("evaluate", ModelError)
def c_evaluate_model_without_softmax(env):
    m = env.models["scores"]
    return ["evaluate", m, env.data, "--out", env.path("ev")], [m, "not probabilities"]


@case("evaluate", OutputError)
def c_evaluate_out_is_a_file(env):
    out = env.file("ev_file")
    return ["evaluate", env.models["good"], env.data, "--out", out], [out, "not a folder"]


@case("evaluate", ConfigError)
def c_evaluate_batch_size_zero(env):
    return (["evaluate", env.models["good"], env.data, "--out", env.path("ev"),
             "--batch-size", "0"], ["--batch-size"])


@case("evaluate", ConfigError)
def c_evaluate_threshold_nan(env):
    return (["evaluate", env.models["good"], env.data, "--out", env.path("ev"),
             "--threshold", "nan"], ["--threshold"])


# --------------------------------------------------------------------------- classify


def _classify(env: Env, model: Path, *extra) -> list:
    return ["classify", model, env.rgb(), "--out", env.path("cells.csv"), *extra]


@case("classify", OutputError)
def c_classify_out_is_a_folder(env):
    out = env.folder("cells.csv")
    # the broken model proves the order: the output is refused before the model loads
    return (["classify", env.models["notzip"], env.rgb(), "--out", out],
            [out, "folder, not a file"])


@case("classify", ConfigError)
def c_classify_out_not_csv(env):
    return ["classify", env.models["good"], env.rgb(), "--out", env.path("cells.txt")], \
        ["--out", "cells.txt"]


@case("classify", OutputError)
def c_classify_gradcam_is_a_file(env):
    cams = env.file("cams")
    return _classify(env, env.models["notzip"], "--gradcam", cams), [cams, "--gradcam"]


@case("classify", OutputError, needs=("readonly_dir",))
def c_classify_readonly_out(env, readonly):
    return (["classify", env.models["notzip"], env.rgb(), "--out", readonly / "c.csv"],
            [readonly])


@case("classify", ModelError)
def c_classify_model_without_softmax(env):
    m = env.models["scores"]
    return _classify(env, m), [m, "not probabilities"]


@case("classify", ModelError)
def c_classify_model_not_a_zip(env):
    m = env.models["notzip"]
    return _classify(env, m), [m, "not a Keras model file"]


@case("classify", ModelError)
def c_classify_corrupt_report(env):
    run = env.models["bad_report_run"]
    return _classify(env, run), [run / "report.json"]


@case("classify", ConfigError)
def c_classify_input_missing(env):
    p = env.path("lost.png")
    return ["classify", env.models["good"], p, "--out", env.path("c.csv")], [p]


@case("classify", AllnetError)
def c_classify_unreadable_image(env):
    p = env.file("bad.png", b"not a png")
    return ["classify", env.models["good"], p, "--out", env.path("c.csv")], [p, "--skip-bad"]


@case("classify", ConfigError)
def c_classify_threshold_out_of_range(env):
    return _classify(env, env.models["good"], "--threshold", "1.5"), ["--threshold"]


@case("classify", ConfigError)
def c_classify_batch_size_zero(env):
    return _classify(env, env.models["good"], "--batch-size", "0"), ["--batch-size"]


@case("classify")
def c_classify_run_folder_model(env):
    argv = _classify(env, env.models["run_folder"], "--mode", "cells")
    assert cli.main([str(a) for a in argv]) == 0
    out = env.path("cells.csv")
    import pandas as pd

    p = pd.read_csv(out)["p_all"]
    assert ((p >= 0) & (p <= 1)).all()


# --------------------------------------------------------------------------- worker


class Worker:
    """One real worker process; every stdout line must be JSON."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "allnet_core.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(raw))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.cond.notify_all()

    def ask(self, raw: bytes, timeout: float = 120.0):
        """Send one raw line; the first answer to it (an error, result or pong), or
        ``"hang"`` if none comes in ``timeout`` seconds."""
        with self.cond:
            start = len(self.lines)
        self.proc.stdin.write(raw.rstrip(b"\n") + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for msg in self.lines[start:]:
                    if msg is None or msg["kind"] in ("error", "result", "pong", "cancelled"):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    return "hang"
                self.cond.wait(left)

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait(30)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    assert w.close() == 0


def _job(op: str, **fields) -> bytes:
    return json.dumps({"op": op, "id": "job", **fields}).encode()


_SCRATCH = os.path.join(tempfile.gettempdir(), "allnet-bad-inputs")
_CLASSIFY = {"image_path": "a.png", "model": "m.keras", "out_dir": _SCRATCH}
_TRAIN = {"data": "nowhere", "out": _SCRATCH}

#: (kind, request line, error_type, words the message must hold)
WORKER_CASES = [
    ("invalid_utf8", b"\xff\xfe{", "ProtocolError", ["not UTF-8"]),
    ("nested_100000_deep", b"[" * 100_000 + b"]" * 100_000, "ProtocolError",
     ["nested too deeply"]),
    ("not_json", b"hello worker", "ProtocolError", ["not JSON"]),
    ("not_an_object", b"[1, 2]", "ProtocolError", ["JSON object"]),
    ("op_not_a_string", b'{"op": ["ping"]}', "ProtocolError", ["'op'"]),
    ("id_not_a_scalar", b'{"op": "cancel", "id": {"a": 1}}', "ProtocolError", ["'id'"]),
    ("unknown_op", b'{"op": "fly", "id": 1}', "ProtocolError", ["'fly'"]),
    ("missing_field", _job("classify", image_path="a.png"), "ConfigError", ["'out_dir'"]),
    ("path_not_a_string", _job("classify", **{**_CLASSIFY, "image_path": ["a.png"]}),
     "ConfigError", ["'image_path'"]),
    ("batch_size_text", _job("classify", **_CLASSIFY, batch_size="abc"), "ConfigError",
     ["'batch_size'"]),
    ("batch_size_nan", _job("classify", **_CLASSIFY).replace(b"}", b', "batch_size": NaN}'),
     "ConfigError", ["'batch_size'"]),
    ("tta_text", _job("classify", **_CLASSIFY, tta="yes"), "ConfigError", ["'tta'"]),
    ("mode_unknown", _job("classify", **_CLASSIFY, mode="fast"), "ConfigError", ["'mode'"]),
    ("out_dir_a_file", _job("classify", **{**_CLASSIFY, "out_dir": __file__}), "OutputError",
     ["out_dir", "not a folder"]),
    ("config_a_string", _job("train", **_TRAIN, config="epochs=3"), "ConfigError",
     ["'config'"]),
    ("config_unknown_field", _job("train", **_TRAIN, config={"epohcs": 3}), "ConfigError",
     ["epohcs"]),
    ("config_epochs_1e400", _job("train", **_TRAIN).replace(
        b"}", b', "config": {"epochs": 1e400}}'), "ConfigError", ["epochs"]),
    ("config_batch_size_text", _job("train", **_TRAIN, config={"batch_size": "abc"}),
     "ConfigError", ["batch_size"]),
    ("config_lr_nan", _job("train", **_TRAIN).replace(b"}", b', "config": {"lr": NaN}}'),
     "ConfigError", ["lr"]),
    ("resume_text", _job("train", **_TRAIN, resume="yes"), "ConfigError", ["'resume'"]),
    ("labels_not_a_tiff", None, "ImageReadError", ["labels.tif"]),
    ("image_paths_not_a_list", _job("classify", image_paths="a.png", model="m.keras",
                                    out_dir=_SCRATCH), "ConfigError", ["'image_paths'"]),
    ("threshold_text", _job("classify", image_paths=["a.png"], model="m.keras",
                            out_dir=_SCRATCH, threshold="high"), "ConfigError", ["'threshold'"]),
    ("skip_bad_number", _job("classify", image_paths=["a.png"], model="m.keras",
                             out_dir=_SCRATCH, skip_bad=1), "ConfigError", ["'skip_bad'"]),
]


@pytest.mark.parametrize("kind, line, error_type, words", WORKER_CASES,
                         ids=[c[0] for c in WORKER_CASES])
def test_worker_catalogue(worker, tmp_path, kind, line, error_type, words):
    if line is None:  # labels_not_a_tiff: needs real files
        image = Env(tmp_path, tmp_path, {}).rgb()
        labels = tmp_path / "labels.tif"
        labels.write_text("not a tiff")
        line = _job("classify", image_path=str(image), model="m.keras",
                    out_dir=str(tmp_path / "o"), labels_path=str(labels))
    msg = worker.ask(line)
    if msg == "hang" or msg is None:
        outcome = "hang"
    elif msg["kind"] != "error" or "traceback" in msg:
        outcome = "wrong" if msg["kind"] != "error" else "traceback"
    elif msg["error_type"] != error_type or not all(w in msg["message"] for w in words):
        outcome = "unclear"
    else:
        outcome = "clear"
    OUTCOMES[outcome] += 1
    assert outcome == "clear", msg
    assert worker.ask(b'{"op": "ping", "id": "alive"}', timeout=30)["kind"] == "pong"


def test_worker_takes_a_run_folder_as_model(worker, models, tmp_path):
    image = Env(tmp_path, tmp_path, {}).rgb(size=32)
    msg = worker.ask(_job("classify", image_path=str(image), model=str(models["run_folder"]),
                          out_dir=str(tmp_path / "o"), mode="cells"), timeout=300)
    OUTCOMES["accepted" if msg not in ("hang", None) and msg["kind"] == "result"
             else "wrong"] += 1
    assert msg["kind"] == "result", msg
    assert Path(msg["result"]["table_path"]).is_file()


def test_worker_answers_after_invalid_utf8_and_exits_at_end_of_input():
    """The issue's reproduction: ``printf '\\xff\\n{"op":"ping"}\\n' | python -m
    allnet_core.worker`` answers the ping and exits."""
    try:
        done = subprocess.run([sys.executable, "-m", "allnet_core.worker"],
                              input=b'\xff\n{"op":"ping"}\n', capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        OUTCOMES["hang"] += 1
        raise
    kinds = [json.loads(line)["kind"] for line in done.stdout.splitlines()]
    OUTCOMES["clear" if kinds == ["ready", "error", "pong"] and done.returncode == 0
             else "hang"] += 1
    assert kinds == ["ready", "error", "pong"] and done.returncode == 0


# --------------------------------------------------------------------------- the cases, run


@pytest.mark.parametrize("c", [pytest.param(c, id=f"{c.area}-{c.id}") for c in CASES])
def test_catalogue(c: Case, env, monkeypatch, capsys, request):
    built = c.build(env, *(request.getfixturevalue(name) for name in c.needs))
    if built is None:
        outcome, seen = "accepted", ""
    else:
        what, names = built
        if isinstance(what, list):
            outcome, seen = judge_cli(c, what, names, monkeypatch, capsys)
        else:
            outcome, seen = judge_call(c, what, names)
    OUTCOMES[outcome] += 1
    assert outcome == ("accepted" if c.error is None else "clear"), (names, seen)


def test_catalogue_is_complete():
    areas = {c.area for c in CASES} | {"worker"}
    assert {"io", "datasets", "segmentation", "augment", "training", "evaluate",
            "classify", "worker"} <= areas
    assert len(CASES) + len(WORKER_CASES) + 2 >= 50
    assert len({c.id for c in CASES}) == len(CASES)
