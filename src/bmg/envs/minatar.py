"""MinAtar games from gymnax, with the protocol options published results compare against.

MinAtar (Young & Tian, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
Reinforcement Learning Experiments", 2019) is five 10 x 10 miniatures of Atari games; gymnax
(Lange, 2022) has all five in JAX: ``Asterix-MinAtar``, ``Breakout-MinAtar``,
``Freeway-MinAtar``, ``Seaquest-MinAtar`` and ``SpaceInvaders-MinAtar``. Observations are
float32[10, 10, C] (C channels per game: Breakout 4, Asterix 4, Freeway 7, Seaquest 10,
SpaceInvaders 6); gymnax's ``default_params`` set the episode time limit (a truncation, not a
terminal state).

Two protocol options (``make``):

* ``sticky_action_prob``: with this probability the environment repeats the previously executed
  action instead of the chosen one (Machado et al., "Revisiting the Arcade Learning
  Environment", JAIR 2018). MinAtar's own default and the setting of its paper's results is
  0.1 (``STICKY_ACTION_PROB``); this module's default is 0 (deterministic given the key), and
  the experiment configs choose. gymnax's ``StickyActionWrapper`` draws the repeat; the
  ``StickyActions`` subclass here also sets the remembered action back to 0 ("no-op") when an
  episode ends, as MinAtar's ``reset`` does (gymnax's wrapper carries it over).
* ``full_action_set``: all six actions ``[no-op, left, up, right, down, fire]`` instead of the
  game's minimal set (Breakout 3, Asterix 5, Freeway 3, Seaquest 6, SpaceInvaders 4). The
  MinAtar paper's results use the full set; gymnax's ``use_minimal_action_set=False``. Action
  i of the minimal set is action ``env.minimal_action_set[i]`` of the full set.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.wrappers.purerl import StickyActionWrapper

from bmg.envs.minatar_params import (  # noqa: F401  (re-exported)
    GAMES,
    STICKY_ACTION_PROB,
    check_game,
    check_sticky_action_prob,
)

FULL_ACTIONS = ("noop", "left", "up", "right", "down", "fire")
"""MinAtar's full action set, in order."""


class StickyActions(StickyActionWrapper):
    """gymnax's ``StickyActionWrapper``: with probability p the executed action is the previous
    executed one; the remembered action starts at 0 and is set back to 0 when an episode ends
    (terminated or truncated), as MinAtar resets it (Young & Tian, 2019, ``Environment.reset``).

    The state is gymnax's ``StickyActionState(env_state, last_action)``.
    """

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        done = jnp.logical_or(terminated, truncated)
        last = jnp.where(done, jnp.zeros_like(state.last_action), state.last_action)
        return obs, state.replace(last_action=last), reward, terminated, truncated, info


def make(
    name: str, *, sticky_action_prob: float = 0.0, full_action_set: bool = False
) -> tuple[Any, Any]:
    """``(env, env_params)`` of a MinAtar game (gymnax), with the protocol options.

    Args:
      name: one of ``GAMES``, e.g. ``"Breakout-MinAtar"``.
      sticky_action_prob: probability of repeating the previous action (0 = off; MinAtar's
        protocol: 0.1). Nonzero wraps the game in ``StickyActions``.
      full_action_set: the six MinAtar actions (``FULL_ACTIONS``) instead of the minimal set.

    Returns:
      a gymnax environment (or ``StickyActions`` around one) and its default parameters.

    Raises:
      ValueError: an unknown game or a probability outside [0, 1] (one sentence).
    """
    import gymnax

    check_game(name)
    sticky_action_prob = check_sticky_action_prob(sticky_action_prob)
    env, env_params = gymnax.make(name, use_minimal_action_set=not full_action_set)
    if sticky_action_prob > 0:
        env = StickyActions(env, sticky_action_prob)
    return env, env_params
