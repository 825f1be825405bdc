"""A config value as its field's declared type (:func:`_typed`), or a ConfigError naming it.

Only the standard library, NumPy and :mod:`allnet_core.errors` are imported here.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from allnet_core.errors import ConfigError

__all__: list[str] = []


def _typed(name: str, value: Any, kind: str) -> Any:
    """``value`` as the field's type (``kind``: the annotation's name), or a ConfigError."""
    got = f"got {value!r} ({type(value).__name__})"
    if kind == "bool":
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise ConfigError(f"{name} must be true or false, {got}")
    if kind == "str | None" and (value is None or isinstance(value, os.PathLike)):
        return None if value is None else os.fspath(value)
    if kind in ("str", "str | None"):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, {got}")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be {'a whole' if kind == 'int' else 'a'} number, {got}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, {got}")
    if kind == "int":
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number, {got}")
        return int(value)
    return float(value)
