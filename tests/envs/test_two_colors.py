"""Tests for the Two-colors grid world (bmg.envs.two_colors.TwoColors, a gymnax Environment)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment
from gymnax.wrappers.purerl import FlattenObservationWrapper

from bmg.envs import two_colors as tc

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
KEY = jax.random.PRNGKey(0)
ENV = tc.TwoColors()


def onehot(i, n=5):
    v = np.zeros(n, np.float32)
    v[i] = 1.0
    return v


def expected_obs(agent, obj0, obj1, n=5):
    """Hand-written layout: agent col, agent row, obj0 col, obj0 row, obj1 col, obj1 row."""
    (ar, ac), (r0, c0), (r1, c1) = agent, obj0, obj1
    return np.concatenate(
        [onehot(ac, n), onehot(ar, n), onehot(c0, n), onehot(r0, n), onehot(c1, n), onehot(r1, n)]
    )


def cells(state):
    return [tuple(np.asarray(state.agent))] + [tuple(o) for o in np.asarray(state.objects)]


# ---------------------------------------------------------------------------------------------
# Dynamics and rewards


def test_hand_worked_trajectory():
    params = tc.make_params()
    state = tc.make_state(agent=(2, 2), objects=((2, 4), (0, 2)))

    obs, state, r, term, trunc, info = ENV.step(KEY, state, RIGHT, params)
    assert float(r) == 0.0
    assert r.dtype == jnp.float32
    assert int(info["picked"]) == -1
    assert cells(state) == [(2, 3), (2, 4), (0, 2)]
    assert obs.dtype == jnp.float32 and obs.shape == (30,)
    hand = np.array(
        [0, 0, 0, 1, 0]  # agent col 3
        + [0, 0, 1, 0, 0]  # agent row 2
        + [0, 0, 0, 0, 1]  # obj0 col 4
        + [0, 0, 1, 0, 0]  # obj0 row 2
        + [0, 0, 1, 0, 0]  # obj1 col 2
        + [1, 0, 0, 0, 0],  # obj1 row 0
        np.float32,
    )
    np.testing.assert_array_equal(np.asarray(obs), hand)

    obs, state, r, term, trunc, info = ENV.step(jax.random.PRNGKey(1), state, RIGHT, params)
    assert float(r) == 1.0
    assert int(info["picked"]) == 0
    assert int(info["good_object"]) == 0
    assert int(state.time) == 2


def test_observation_matches_state_layout():
    params = tc.make_params(grid_size=7)
    state = tc.make_state(agent=(1, 5), objects=((6, 0), (3, 2)))
    obs = tc.observation(state, params)
    assert obs.shape == (tc.observation_size(params),) == (42,)
    np.testing.assert_array_equal(np.asarray(obs), expected_obs((1, 5), (6, 0), (3, 2), n=7))


def test_moves_in_the_open():
    params = tc.make_params()
    expected = {UP: (1, 2), DOWN: (3, 2), LEFT: (2, 1), RIGHT: (2, 3)}
    for action, target in expected.items():
        state = tc.make_state(agent=(2, 2), objects=((4, 4), (0, 0)))
        _, new, r, *_ = ENV.step(KEY, state, action, params)
        assert tuple(np.asarray(new.agent)) == target
        assert float(r) == 0.0


@pytest.mark.parametrize(
    "start, action", [((0, 0), UP), ((0, 0), LEFT), ((4, 4), DOWN), ((4, 4), RIGHT)]
)
def test_walls_leave_agent_in_place(start, action):
    params = tc.make_params()
    state = tc.make_state(agent=start, objects=((2, 2), (3, 1)))
    _, new, r, *_ = ENV.step(KEY, state, action, params)
    assert tuple(np.asarray(new.agent)) == start
    assert cells(new)[1:] == [(2, 2), (3, 1)]
    assert float(r) == 0.0


def pick_reward(time, obj, params):
    """Reward of stepping RIGHT onto object ``obj`` on (global) step index ``time``."""
    objects = ((2, 3), (0, 0)) if obj == 0 else ((0, 0), (2, 3))
    state = tc.make_state(agent=(2, 2), objects=objects, time=tc.clock(time, params))
    _, new, r, _, _, info = ENV.step(KEY, state, RIGHT, params)
    assert int(info["picked"]) == obj
    assert int(new.time) == tc.clock(time + 1, params)
    return float(r), int(info["good_object"])


def test_flip_exactly_at_switch_boundary():
    params = tc.make_params(switch_every=3)
    for t, good in [(0, 0), (2, 0), (3, 1), (5, 1), (6, 0), (8, 0), (9, 1)]:
        r0, g = pick_reward(t, 0, params)
        r1, _ = pick_reward(t, 1, params)
        assert g == good, t
        assert r0 == (1.0 if good == 0 else -1.0), t
        assert r1 == -r0, t


def test_default_flip_at_100k():
    params = tc.make_params()
    assert pick_reward(99_999, 0, params) == (1.0, 0)
    assert pick_reward(100_000, 0, params) == (-1.0, 1)
    assert pick_reward(100_000, 1, params) == (1.0, 1)
    assert pick_reward(200_000, 0, params) == (1.0, 0)


def test_step_penalty():
    params = tc.make_params(step_penalty=0.04)
    state = tc.make_state(agent=(2, 2), objects=((4, 4), (0, 0)))
    _, _, r, *_ = ENV.step(KEY, state, UP, params)
    assert float(r) == pytest.approx(-0.04)
    assert r.dtype == jnp.float32
    # A pick-up gives exactly +-1, no penalty added.
    assert pick_reward(0, 0, params)[0] == 1.0
    assert pick_reward(0, 1, params)[0] == -1.0


def test_terminated_truncated_false_and_time_increments():
    params = tc.make_params(respawn="object")
    _, state = ENV.reset(KEY, params)
    step = jax.jit(ENV.step)
    keys = jax.random.split(jax.random.PRNGKey(3), 60)
    for i, k in enumerate(keys):
        _, state, _, term, trunc, _ = step(k, state, i % 4, params)
        assert term.dtype == jnp.bool_ and trunc.dtype == jnp.bool_
        assert not bool(term) and not bool(trunc)
        assert int(state.time) == i + 1


def test_scan_stream_invariants():
    """A long random stream: positions stay in the grid and distinct, rewards are legal."""
    for respawn in ("all", "object"):
        params = tc.make_params(respawn=respawn, switch_every=50, step_penalty=0.5)
        _, state = ENV.reset(jax.random.PRNGKey(11), params)

        def body(s, k, params=params):
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (), 0, tc.NUM_ACTIONS)
            _, s2, r, *_ = ENV.step(ks, s, a, params)
            return s2, (s2.agent, s2.objects, r)

        keys = jax.random.split(jax.random.PRNGKey(12), 2000)
        final, (agents, objects, rewards) = jax.lax.scan(body, state, keys)
        assert int(final.time) == tc.clock(2000, params) == 2000 % 100
        pos = np.concatenate([np.asarray(agents)[:, None], np.asarray(objects)], axis=1)
        assert pos.min() >= 0 and pos.max() <= 4
        flat = pos[..., 0] * 5 + pos[..., 1]
        assert np.all(np.sort(flat, axis=1)[:, 1:] != np.sort(flat, axis=1)[:, :-1])
        rewards = np.asarray(rewards)
        assert set(np.unique(rewards)) <= {-1.0, -0.5, 1.0}
        assert (rewards == 1.0).sum() > 0 and (rewards == -1.0).sum() > 0


# ---------------------------------------------------------------------------------------------
# Re-spawn


def batched_pickups(params, n_keys=1000):
    state = tc.make_state(agent=(2, 2), objects=((2, 3), (0, 1)))
    keys = jax.random.split(jax.random.PRNGKey(7), n_keys)
    step = jax.jit(jax.vmap(ENV.step, in_axes=(0, None, None, None)))
    _, new, r, _, _, info = step(keys, state, jnp.int32(RIGHT), params)
    assert np.all(np.asarray(info["picked"]) == 0)
    assert np.all(np.asarray(r) == 1.0)
    return np.asarray(new.agent), np.asarray(new.objects)


def test_respawn_all_distinct_in_grid_and_random():
    agents, objects = batched_pickups(tc.make_params(respawn="all"))
    pos = np.concatenate([agents[:, None], objects], axis=1)  # (1000, 3, 2)
    assert pos.min() >= 0 and pos.max() <= 4
    flat = pos[..., 0] * 5 + pos[..., 1]
    assert all(len(set(row)) == 3 for row in flat.tolist())
    # Random, and every cell reachable for each of the three (1000 draws, 25 cells).
    for j in range(3):
        assert len(np.unique(flat[:, j])) == 25
    # Not always the pre-pickup configuration.
    assert np.mean(np.all(agents == (2, 3), axis=1)) < 0.2


def test_respawn_object_moves_only_collected_object():
    agents, objects = batched_pickups(tc.make_params(respawn="object"))
    assert np.all(agents == (2, 3))  # agent stays where it moved
    assert np.all(objects[:, 1] == (0, 1))  # the other object stays put
    new = objects[:, 0]
    assert new.min() >= 0 and new.max() <= 4
    flat = new[:, 0] * 5 + new[:, 1]
    assert not np.any(flat == 2 * 5 + 3)  # not on the agent
    assert not np.any(flat == 0 * 5 + 1)  # not on the other object
    # Uniform over the 23 free cells: all are hit, none wildly over-represented.
    counts = np.bincount(flat, minlength=25)
    free = np.setdiff1d(np.arange(25), [13, 1])
    assert np.all(counts[free] > 0)
    assert counts.max() < 3 * 1000 / 23


def test_respawn_object_second_object():
    params = tc.make_params(respawn="object")
    state = tc.make_state(agent=(0, 0), objects=((4, 4), (1, 0)))
    keys = jax.random.split(jax.random.PRNGKey(5), 300)
    _, new, r, _, _, info = jax.jit(jax.vmap(ENV.step, in_axes=(0, None, None, None)))(
        keys, state, jnp.int32(DOWN), params
    )
    assert np.all(np.asarray(info["picked"]) == 1)
    assert np.all(np.asarray(r) == -1.0)
    assert np.all(np.asarray(new.agent) == (1, 0))
    assert np.all(np.asarray(new.objects)[:, 0] == (4, 4))
    moved = np.asarray(new.objects)[:, 1]
    assert not np.any(np.all(moved == (1, 0), axis=1))
    assert not np.any(np.all(moved == (4, 4), axis=1))
    assert len(np.unique(moved[:, 0] * 5 + moved[:, 1])) > 15


def test_no_respawn_without_pickup():
    for respawn in ("all", "object"):
        params = tc.make_params(respawn=respawn)
        state = tc.make_state(agent=(2, 2), objects=((4, 4), (0, 0)))
        _, new, *_ = ENV.step(KEY, state, DOWN, params)
        assert cells(new) == [(3, 2), (4, 4), (0, 0)]


# ---------------------------------------------------------------------------------------------
# Reset


def test_reset_distinct_and_uniform():
    params = tc.make_params()
    keys = jax.random.split(jax.random.PRNGKey(2), 2000)
    obs, state = jax.jit(jax.vmap(ENV.reset, in_axes=(0, None)))(keys, params)
    obs, agent, objects = np.asarray(obs), np.asarray(state.agent), np.asarray(state.objects)
    assert obs.shape == (2000, 30)
    assert np.all(obs.sum(axis=1) == 6) and set(np.unique(obs)) == {0.0, 1.0}
    assert np.all(np.asarray(state.time) == 0)
    pos = np.concatenate([agent[:, None], objects], axis=1)
    flat = pos[..., 0] * 5 + pos[..., 1]
    assert all(len(set(row)) == 3 for row in flat.tolist())
    counts = np.bincount(flat[:, 0], minlength=25)
    assert np.all(counts > 0)  # covers all 25 cells
    assert counts.max() < 2 * 2000 / 25
    # The observation is consistent with the state.
    for i in range(5):
        np.testing.assert_array_equal(obs[i], expected_obs(agent[i], objects[i, 0], objects[i, 1]))


# ---------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize(
    "field, value",
    [
        ("grid_size", 1),
        ("grid_size", 5.0),
        ("grid_size", True),
        ("switch_every", 0),
        ("switch_every", -3),
        ("switch_every", 2.5),
        ("switch_every", 2**30),
        ("respawn", "none"),
        ("respawn", None),
        ("step_penalty", -0.1),
        ("step_penalty", math.inf),
        ("step_penalty", math.nan),
        ("step_penalty", "0.04"),
    ],
)
def test_make_params_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        tc.make_params(**{field: value})


def test_make_params_rejects_unknown_field():
    with pytest.raises(ValueError, match="gridsize"):
        tc.make_params(gridsize=5)


def test_make_params_defaults_and_static_fields():
    params = tc.make_params()
    assert (params.grid_size, params.switch_every, params.respawn) == (5, 100_000, "all")
    assert params.step_penalty == 0.0
    assert tc.observation_size(params) == 30
    # Only step_penalty is a pytree leaf.
    assert len(jax.tree_util.tree_leaves(params)) == 1


# ---------------------------------------------------------------------------------------------
# jit / vmap


@pytest.mark.parametrize("respawn", ["all", "object"])
def test_jit_and_vmap_match_eager(respawn):
    params = tc.make_params(respawn=respawn, step_penalty=0.04)
    state = tc.make_state(agent=(2, 2), objects=((2, 3), (4, 0)), time=5)
    key = jax.random.PRNGKey(42)
    eager = ENV.step(key, state, RIGHT, params)
    jitted = jax.jit(ENV.step)(key, state, RIGHT, params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, eager, jitted)

    # vmap over a batch of states/actions/keys equals a loop of single steps.
    agents = jnp.array([[2, 2], [0, 0], [4, 4]], jnp.int32)
    objects = jnp.array([[[2, 3], [4, 0]], [[1, 0], [3, 3]], [[0, 4], [4, 3]]], jnp.int32)
    times = jnp.array([5, 6, 7], jnp.int32)
    actions = jnp.array([RIGHT, DOWN, LEFT], jnp.int32)
    keys = jax.random.split(key, 3)
    batch = tc.make_state(agents, objects, times)
    out = jax.vmap(ENV.step, in_axes=(0, 0, 0, None))(keys, batch, actions, params)
    for i in range(3):
        single = ENV.step(
            keys[i], tc.make_state(agents[i], objects[i], times[i]), actions[i], params
        )
        jax.tree_util.tree_map(
            lambda b, s, i=i: np.testing.assert_array_equal(np.asarray(b)[i], s), out, single
        )


# ---------------------------------------------------------------------------------------------
# The gymnax interface


def test_is_a_gymnax_environment():
    params = tc.make_params(grid_size=4)
    assert isinstance(ENV, environment.Environment)
    assert ENV == tc.TwoColors() and hash(ENV) == hash(tc.TwoColors())  # one jit cache entry
    assert ENV.num_actions == tc.NUM_ACTIONS == ENV.action_space(params).n == 4
    assert ENV.observation_space(params).shape == (24,)
    assert ENV.observation_space(params).dtype == jnp.float32
    assert ENV.default_params == tc.EnvParams()
    state = tc.make_state(agent=(1, 1), objects=((1, 2), (3, 3)))
    assert not bool(ENV.is_terminated(state, params)) and not bool(ENV.is_truncated(state, params))
    np.testing.assert_array_equal(ENV.get_obs(state, params), tc.observation(state, params))


@pytest.mark.parametrize("respawn", ["all", "object"])
def test_step_is_step_env_with_the_unsplit_key(respawn):
    """No reset branch: the re-spawn draws from the step key itself, as step_env does."""
    params = tc.make_params(respawn=respawn)
    state = tc.make_state(agent=(2, 2), objects=((2, 3), (0, 1)), time=7)
    key = jax.random.PRNGKey(9)
    obs, new, r, term, trunc, info = ENV.step(key, state, RIGHT, params)
    # compiled (eagerly, each operation compiles alone; test_jit_and_vmap_match_eager shows
    # compiled and eager steps agree)
    obs_e, new_e, r_e, term_e, info_e = jax.jit(ENV.step_env)(key, state, RIGHT, params)
    assert float(r) == 1.0  # a pick-up: the key matters
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, (obs, new, r, term), (obs_e, new_e, r_e, term_e)
    )
    assert set(info) == {"picked", "good_object", "terminated", "truncated", "final_observation"}
    np.testing.assert_array_equal(info["final_observation"], obs)
    assert not bool(info["terminated"]) and not bool(info["truncated"]) and not bool(trunc)
    # gymnax's own step splits the key and would re-spawn elsewhere.
    gymnax_step = jax.jit(lambda *args: environment.Environment.step(ENV, *args))
    _, gymnax_state, *_ = gymnax_step(key, state, RIGHT, params)
    assert cells(gymnax_state) != cells(new)


def test_clock_wraps_at_twice_switch_every():
    params = tc.make_params(switch_every=3)
    state = tc.make_state(agent=(2, 2), objects=((4, 4), (0, 0)))
    times = []
    for _ in range(8):
        _, state, *_ = ENV.step(KEY, state, UP, params)
        times.append(int(state.time))
    assert times == [1, 2, 3, 4, 5, 0, 1, 2]
    assert [tc.clock(n, params) for n in (0, 5, 6, 2**40 + 1)] == [0, 5, 0, (2**40 + 1) % 6]


def test_the_good_colour_and_the_next_flip_are_right_past_two_to_the_31():
    """An int32 step count wraps at 2^31 (the wrong colour paid and the next flip
    came after 83,648 steps instead of 16,352). The clock keeps the phase: from step 2^31 - 3 on,
    every step's good colour is (n // switch_every) % 2 with Python integers."""
    params = tc.make_params()  # switch_every = 100,000
    start = 2**31 - 3
    count = 16_360
    state = tc.make_state(agent=(2, 2), objects=((4, 4), (0, 0)), time=tc.clock(start, params))

    def body(state, i):
        _, state, _, _, _, info = ENV.step(KEY, state, i % 2, params)  # up, down, up, ...
        return state, (info["good_object"], state.time)

    state, (good, times) = jax.jit(
        lambda s: jax.lax.scan(body, s, jnp.arange(count, dtype=jnp.int32))
    )(state)
    steps = np.arange(start, start + count, dtype=object)
    np.testing.assert_array_equal(np.asarray(good), [(n // 100_000) % 2 for n in steps])
    np.testing.assert_array_equal(np.asarray(times), [tc.clock(n + 1, params) for n in steps])
    assert int(good[3]) == 0  # step 2^31: 2^31 = 21474 * 100,000 + 83,648, an even phase
    flips = np.flatnonzero(np.diff(np.asarray(good))) + 1
    assert list(flips) == [3 + 16_352]  # the next flip: 16,352 steps after step 2^31
    assert np.asarray(times).min() >= 0


def test_gymnax_wrappers_apply():
    """A gymnax wrapper (here FlattenObservationWrapper) wraps Two-colors like any game."""
    wrapped = FlattenObservationWrapper(ENV)
    params = tc.make_params()
    obs, state = wrapped.reset(KEY, params)
    obs2, _, r, *_ = wrapped.step(KEY, state, UP, params)
    assert obs.shape == obs2.shape == (30,) and r.dtype == jnp.float32
