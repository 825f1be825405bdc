"""How far to trust a trained model: calibration and out-of-scope flags, measured.

Trains (or reuses) the ``allnet demo`` model: the quick profile on a subject-structured
synthetic C-NMC-like dataset (32 subjects x 25 cells drawn at 96 px; ``--profile cpu
--size 450 --subjects 40`` for the ``cpu`` profile on ~1,000 cells drawn at C-NMC's size),
then measures

* calibration: the expected calibration error (ECE, 10 bins of P(ALL)) before and after the
  card's temperature scaling, on the run's hold-out subjects and on cells of new synthetic
  subjects (another seed; 480 subjects x 5 cells by default: 2400 cells, so that the ECE's
  sampling noise is small, from many subjects, because a subject's stain, brightness and
  magnification move all of its cells together and a few dozen subjects can sit well off
  the population's mean), with the ECE a perfectly calibrated model would show on the same cells
  (the noise floor) and a 95 % interval by bootstrap over subjects; the same for the model
  made deliberately over-confident (its logits multiplied by ``--overconfident``,
  temperature refitted on the best fold's validation cells); and, for comparison, Platt
  scaling (temperature and bias on the logit) fitted on the same validation cells;
* out of scope: the share of cells called ``out_of_scope`` among held-out in-distribution
  cells (hold-out subjects, new synthetic subjects) and among cells clearly outside what
  the model saw, cut from real BCCD smear fields (white cells as ``allnet classify`` finds
  them, mostly neutrophils; red cells; platelets; see ``_trust_data.py``) and the real
  C-NMC cells of ``ALLNET_DATA_DIR``.

Usage::

    ALLNET_DATA_DIR=... python benchmarks/trust.py [--out DIR] [--profile quick] [--size 96]
        [--subjects 32] [--test-subjects 480] [--test-cells 5] [--epochs N] [--refit]

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


def _data(out: Path, subjects: int, cells: int, test_subjects: int, test_cells: int,
          size: int) -> tuple[Path, Path]:
    from allnet_core.synthetic import write_cnmc_dataset

    data, test = out / "data", out / f"test_data_{test_subjects}x{test_cells}"
    for folder, seed, n, k in ((data, 0, subjects, cells),
                               (test, 10_000, test_subjects, test_cells)):
        if not (folder / "C-NMC_Leukemia").is_dir():
            write_cnmc_dataset(folder, subjects=n, cells_per_subject=k, seed=seed, size=size)
    return data, test


def _train(data: Path, run: Path, profile: str, epochs: int | None, refit: bool):
    """The run's best model with a card (trained, resumed, or its card refitted)."""
    import pandas as pd

    from allnet_core.model.card import read_card
    from allnet_core.training import TrainConfig, cross_validate
    from allnet_core.training.loop import _Run
    from allnet_core.training.trust import write_trust

    report = run / "report.json"
    if not report.is_file():
        config = TrainConfig.from_profile(profile, epochs=epochs)
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


