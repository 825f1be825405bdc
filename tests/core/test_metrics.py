"""Metrics with ALL as the positive class, checked against their definitions and cases
worked out by hand (the product computes some of them with scikit-learn)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import ConfigError, DatasetError
from allnet_core.metrics import (
    METRIC_NAMES,
    binary_metrics,
    json_safe,
    labels_to_int,
    per_subject_summary,
    prediction_table,
    undefined_reasons,
)


def _random_case(seed, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.25), 0, 1)
    return y, p


def _reference(y, p, threshold):
    """Confusion counts, MCC and ROC AUC from their definitions (no scikit-learn, which the
    product uses): AUC as the fraction of (ALL, HEM) pairs ranked right, ties half."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    called = p >= threshold
    tp, fn = int(np.sum(called & (y == 1))), int(np.sum(~called & (y == 1)))
    fp, tn = int(np.sum(called & (y == 0))), int(np.sum(~called & (y == 0)))
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / den if den else 0.0
    pos, neg = p[y == 1][:, None], p[y == 0][None, :]
    auc = float(np.mean((pos > neg) + 0.5 * (pos == neg)))
    return tn, fp, fn, tp, mcc, auc


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_matches_the_definitions(seed, threshold):
    y, p = _random_case(seed)
    p = np.round(p, 1)  # ties, and probabilities exactly on the threshold
    assert np.any(p == threshold)
    labels = np.where(y == 1, "ALL", "HEM")
    m = binary_metrics(labels, p, threshold=threshold)
    tn, fp, fn, tp, mcc, auc = _reference(y, p, threshold)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["n"] == len(y)
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["mcc"] == pytest.approx(mcc)
    assert m["roc_auc"] == pytest.approx(auc)
    for name in METRIC_NAMES:
        assert -1.0 <= m[name] <= 1.0


def test_small_cases_by_hand():
    # truth ALL ALL ALL HEM HEM, P(ALL) .9 .8 .2 .6 .1: TP 2, FN 1, FP 1, TN 1;
    # MCC = (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6; AUC: 5 of the 6 (ALL, HEM) pairs ranked right
    m = binary_metrics(["ALL", "ALL", "ALL", "HEM", "HEM"], [0.9, 0.8, 0.2, 0.6, 0.1])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["mcc"] == pytest.approx(1 / 6)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # a tie between an ALL and a HEM cell counts half: pairs (.7,.4) (.7,.1) (.4,.4) (.4,.1)
    m = binary_metrics([1, 1, 0, 0], [0.7, 0.4, 0.4, 0.1])
    assert m["roc_auc"] == pytest.approx(3.5 / 4)
    # all ranked wrong: AUC 0, MCC -1 (every call wrong)
    m = binary_metrics([1, 1, 0, 0], [0.2, 0.1, 0.9, 0.8])
    assert m["roc_auc"] == 0.0 and m["mcc"] == pytest.approx(-1.0)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (0, 2, 2, 0)
    # perfect: MCC 1, AUC 1, with probabilities at the ends of [0, 1]
    m = binary_metrics([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0])
    assert m["mcc"] == pytest.approx(1.0) and m["roc_auc"] == 1.0
    # TP 3 FN 1 FP 2 TN 4: MCC = (12 - 2) / sqrt(5 * 4 * 6 * 5) = 10 / sqrt(600)
    m = binary_metrics([1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
                       [0.9, 0.8, 0.7, 0.1, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 4)
    assert m["mcc"] == pytest.approx(10 / math.sqrt(600))
    # AUC: the ALL at .1 beats no HEM and ties one (.1): 0.5; the others beat all 6: 18
    assert m["roc_auc"] == pytest.approx(18.5 / 24)


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_a_probability_on_the_threshold_is_called_all(threshold):
    """``p_all >= threshold`` is ALL, in the metrics, the prediction table and the
    per-subject summary alike (values exactly representable in binary)."""
    m = binary_metrics(["ALL", "HEM"], [threshold, threshold], threshold=threshold)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 0, 1, 0)
    table = pd.DataFrame({"path": ["a.bmp", "b.bmp"], "subject": ["1", "h1"],
                          "label": ["ALL", "HEM"]})
    pred = prediction_table(table, [threshold, threshold], threshold=threshold)
    assert list(pred["class"]) == ["ALL", "ALL"]
    summary = per_subject_summary(pred, threshold=threshold)
    assert list(summary["fraction_all"]) == [1.0, 1.0]
    if threshold > 0:  # just below the threshold is HEM
        below = np.nextafter(threshold, 0.0)
        m = binary_metrics(["ALL", "HEM"], [below, below], threshold=threshold)
        assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (0, 1, 0, 1)


def test_label_forms_agree():
    y, p = _random_case(7, 50)
    a = binary_metrics(y, p)
    b = binary_metrics(np.where(y == 1, "all", "hem"), p)
    c = binary_metrics(y.astype(bool), p)
    assert a == b == c


def test_worked_example_by_hand():
    m = binary_metrics(["ALL", "ALL", "ALL", "HEM", "HEM"], [0.9, 0.8, 0.2, 0.6, 0.1])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)


