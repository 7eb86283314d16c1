"""bmg.rl.rollout on a hand-made episodic gymnax environment with closed-form returns, and on
MinAtar: auto-reset, per-step discounts, truncation, counters; the returns of a trace holding two
episodes equal the episodes' returns computed separately."""

import functools
from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from bmg.rl import Rollout, a2c_loss, collect, n_step_returns, q_lambda_loss, start_stream
from bmg.rl.rollout import INT32_MAX

pytestmark = pytest.mark.usefixtures("x64")
GAMMA = 0.9


@struct.dataclass
class CountParams:
    length: int = struct.field(pytree_node=False, default=3)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=1000)


@struct.dataclass
class CountState:
    pos: jax.Array
    time: jax.Array


class Count(environment.Environment):
    """Walk 0, 1, 2, ...: every step moves one cell on and pays 1 + action; the episode
    terminates on reaching ``length`` and is truncated after ``max_steps_in_episode`` steps.
    Observation [pos]. With action 0 the discounted return from pos k of an episode of length N
    is sum_{i<N-k} gamma^i = (1 - gamma^(N-k)) / (1 - gamma)."""

    @property
    def default_params(self) -> CountParams:
        return CountParams()

    def reset_env(self, key, params):
        state = CountState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        state = CountState(state.pos + 1, state.time + 1)
        reward = 1.0 + jnp.asarray(action, jnp.float32)
        return self.get_obs(state), state, reward, self.is_terminated(state, params), {}

    def is_terminated(self, state, params):
        return state.pos >= params.length

    def get_obs(self, state, params=None, key=None):
        return jnp.asarray(state.pos, jnp.float32)[None]

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1e6, (1,), jnp.float32)


ENV = Count()


def run(params: Any, steps: int, stream=None, actions=None):
    """Collect ``steps`` steps with the given actions (default 0) from a fresh or given stream
    (compiled: eagerly, each operation compiles a program of its own)."""
    stream = _start(params) if stream is None else stream
    actions = np.zeros((steps,), np.int32) if actions is None else np.asarray(actions, np.int32)
    return _collect(params, stream, actions)


@jax.jit
def _start(params):
    return start_stream(ENV, params, jax.random.key(0))


@jax.jit
def _collect(params, stream, actions):
    act = lambda obs, a: a
    return collect(ENV, params, act, actions, stream, jax.random.key(1), discount=GAMMA)


def closed_form(k, n):
    """Discounted return from pos k in an episode of length n (reward 1 per step)."""
    return (1 - GAMMA ** (n - k)) / (1 - GAMMA)


