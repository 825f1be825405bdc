"""Screening many images on Dask: a LocalCluster of two worker processes (issue 13).

The same table as the single-process path; the model loaded once per worker; a worker
killed mid-run is replaced and nothing is lost or duplicated; a rerun resumes. Every test
runs under an alarm, so a stuck cluster fails the test instead of hanging CI.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.dask

distributed = pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

_ALARM_S = 180


@pytest.fixture(autouse=True)
def alarm():
    """Fail a test that runs longer than ``_ALARM_S`` seconds (a hung cluster)."""
    if not hasattr(signal, "SIGALRM"):  # not on Windows
        yield
        return

    def _timeout(signum, frame):
        raise TimeoutError(f"test ran over {_ALARM_S} s: the Dask cluster hangs?")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(_ALARM_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet

    get_keras().utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_allnet(input_shape=(32, 32, 3), dense_units=8).save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Small smear fields, single cells with C-NMC names (subjects) and one broken file."""
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cells, synth_smear

    folder = tmp_path_factory.mktemp("images")
    for i in range(8):
        rgb, _, _ = synth_smear(seed=i, shape=(240, 320), n_wbc=2, n_platelets=2)
        write_image(folder / f"field_{i:02d}.png", rgb)
    cells, labels, _ = synth_cells(2, seed=3, size=64)
    for i, (img, lab) in enumerate(zip(cells, labels, strict=True)):
        write_image(folder / f"UID_{'h4' if lab == 'HEM' else '7'}_{i}_1_{lab.lower()}.bmp", img)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


@pytest.fixture(scope="module")
def reference(model_path, images):
    """The single-process, in-memory result."""
    from allnet_core.inference import classify_images

    return classify_images(model_path, [images], skip_bad=True)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                           dashboard_address=None, silence_logs=40)
    c = Client(cluster, timeout="60s")
    yield c
    c.close(timeout=30)
    cluster.close(timeout=30)


_SCORES = ["p_all", "p_all_raw", "oos_score"]


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.columns.tolist() == b.columns.tolist()
    pd.testing.assert_frame_equal(a.drop(columns=_SCORES).reset_index(drop=True),
                                  b.drop(columns=_SCORES).reset_index(drop=True),
                                  check_dtype=False)
    for name in _SCORES:  # a CSV read back has "" for nan (no model card: no oos_score)
        np.testing.assert_allclose(pd.to_numeric(a[name]).astype(float),
                                   pd.to_numeric(b[name]).astype(float), atol=1e-5)


def _store_parts(store: Path) -> tuple[list[Path], pd.DataFrame]:
    parts = sorted((store / "_images").glob("part-*.parquet"))
    return parts, pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_cluster_gives_the_single_process_table(client, model_path, images, reference,
                                                tmp_path):
    from allnet_core.inference import classify_images

    store = tmp_path / "cells.parquet"
    events = []
    result = classify_images(model_path, [images], client=client, out=store,
                             progress=events.append)
    _same_table(reference.cells, result.cells)
    pd.testing.assert_frame_equal(reference.per_image, result.per_image, check_dtype=False)
    pd.testing.assert_frame_equal(reference.per_subject, result.per_subject,
                                  check_dtype=False)
    assert len(result.problems) == 1 and "broken.png" in result.problems[0]
    assert reference.problems == result.problems
    # streamed: one committed part per image, the bad one recorded with its error
    parts, records = _store_parts(store)
    assert len(parts) == len(records) == len(reference.per_image) + 1
    assert (records["error"] != "").sum() == 1
    assert len(pd.read_parquet(store)) == len(result.cells)  # the dataset reads as one table
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["resume", "start"] and kinds[-1] == "done"
    assert kinds.count("file") == len(records)
    # the model was loaded once per worker, however many tasks ran there
    loads = client.run(lambda dask_worker: [getattr(p, "loads", 0)
                                            for p in dask_worker.plugins.values()])
    assert len(loads) == 2 and all(sorted(v)[-1] == 1 for v in loads.values())
    # with images_per_task the table is the same
    again = classify_images(model_path, [images], client=client, images_per_task=4)
    _same_table(reference.cells, again.cells)