def test_single_class_is_nan_safe():
    m = binary_metrics(["ALL"] * 4, [0.9, 0.8, 0.7, 0.2])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["specificity"])
    assert m["recall"] == pytest.approx(0.75) and m["precision"] == 1.0
    # one true class: nothing to correlate with (scikit-learn would say 0, which reads as
    # "at chance"); undefined, and the reason is given
    assert math.isnan(m["mcc"])
    assert set(undefined_reasons(m)) == {"specificity", "mcc", "roc_auc"}
    # both true classes, one predicted class: scikit-learn's 0 for a degenerate matrix
    assert binary_metrics(["ALL", "HEM"], [0.9, 0.8])["mcc"] == 0.0
    none_called = binary_metrics(["ALL", "HEM"], [0.1, 0.2])
    assert math.isnan(none_called["precision"])
    assert none_called["f1"] == 0.0
    assert none_called["mcc"] == 0.0  # scikit-learn's convention for a degenerate matrix
    empty = binary_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])


def test_json_safe_makes_strict_json():
    m = binary_metrics(["ALL"] * 3, [0.9, 0.8, 0.7])
    text = json.dumps(json_safe(m), allow_nan=False)
    assert json.loads(text)["roc_auc"] is None


@pytest.mark.parametrize("labels, probs, exc", [
    (["ALL", "HEM"], [0.5], ConfigError),
    (["ALL", "HEM"], [0.5, 1.5], ConfigError),
    (["ALL", "HEM"], [0.5, float("nan")], ConfigError),
    (["ALL", "BLAST"], [0.5, 0.5], DatasetError),
    ([0, 2], [0.5, 0.5], DatasetError),
])
def test_bad_input(labels, probs, exc):
    with pytest.raises(exc):
        binary_metrics(labels, probs)


def test_bad_threshold():
    with pytest.raises(ConfigError, match="threshold"):
        binary_metrics([1, 0], [0.5, 0.5], threshold=2)


def test_labels_to_int():
    np.testing.assert_array_equal(labels_to_int(["ALL", "hem", "All"]), [1, 0, 1])


def test_per_subject_summary():
    table = pd.DataFrame({
        "subject": ["1", "1", "1", "h2", "h2", "h3", "h3", "h3", "h3"],
        "label": ["ALL"] * 3 + ["HEM"] * 6,
        "p_all": [0.9, 0.7, 0.2, 0.1, 0.3, 0.8, 0.9, 0.6, 0.1],
    })
    s = per_subject_summary(table).set_index("subject")
    assert list(s.index) == ["1", "h2", "h3"]
    assert s.loc["1", "cells"] == 3
    assert s.loc["1", "fraction_all"] == pytest.approx(2 / 3)
    assert s.loc["1", "class"] == "ALL" and s.loc["1", "correct"]
    assert s.loc["h2", "fraction_all"] == 0.0 and s.loc["h2", "correct"]
    assert s.loc["h3", "fraction_all"] == pytest.approx(0.75)
    assert s.loc["h3", "class"] == "ALL" and not s.loc["h3", "correct"]
    assert s.loc["h3", "cell_accuracy"] == pytest.approx(0.25)
    assert s.loc["h3", "mean_p_all"] == pytest.approx(0.6)
    # a stricter subject rule flips the call
    strict = per_subject_summary(table, subject_threshold=0.8).set_index("subject")
    assert strict.loc["h3", "class"] == "HEM"


def test_healthy_cells_only_give_specificity_with_reasons_for_the_rest():
    m = binary_metrics(["HEM"] * 4, [0.1, 0.6, 0.2, 0.3])
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (3, 1, 0, 0)
    assert m["specificity"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == 0.0  # the one ALL call was wrong
    for name in ("recall", "f1", "mcc", "roc_auc"):
        assert math.isnan(m[name])
    why = undefined_reasons(m)
    assert why == {"recall": "no ALL cell in the set", "f1": "no ALL cell in the set",
                   "mcc": "needs both classes; the set has HEM only",
                   "roc_auc": "needs both classes; the set has HEM only"}
    assert undefined_reasons(json.loads(json.dumps(json_safe(m)))) == why  # from metrics.json
    assert undefined_reasons(binary_metrics(["ALL", "HEM"], [0.9, 0.1])) == {}


def test_prediction_table_speaks_the_classify_vocabulary():
    table = pd.DataFrame({"path": ["a.bmp", "b.bmp"], "subject": ["1", "h2"],
                          "label": ["ALL", "HEM"]})
    pred = prediction_table(table, [0.7, 0.7], threshold=0.6)
    assert list(pred.columns) == ["source", "subject", "true_class", "class", "p_all"]
    assert list(pred["class"]) == ["ALL", "ALL"] and list(pred["true_class"]) == ["ALL", "HEM"]
    s = per_subject_summary(pred, threshold=0.6).set_index("subject")
    assert s.loc["h2", "true_class"] == "HEM" and not s.loc["h2", "correct"]


def test_per_subject_needs_columns():
    with pytest.raises(DatasetError, match="p_all"):
        per_subject_summary(pd.DataFrame({"subject": ["a"], "label": ["ALL"]}))


def test_mean_std_over_folds_is_the_sample_std():
    """One mean ± std for report.md, report.json and the napari widget: ddof=1, undefined
    values left out, std nan (undefined) for a single fold."""
    from allnet_core.report import mean_std

    folds = [{"accuracy": 0.8, "f1": 0.7}, {"accuracy": 0.9, "f1": None},
             {"accuracy": 1.0, "f1": math.nan}]
    s = mean_std(folds)
    assert s["accuracy"]["mean"] == pytest.approx(0.9)
    assert s["accuracy"]["std"] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert s["f1"]["mean"] == pytest.approx(0.7) and math.isnan(s["f1"]["std"])
    one = mean_std(folds[:1])
    assert one["accuracy"]["mean"] == pytest.approx(0.8) and math.isnan(one["accuracy"]["std"])
    assert math.isnan(mean_std([])["accuracy"]["mean"])

