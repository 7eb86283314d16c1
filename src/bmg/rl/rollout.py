"""Env-agnostic rollouts on any gymnax environment: one stream, T steps, auto-reset, counters.

A learner acts on one environment stream (batch streams with ``jax.vmap``). ``collect`` takes T
steps with gymnax's six-value ``step`` (which resets an environment whose episode ended, and
reports the observation the step reached before the reset in ``info["final_observation"]``) and
returns a time-major ``Rollout`` and the advanced ``Stream``.

Per-step discounts (Sutton & Barto, 2018, section 3.3; rlax's ``discount_t`` convention):
``discount_t = gamma * (1 - terminated_t)``: a terminal step ends the return. A truncated step (a
time limit, not a terminal state) keeps ``discount_t = gamma`` and is marked ``truncated``: the
return there bootstraps from the value of the state the step reached, ``final_obs[t]``, not from
the next episode's first observation (Pardo et al., "Time Limits in Reinforcement Learning", ICML
2018). ``bmg.rl.losses`` folds this in (``truncation_bootstrap``).

Counters, carried in the ``Stream`` and cumulative over the stream's life: ``env_steps`` (int32,
saturating at 2^31 - 1 instead of wrapping; a runner should refuse longer lifetimes), ``reward_sum``
(float32: exact while the rewards are integers and the running sum stays below 2^24 in magnitude,
e.g. Two-colors' +-1 rewards for up to 16.7M pick-ups; otherwise float32 rounding applies),
``episodes`` (finished episodes, int32) and ``episode_return_sum`` (float32, the sum of their
undiscounted returns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

INT32_MAX = 2**31 - 1


class Rollout(NamedTuple):
    """T transitions of one stream, time-major.

    Attributes:
      obs: [T + 1, *obs_shape], s_0 .. s_T. ``obs[t + 1]`` is where action t + 1 is taken: after
        the auto-reset when step t ended an episode. ``obs[-1]`` starts the next rollout.
      actions: int32[T], a_t taken in s_t.
      rewards: float32[T], r_t, the reward of (s_t, a_t).
      discount_t: float32[T], ``gamma * (1 - terminated_t)``.
      truncated: bool[T], step t hit a time limit without terminating (bootstrap from
        ``final_obs[t]``).
      final_obs: [T, *obs_shape], the observation step t reached, before any reset (gymnax's
        ``info["final_observation"]``); equal to ``obs[t + 1]`` unless the episode ended at t.
    """

    obs: Any
    actions: jax.Array
    rewards: jax.Array
    discount_t: jax.Array
    truncated: jax.Array
    final_obs: Any


class Stream(NamedTuple):
    """One environment stream between rollouts, and its cumulative counters.

    Attributes:
      env_state: the gymnax environment state.
      obs: the latest observation (where the next action is taken).
      episode_return: float32, undiscounted return of the running episode so far.
      env_steps: int32, environment steps taken (saturates at 2^31 - 1).
      reward_sum: float32, sum of all rewards (see the module docstring for its exactness).
      episodes: int32, episodes finished (terminated or truncated).
      episode_return_sum: float32, sum of the finished episodes' undiscounted returns.
    """

    env_state: Any
    obs: Any
    episode_return: jax.Array
    env_steps: jax.Array
    reward_sum: jax.Array
    episodes: jax.Array
    episode_return_sum: jax.Array


def start_stream(env: Any, env_params: Any, key: jax.Array) -> Stream:
    """Reset ``env`` with ``key`` (``env.reset(key, env_params)``); all counters at zero."""
    obs, env_state = env.reset(key, env_params)
    zero = jnp.zeros((), jnp.float32)
    count = jnp.zeros((), jnp.int32)
    return Stream(env_state, obs, zero, count, zero, count, zero)


def collect(
    env: Any,
    env_params: Any,
    act: Callable[[Any, Any], jax.Array],
    noise: Any,
    stream: Stream,
    key: jax.Array,
    *,
    discount: float | jax.Array,
) -> tuple[Rollout, Stream]:
    """Act for T steps from ``stream.obs``: ``a_t = act(s_t, noise_t)``, T = ``noise``'s length.

    The acting randomness ``noise`` (a pytree with leading axis T) is drawn up front by the caller
    (one batched draw instead of T small ones in the loop); ``key`` is split into T keys, one per
    ``env.step(key_t, state, a_t, env_params)``. Any gymnax environment works: episodes that end
    are reset by gymnax's ``step``. Without ``info["final_observation"]`` (an environment or
    wrapper that does not report it) ``final_obs`` is the next observation.

    Args:
      env: a gymnax ``Environment`` (or wrapper).
      env_params: its parameters.
      act: ``(obs, noise_t) -> action``, e.g. a policy sample given Gumbel noise; it sees data
        only (stop-gradient the parameters it closes over).
      noise: the per-step acting noise, leading axis T.
      stream: where the stream stands (``start_stream`` or a previous ``collect``).
      key: the environment's randomness for these T steps.
      discount: gamma, for ``discount_t = gamma * (1 - terminated_t)``.

    Returns:
      ``(rollout, stream)``: the T transitions and the advanced stream with updated counters.
    """
    length = jax.tree.leaves(noise)[0].shape[0]

    def env_step(carry, inputs):
        env_state, obs, episode_return, episodes, episode_return_sum = carry
        noise_t, step_key = inputs
        action = act(obs, noise_t)
        next_obs, env_state, reward, terminated, truncated, info = env.step(
            step_key, env_state, action, env_params
        )
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.asarray(truncated, jnp.bool_) & ~terminated
        done = terminated | truncated
        final_obs = info.get("final_observation", next_obs) if isinstance(info, dict) else next_obs
        episode_return = episode_return + reward
        episodes = episodes + done.astype(jnp.int32)
        episode_return_sum = episode_return_sum + jnp.where(done, episode_return, 0.0)
        episode_return = jnp.where(done, 0.0, episode_return)
        carry = (env_state, next_obs, episode_return, episodes, episode_return_sum)
        return carry, (obs, action, reward, terminated, truncated, final_obs)

    carry = (
        stream.env_state,
        stream.obs,
        stream.episode_return,
        stream.episodes,
        stream.episode_return_sum,
    )
    carry, (obs_t, actions, rewards, terminated, truncated, final_obs) = jax.lax.scan(
        env_step, carry, (noise, jax.random.split(key, length))
    )
    env_state, last_obs, episode_return, episodes, episode_return_sum = carry
    discount_t = jnp.asarray(discount, rewards.dtype) * (1 - terminated.astype(rewards.dtype))
    rollout = Rollout(
        obs=jax.tree.map(lambda x, y: jnp.concatenate([x, y[None]]), obs_t, last_obs),
        actions=actions.astype(jnp.int32),
        rewards=rewards,
        discount_t=discount_t,
        truncated=truncated,
        final_obs=final_obs,
    )
    stream = Stream(
        env_state=env_state,
        obs=last_obs,
        episode_return=episode_return,
        env_steps=jnp.minimum(stream.env_steps, INT32_MAX - length) + length,
        reward_sum=stream.reward_sum + jnp.sum(rewards),
        episodes=episodes,
        episode_return_sum=episode_return_sum,
    )
    return rollout, stream
