"""``allnet evaluate`` and ``allnet train`` as a user meets them: one-class sets, class
mappings for other folder names, the result tables' vocabulary, ROC AUC as a number."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest

from allnet_core.cli import main
from allnet_core.synthetic import write_cnmc_dataset


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained small ALLNet: the scores are arbitrary, the bookkeeping is not."""
    from allnet_core.backend import get_keras
    from allnet_core.model import build_allnet

    keras = get_keras()
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_allnet((32, 32, 3), dense_units=4).save(path)
    return path


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """C-NMC-like cells, and the same cells, renamed, in folders with other names:
    ``blast_cells/`` (ALL) and ``donor/`` (HEM), and ``donor`` alone."""
    root = tmp_path_factory.mktemp("cells")
    cnmc = write_cnmc_dataset(root / "cnmc", subjects=4, cells_per_subject=3, seed=0, size=32)
    other, healthy = root / "other", root / "healthy"
    for i, path in enumerate(sorted(cnmc.rglob("*.bmp"))):
        folder = "blast_cells" if path.stem.endswith("_all") else "donor"
        for dest in (other, healthy) if folder == "donor" else (other,):
            (dest / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / folder / f"cell_{i:02d}.bmp")  # no class in the name
    return cnmc, other, healthy


def test_evaluate_healthy_cells_only(model_file, cells, tmp_path, capsys):
    _, _, healthy = cells
    out = tmp_path / "eval"
    argv = ["evaluate", str(model_file), str(healthy), "--out", str(out)]
    assert main(argv) == 2  # 'donor' is no known class name ...
    assert "unknown class folder 'donor'" in capsys.readouterr().err
    assert main(argv + ["--classes", "donor=HEM"]) == 0  # ... until mapped; one class is fine
    text = capsys.readouterr().out
    assert "6 images (0 ALL, 6 HEM)" in text and re.search(r"Specificity \d+\.\d\d %", text)
    assert "Recall n/a" in text and "MCC n/a" in text and "ROC AUC n/a" in text
    assert "needs both classes; the set has HEM only" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mcc"] is None and metrics["roc_auc"] is None
    assert metrics["specificity"] == pytest.approx(metrics["accuracy"])
    report = (out / "report.md").read_text()
    assert "n/a: Recall, F1 (no ALL cell in the set)" in report
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["source", "subject", "true_class", "class", "p_all", "p_all_raw",
                                  "call", "oos_score"]
    assert set(pred["true_class"]) == {"HEM"}
    # a model without a card: nothing is out of scope, the calls follow P(ALL) and the band
    assert pred["oos_score"].isna().all() and set(pred["call"]) <= {"ALL", "HEM", "uncertain"}
    band = pred["p_all"].between(0.35, 0.65, inclusive="neither")
    assert (pred.loc[band, "call"] == "uncertain").all()
    assert (pred.loc[~band, "call"] == pred.loc[~band, "class"]).all()
    assert "calls as allnet classify makes them: 6 cells:" in text


def test_evaluate_both_classes_prints_auc_as_a_number(model_file, cells, tmp_path, capsys):
    _, other, _ = cells
    out = tmp_path / "eval"
    assert main(["evaluate", str(model_file), str(other), "--out", str(out),
                 "--classes", "blast_cells=ALL,donor=HEM"]) == 0
    text = capsys.readouterr().out
    assert "(6 ALL, 6 HEM)" in text and "MCC n/a" not in text and "ROC AUC n/a" not in text
    auc = json.loads((out / "metrics.json").read_text())["roc_auc"]
    assert f"ROC AUC {auc:.3f}" in text and f"ROC AUC {auc:.3f}." in (out / "report.md").read_text()
    per_subject = pd.read_csv(out / "per_subject.csv")
    assert {"subject", "true_class", "class", "correct"} <= set(per_subject.columns)


def test_train_reads_folders_through_the_class_mapping(cells, tmp_path, monkeypatch):
    import allnet_core.training as training

    _, other, _ = cells
    seen = {}

    def fake_cross_validate(data, config, out, **kwargs):
        seen.update(data=data, verify=kwargs["verify"])
        return None  # as a cancelled run

    monkeypatch.setattr(training, "cross_validate", fake_cross_validate)
    assert main(["train", str(other), "--out", str(tmp_path / "run"), "--profile", "quick",
                 "--classes", "blast_cells=ALL,donor=HEM"]) == 130
    table = seen["data"]
    assert isinstance(table, pd.DataFrame) and len(table) == 12
    assert table.groupby("label").size().to_dict() == {"ALL": 6, "HEM": 6}
    assert seen["verify"] is False  # discover decoded every file already
    assert main(["train", str(other), "--out", str(tmp_path / "run2"), "--profile", "quick"]) == 130
    assert seen == {"data": other, "verify": True}  # without a mapping: the folder itself
