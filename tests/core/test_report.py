"""Report tables and plots: ROC AUC as a number, undefined metrics, the curves plot."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from allnet_core.metrics import binary_metrics
from allnet_core.report import format_metric, metrics_line, plot_curves, undefined_note
from allnet_core.report.plots import _curves_figure


def _history(epochs: int) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "loss": 1 / e, "accuracy": 0.5 + 0.04 * e,
                         "val_loss": 1.1 / e, "val_accuracy": 0.5 + 0.03 * e})


@pytest.mark.parametrize("epochs", [1, 3])
def test_curves_show_every_epoch_on_whole_number_ticks(epochs, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _curves_figure({1: _history(epochs), 2: _history(epochs)})
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 4
        for line in lines:  # a single epoch is a point: it needs a marker to be seen
            assert (line.get_marker() not in (None, "None", "")) == (epochs == 1)
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert plot_curves({1: _history(epochs)}, tmp_path / "c.png").stat().st_size > 1000


def test_auc_is_a_number_and_undefined_metrics_say_why():
    m = binary_metrics(["ALL", "HEM", "ALL", "HEM"], [0.9, 0.2, 0.4, 0.6])
    assert format_metric("roc_auc", m["roc_auc"]) == f"{m['roc_auc']:.3f}"
    assert format_metric("accuracy", m["accuracy"]) == "50.00 %"
    assert "ROC AUC 0.750" in metrics_line(m) and undefined_note(m) == ""
    healthy = binary_metrics(["HEM", "HEM"], [0.1, 0.2])
    assert math.isnan(healthy["mcc"]) and format_metric("mcc", None) == "n/a"
    assert "Specificity 100.00 %" in metrics_line(healthy)
    assert undefined_note(healthy) == (
        "n/a: Recall, F1 (no ALL cell in the set); Precision (no cell called ALL); "
        "MCC, ROC AUC (needs both classes; the set has HEM only)")
