"""Validation of Two-colors' parameters, in pure Python (no JAX or gymnax), so experiment
configs can check them at parse time without importing the environment."""

from __future__ import annotations

import math
import numbers
from typing import Any

RESPAWN_MODES = ("all", "object")
MAX_SWITCH_EVERY = 2**30 - 1  # the clock's period 2 * switch_every must fit an int32


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_params(
    grid_size: Any, switch_every: Any, respawn: Any, step_penalty: Any
) -> tuple[int, int, str, float]:
    """`(grid_size, switch_every, respawn, step_penalty)` as int, int, str, float.

    Raises:
      ValueError: one sentence naming the field, the value and what is accepted.
    """
    g, s, r, p = grid_size, switch_every, respawn, step_penalty
    if not _is_int(g) or g < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {g!r}.")
    if not _is_int(s) or not 1 <= s <= MAX_SWITCH_EVERY:
        raise ValueError(
            f"switch_every must be an integer in [1, 2^30 - 1] (the clock's period "
            f"2 * switch_every is an int32), got {s!r}."
        )
    if r not in RESPAWN_MODES:
        raise ValueError(f"respawn must be one of {RESPAWN_MODES}, got {r!r}.")
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not math.isfinite(p) or p < 0:
        raise ValueError(f"step_penalty must be a finite real number >= 0, got {p!r}.")
    return int(g), int(s), r, float(p)