@pytest.fixture(scope="module")
def carded_model(model_path, tmp_path_factory) -> Path:
    """The tiny model with a model card: a calibration that changes P(ALL) and an
    out-of-scope reference fitted on synthetic single cells."""
    from allnet_core.inference import Classifier
    from allnet_core.model.calibration import Calibration
    from allnet_core.model.card import write_card
    from allnet_core.model.predict import predict_features
    from allnet_core.model.scope import fit_scope
    from allnet_core.synthetic import synth_cells

    path = tmp_path_factory.mktemp("carded") / "model.keras"
    shutil.copyfile(model_path, path)
    clf = Classifier.load(path)
    feats = [predict_features(clf.loaded, clf.prepare(synth_cells(40, seed=s, size=32)[0]))[1]
             for s in (5, 6)]
    write_card(path, {"calibration": Calibration(temperature=3.0).to_dict(), "holdout": {},
                      "protocol": {}}, scope=fit_scope(*feats))
    return path


def test_cluster_applies_the_model_card_as_one_process_does(client, carded_model, images,
                                                            tmp_path):
    """The workers calibrate, score out of scope and call the cells through the same
    classifier as one process; the store holds the trust columns and the summaries count
    the calls."""
    from allnet_core.inference import classify_images
    from allnet_core.inference.calls import call_cells
    from allnet_core.model.calibration import Calibration

    here = classify_images(carded_model, [images], skip_bad=True, uncertain=(0.4, 0.6))
    store = tmp_path / "cells.parquet"
    there = classify_images(carded_model, [images], client=client, out=store,
                            uncertain=(0.4, 0.6))
    _same_table(here.cells, there.cells)
    cells = there.cells
    np.testing.assert_allclose(cells["p_all"], Calibration(3.0).apply(cells["p_all_raw"]),
                               atol=1e-5)
    assert np.isfinite(cells["oos_score"]).all()  # the card's reference was applied
    assert cells["call"].tolist() == call_cells(cells["p_all"], cells["oos_score"], 0.5,
                                                (0.4, 0.6)).tolist()
    stored = pd.read_parquet(store)
    assert {"p_all_raw", "p_all", "call", "oos_score", "class"} <= set(stored.columns)
    for result in (here, there):
        per_image = result.per_image.set_index("source")
        counts = cells.groupby("source")["call"].value_counts().unstack(fill_value=0)
        for call in counts.columns:
            assert (per_image.loc[counts.index, call] == counts[call]).all()
        confident = per_image["ALL"] + per_image["HEM"]
        with_cells = confident > 0
        np.testing.assert_allclose(per_image.loc[with_cells, "all_fraction"],
                                   (per_image["ALL"] / confident)[with_cells])
    pd.testing.assert_frame_equal(here.per_image, there.per_image, check_dtype=False)
    pd.testing.assert_frame_equal(here.per_subject, there.per_subject, check_dtype=False)
    # another band is another setting: the store is not reused for it
    events = []
    classify_images(carded_model, [images], client=client, out=store, progress=events.append)
    assert "uncertain" in events[0]["discarded"]