def test_auto_reset_discounts_and_counters():
    params = CountParams(length=3)
    rollout, stream = run(params, 7)
    np.testing.assert_array_equal(rollout.obs[:, 0], [0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(rollout.final_obs[:, 0], [1, 2, 3, 1, 2, 3, 1])
    terminal = np.array([0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_allclose(rollout.discount_t, np.float32(GAMMA) * (1 - terminal))
    assert rollout.discount_t.dtype == rollout.rewards.dtype == jnp.float32
    np.testing.assert_array_equal(rollout.truncated, np.zeros(7, bool))
    assert int(stream.env_steps) == 7 and float(stream.reward_sum) == 7.0
    assert int(stream.episodes) == 2 and float(stream.episode_return_sum) == 6.0
    assert float(stream.episode_return) == 1.0  # the running third episode
    np.testing.assert_array_equal(stream.obs, rollout.obs[-1])

    # The stream continues where it stopped, counters accumulate, actions reach the env.
    rollout2, stream2 = run(params, 4, stream, actions=[1, 0, 0, 1])
    np.testing.assert_array_equal(rollout2.obs[:, 0], [1, 2, 0, 1, 2])
    np.testing.assert_array_equal(rollout2.rewards, [2, 1, 1, 2])
    assert int(stream2.env_steps) == 11 and float(stream2.reward_sum) == 13.0
    assert int(stream2.episodes) == 3 and float(stream2.episode_return_sum) == 6.0 + 1 + 2 + 1
    assert float(stream2.episode_return) == 3.0


def test_returns_of_two_episodes_in_one_trace_equal_each_episode_alone():
    """The model is rlax's multistep tests: an identity between two ways of computing returns.
    Here the trace [episode 1 | episode 2 | start of episode 3] against each segment alone, and
    both against the closed form."""
    rollout, _ = run(CountParams(length=3), 7)
    v_bootstrap = 5.0  # V(s_7), the value after the rollout
    segments = [(0, 3, 123.0), (3, 6, -7.0), (6, 7, v_bootstrap)]  # the bootstrap of a finished
    # episode is multiplied by its terminal discount 0: any value gives the same.

    @jax.jit  # the trace and its segments, one program
    def whole_and_alone(rewards, discount_t):
        alone = [n_step_returns(rewards[a:b], discount_t[a:b], v) for a, b, v in segments]
        return n_step_returns(rewards, discount_t, v_bootstrap), jnp.concatenate(alone)

    returns, alone = whole_and_alone(rollout.rewards, rollout.discount_t)
    expected = [closed_form(k, 3) for k in range(3)] * 2 + [1 + GAMMA * v_bootstrap]
    np.testing.assert_allclose(returns, expected, rtol=1e-6)  # float32 discounts
    np.testing.assert_array_equal(returns, alone)

    # The a2c loss of the trace is the step-weighted mean of the segments' losses.
    key_logits, key_v = jax.random.split(jax.random.key(3))
    logits = jax.random.normal(key_logits, (7, 2), jnp.float64)
    v = jax.random.normal(key_v, (7,), jnp.float64)
    actions = jnp.array([0, 1, 1, 0, 1, 0, 0])

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def loss(a, b, bootstrap):
        return a2c_loss(
            logits[a:b],
            v[a:b],
            actions[a:b],
            rollout.rewards[a:b],
            rollout.discount_t[a:b],
            bootstrap,
            entropy_cost=0.3,
            value_cost=0.7,
        )

    whole, metrics = loss(0, 7, v_bootstrap)
    parts = [loss(a, b, boot) for a, b, boot in segments]
    np.testing.assert_allclose(
        whole, sum((b - a) * p[0] for (a, b, _), p in zip(segments, parts, strict=True)) / 7
    )
    for name in ("pg_loss", "value_loss", "entropy"):
        weighted = (
            sum((b - a) * p[1][name] for (a, b, _), p in zip(segments, parts, strict=True)) / 7
        )
        np.testing.assert_allclose(metrics[name], weighted, rtol=1e-12)


def test_truncation_bootstraps_from_the_value_of_the_final_observation():
    """Time limit 2 in an endless corridor: steps 1 and 3 are truncated; their returns bootstrap
    from V(final_obs) = V(pos 2), not from the next episode's first state."""
    rollout, stream = run(CountParams(length=100, max_steps_in_episode=2), 5)
    np.testing.assert_array_equal(rollout.truncated, [0, 1, 0, 1, 0])
    np.testing.assert_allclose(rollout.discount_t, np.full(5, np.float32(GAMMA)))  # not terminal
    np.testing.assert_array_equal(rollout.obs[:, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(rollout.final_obs[:, 0], [1, 2, 1, 2, 1])
    assert int(stream.episodes) == 2 and float(stream.episode_return_sum) == 4.0

    value = lambda obs: 10.0 + obs[..., 0]  # V(s) = 10 + pos
    q = lambda obs: jnp.stack([value(obs), value(obs) - 1.0], axis=-1)  # greedy action 0

    @jax.jit  # the returns and the Q(lambda) loss, one program
    def returns_and_q_lambda_loss(rollout):
        returns = n_step_returns(
            rollout.rewards,
            rollout.discount_t,
            value(rollout.obs[-1]),
            rollout.truncated,
            value(rollout.final_obs),
        )
        loss, _ = q_lambda_loss(
            jnp.zeros((5, 2)),
            rollout.actions,
            rollout.rewards,
            rollout.discount_t,
            q(rollout.obs[1:]),
            rollout.truncated,
            q(rollout.final_obs),
            lambda_=1.0,
        )
        return returns, loss

    returns, loss = returns_and_q_lambda_loss(rollout)
    g = np.float32(GAMMA)
    g4 = 1 + g * 11  # V(s_5) = V(pos 1)
    g3 = 1 + g * 12  # truncated: V(pos 2), not g4
    g2 = 1 + g * g3
    g1 = 1 + g * 12
    g0 = 1 + g * g1
    np.testing.assert_allclose(returns, [g0, g1, g2, g3, g4], rtol=1e-6)

    # Q(lambda) bootstraps from max_a Q(final_obs, a) the same way (lambda = 1, greedy actions).
    # The last step's trace is cut (Watkins: a_T unknown), which gives the same g4 here.
    np.testing.assert_allclose(loss, 0.5 * np.mean(np.square([g0, g1, g2, g3, g4])), rtol=1e-6)


def test_missing_final_values_fail_with_a_sentence():
    rollout, _ = run(CountParams(), 2)
    with pytest.raises(ValueError, match="v_final_t"):
        n_step_returns(rollout.rewards, rollout.discount_t, 0.0, rollout.truncated)


def test_env_steps_saturate_instead_of_wrapping():
    stream = start_stream(ENV, CountParams(), jax.random.key(0))
    stream = stream._replace(env_steps=jnp.asarray(INT32_MAX - 5, jnp.int32))
    _, stream = run(CountParams(), 4, stream)
    assert int(stream.env_steps) == INT32_MAX - 1
    _, stream = run(CountParams(), 4, stream)
    assert int(stream.env_steps) == INT32_MAX


@pytest.mark.slow
def test_collect_on_minatar_breakout():
    env, params = gymnax.make("Breakout-MinAtar")
    steps = 200
    actions = jax.random.randint(jax.random.key(5), (steps,), 0, env.num_actions)
    stream = jax.jit(lambda: start_stream(env, params, jax.random.key(0)))()
    rollout, stream = jax.jit(
        lambda s: collect(
            env, params, lambda obs, a: a, actions, s, jax.random.key(1), discount=0.99
        )
    )(stream)
    assert isinstance(rollout, Rollout)
    assert rollout.obs.shape == (steps + 1, 10, 10, 4) and rollout.final_obs.shape == (
        steps,
        10,
        10,
        4,
    )
    done = np.asarray(rollout.discount_t == 0) | np.asarray(rollout.truncated)
    assert done.sum() >= 1  # random play loses the ball within 200 steps
    assert int(stream.episodes) == done.sum()
    np.testing.assert_allclose(stream.reward_sum, np.sum(rollout.rewards))
    np.testing.assert_allclose(
        set(np.unique(np.asarray(rollout.discount_t)).tolist()) <= {0.0, np.float32(0.99)}, True
    )
    # Where an episode ended, the next observation is a fresh reset, the final one is not.
    t = int(np.flatnonzero(done)[0])
    assert not np.array_equal(rollout.obs[t + 1], rollout.final_obs[t])
    np.testing.assert_array_equal(rollout.obs[1 : t + 1], rollout.final_obs[:t])
