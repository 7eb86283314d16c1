"""Validation of configuration values: one sentence naming the field, the value and what is
accepted. Pure Python (no JAX), so configs and the command line's `--help` stay fast to import."""

from __future__ import annotations

import math
import numbers
from typing import Any


def check_integer(name: str, value: int, minimum: int) -> int:
    """Return `value` if it is an int >= `minimum`, else raise a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` if it is a finite real number in the interval, else raise ``ValueError``
    with one sentence naming ``name``, the value and the accepted range."""
    left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    if low is not None and high is not None:
        accepted = f"a finite number in {left}, {right}"
    elif low is not None:
        accepted = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        accepted = "a finite number"
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        raise ValueError(f"{name} must be {accepted}, got {value!r}.")
    return value