def test_rerun_resumes_by_content(client, model_path, images, reference, tmp_path):
    from allnet_core.inference import classify_images

    store = tmp_path / "cells.parquet"
    first = sorted(images.glob("field_0[0-3].png"))
    classify_images(model_path, first, client=client, out=store)
    # the same content under another name counts as done; a changed file does not
    inputs = tmp_path / "inputs"
    shutil.copytree(images, inputs)
    (inputs / "field_00.png").rename(inputs / "renamed.png")
    events = []
    result = classify_images(model_path, [inputs], client=client, out=store,
                             progress=events.append)
    resume = events[0]
    assert resume["kind"] == "resume" and resume["done"] == 4
    redone = {Path(e["path"]).name for e in events if e["kind"] == "file"}
    assert not redone & {"renamed.png", "field_01.png", "field_02.png", "field_03.png"}
    assert len(redone) == len(list(inputs.iterdir())) - 4
    expected = reference.cells.assign(source=reference.cells["source"].str.replace(
        str(images), str(inputs), regex=False))
    expected["source"] = expected["source"].str.replace("field_00.png", "renamed.png")
    order = {str(p): i for i, p in enumerate(sorted(inputs.iterdir()))}
    expected = expected.sort_values("source", key=lambda s: s.map(order), kind="stable")
    _same_table(expected, result.cells)
    assert result.per_image["source"].str.endswith("renamed.png").sum() == 1
    # nothing twice in the store
    _, records = _store_parts(store)
    ok = records[records["error"] == ""]
    assert not ok["sha256"].duplicated().any()
    assert not pd.read_parquet(store).duplicated(["sha256", "label"]).any()


def test_killed_worker_is_replaced_and_nothing_is_lost(client, model_path, images, reference,
                                                       tmp_path):
    from allnet_core.inference import classify_images

    many = tmp_path / "many"
    many.mkdir()
    for k in range(3):  # 3 copies with distinct bytes: 24 fields, tasks long enough to kill
        for p in sorted(images.glob("field_*.png")):
            data = p.read_bytes() + bytes([k])  # a trailing byte: new content, same pixels
            (many / f"{p.stem}_{k}.png").write_bytes(data)
    pids = client.run(os.getpid)
    killed = []

    def progress(event):
        if event["kind"] == "file" and not killed:
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    store = tmp_path / "cells.parquet"
    result = classify_images(model_path, [many], client=client, out=store,
                             progress=progress, images_per_task=1)
    assert killed
    assert result.problems == [] and len(result.per_image) == 24
    per_field = reference.per_image.set_index(
        reference.per_image["source"].map(lambda s: Path(s).stem))["cells"]
    assert result.per_image["cells"].tolist() == [
        per_field[Path(s).stem.rsplit("_", 1)[0]] for s in result.per_image["source"]]
    assert len(result.cells) == 3 * int(per_field.filter(like="field").sum())
    parts, records = _store_parts(store)
    assert len(parts) == 24 and not records["sha256"].duplicated().any()
    assert not result.cells.duplicated(["source", "label"]).any()
    # the nanny started a new worker in place of the killed one
    client.wait_for_workers(2, timeout=120)
    new_pids = client.run(os.getpid)
    assert killed[0] not in new_pids.values() and len(new_pids) == 2


def test_cli_on_a_running_cluster_resumes(client, model_path, images, reference, tmp_path,
                                          capsys):
    from allnet_core.cli import main

    out = tmp_path / "cells.csv"
    argv = ["classify", str(model_path), str(images), "--out", str(out),
            "--scheduler", client.scheduler.address]
    assert main(argv) == 0
    table = pd.read_csv(out, keep_default_na=False)
    _same_table(reference.cells, table)
    captured = capsys.readouterr()
    assert "2 worker(s)" in captured.err and "Per image" in captured.out
    assert "model card: untested model: no card" in captured.out  # read, not loaded, here
    assert "unc." in captured.out and "All images:" in captured.out
    assert "broken.png" in captured.err  # recorded and reported, the run went on
    assert main(argv) == 0  # a rerun: everything done but the broken file
    err = capsys.readouterr().err
    assert f"resuming: {len(reference.per_image)} of {len(reference.per_image) + 1}" in err
    _same_table(reference.cells, pd.read_csv(out, keep_default_na=False))
    assert main([*argv[:5], "--workers", "0"]) == 2
    assert "--workers must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one of --workers and --scheduler
        main([*argv, "--workers", "2"])
    assert "not allowed with argument" in capsys.readouterr().err
