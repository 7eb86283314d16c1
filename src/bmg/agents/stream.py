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
from bmg.agents.configs import CONTEXTS, PROBE_CONTEXTS, OnlineConfig  # noqa: F401  (re-exported)
from bmg.checks import check_real  # noqa: F401  (re-exported)
from bmg.core import clip_by_global_norm


def make_optimizer(
    config: OnlineConfig, learning_rate: float | jax.Array | None = None
) -> optax.GradientTransformation:
    """SGD or Adam (``config.optimizer``) with ``config.learning_rate`` (or ``learning_rate``, a
    number or a traced float32 scalar: a sweep's per-lane value), after a global-norm clip
    to ``config.max_grad_norm`` (none at 0). The clip is ``bmg.core``'s, whose derivative stays
    finite at a zero gradient (optax's gives NaN meta-gradients there: 0/0 in d||g||/dg).

    Adam is ``optax.adam(learning_rate, b1=adam_b1, b2=adam_b2, eps=adam_eps,
    eps_root=adam_eps_root)``: x <- x - lr m_hat / (sqrt(v_hat + eps_root) + eps) (Kingma & Ba,
    2015; Luketina et al., CoLLAs 2022, appendix A.3, Table 4: eps 1e-4, betas 0.9 / 0.999).
    """
    if learning_rate is None:
        learning_rate = config.learning_rate
    if config.optimizer == "adam":
        optimizer = optax.adam(
            learning_rate,
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            eps_root=config.adam_eps_root,
        )
    else:
        optimizer = optax.sgd(learning_rate)
    if config.max_grad_norm > 0:
        optimizer = optax.chain(clip_by_global_norm(config.max_grad_norm), optimizer)
    return optimizer


class RunningStats(NamedTuple):
    """Welford's running mean and variance of a stream of scalars (Welford, 1962).

    Attributes:
      count: int32[], values seen.
      mean: float32[], their mean (0 before any).
      m2: float32[], the sum of squared deviations from the mean; variance = m2 / count
        (population variance, numpy's ``np.var`` default ``ddof=0``).
    """

    count: jax.Array
    mean: jax.Array
    m2: jax.Array

    @classmethod
    def zeros(cls) -> RunningStats:
        return cls(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))

    def push(self, value: jax.Array) -> RunningStats:
        """The statistics with one more value: n' = n + 1, delta = x - mean,
        mean' = mean + delta / n', m2' = m2 + delta (x - mean')."""
        count = self.count + 1
        delta = value - self.mean
        mean = self.mean + delta / count.astype(jnp.float32)
        return RunningStats(count, mean, self.m2 + delta * (value - mean))

    @property
    def std(self) -> jax.Array:
        """sqrt(m2 / count) (0 before any value)."""
        return jnp.sqrt(self.m2 / jnp.maximum(self.count, 1).astype(jnp.float32))


CONTEXT_VARIANCE_EPS = 1e-8
"""Added to the running variance before the square root when normalising the context, as running
observation normalisers do (e.g. Gymnasium's NormalizeObservation) [default]."""


class Extras(NamedTuple):
    """What an online learner carries besides parameters (``LearnerState.extras``).

    Attributes:
      stream: the environment stream and its cumulative counters (``bmg.rl.Stream``).
      rollout: the latest rollout (``bmg.rl.Rollout``), collected by the current parameters.
      reward_history: float32[context_length], the mean reward of each recent rollout, oldest
        first (the raw context; zeros before there are enough rollouts).
      context_stats: ``RunningStats`` of every mean reward pushed into ``reward_history`` (the
        first rollout's included) with ``context_normalization="running"``; None otherwise.
    """

    stream: rl.Stream
    rollout: rl.Rollout
    reward_history: jax.Array
    context_stats: RunningStats | None = None


def advance(extras: Extras, rollout: rl.Rollout, stream: rl.Stream) -> Extras:
    """Carry a new rollout and its stream; push its mean reward into the context (and into the
    running statistics, when the extras carry them)."""
    mean_reward = jnp.mean(rollout.rewards)
    history = jnp.concatenate([extras.reward_history[1:], mean_reward[None]])
    stats = extras.context_stats
    if stats is not None:
        stats = stats.push(mean_reward)
    return Extras(stream=stream, rollout=rollout, reward_history=history, context_stats=stats)


def start(
    rollout: rl.Rollout,
    stream: rl.Stream,
    context_length: int,
    normalization: str = "none",
) -> Extras:
    """The extras after the first rollout (which counts like every other); ``normalization``
    "running" carries ``RunningStats`` (``context``)."""
    stats = RunningStats.zeros() if normalization == "running" else None
    empty = Extras(stream, rollout, jnp.zeros((context_length,), jnp.float32), stats)
    return advance(empty, rollout, stream)


def context(extras: Extras) -> jax.Array:
    """The meta-network's input, float32[context_length]: the raw ``reward_history`` without
    running statistics, else tanh((h - mean) / sqrt(var + CONTEXT_VARIANCE_EPS)) in [-1, 1]
    (Luketina et al., CoLLAs 2022, appendix A.3: each feature normalised by running statistics
    and squashed by tanh). One mean and variance serve every feature: they are the same quantity
    (a rollout's mean reward) at different lags. Padding zeros before ``context_length``
    rollouts are normalised like values. Data: no gradient flows into it."""
    stats = extras.context_stats
    if stats is None:
        return extras.reward_history
    variance = stats.m2 / jnp.maximum(stats.count, 1).astype(jnp.float32)
    z = (extras.reward_history - stats.mean) / jnp.sqrt(variance + CONTEXT_VARIANCE_EPS)
    return jax.lax.stop_gradient(jnp.tanh(z))


def probe_contexts(context_length: int, normalized: bool) -> jax.Array:
    """float32[5, context_length], the contexts of ``PROBE_CONTEXTS`` in the meta-network's input
    space (oldest rollout first, like ``Extras.reward_history``): every feature at +level (high),
    0 (zero) or -level (low), or a ramp from -level to +level (increasing: recent rollouts earn
    more) and back (decreasing). level = 0.9 for running-normalised contexts (inside tanh's
    [-1, 1], about 1.5 standard deviations), 0.3 for raw contexts (mean rewards per step)
    [default: an arbitrary choice; the paper does not give its probes' values]."""
    level = 0.9 if normalized else 0.3
    ramp = jnp.linspace(-level, level, context_length, dtype=jnp.float32)
    flat = jnp.ones((context_length,), jnp.float32)
    return jnp.stack([level * flat, ramp, 0 * flat, ramp[::-1], -level * flat])


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


def hyper_value(config: Any, hyper: Any, name: str) -> Any:
    """``hyper[name]`` when a sweep sets it (a float32 scalar, possibly traced: one lane's value),
    else the config's field ``name``. ``hyper`` None = no overrides."""
    if hyper is not None and name in hyper:
        return hyper[name]
    return getattr(config, name)


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
