"""Two-colors: a non-stationary, non-episodic grid world, as a gymnax ``Environment``.

The world is a ``grid_size x grid_size`` grid (5 x 5 by default) holding the agent and two objects
of different colours. Walking onto an object picks it up: one colour is worth +1, the other -1, and
which one is "good" flips every ``switch_every`` steps (100,000 by default). There are no episodes
and no resets: ``terminated`` and ``truncated`` are always False and the stream runs for ever, so a
memoryless agent has to explore again after every flip (Flennerhag et al., ICLR 2022, Two-colors;
Luketina et al., CoLLAs 2022, section 5 and appendix A.3).

``TwoColors`` subclasses gymnax's ``Environment`` (``reset_env``, ``step_env``, ``default_params``,
``action_space``, ``observation_space``, ``num_actions``), so every agent that takes a gymnax
environment takes this one, and gymnax wrappers apply. Because the stream never ends,
``TwoColors.step`` skips gymnax's auto-reset branch: it passes its key to ``step_env`` unsplit (the
re-spawn draws from the step key itself) and returns gymnax's six values, with
``info["final_observation"]`` equal to the observation.

Coordinates are ``(row, col)``; "x" is the column and "y" the row, both in ``[0, grid_size)``.

Observation (float32, length ``6 * grid_size``; 30 for 5 x 5), six one-hot blocks in this order::

    [ onehot(agent col) | onehot(agent row) |
      onehot(obj0 col)  | onehot(obj0 row)  |
      onehot(obj1 col)  | onehot(obj1 row)  ]

Actions (``NUM_ACTIONS = 4``): 0 up (row - 1), 1 down (row + 1), 2 left (col - 1),
3 right (col + 1). A move into a wall leaves the agent in place (the position is clipped).

Reward and flip timing. Let ``n`` be the global index of the step being taken (the number of steps
taken before it). The good object on that step is ``g(n) = (n // switch_every) % 2``: object 0 is
worth +1 and object 1 is worth -1 for ``n in [0, switch_every)``, they swap for
``n in [switch_every, 2 * switch_every)``, and so on; the first flipped step is exactly
``n = switch_every``. If the agent's new cell holds object ``i`` it picks it up and
``r = +1 if i == g(n) else -1``; otherwise ``r = -step_penalty``.

The clock. Only the phase of ``n`` matters, so the state keeps ``time = n mod (2 * switch_every)``
(int32, in ``[0, 2 * switch_every)``) and a step sets ``time = (time + 1) mod (2 * switch_every)``.
The clock therefore never overflows, however long the stream runs (an int32 step count would wrap
to -2^31 at step 2^31 and pay the wrong colour); ``clock(n, params)`` gives the time of any global
step ``n``. ``switch_every`` is at most ``2^30 - 1`` so that ``2 * switch_every`` fits in int32.

Re-spawn after a pick-up (``EnvParams.respawn``):

* ``"all"`` (default): the agent and both objects are re-drawn at three distinct cells, uniformly
  at random (Luketina et al., CoLLAs 2022, appendix A.3).
* ``"object"``: only the collected object moves, to a cell drawn uniformly among those not
  occupied by the agent or the other object (as in public reimplementations, which also use a
  ``step_penalty`` of 0.04 per step without a pick-up; the default here is 0.0).

All methods are pure, jittable and vmappable. The static fields of ``EnvParams`` (``grid_size``,
``switch_every``, ``respawn``) are not pytree leaves, so ``jax.jit(env.step)(key, state, action,
params)`` works without ``static_argnames``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from bmg.envs.two_colors_params import (  # noqa: F401  (re-exported)
    MAX_SWITCH_EVERY,
    RESPAWN_MODES,
    check_params,
)

NUM_ACTIONS = 4
"""largest ``switch_every``: the clock's period ``2 * switch_every`` must fit in int32."""

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
    ``i``; ``time``: int32 scalar, the clock: the number of steps taken so far modulo
    ``2 * switch_every`` (see the module docstring)."""

    agent: jax.Array
    objects: jax.Array
    time: jax.Array


def make_params(**kwargs: Any) -> EnvParams:
    """Validated :class:`EnvParams`.

    Raises:
      ValueError: an unknown field, or a bad value (one sentence naming the field, the value and
        what is accepted).
    """
    fields = ("grid_size", "switch_every", "respawn", "step_penalty")
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"Unknown EnvParams field(s) {unknown}; accepted fields are {fields}.")
    params = EnvParams(**kwargs)
    g, s, r, p = check_params(
        params.grid_size, params.switch_every, params.respawn, params.step_penalty
    )
    return params.replace(grid_size=g, switch_every=s, step_penalty=p)


def observation_size(params: EnvParams | None = None) -> int:
    """Length of the observation vector, ``6 * grid_size``."""
    params = EnvParams() if params is None else params
    return 6 * params.grid_size


def clock(step: int, params: EnvParams | None = None) -> int:
    """The clock value (``EnvState.time``) of global step ``step`` (any Python int >= 0):
    ``step mod (2 * switch_every)``."""
    params = EnvParams() if params is None else params
    return int(step) % (2 * params.switch_every)


def make_state(agent: Any, objects: Any, time: Any = 0) -> EnvState:
    """Place the agent (row, col) and the two objects ((row, col), (row, col)) by hand.

    ``time`` is the clock (``clock(step, params)`` for a global step count).
    """
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


def good_object(time: jax.Array, params: EnvParams | None = None) -> jax.Array:
    """Index of the +1 object at clock ``time``: ``(time // switch_every) % 2``; int32."""
    params = EnvParams() if params is None else params
    t = jnp.asarray(time, jnp.int32)
    return ((t // params.switch_every) % 2).astype(jnp.int32)


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


class TwoColors(environment.Environment[EnvState, EnvParams]):
    """The Two-colors grid world as a gymnax environment (a continuing stream; see the module).

    Instances carry no configuration (that is ``EnvParams``), so all instances compare equal and
    hash alike: jitted methods with ``self`` static compile once per parameter set.
    """

    continuing = True
    """never terminated, never truncated: an agent may skip truncation bootstraps."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    @property
    def name(self) -> str:
        return "TwoColors"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        """Discrete(4): up, down, left, right."""
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Box(0, 1, (6 * grid_size,), float32): six one-hot blocks."""
        return spaces.Box(0.0, 1.0, (observation_size(params),), jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Always False: the stream has no terminal state."""
        return jnp.zeros((), jnp.bool_)

    def is_truncated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Always False: the stream has no time limit (the clock is a phase, not a step count)."""
        return jnp.zeros((), jnp.bool_)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        """The observation of ``state`` (see :func:`observation`)."""
        return observation(state, params)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Agent, object 0 and object 1 at three distinct uniform cells, ``time = 0``."""
        cells = _three_distinct_cells(key, params.grid_size)
        state = EnvState(agent=cells[0], objects=cells[1:], time=jnp.zeros((), jnp.int32))
        return observation(state, params), state

    def step_env(
        self, key: jax.Array, state: EnvState, action: Any, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, jax.Array]]:
        """One transition; returns ``(obs, state, reward, terminated, info)``.

        ``agent' = clip(agent + move[action], 0, grid_size - 1)`` (``action`` is clipped to
        ``[0, 4)``). With ``g = (time // switch_every) % 2``: if ``agent'`` is on object ``i`` then
        ``r = +1 if i == g else -1`` and the positions re-spawn per ``params.respawn`` (drawn from
        ``key``); else ``r = -step_penalty``. ``time' = (time + 1) mod (2 * switch_every)``;
        ``terminated = False``. ``info = {"picked": i or -1, "good_object": g}``.
        """
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

        time = (state.time + 1) % (2 * params.switch_every)
        new_state = EnvState(agent=new_agent, objects=new_objects, time=time.astype(jnp.int32))
        info = {"picked": picked, "good_object": good}
        return (
            observation(new_state, params),
            new_state,
            reward,
            self.is_terminated(new_state, params),
            info,
        )

    @functools.partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: Any,
        params: EnvParams | None = None,
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
        """gymnax's six-value step without the reset branch (the stream never ends).

        ``key`` goes to ``step_env`` unsplit, so the re-spawn draws from the step key itself.
        Returns ``(obs, state, reward, terminated, truncated, info)``, ``terminated = truncated =
        False``, ``info`` = ``step_env``'s plus ``terminated``, ``truncated`` and
        ``final_observation`` (= ``obs``), as gymnax's ``step`` gives them.
        """
        params = self.default_params if params is None else params
        obs, state, reward, terminated, info = self.step_env(key, state, action, params)
        truncated = self.is_truncated(state, params)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs,
        }
        return obs, state, reward, terminated, truncated, info
