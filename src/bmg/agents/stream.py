"""One continuing environment stream shared by the online learners (actor-critic, Q-learning).

A learner collects T-step rollouts with its current parameters, never resets the environment, and
carries the stream in `LearnerState.extras` (`Extras`): the environment state, the latest rollout
(the data of its next update), the reward context and honest step and reward counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from bmg.envs import two_colors


class Rollout(NamedTuple):
    """T transitions of the stream: observations s_0..s_T, actions a_0..a_{T-1}, rewards."""

    obs: jax.Array  # float32[T + 1, obs_size]
    actions: jax.Array  # int32[T]
    rewards: jax.Array  # float32[T]


class Extras(NamedTuple):
    """What the learner carries besides parameters (`LearnerState.extras`).

    `env_steps` counts every environment step taken, targets included; `reward_sum` accumulates
    rewards until the training loop reads and resets it.
    """

    env_state: two_colors.EnvState
    rollout: Rollout
    reward_history: (
        jax.Array
    )  # float32[context_length], mean reward of recent rollouts, oldest first
    env_steps: jax.Array  # int32
    reward_sum: jax.Array  # float32


def collect(
    act: Callable[[jax.Array, Any], jax.Array],
    noise: Any,
    env_state: two_colors.EnvState,
    obs: jax.Array,
    env_key: jax.Array,
    env_params: two_colors.EnvParams,
) -> tuple[Rollout, two_colors.EnvState]:
    """Act for T steps from `obs`: a_t = act(s_t, noise_t), T = the leading size of `noise`.

    The acting randomness `noise` is drawn up front by the caller (one batched draw instead of T
    small ones inside the loop); `env_key` is split into one key per environment step.
    """
    length = jax.tree.leaves(noise)[0].shape[0]

    def env_step(carry, inputs):
        env_state, obs = carry
        noise_t, step_key = inputs
        action = act(obs, noise_t)
        next_obs, env_state, reward, _, _, _ = two_colors.step(
            step_key, env_state, action, env_params
        )
        return (env_state, next_obs), (obs, action, reward)

    (env_state, last_obs), (obs_t, actions, rewards) = jax.lax.scan(
        env_step, (env_state, obs), (noise, jax.random.split(env_key, length))
    )
    rollout = Rollout(
        obs=jnp.concatenate([obs_t, last_obs[None]]),
        actions=actions.astype(jnp.int32),
        rewards=rewards,
    )
    return rollout, env_state


def advance(extras: Extras, rollout: Rollout, env_state: two_colors.EnvState) -> Extras:
    """Carry a new rollout: count its steps and rewards and push its mean reward to the context."""
    history = jnp.concatenate([extras.reward_history[1:], jnp.mean(rollout.rewards)[None]])
    return Extras(
        env_state=env_state,
        rollout=rollout,
        reward_history=history,
        env_steps=extras.env_steps + rollout.actions.shape[0],
        reward_sum=extras.reward_sum + jnp.sum(rollout.rewards),
    )


def start(rollout: Rollout, env_state: two_colors.EnvState, context_length: int) -> Extras:
    """The extras after the first rollout (which counts like every other)."""
    empty = Extras(
        env_state=env_state,
        rollout=rollout,
        reward_history=jnp.zeros((context_length,)),
        env_steps=jnp.zeros((), jnp.int32),
        reward_sum=jnp.zeros(()),
    )
    return advance(empty, rollout, env_state)
