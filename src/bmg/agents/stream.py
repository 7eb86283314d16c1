"""What the online RL agents (actor-critic, Q(lambda)) share: one config base, the inner
optimiser, the learner's extras on one environment stream, observation flattening, the probes.

An online learner acts on one gymnax environment stream (``bmg.rl.collect``; Two-colors never
ends, other games reset on their own), updates once per T-step rollout, and carries in
``LearnerState.extras`` (``Extras``): the stream with its counters, the latest rollout (the data of
its next update) and the reward context of its meta-learned schedule. The experiment layer never
reads these extras: it reads the learner's probes (``counter_probes`` plus the agent's own).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bmg import rl
from bmg.core import clip_by_global_norm
from bmg.core.unroll import check_integer

CONTEXTS = ("reward", "none")


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


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
    """Fields every online agent shares (actor-critic, Q(lambda)).

    Sources: [paper] Flennerhag et al., ICLR 2022 (Table 1 for the actor-critic on Two-colors);
    [related] Luketina et al., "Meta-Gradients in Non-Stationary Environments", CoLLAs 2022,
    appendix A.3 (Tables 3 and 4); [default] this implementation's choice.
    """

    hidden_size: int = 256
    """width of the two ReLU layers of each MLP (policy, value, Q) [related]."""
    rollout_length: int = 16
    """T, environment steps per rollout; one learner update per rollout [paper: batch 16]."""
    learning_rate: float = 0.1
    """inner SGD learning rate [paper]."""
    discount: float = 0.99
    """gamma; discount_t = gamma * (1 - terminated_t) [paper]."""
    max_grad_norm: float = 1.0
    """clip the learner gradient to this global norm before the SGD step, 0 = off; the clip has a
    finite derivative at a zero gradient (``bmg.core.clip_by_global_norm``) [default: SGD 0.1
    without it diverged (value net to inf) at the first flip in 2 of 10 seeds]."""
    context: Literal["reward", "none"] = "reward"
    """meta-network input: mean reward of recent rollouts, or none (one learned logit) [related]."""
    context_length: int = 10
    """rollouts in the reward context [related: H = 10]."""
    meta_hidden_size: int = 32
    """width of the meta-network's hidden layer [default]."""

    def __post_init__(self):
        for name in ("hidden_size", "rollout_length", "context_length", "meta_hidden_size"):
            check_integer(name, getattr(self, name), 1)
        check_real("learning_rate", self.learning_rate, low=0, low_open=True)
        check_real("discount", self.discount, low=0, high=1)
        check_real("max_grad_norm", self.max_grad_norm, low=0)
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be 'reward' or 'none', got {self.context!r}.")


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
