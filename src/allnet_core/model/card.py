"""The model card: what a trained model saw, how it was tested, how far to trust it.

A card travels beside its model: ``model.keras`` has ``model.card.json`` (facts, metrics,
calibration) and ``model.card.npz`` (the arrays of the out-of-scope reference, see
:mod:`~allnet_core.model.scope`). Copy the three files together to share a model. The
card names the model file's SHA-256: a card beside another model is not used (the model
is then untested), so a card never vouches for a model it did not describe.

:func:`read_card` finds and checks the card of a model file; :func:`assess` turns a card
(or its absence) into the headline and the warnings that every front end shows
(``allnet classify``, ``allnet model info``, the napari widgets). Only the standard library
and numpy here: napari reads cards without loading Keras.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allnet_core.datasets.listing import file_sha256
from allnet_core.model.calibration import Calibration
from allnet_core.model.scope import ScopeReference

__all__ = [
    "CARD_FORMAT",
    "RESEARCH_USE",
    "Assessment",
    "ModelCard",
    "arrays_path",
    "assess",
    "card_path",
    "read_card",
    "write_card",
]

CARD_FORMAT = "allnet-model-card/1"
#: Shown wherever calls are shown.
RESEARCH_USE = "Research use only, not for diagnosis."
UNTESTED = ("untested model: no card. Nothing records what it was trained on or how it "
            "scored on held-out patients; treat its calls as unverified.")
LEAKY = ("trained with the per-image split (leaky): cells of the same patients were in "
         "training and in the hold-out, so its hold-out figures overestimate how it does "
         "on new patients.")
AT_CHANCE = "not better than chance on its hold-out: its calls are not meaningful."


def card_path(model_path: str | os.PathLike) -> Path:
    """``model.card.json`` beside ``model.keras``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.card.json")


def arrays_path(model_path: str | os.PathLike) -> Path:
    """``model.card.npz`` beside ``model.keras``."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.card.npz")


@dataclass
class ModelCard:
    """A model's card as read from disk.

    Attributes
    ----------
    data : dict
        The JSON content (see ``docs/trust.md`` for its fields).
    path : pathlib.Path
        The card file.
    scope : ScopeReference or None
        The out-of-scope reference, when the card has one.
    problem : str or None
        Why the card cannot be trusted (it names another model file, its arrays are
        missing...); the model is then treated as untested.
    """

    data: dict[str, Any]
    path: Path
    scope: ScopeReference | None = None
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """True when the card describes this model file and can be applied."""
        return self.problem is None

    @property
    def calibration(self) -> Calibration:
        """The card's calibration; the identity when the card is not usable."""
        return Calibration.from_dict(self.data.get("calibration") if self.usable else None)


def write_card(model_path: str | os.PathLike, data: dict[str, Any],
               scope: ScopeReference | None = None) -> Path:
    """Write ``data`` as the card of ``model_path`` (and the scope arrays), atomically.

    ``format``, ``model_file`` and ``model_sha256`` are filled in; with ``scope`` its
    arrays go to ``model.card.npz`` and ``out_of_scope`` records their SHA-256.
    """
    import numpy as np

    from allnet_core.io import atomic_write, write_json
    from allnet_core.metrics import json_safe

    model_path = Path(model_path)
    data = {"format": CARD_FORMAT, **data, "model_file": model_path.name,
            "model_sha256": file_sha256(model_path)}
    if scope is not None:
        npz = arrays_path(model_path)
        with atomic_write(npz) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **scope.arrays())
        data["out_of_scope"] = {**data.get("out_of_scope", {}), **scope.meta,
                                "threshold": float(scope.threshold), "arrays": npz.name,
                                "arrays_sha256": file_sha256(npz),
                                "view_scales": {k: float(v.scale)
                                                for k, v in scope.views.items()}}
    return write_json(card_path(model_path), json_safe(data))


