"""What the online RL agents (actor-critic, Q(lambda)) share: one config base, the inner
optimiser, the learner's extras on one environment stream, observation flattening, the probes.

An online learner acts on one gymnax environment stream (``bmg.rl.collect``; Two-colors never
ends, other games reset on their own), updates once per T-step rollout, and carries in
``LearnerState.extras`` (``Extras``): the stream with its counters, the latest rollout (the data of
its next update) and the reward context of its meta-learned schedule. The experiment layer never
reads these extras: it reads the learner's probes (``counter_probes`` plus the agent's own).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bmg import rl
from bmg.agents.configs import CONTEXTS, OnlineConfig  # noqa: F401  (re-exported)
from bmg.checks import check_real  # noqa: F401  (re-exported)
from bmg.core import clip_by_global_norm


def make_optimizer(config: OnlineConfig) -> optax.GradientTransformation:
    """SGD with ``config.learning_rate``, after a global-norm clip to ``config.max_grad_norm``
    (none at 0). The clip is ``bmg.core``'s, whose derivative stays finite at a zero gradient
    (optax's gives NaN meta-gradients there: 0/0 in d||g||/dg)."""
    optimizer = optax.sgd(config.learning_rate)
    if config.max_grad_norm > 0:
        optimizer = optax.chain(clip_by_global_norm(config.max_grad_norm), optimizer)
    return optimizer


class Extras(NamedTuple):
    """What an online learner carries besides parameters (``LearnerState.extras``).

    Attributes:
      stream: the environment stream and its cumulative counters (``bmg.rl.Stream``).
      rollout: the latest rollout (``bmg.rl.Rollout``), collected by the current parameters.
      reward_history: float32[context_length], the mean reward of each recent rollout, oldest
        first (the meta-network's context; zeros before there are enough rollouts).
    """

    stream: rl.Stream
    rollout: rl.Rollout
    reward_history: jax.Array


def advance(extras: Extras, rollout: rl.Rollout, stream: rl.Stream) -> Extras:
    """Carry a new rollout and its stream; push its mean reward into the context."""
    history = jnp.concatenate([extras.reward_history[1:], jnp.mean(rollout.rewards)[None]])
    return Extras(stream=stream, rollout=rollout, reward_history=history)


def start(rollout: rl.Rollout, stream: rl.Stream, context_length: int) -> Extras:
    """The extras after the first rollout (which counts like every other)."""
    empty = Extras(stream, rollout, jnp.zeros((context_length,), jnp.float32))
    return advance(empty, rollout, stream)


class ObservationShape(NamedTuple):
    """The environment's observation shape and its flattened size (the MLPs' input)."""

    shape: tuple[int, ...]
    size: int

    def flatten(self, obs: jax.Array) -> jax.Array:
        """``[..., *shape] -> float32[..., size]`` (a no-op for flat float32 observations)."""
        batch = obs.shape[: obs.ndim - len(self.shape)]
        return jnp.reshape(obs, (*batch, self.size)).astype(jnp.float32)


def observation_shape(env: Any, env_params: Any) -> ObservationShape:
    """Shape of ``env.observation_space(env_params)`` and its number of elements."""
    shape = tuple(int(d) for d in env.observation_space(env_params).shape)
    return ObservationShape(shape, int(np.prod(shape, dtype=np.int64)))


def num_actions(env: Any, env_params: Any) -> int:
    """``env.action_space(env_params).n``: the agents need a discrete action space.

    Raises:
      ValueError: the action space is not discrete.
    """
    n = getattr(env.action_space(env_params), "n", None)
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(
            f"the online agents need a discrete action space, got {env.action_space(env_params)!r}."
        )
    return int(n)


def can_truncate(env: Any) -> bool:
    """False for environments declaring ``continuing = True`` (e.g. Two-colors, never done):
    their learners skip the values of ``final_obs`` (truncation bootstraps never apply)."""
    return not getattr(env, "continuing", False)


def counter_probes(extras: Extras) -> dict[str, jax.Array]:
    """The stream's cumulative counters, first rollout and target rollouts included:
    ``env_steps`` (int32), ``reward_sum`` (float32, exact for integer rewards while |sum| < 2^24),
    ``episodes`` (int32) and ``episode_return_sum`` (float32, over finished episodes)."""
    stream = extras.stream
    return {
        "env_steps": stream.env_steps,
        "reward_sum": stream.reward_sum,
        "episodes": stream.episodes,
        "episode_return_sum": stream.episode_return_sum,
    }
