"""The trust part of reports: the model card's headline and warnings, calibration (ECE and
a reliability diagram before and after), out-of-scope rates and per-subject calls.

Used by :func:`allnet_core.report.write_run_report` (from the best model's card) and
:func:`allnet_core.report.write_evaluation_report` (from an evaluation's predictions); the
reliability diagram is :func:`allnet_core.report.plots.plot_reliability`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from allnet_core.report.plots import plot_reliability

__all__ = ["add_card", "card_markdown", "evaluation_markdown", "floor_note"]


def _num(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def floor_note(summary: Mapping[str, Any]) -> str:
    """``" (a perfectly calibrated model would show about 0.037 on these cells, from
    sampling noise alone)"``, or ``""`` when ``summary`` has no floor (older cards)."""
    floor = summary.get("ece_floor_after")
    if floor is None or not math.isfinite(float(floor)):
        return ""
    return (f" (a perfectly calibrated model would show about {float(floor):.3f} on these "
            "cells, from sampling noise alone: the ECE of a small set is biased upwards)")


def _calls_table(per_subject) -> list[str]:
    lines = ["| subject | truth | cells | ALL | HEM | uncertain | out of scope | "
             "ALL fraction (95 % CI) |", "|---|---|---|---|---|---|---|---|"]
    for r in per_subject:
        frac = r.get("all_fraction")
        ci = (f"{100 * frac:.0f} % ({100 * r['all_fraction_low']:.0f} to "
              f"{100 * r['all_fraction_high']:.0f} %)"
              if frac is not None and math.isfinite(frac) else "n/a")
        truth = r.get("true_class", r.get("label", ""))  # "label" in cards before the merge
        lines.append(f"| {r['subject']} | {truth} | {r['cells']} | {r['ALL']} | "
                     f"{r['HEM']} | {r['uncertain']} | {r['out_of_scope']} | {ci} |")
    return lines


def card_markdown(card: Mapping[str, Any], card_file: str,
                  reliability_png: str = "reliability.png") -> str:
    """The run report's section on the best model's card."""
    from allnet_core.model.card import RESEARCH_USE, ModelCard, assess

    verdict = assess(ModelCard(dict(card), Path(card_file)))
    hold = card.get("holdout") or {}
    cal = card.get("calibration") or {}
    oos = card.get("out_of_scope") or {}
    parts = ["## How far to trust this model", "", f"**{RESEARCH_USE}**", "",
             f"Model card: `{card_file}` (copy it and `model.card.npz` with the model).", "",
             verdict.headline + ".", ""]
    parts += [f"**Warning: {w}**" for w in verdict.warnings] + ([""] if verdict.warnings else [])
    parts += [
        f"Intervals: {hold.get('interval', 'n/a')}.", "",
        f"Calibration: temperature scaling, T = {_num(cal.get('temperature'), 3)}, fitted on "
        f"the {cal.get('n', '?')} {cal.get('fitted_on', '')}. Expected calibration error on "
        f"the hold-out: {_num(hold.get('ece_before'), 3)} raw, "
        f"{_num(hold.get('ece_after'), 3)} calibrated{floor_note(hold)}.", "",
        f"![reliability diagram]({reliability_png})", "",
        f"Calls on the hold-out (uncertain band {hold.get('uncertain_band')}): "
        f"{100 * (hold.get('uncertain_fraction') or 0):.1f} % uncertain, "
        f"{100 * (hold.get('out_of_scope_fraction') or 0):.1f} % out of scope. The "
        f"out-of-scope threshold is the {_num(oos.get('percentile'), 1)}th percentile of "
        f"{oos.get('n_validation', '?')} {oos.get('threshold_on', '')} ({oos.get('method', '')};"
        f" features entering layer `{oos.get('feature_layer', '')}`).", "",
        "### Hold-out calls per subject", "", *_calls_table(hold.get("per_subject") or []),
        ""]
    return "\n".join(parts)


def add_card(report: dict[str, Any], card: Mapping[str, Any], run_dir: Path,
             best_fold: int) -> str:
    """Put the card's figures into a run's ``report`` (``report.json``), write
    ``reliability.png``; return the Markdown section for ``report.md``."""
    card_file = f"fold_{best_fold}/model.card.json"
    hold = card["holdout"]
    plot_reliability(hold, Path(run_dir) / "reliability.png")
    report["card"] = card_file
    report["holdout_intervals"] = hold["metrics"]
    report["calibration"] = {"temperature": card["calibration"]["temperature"],
                             "ece_before": hold["ece_before"], "ece_after": hold["ece_after"]}
    return card_markdown(card, card_file)


def evaluation_markdown(summary: Mapping[str, Any], out_dir: str | os.PathLike) -> str:
    """Write an evaluation's ``reliability.png``; return the report's calibration section.

    ``summary`` is :func:`allnet_core.model.calibration.calibration_summary`'s, with
    ``calibrated`` (whether the model had a usable card).
    """
    from allnet_core.model.card import RESEARCH_USE

    plot_reliability(summary, Path(out_dir) / "reliability.png", title="Reliability")
    how = ("with the model card's calibration" if summary.get("calibrated") else
           "the model has no usable card, so P(ALL) is not calibrated")
    return "\n".join([
        "## Calibration", "", f"**{RESEARCH_USE}**", "",
        f"Expected calibration error: {_num(summary.get('ece_before'), 3)} raw, "
        f"{_num(summary.get('ece_after'), 3)} calibrated ({how}){floor_note(summary)}.", "",
        "![reliability diagram](reliability.png)", ""])