def read_card(model_path: str | os.PathLike, verify: bool = True) -> ModelCard | None:
    """The card beside a model file, or None when there is none.

    Parameters
    ----------
    model_path : path-like
        The ``.keras`` file.
    verify : bool
        Check that the card names this file's SHA-256 (reads the whole model file once);
        without it only the file name is compared.

    Returns
    -------
    ModelCard or None
        A card that cannot be trusted has its :attr:`~ModelCard.problem` set.
    """
    path = card_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            raise ValueError(f"not a {CARD_FORMAT} file")
    except (OSError, ValueError) as exc:
        return ModelCard({}, path, problem=f"the card {path.name} is not readable ({exc})")
    card = ModelCard(data, path)
    if verify and data.get("model_sha256") != file_sha256(model_path):
        card.problem = (f"the card {path.name} describes another model file (its SHA-256 "
                        "differs): it is ignored")
        return card
    card.scope, problem = _read_scope(model_path, data.get("out_of_scope"))
    card.problem = card.problem or problem
    return card


def _read_scope(model_path, meta) -> tuple[ScopeReference | None, str | None]:
    import numpy as np

    if not meta or not meta.get("arrays"):
        return None, None
    npz = Path(model_path).with_name(str(meta["arrays"]))
    if not npz.is_file() or file_sha256(npz) != meta.get("arrays_sha256"):
        return None, f"the card's arrays {npz.name} are missing or changed"
    try:
        with np.load(npz, allow_pickle=False) as arrays:
            return ScopeReference.from_arrays(dict(arrays), meta), None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        return None, f"the card's arrays {npz.name} are not readable ({exc})"


# --------------------------------------------------------------------------- assessment


@dataclass(frozen=True)
class Assessment:
    """What a front end shows about a model before its calls.

    Attributes
    ----------
    headline : str
        One line: hold-out accuracy and MCC with 95 % intervals, subjects, protocol.
    warnings : tuple of str
        Untested, leaky split, at chance, card not matching.
    at_chance : bool
        The card's hold-out MCC interval includes 0, or the card gives none. False for a
        model without a usable card: that is ``untested``, its own warning.
    untested : bool
        No usable card.
    """

    headline: str
    warnings: tuple[str, ...] = ()
    at_chance: bool = False
    untested: bool = False


def _ci(metric: dict[str, Any] | None, scale: float = 100.0, unit: str = " %",
        digits: int = 1) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    v, lo, hi = (metric.get(k) for k in ("value", "low", "high"))
    text = f"{scale * v:.{digits}f}{unit}"
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" (95 % CI {scale * lo:.{digits}f} to {scale * hi:.{digits}f})"
    return text


def headline(card: ModelCard) -> str:
    """``Hold-out: accuracy ..., MCC ... on N cells of S subjects; split by ...``."""
    d = card.data
    hold = d.get("holdout") or {}
    m = hold.get("metrics") or {}
    p = d.get("protocol") or {}
    return (f"Hold-out: accuracy {_ci(m.get('accuracy'))}, MCC "
            f"{_ci(m.get('mcc'), 1.0, '', 2)} on {hold.get('images', '?')} cells of "
            f"{hold.get('subjects', '?')} subjects; split by {p.get('split', '?')}, "
            f"{p.get('folds', '?')} folds, profile {p.get('profile', '?')}, seed "
            f"{p.get('seed', '?')}")


def assess(card: ModelCard | None) -> Assessment:
    """Headline and warnings for a model's card (None: no card)."""
    if card is None:
        return Assessment("untested model: no card", (UNTESTED,), untested=True)
    if not card.usable:
        return Assessment("untested model: its card cannot be used",
                          (f"untested model: {card.problem}.",), untested=True)
    warnings = []
    if (card.data.get("protocol") or {}).get("split") == "image":
        warnings.append(LEAKY)
    mcc = ((card.data.get("holdout") or {}).get("metrics") or {}).get("mcc") or {}
    low = mcc.get("low")
    at_chance = low is None or not math.isfinite(low) or low <= 0.0
    if at_chance:
        warnings.append(AT_CHANCE if low is not None and math.isfinite(low) else
                        "no interval for its hold-out MCC (too few subjects): "
                        + AT_CHANCE)
    return Assessment(headline(card), tuple(warnings), at_chance=at_chance)
