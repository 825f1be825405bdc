"""How far to trust a trained model: calibration and out-of-scope flags, measured.

Trains (or reuses) the ``allnet demo`` model: the quick profile on a subject-structured
synthetic C-NMC-like dataset (32 subjects x 25 cells), then measures

* calibration: the expected calibration error (ECE, 10 bins of P(ALL)) before and after the
  card's temperature scaling, on the run's hold-out subjects and on cells of new synthetic
  subjects (another seed); and the same for the model made deliberately over-confident
  (its logits multiplied by ``--overconfident``, temperature refitted on the best fold's
  validation cells);
* out of scope: the share of cells called ``out_of_scope`` among held-out in-distribution
  cells (hold-out subjects, new synthetic subjects) and among cells clearly outside what
  the model saw, cut from real BCCD smear fields (white cells as ``allnet classify`` finds
  them, mostly neutrophils; red cells; platelets; see ``_trust_data.py``) and the real
  C-NMC cells of ``ALLNET_DATA_DIR``.

Usage::

    ALLNET_DATA_DIR=... python benchmarks/trust.py [--out DIR] [--epochs 15] [--refit]

About 45 minutes on 2 busy CPU cores for the training (reused when ``DIR/run`` is complete),
a few minutes for the measurements. Prints a Markdown table and writes ``DIR/trust.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _trust_data  # noqa: E402


def _data(out: Path, subjects: int, cells: int, test_subjects: int) -> tuple[Path, Path]:
    from allnet_core.synthetic import write_cnmc_dataset

    data, test = out / "data", out / "test_data"
    for folder, seed, n in ((data, 0, subjects), (test, 10_000, test_subjects)):
        if not (folder / "C-NMC_Leukemia").is_dir():
            write_cnmc_dataset(folder, subjects=n, cells_per_subject=cells, seed=seed, size=96)
    return data, test


def _train(data: Path, run: Path, epochs: int | None, refit: bool):
    """The run's best model with a card (trained, resumed, or its card refitted)."""
    import pandas as pd

    from allnet_core.model.card import read_card
    from allnet_core.training import TrainConfig, cross_validate
    from allnet_core.training.loop import _Run
    from allnet_core.training.trust import write_trust

    report = run / "report.json"
    if not report.is_file():
        config = TrainConfig.from_profile("quick", epochs=epochs)
        t0 = time.perf_counter()
        cross_validate(data, config, run, resume=True)
        print(f"trained in {(time.perf_counter() - t0) / 60:.1f} min", file=sys.stderr)
    best_fold = json.loads(report.read_text())["best_fold"]
    best = run / f"fold_{best_fold}" / "model.keras"
    card = read_card(best)
    if refit or card is None or not card.usable:
        splits = pd.read_csv(run / "splits.csv", dtype=str)
        write_trust(_Run(TrainConfig.from_json(run / "config.json"), run, None, None),
                    splits, best_fold)
    return best, best_fold


def _images(folder: Path) -> tuple[list[np.ndarray], np.ndarray]:
    from allnet_core.datasets import discover
    from allnet_core.io import read_rgb

    table = discover(folder)
    return [read_rgb(p) for p in table["path"]], (table["label"] == "ALL").to_numpy(int)


def _calibration(clf, best, best_fold: int, run: Path, test, factor: float) -> dict:
    """ECE before/after on new subjects, for the model and an over-confident variant."""
    import pandas as pd

    from allnet_core.backend import get_keras
    from allnet_core.inference import Classifier
    from allnet_core.model.calibration import expected_calibration_error, fit_temperature

    crops, y = test
    scores = clf.predict_cells(crops)
    out = {"new_subjects": {
        "cells": int(len(y)), "temperature": clf.card.calibration.temperature,
        "ece_before": expected_calibration_error(y, scores.p_all_raw),
        "ece_after": expected_calibration_error(y, scores.p_all),
        "accuracy": float(np.mean((scores.p_all >= 0.5) == y))}}
    keras = get_keras()
    model = keras.saving.load_model(best, compile=False)
    logits = model.get_layer("logits")
    logits.set_weights([w * factor for w in logits.get_weights()])
    variant = Classifier(model, source=f"logits x {factor:g}")
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    val = splits[splits["role"] == f"fold_{best_fold}_val"]
    from allnet_core.io import read_rgb

    p_val = variant.predict_cells([read_rgb(p) for p in val["path"]]).p_all_raw
    cal = fit_temperature((val["label"] == "ALL").to_numpy(int), p_val)
    p = variant.predict_cells(crops).p_all_raw
    out["overconfident"] = {"factor": factor, "temperature": cal.temperature,
                            "ece_before": expected_calibration_error(y, p),
                            "ece_after": expected_calibration_error(y, cal.apply(p))}
    return out


