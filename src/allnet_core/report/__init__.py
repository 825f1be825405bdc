"""Reports of training runs and evaluations: Markdown, JSON and PNG plots.

Modules
-------
:mod:`~allnet_core.report.tables`
    The metric tables: :data:`TABLE_METRICS`, :func:`mean_std`, :func:`metrics_table`,
    :func:`format_metric` (ROC AUC in [0, 1], the others in percent), :func:`metrics_line`,
    :func:`class_counts` and :func:`undefined_note`.
:mod:`~allnet_core.report.plots`
    :func:`plot_curves` and :func:`plot_confusion` (matplotlib, Agg canvas).
:mod:`~allnet_core.report.writers`
    :func:`write_run_report` and :func:`write_evaluation_report`.
"""

from allnet_core.report.plots import plot_confusion, plot_curves
from allnet_core.report.tables import (
    METRIC_LABELS,
    TABLE_METRICS,
    class_counts,
    format_metric,
    mean_std,
    metrics_line,
    metrics_table,
    undefined_note,
)
from allnet_core.report.writers import write_evaluation_report, write_run_report

__all__ = [
    "METRIC_LABELS",
    "TABLE_METRICS",
    "class_counts",
    "format_metric",
    "mean_std",
    "metrics_line",
    "metrics_table",
    "plot_confusion",
    "plot_curves",
    "undefined_note",
    "write_evaluation_report",
    "write_run_report",
]
