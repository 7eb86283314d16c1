"""Two-colors: a non-stationary, non-episodic grid world (pure JAX, gymnax-1.0-style functions).

The world is a ``grid_size x grid_size`` grid (5 x 5 by default) holding the agent and two objects
of different colours. Walking onto an object picks it up: one colour is worth +1, the other -1, and
which one is "good" flips every ``switch_every`` steps (100,000 by default). There are no episodes
and no resets: ``terminated`` and ``truncated`` are always False and the stream runs for ever, so a
memoryless agent has to explore again after every flip.

Coordinates are ``(row, col)``; "x" is the column and "y" the row, both in ``[0, grid_size)``.

Observation (float32, length ``6 * grid_size``; 30 for 5 x 5), six one-hot blocks in this order::

    [ onehot(agent col) | onehot(agent row) |
      onehot(obj0 col)  | onehot(obj0 row)  |
      onehot(obj1 col)  | onehot(obj1 row)  ]

Actions (``NUM_ACTIONS = 4``): 0 up (row - 1), 1 down (row + 1), 2 left (col - 1),
3 right (col + 1). A move into a wall leaves the agent in place (the position is clipped).

Reward and flip timing. Let ``t = state.time`` be the index of the step being taken (the number of
steps taken before it). The good object on that step is ``g(t) = (t // switch_every) % 2``: object
0 is worth +1 and object 1 is worth -1 for ``t in [0, switch_every)``, they swap for
``t in [switch_every, 2 * switch_every)``, and so on; the first flipped step is exactly
``t = switch_every``. If the agent's new cell holds object ``i`` it picks it up and
``r = +1 if i == g(t) else -1``; otherwise ``r = -step_penalty``. Then ``time += 1``.

Re-spawn after a pick-up (``EnvParams.respawn``):

* ``"all"`` (default): the agent and both objects are re-drawn at three distinct cells, uniformly
  at random (Luketina et al., 2022, the related-work reimplementation of the paper's setup).
* ``"object"``: only the collected object moves, to a cell drawn uniformly among those not
  occupied by the agent or the other object (as in public reimplementations, which also use a
  ``step_penalty`` of 0.04 per step without a pick-up; the default here is 0.0).

Sources: Flennerhag et al. (2022), "Bootstrapped Meta-Learning", section on the non-stationary
grid world; project notes ``paper-notes.md`` section 2.

All functions are pure, jittable and vmappable. The static fields of ``EnvParams`` (``grid_size``,
``switch_every``, ``respawn``) are not pytree leaves, so ``jax.jit(step)(key, state, action,
params)`` works without ``static_argnames``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

NUM_ACTIONS = 4
RESPAWN_MODES = ("all", "object")

# Row/col displacement of each action: up, down, left, right.
_MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=jnp.int32)


@struct.dataclass
class EnvParams:
    """Environment parameters; build validated ones with :func:`make_params`.

    ``grid_size``, ``switch_every`` and ``respawn`` are static (part of the pytree structure);
    ``step_penalty`` is a leaf.
    """

    grid_size: int = struct.field(pytree_node=False, default=5)
    switch_every: int = struct.field(pytree_node=False, default=100_000)
    respawn: str = struct.field(pytree_node=False, default="all")
    step_penalty: float = 0.0


@struct.dataclass
class EnvState:
    """``agent``: int32[2] (row, col); ``objects``: int32[2, 2], row ``i`` = (row, col) of object
    ``i``; ``time``: int32 scalar, the number of steps taken so far."""

    agent: jax.Array
    objects: jax.Array
    time: jax.Array


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def make_params(**kwargs: Any) -> EnvParams:
    """Validated :class:`EnvParams`; raises ``ValueError`` on an unknown field or a bad value."""
    fields = ("grid_size", "switch_every", "respawn", "step_penalty")
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"Unknown EnvParams field(s) {unknown}; accepted fields are {fields}.")
    params = EnvParams(**kwargs)
    g, s, r, p = params.grid_size, params.switch_every, params.respawn, params.step_penalty
    if not _is_int(g) or g < 2:
        raise ValueError(f"grid_size must be an integer >= 2, got {g!r}.")
    if not _is_int(s) or s < 1:
        raise ValueError(f"switch_every must be an integer >= 1, got {s!r}.")
    if r not in RESPAWN_MODES:
        raise ValueError(f"respawn must be one of {RESPAWN_MODES}, got {r!r}.")
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not math.isfinite(p) or p < 0:
        raise ValueError(f"step_penalty must be a finite real number >= 0, got {p!r}.")
    return params.replace(grid_size=int(g), switch_every=int(s), step_penalty=float(p))


def observation_size(params: EnvParams | None = None) -> int:
    """Length of the observation vector, ``6 * grid_size``."""
    params = EnvParams() if params is None else params
    return 6 * params.grid_size


def make_state(agent: Any, objects: Any, time: Any = 0) -> EnvState:
    """Place the agent (row, col) and the two objects ((row, col), (row, col)) by hand."""
    agent = jnp.asarray(agent, dtype=jnp.int32)
    objects = jnp.asarray(objects, dtype=jnp.int32)
    time = jnp.asarray(time, dtype=jnp.int32)
    if agent.shape[-1:] != (2,) or objects.shape[-2:] != (2, 2):
        raise ValueError(
            f"make_state expects agent of shape (2,) and objects of shape (2, 2), got "
            f"{agent.shape} and {objects.shape}."
        )
    return EnvState(agent=agent, objects=objects, time=time)


def observation(state: EnvState, params: EnvParams | None = None) -> jax.Array:
    """``concat(e(agent col), e(agent row), e(obj0 col), e(obj0 row), e(obj1 col), e(obj1 row))``
    with ``e`` the one-hot of length ``grid_size``; float32[6 * grid_size]."""
    params = EnvParams() if params is None else params
    rows = jnp.stack([state.agent[0], state.objects[0, 0], state.objects[1, 0]])
    cols = jnp.stack([state.agent[1], state.objects[0, 1], state.objects[1, 1]])
    pairs = jnp.stack([cols, rows], axis=-1).reshape(-1)  # (col, row) for agent, obj0, obj1
    return jax.nn.one_hot(pairs, params.grid_size, dtype=jnp.float32).reshape(-1)


def _to_cell(flat: jax.Array, grid_size: int) -> jax.Array:
    """Flat index ``k`` -> ``(k // grid_size, k % grid_size)``, int32[..., 2]."""
    flat = flat.astype(jnp.int32)
    return jnp.stack([flat // grid_size, flat % grid_size], axis=-1)


def _three_distinct_cells(key: jax.Array, grid_size: int) -> jax.Array:
    """Three distinct cells, uniform over ordered triples; int32[3, 2].

    Draws a in [0, n), b in [0, n - 1), c in [0, n - 2) (n = grid_size^2) and shifts b past a and c
    past both: a bijection onto ordered triples of distinct cells, with one random draw and no sort.
    """
    cells = grid_size * grid_size
    a, b, c = jax.random.randint(key, (3,), 0, jnp.array([cells, cells - 1, cells - 2]))
    b = b + (b >= a)
    low, high = jnp.minimum(a, b), jnp.maximum(a, b)
    c = c + (c >= low)
    c = c + (c >= high)
    return _to_cell(jnp.stack([a, b, c]).astype(jnp.int32), grid_size)


def reset(key: jax.Array, params: EnvParams | None = None) -> tuple[jax.Array, EnvState]:
    """Agent, object 0 and object 1 at three distinct uniform cells, ``time = 0``."""
    params = EnvParams() if params is None else params
    cells = _three_distinct_cells(key, params.grid_size)
    state = EnvState(agent=cells[0], objects=cells[1:], time=jnp.zeros((), jnp.int32))
    return observation(state, params), state


def good_object(time: jax.Array, params: EnvParams | None = None) -> jax.Array:
    """Index of the +1 object on step ``t``: ``(t // switch_every) % 2``; int32."""
    params = EnvParams() if params is None else params
    t = jnp.asarray(time, jnp.int32)
    return ((t // params.switch_every) % 2).astype(jnp.int32)


def step(
    key: jax.Array,
    state: EnvState,
    action: jax.Array,
    params: EnvParams | None = None,
) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One transition; returns ``(obs, state, reward, terminated, truncated, info)``.

    ``agent' = clip(agent + move[action], 0, grid_size - 1)`` (``action`` is clipped to
    ``[0, 4)``). With ``t = state.time`` and ``g = (t // switch_every) % 2``: if ``agent'`` is on
    object ``i`` then ``r = +1 if i == g else -1`` and the positions re-spawn per
    ``params.respawn``; else ``r = -step_penalty``. ``time' = t + 1``; ``terminated = truncated =
    False``. ``info = {"picked": i or -1, "good_object": g}``.
    """
    params = EnvParams() if params is None else params
    n = params.grid_size
    action = jnp.clip(jnp.asarray(action, jnp.int32), 0, NUM_ACTIONS - 1)
    agent = jnp.clip(state.agent + _MOVES[action], 0, n - 1)

    hit = jnp.all(state.objects == agent[None, :], axis=-1)  # bool[2]
    any_hit = jnp.any(hit)
    picked = jnp.where(hit[0], 0, jnp.where(hit[1], 1, -1)).astype(jnp.int32)
    good = good_object(state.time, params)

    sign = jnp.where(picked == good, 1.0, -1.0)
    penalty = jnp.asarray(params.step_penalty, jnp.float32)
    reward = jnp.where(any_hit, sign, -penalty).astype(jnp.float32)

    if params.respawn == "all":
        cells = _three_distinct_cells(key, n)
        new_agent = jnp.where(any_hit, cells[0], agent)
        new_objects = jnp.where(any_hit, cells[1:], state.objects)
    elif params.respawn == "object":
        idx = jnp.maximum(picked, 0)
        other = state.objects[1 - idx]
        flat = jnp.arange(n * n, dtype=jnp.int32)
        occupied = (flat == agent[0] * n + agent[1]) | (flat == other[0] * n + other[1])
        scores = jnp.where(occupied, -jnp.inf, jax.random.uniform(key, (n * n,)))
        cell = _to_cell(jnp.argmax(scores), n)
        new_agent = agent
        new_objects = jnp.where(any_hit, state.objects.at[idx].set(cell), state.objects)
    else:  # pragma: no cover - guarded by make_params
        raise ValueError(f"respawn must be one of {RESPAWN_MODES}, got {params.respawn!r}.")

    new_state = EnvState(agent=new_agent, objects=new_objects, time=state.time + 1)
    false = jnp.zeros((), dtype=jnp.bool_)
    info = {"picked": picked, "good_object": good}
    return observation(new_state, params), new_state, reward, false, false, info
