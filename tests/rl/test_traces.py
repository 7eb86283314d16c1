"""Incremental Q(lambda) (``bmg.rl.q_lambda_increment``) against Peng & Williams' tabular
algorithm and Watkins' written by hand in numpy, and the identities of its trace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg import rl
from bmg.agents.networks import MLP

NUM_STATES, NUM_ACTIONS = 6, 2


def tabular_q(params, obs):
    """One-hot features: Q(s, .) = row s of the table (obs float[N, S], one-hot)."""
    return obs @ params


def chain_transitions(num_steps, seed):
    """A random walk on a 6-state chain (actions 0 = left, 1 = right, both random); reaching
    state 5 ends the episode with reward 1 (discount 0) and restarts at state 0."""
    rng = np.random.default_rng(seed)
    s, out = 0, []
    for _ in range(num_steps):
        a = int(rng.integers(NUM_ACTIONS))
        s_next = min(s + 1, NUM_STATES - 1) if a == 1 else max(s - 1, 0)
        terminal = s_next == NUM_STATES - 1
        reward = 1.0 if terminal else -0.01 * rng.random()
        out.append((s, a, reward, 0.0 if terminal else 1.0, 0 if terminal else s_next))
        s = 0 if terminal else s_next
    return out


def peng_williams_tabular(transitions, alpha, gamma, lam, q0):
    """Peng & Williams (1994), the tabular algorithm step by step, in float64; the trace table
    is cleared at the start of every episode (continuing = discount 1 below)."""
    q, trace = q0.astype(np.float64).copy(), np.zeros_like(q0, np.float64)
    for s, a, r, cont, s_next in transitions:
        target = r + gamma * cont * q[s_next].max()
        e_prime = target - q[s].max()
        e = target - q[s, a]
        trace *= gamma * lam
        q += alpha * trace * e_prime
        q[s, a] += alpha * e
        trace[s, a] += 1.0
        if not cont:  # a new episode starts: no credit flows into the last one
            trace[:] = 0.0
    return q


def watkins_tabular(transitions, alpha, gamma, lam, q0):
    """Watkins' Q(lambda) (Sutton & Barto, 2nd ed., 12.10), accumulating trace, cut where the
    action taken is not greedy for the current table."""
    q, trace = q0.astype(np.float64).copy(), np.zeros_like(q0, np.float64)
    for s, a, r, cont, s_next in transitions:
        if a != q[s].argmax():
            trace[:] = 0.0
        trace[s, a] += 1.0
        delta = r + gamma * cont * q[s_next].max() - q[s, a]
        q += alpha * delta * trace
        trace *= gamma * lam * cont
    return q


def run_increments(transitions, alpha, gamma, lam, q0, kind):
    step = jax.jit(
        lambda params, trace, s, a, r, d, s1: rl.q_lambda_increment(
            tabular_q, params, trace, s, a, r, d, s1, lambda_=lam, kind=kind
        )
    )
    eye = np.eye(NUM_STATES, dtype=np.float32)
    params = jnp.asarray(q0, jnp.float32)
    trace = jnp.zeros_like(params)
    for s, a, r, cont, s_next in transitions:
        direction, trace, _ = step(
            params,
            trace,
            eye[s],
            jnp.int32(a),
            jnp.float32(r),
            jnp.float32(gamma * cont),
            eye[s_next],
        )
        params = params - alpha * direction  # plain SGD
    return np.asarray(params)


@pytest.mark.parametrize("lam", [0.0, 0.9])
def test_peng_equals_the_tabular_algorithm_on_one_hot_features(lam):
    transitions = chain_transitions(400, seed=0)
    q0 = np.random.default_rng(1).normal(scale=0.1, size=(NUM_STATES, NUM_ACTIONS))
    expected = peng_williams_tabular(transitions, 0.1, 0.9, lam, q0)
    got = run_increments(transitions, 0.1, 0.9, lam, q0, "peng")
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # lambda matters: the lambda = 0 table is a different one.
    if lam > 0:
        other = peng_williams_tabular(transitions, 0.1, 0.9, 0.0, q0)
        assert np.abs(other - expected).max() > 1e-2


def test_watkins_equals_the_tabular_algorithm_on_one_hot_features():
    transitions = chain_transitions(400, seed=2)
    q0 = np.random.default_rng(3).normal(scale=0.1, size=(NUM_STATES, NUM_ACTIONS))
    expected = watkins_tabular(transitions, 0.1, 0.9, 0.8, q0)
    np.testing.assert_allclose(
        run_increments(transitions, 0.1, 0.9, 0.8, q0, "watkins"), expected, atol=2e-5
    )
    # Peng's on the same data is a different algorithm (random actions are often not greedy).
    assert np.abs(peng_williams_tabular(transitions, 0.1, 0.9, 0.8, q0) - expected).max() > 1e-2


NET = MLP((8, 8), 3)
OBS = jax.random.normal(jax.random.key(0), (2, 5))
PARAMS = NET.init(jax.random.key(1), OBS[0])
TRACE = jax.tree.map(lambda x: jax.random.normal(jax.random.key(2), x.shape), PARAMS)


def increment(kind, lam=0.7, discount=0.9, greedy=None, a=1, trace=TRACE):
    return rl.q_lambda_increment(
        NET.apply,
        PARAMS,
        trace,
        OBS[0],
        jnp.int32(a),
        jnp.float32(0.3),
        jnp.float32(discount),
        OBS[1],
        lambda_=lam,
        kind=kind,
        greedy_t=greedy,
    )


def grad_q(a):
    return jax.grad(lambda p: NET.apply(p, OBS[0])[a])(PARAMS)


def test_lambda_zero_is_one_step_q_learning_on_a_network():
    """lambda = 0 and a zero trace: the direction is the gradient of
    1/2 (r + discount max_a Q(s', a) - Q(s, a))^2 with the target held fixed."""

    def loss(p):
        target = 0.3 + 0.9 * jnp.max(jax.lax.stop_gradient(NET.apply(p, OBS[1])))
        return 0.5 * (target - NET.apply(p, OBS[0])[1]) ** 2

    expected = jax.grad(loss)(PARAMS)
    for kind in rl.TRACES:
        zero = jax.tree.map(jnp.zeros_like, PARAMS)
        direction, next_trace, _ = increment(kind, lam=0.0, trace=zero)
        for got, want in zip(jax.tree.leaves(direction), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert all(float(jnp.abs(z).max()) == 0 for z in jax.tree.leaves(next_trace))


def test_the_trace_decays_by_gamma_lambda_and_watkins_cuts_at_non_greedy_actions():
    g = grad_q(1)
    _, peng, _ = increment("peng")
    _, kept, _ = increment("watkins", greedy=jnp.bool_(True))
    _, cut, _ = increment("watkins", greedy=jnp.bool_(False))
    _, ended, _ = increment("peng", discount=0.0)
    for z, grad, p, k, c, e in zip(
        *(jax.tree.leaves(t) for t in (TRACE, g, peng, kept, cut, ended)), strict=True
    ):
        np.testing.assert_allclose(p, 0.63 * (z + grad), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(k, 0.63 * (z + grad), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(c, 0.63 * grad, rtol=1e-5, atol=1e-7)  # history dropped
        assert float(jnp.abs(e).max()) == 0  # an episode's end clears the trace


def test_peng_moves_past_pairs_by_the_td_error_of_v():
    q = NET.apply(PARAMS, OBS)
    target = 0.3 + 0.9 * jnp.max(q[1])
    e, e_prime = target - q[0, 1], target - jnp.max(q[0])
    direction, _, info = increment("peng")
    np.testing.assert_allclose(info["td_error"], e, rtol=1e-6)
    np.testing.assert_allclose(info["trace_correction"], e_prime, rtol=1e-6)
    g = grad_q(1)
    for d, z, grad in zip(*(jax.tree.leaves(t) for t in (direction, TRACE, g)), strict=True):
        np.testing.assert_allclose(d, -(e_prime * z + e * grad), rtol=1e-5, atol=1e-6)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of peng, watkins, got 'tree'"):
        increment("tree")