def _images(folder: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    from allnet_core.datasets import discover
    from allnet_core.io import read_rgb

    table = discover(folder)
    return ([read_rgb(p) for p in table["path"]], (table["label"] == "ALL").to_numpy(int),
            table["subject"].astype(str).to_numpy())


def _platt(y, p):
    """Platt scaling on the logit, ``sigmoid(a logit(p) + b)``, fitted as the temperature
    is (negative log-likelihood of Platt's targets): the calibration map with a bias."""
    from scipy.optimize import minimize

    from allnet_core.model.calibration import _nll, _platt_targets, _sigmoid, p_to_logit

    z, t = p_to_logit(p), _platt_targets(np.asarray(y, float))
    a, b = minimize(lambda ab: _nll(t, _sigmoid(ab[0] * z + ab[1])), [1.0, 0.0],
                    method="Nelder-Mead").x
    return lambda q: _sigmoid(a * p_to_logit(q) + b), float(a), float(b)


def _subject_interval(y, p, subjects, reps: int = 1000) -> list[float]:
    """95 % percentile bootstrap interval of the ECE, resampling subjects."""
    from allnet_core.model.calibration import expected_calibration_error

    rng = np.random.default_rng(0)
    groups = [np.flatnonzero(subjects == s) for s in np.unique(subjects)]
    values = [expected_calibration_error(y[pick], p[pick]) for pick in (
        np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        for _ in range(reps))]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _ece_entry(y, subjects, p_raw, p_val, y_val, calibration) -> dict:
    """ECE raw, calibrated (with its noise floor and subject interval) and by Platt."""
    from allnet_core.model.calibration import ece_noise_floor, expected_calibration_error

    p = calibration.apply(p_raw)
    platt, a, b = _platt(y_val, p_val)
    return {"cells": int(len(y)), "subjects": int(len(np.unique(subjects))),
            "temperature": calibration.temperature,
            "ece_before": expected_calibration_error(y, p_raw),
            "ece_after": expected_calibration_error(y, p),
            "ece_floor_after": ece_noise_floor(p)[0],
            "ece_after_interval": _subject_interval(y, p, subjects),
            "platt": {"a": a, "b": b, "ece": expected_calibration_error(y, platt(p_raw))},
            "accuracy": float(np.mean((p >= 0.5) == y))}


def _calibration(clf, best, best_fold: int, run: Path, test, factor: float) -> dict:
    """ECE before/after on new subjects, for the model and an over-confident variant."""
    import pandas as pd

    from allnet_core.backend import get_keras
    from allnet_core.inference import Classifier
    from allnet_core.io import read_rgb
    from allnet_core.model.calibration import fit_temperature

    crops, y, subjects = test
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    val = splits[splits["role"] == f"fold_{best_fold}_val"]
    val_crops, y_val = [read_rgb(p) for p in val["path"]], (val["label"] == "ALL").to_numpy(int)
    out = {"new_subjects": _ece_entry(y, subjects, clf.predict_cells(crops).p_all_raw,
                                      clf.predict_cells(val_crops).p_all_raw, y_val,
                                      clf.card.calibration)}
    keras = get_keras()
    model = keras.saving.load_model(best, compile=False)
    logits = model.get_layer("logits")
    logits.set_weights([w * factor for w in logits.get_weights()])
    variant = Classifier(model, source=f"logits x {factor:g}")
    p_val = variant.predict_cells(val_crops).p_all_raw
    out["overconfident"] = {"factor": factor, **_ece_entry(
        y, subjects, variant.predict_cells(crops).p_all_raw, p_val, y_val,
        fit_temperature(y_val, p_val))}
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
    parser.add_argument("--profile", default="quick", help="training profile (quick)")
    parser.add_argument("--size", type=int, default=96,
                        help="side of the synthetic cells in pixels (96; 450 like C-NMC)")
    parser.add_argument("--epochs", type=int, default=None, help="the profile's")
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--cells", type=int, default=25)
    parser.add_argument("--test-subjects", type=int, default=480)
    parser.add_argument("--test-cells", type=int, default=5, help="cells per new subject")
    parser.add_argument("--overconfident", type=float, default=4.0)
    parser.add_argument("--refit", action="store_true", help="recompute the card")
    args = parser.parse_args(argv)
    from allnet_core.inference import Classifier

    root = os.environ.get("ALLNET_DATA_DIR")
    root = Path(root) if root and Path(root).is_dir() else None
    data, test_dir = _data(args.out, args.subjects, args.cells, args.test_subjects,
                           args.test_cells, args.size)
    best, best_fold = _train(data, args.out / "run", args.profile, args.epochs, args.refit)
    clf = Classifier.load(best)
    card = clf.card.data
    test = _images(test_dir)
    hold = card["holdout"]
    results = {
        "model": str(best), "headline": clf.assessment.headline,
        "holdout": {k: hold.get(k) for k in ("images", "subjects", "ece_before", "ece_after",
                                             "ece_floor_after", "uncertain_fraction",
                                             "out_of_scope_fraction")},
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
    print("| cells | T | ECE raw | ECE calibrated (95 % CI over subjects) | noise floor | "
          "ECE, Platt instead |\n|---|---|---|---|---|---|")
    floor = hold.get("ece_floor_after")
    print(f"| hold-out ({hold['images']} cells, {hold['subjects']} subjects) | "
          f"{cal['new_subjects']['temperature']:.2f} | {hold['ece_before']:.3f} | "
          f"{hold['ece_after']:.3f} | {'n/a' if floor is None else f'{floor:.3f}'} | |")
    for name, v in (("new subjects", cal["new_subjects"]),
                    (f"new subjects, logits x {cal['overconfident']['factor']:g}",
                     cal["overconfident"])):
        lo, hi = v["ece_after_interval"]
        print(f"| {name} ({v['cells']} cells, {v['subjects']} subjects) | "
              f"{v['temperature']:.2f} | {v['ece_before']:.3f} | {v['ece_after']:.3f} "
              f"({lo:.3f} to {hi:.3f}) | {v['ece_floor_after']:.3f} | "
              f"{v['platt']['ece']:.3f} (a {v['platt']['a']:.2f}, b {v['platt']['b']:.2f}) |")
    print("\n| cells | n | flagged out of scope |\n|---|---|---|")
    for name, v in r["out_of_scope"].items():
        print(f"| {name} | {v['cells']} | {100 * v['flagged']:.1f} % |")


if __name__ == "__main__":
    sys.exit(main())
