"""``allnet model info``: print a model's card (what it saw, how it was tested, how far to
trust it) without loading the model. Only argparse and pathlib at import time.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def register(subparsers) -> None:
    """Add the ``model`` command group (``model info``)."""
    p = subparsers.add_parser(
        "model", help="facts about a trained model (its model card)",
        description="Facts about a trained model, read from the model card beside it "
        "(model.card.json): training data, protocol, hold-out metrics with 95 % intervals, "
        "calibration and the out-of-scope reference.")
    sub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = sub.add_parser("info", help="print a model's card",
                          description="Print the model card of a .keras model or of the best "
                          "model of a training run folder. A model without a card is shown "
                          "as untested. The model itself is not loaded.")
    info.add_argument("model", type=Path, help="a .keras model or a training run folder")
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> int:
    from allnet_core.model.card import assess, read_card
    from allnet_core.model.files import find_model_file

    path = find_model_file(args.model)
    card = read_card(path)
    if args.json:
        print(json.dumps(card.data if card is not None else None, indent=2))
        return 0
    print(format_card(path, card, assess(card)))
    return 0


def _pct(m: dict[str, Any] | None, scale: float = 100.0, unit: str = " %",
         digits: int = 1) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    text = f"{scale * m['value']:.{digits}f}{unit}"
    if m.get("low") is not None and m.get("high") is not None:
        text += f"  ({scale * m['low']:.{digits}f} to {scale * m['high']:.{digits}f})"
    return text


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else f"{v:.{digits}f}"


def format_card(path: Path, card, verdict) -> str:
    """The card as text: headline and warnings first, then the details."""
    from allnet_core.model.card import RESEARCH_USE
    from allnet_core.report.trust import floor_note

    lines = [f"model: {path}", RESEARCH_USE, "", verdict.headline]
    lines += [f"WARNING: {w}" for w in verdict.warnings]
    if verdict.untested:
        return "\n".join(lines)
    d = card.data
    data, p, hold = d.get("training_data", {}), d.get("protocol", {}), d.get("holdout", {})
    cal, oos = d.get("calibration", {}), d.get("out_of_scope", {})
    size = "x".join(str(v) for v in d.get("input_size", []))
    lines += [
        "", f"card: {card.path} (matches the model file)",
        f"model: input {size}, classes {', '.join(d.get('class_names', []))} (positive "
        f"{d.get('positive_class')}); allnet {d.get('allnet_version')}, Keras "
        f"{d.get('keras_version')} ({d.get('keras_backend')}); created {d.get('created')}",
        "training data: " + ", ".join(
            f"{data.get('images', {}).get(c, '?')} {c} images of "
            f"{data.get('subjects', {}).get(c, '?')} subjects" for c in d.get("class_names", []))
        + f"; fingerprint {data.get('fingerprint')}",
        f"protocol: split by {p.get('split')}, hold-out {p.get('holdout')}, {p.get('folds')} "
        f"folds (best: fold {p.get('best_fold')}), seed {p.get('seed')}, profile "
        f"{p.get('profile')}, {p.get('epochs')} epochs, augmentation "
        f"{'on' if p.get('augment') else 'off'}; {p.get('balancing')}",
        f"hold-out: {hold.get('images')} cells of {hold.get('subjects')} subjects; "
        f"{hold.get('interval')}:"]
    for name, m in (hold.get("metrics") or {}).items():
        lines.append(f"  {name:<12} " + (_pct(m, 1.0, "", 3) if name == "mcc" else _pct(m)))
    lines += [
        f"calibration: temperature {_num(cal.get('temperature'))}, fitted on {cal.get('n')} "
        f"{cal.get('fitted_on')}; hold-out ECE {_num(hold.get('ece_before'))} raw, "
        f"{_num(hold.get('ece_after'))} calibrated{floor_note(hold)}",
        f"uncertain: calibrated P(ALL) strictly inside {hold.get('uncertain_band')}: "
        f"{100 * (hold.get('uncertain_fraction') or 0):.1f} % of hold-out cells",
        f"out of scope: {oos.get('method')} (features entering layer "
        f"{oos.get('feature_layer')!r}) to {oos.get('n_reference')} {oos.get('fitted_on')}; "
        f"threshold: {_num(oos.get('percentile'), 1)}th percentile of {oos.get('n_validation')}"
        f" {oos.get('threshold_on')}; {100 * (oos.get('holdout_flagged') or 0):.1f} % of "
        "hold-out cells flagged",
        "hold-out per subject: cells, ALL, HEM, uncertain, out of scope, ALL fraction of the "
        "confident in-scope cells (95 % CI)"]
    for r in hold.get("per_subject") or []:
        frac = r.get("all_fraction")
        ci = "-" if frac is None else (f"{100 * frac:.0f} % ({100 * r['all_fraction_low']:.0f}"
                                       f" to {100 * r['all_fraction_high']:.0f} %)")
        lines.append(f"  {r['subject']:<8} {r.get('true_class', ''):<4} {r['cells']:>5} "
                     f"{r['ALL']:>5} {r['HEM']:>5} {r['uncertain']:>5} {r['out_of_scope']:>5}"
                     f"  {ci}")
    return "\n".join(lines)