def _flag_rates(clf, root: Path | None, test_crops) -> dict:
    """Share of cells called out of scope, per kind of cell."""
    from allnet_core.io import read_rgb

    def rate(crops):
        return {"cells": len(crops),
                "flagged": float(np.mean(clf.predict_cells(crops).oos_score > 1))}

    out = {"new_subjects": rate(test_crops)}
    if root is None:
        return out
    fields = {"wbc": 100, "rbc": 100, "platelets": 292}
    for kind in _trust_data.KINDS:
        out[f"bccd_{kind}"] = rate(_trust_data.bccd_crops(root, kind, fields=fields[kind]))
    cnmc = sorted((root / "cnmc").rglob("*.bmp"))
    out["cnmc_real"] = rate([read_rgb(p) for p in cnmc])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("trust-benchmark"))
    parser.add_argument("--epochs", type=int, default=None, help="quick profile's 15")
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--cells", type=int, default=25)
    parser.add_argument("--test-subjects", type=int, default=24)
    parser.add_argument("--overconfident", type=float, default=4.0)
    parser.add_argument("--refit", action="store_true", help="recompute the card")
    args = parser.parse_args(argv)
    from allnet_core.inference import Classifier

    root = os.environ.get("ALLNET_DATA_DIR")
    root = Path(root) if root and Path(root).is_dir() else None
    data, test_dir = _data(args.out, args.subjects, args.cells, args.test_subjects)
    best, best_fold = _train(data, args.out / "run", args.epochs, args.refit)
    clf = Classifier.load(best)
    card = clf.card.data
    test = _images(test_dir)
    hold = card["holdout"]
    results = {
        "model": str(best), "headline": clf.assessment.headline,
        "holdout": {k: hold[k] for k in ("images", "subjects", "ece_before", "ece_after",
                                         "uncertain_fraction", "out_of_scope_fraction")},
        "calibration": _calibration(clf, best, best_fold, args.out / "run", test,
                                    args.overconfident),
        "out_of_scope": _flag_rates(clf, root, test[0]),
    }
    results["out_of_scope"]["holdout"] = {"cells": hold["images"],
                                          "flagged": hold["out_of_scope_fraction"]}
    (args.out / "trust.json").write_text(json.dumps(results, indent=2) + "\n")
    _print(results)
    return 0


def _print(r: dict) -> None:
    cal, hold = r["calibration"], r["holdout"]
    print(f"model: {r['model']}\n{r['headline']}\n")
    print("| cells | T | ECE raw | ECE calibrated |\n|---|---|---|---|")
    print(f"| hold-out ({hold['images']} cells, {hold['subjects']} subjects) | "
          f"{cal['new_subjects']['temperature']:.2f} | {hold['ece_before']:.3f} | "
          f"{hold['ece_after']:.3f} |")
    n = cal["new_subjects"]
    print(f"| new subjects ({n['cells']} cells) | {n['temperature']:.2f} | "
          f"{n['ece_before']:.3f} | {n['ece_after']:.3f} |")
    o = cal["overconfident"]
    print(f"| new subjects, logits x {o['factor']:g} | {o['temperature']:.2f} | "
          f"{o['ece_before']:.3f} | {o['ece_after']:.3f} |\n")
    print("| cells | n | flagged out of scope |\n|---|---|---|")
    for name, v in r["out_of_scope"].items():
        print(f"| {name} | {v['cells']} | {100 * v['flagged']:.1f} % |")


if __name__ == "__main__":
    sys.exit(main())
