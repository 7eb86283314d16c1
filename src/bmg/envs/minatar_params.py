"""MinAtar's games and protocol values, and their checks (pure Python: configs import them
without loading gymnax or JAX). The environments are `bmg.envs.minatar`'s."""

from __future__ import annotations

GAMES = (
    "Asterix-MinAtar",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
)
"""The MinAtar games gymnax registers (all five of Young & Tian, 2019)."""

STICKY_ACTION_PROB = 0.1
"""MinAtar's sticky-action probability (Young & Tian, 2019; Machado et al., 2018)."""


def check_game(name: str) -> str:
    """``name`` if gymnax has it, else ValueError with one sentence listing the games."""
    if name not in GAMES:
        raise ValueError(f"env must be one of {', '.join(GAMES)}; got {name!r}.")
    return name


def check_sticky_action_prob(value: float) -> float:
    """``value`` if it is a number in [0, 1], else ValueError with one sentence."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"sticky_action_prob must be a number in [0, 1], got {value!r}.")
    return float(value)
