"""Numbers given as settings (profiles, autoscaling): one clear FluentError naming the setting."""

from __future__ import annotations

import math
from typing import Any

from .errors import FluentError


def check_number(name: str, value: Any, *, positive: bool, finite: bool = False) -> float:
    """``value`` as a float if it is a number (not a bool, not NaN) that is positive (or,
    with ``positive=False``, at least 0), and finite when asked; else a FluentError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise FluentError(f"{name} must be a number, not {value!r}")
    if finite and not math.isfinite(value):
        raise FluentError(f"{name} must be finite, not {value!r}")
    if positive and value <= 0:
        raise FluentError(f"{name} must be positive, not {value!r}")
    if value < 0:
        raise FluentError(f"{name} must be >= 0, not {value!r}")
    return float(value)
