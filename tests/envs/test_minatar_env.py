"""MinAtar protocol options: sticky actions repeat the previous action with probability p (and
forget it at an episode's end, as MinAtar does); the full action set maps onto the minimal one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg.envs import minatar


def _step_many(env, params, state, action, keys):
    return jax.jit(jax.vmap(lambda k: env.step(k, state, action, params)))(keys)


def test_sticky_actions_repeat_the_previous_action_with_probability_p():
    """From a state whose last executed action is 'left' (1), choosing 'right' (2 in Breakout's
    minimal set): over 20,000 keys 'left' is executed in 10% of them (binomial, 5 sigma), and
    exactly where gymnax's Bernoulli draw on the key's first half says so."""
    env, params = minatar.make("Breakout-MinAtar", sticky_action_prob=0.1)
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(last_action=jnp.asarray(1, state.last_action.dtype))
    keys = jax.random.split(jax.random.key(1), 20_000)
    _, next_state, *_ = _step_many(env, params, state, 2, keys)
    repeated = np.asarray(next_state.last_action == 1)
    assert set(np.unique(np.asarray(next_state.last_action))) == {1, 2}
    n = repeated.size
    assert abs(repeated.mean() - 0.1) < 5 * np.sqrt(0.1 * 0.9 / n)
    draws = jax.vmap(lambda k: jax.random.bernoulli(jax.random.split(k)[0], 0.1))(keys)
    np.testing.assert_array_equal(repeated, np.asarray(draws))
    # The executed action moved the paddle: left from 4 to 3 where repeated, right to 5 else.
    np.testing.assert_array_equal(np.asarray(next_state.env_state.pos), np.where(repeated, 3, 5))


def test_sticky_probability_one_always_repeats_and_zero_never_wraps():
    env, params = minatar.make("Breakout-MinAtar", sticky_action_prob=1.0)
    _, state = env.reset(jax.random.key(0), params)
    keys = jax.random.split(jax.random.key(2), 64)
    _, next_state, *_ = _step_many(env, params, state, 2, keys)
    assert np.all(np.asarray(next_state.last_action) == 0)  # the initial no-op, forever
    assert np.all(np.asarray(next_state.env_state.pos) == 4)
    plain, _ = minatar.make("Breakout-MinAtar")
    assert not isinstance(plain, minatar.StickyActions)


def test_sticky_action_is_forgotten_when_an_episode_ends():
    """MinAtar's reset sets the last action to no-op; gymnax's wrapper alone would keep it."""
    env, params = minatar.make("Breakout-MinAtar", sticky_action_prob=0.1)
    params = params.replace(max_steps_in_episode=1)  # every step truncates
    _, state = env.reset(jax.random.key(0), params)
    _, state, _, terminated, truncated, _ = env.step(jax.random.key(3), state, 1, params)
    assert bool(terminated | truncated)
    assert int(state.last_action) == 0


@pytest.mark.parametrize("game", minatar.GAMES)
def test_full_action_set_has_six_actions_and_contains_the_minimal_set(game):
    full, params = minatar.make(game, full_action_set=True)
    minimal, _ = minatar.make(game)
    assert full.action_space(params).n == 6 == len(minatar.FULL_ACTIONS)
    np.testing.assert_array_equal(np.asarray(full.action_set), np.arange(6))
    mapping = np.asarray(minimal.minimal_action_set)
    assert minimal.action_space(params).n == len(mapping)
    np.testing.assert_array_equal(np.asarray(minimal.action_set), mapping)


def test_minimal_action_i_acts_like_full_action_minimal_set_i():
    """Breakout: minimal [no-op, left, right] are full actions [0, 1, 3]: the same next state
    and reward from the same state and key; full actions up, down, fire (2, 4, 5) do nothing."""
    full, params = minatar.make("Breakout-MinAtar", full_action_set=True)
    minimal, _ = minatar.make("Breakout-MinAtar")
    _, state = minimal.reset(jax.random.key(0), params)
    key = jax.random.key(1)
    step = lambda env: jax.jit(jax.vmap(lambda a: env.step(key, state, a, params)[:3]))
    o1, s1, r1 = step(minimal)(jnp.arange(3))
    o2, s2, r2 = step(full)(jnp.arange(6))
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o2)[np.array([0, 1, 3])])
    np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2)[np.array([0, 1, 3])])
    np.testing.assert_array_equal(np.asarray(s2.pos), [4, 3, 4, 5, 4, 4])


def test_bad_options_fail_in_one_sentence():
    with pytest.raises(ValueError, match=r"^env must be one of .*Pong"):
        minatar.make("Pong")
    with pytest.raises(ValueError, match=r"^sticky_action_prob must be a number in \[0, 1\]"):
        minatar.make("Breakout-MinAtar", sticky_action_prob=1.5)
