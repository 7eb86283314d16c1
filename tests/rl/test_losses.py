"""bmg.rl.losses against hand computations: a2c_loss, Watkins q_lambda_loss (cut at an
exploratory action at t >= 1), and where gradients flow (values as targets: none; discounts: yes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg.rl import (
    a2c_loss,
    bootstrapped_returns,
    n_step_returns,
    one_step_returns,
    q_lambda_loss,
    watkins_lambdas,
)

pytestmark = pytest.mark.usefixtures("x64")

# --- a2c --------------------------------------------------------------------------------------

LOGITS = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0], [0.5, 0.5, -0.5]])
V = np.array([0.3, -0.2, 0.8])
ACTIONS = np.array([1, 0, 2])
REWARDS = np.array([1.0, 0.0, -1.0])
DISCOUNTS = np.array([0.9, 0.0, 0.9])  # step 1 is terminal
V_BOOT = 2.0


def log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_a2c_loss_by_hand():
    # G_2 = -1 + 0.9 * 2 = 0.8; G_1 = 0 (terminal: G_2 does not enter); G_0 = 1 + 0.9 * 0 = 1.
    returns = np.array([1.0, 0.0, 0.8])
    np.testing.assert_allclose(
        n_step_returns(jnp.asarray(REWARDS), jnp.asarray(DISCOUNTS), V_BOOT), returns, rtol=1e-12
    )
    adv = returns - V  # (0.7, 0.2, 0.0)
    logp = log_softmax(LOGITS)
    pg = -np.mean(logp[np.arange(3), ACTIONS] * adv)
    value_loss = np.mean(adv**2)
    entropy = np.mean(-np.sum(np.exp(logp) * logp, -1))
    loss, metrics = a2c_loss(
        jnp.asarray(LOGITS),
        jnp.asarray(V),
        jnp.asarray(ACTIONS),
        jnp.asarray(REWARDS),
        jnp.asarray(DISCOUNTS),
        jnp.asarray(V_BOOT),
        entropy_cost=0.25,
        value_cost=0.5,
    )
    np.testing.assert_allclose(metrics["pg_loss"], pg, rtol=1e-12)
    np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=1e-12)
    np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-12)
    np.testing.assert_allclose(loss, pg + 0.5 * value_loss - 0.25 * entropy, rtol=1e-12)


def test_a2c_gradients_flow_to_logits_values_and_discounts_not_to_the_bootstrap():
    def loss(logits, v, discounts, v_boot):
        return a2c_loss(
            logits,
            v,
            jnp.asarray(ACTIONS),
            jnp.asarray(REWARDS),
            discounts,
            v_boot,
            entropy_cost=0.0,
            value_cost=0.5,
        )[0]

    args = tuple(map(jnp.asarray, (LOGITS, V, DISCOUNTS, V_BOOT)))
    d_logits, d_v, d_discounts, d_boot = jax.grad(loss, argnums=(0, 1, 2, 3))(*args)
    returns = np.array([1.0, 0.0, 0.8])
    # Value: d/dv 0.5 * mean (G - v)^2 = -(G - v) / T; the advantage carries no gradient.
    np.testing.assert_allclose(d_v, -(returns - V) / 3, rtol=1e-12)
    # Policy: d/dlogits of -mean log pi(a) adv = -(onehot(a) - pi) adv / T.
    pi = np.exp(log_softmax(LOGITS))
    expected = -(np.eye(3)[ACTIONS] - pi) * (returns - V)[:, None] / 3
    np.testing.assert_allclose(d_logits, expected, rtol=1e-12, atol=1e-15)
    # The bootstrap value is a target: no gradient...
    assert float(d_boot) == 0.0
    # ...but a discount that enters the returns keeps its gradient (a meta-learned gamma gets
    # one). G_0 = r_0 + gamma_0 G_1, G_1 = r_1 + gamma_1 G_2, G_2 = r_2 + gamma_2 V_boot and the
    # loss 0.5 mean_t (G_t - v_t)^2 give d/d gamma_1 = [(G_1 - v_1) + (G_0 - v_0) gamma_0] G_2 / T,
    # d/d gamma_0 = (G_0 - v_0) G_1 / T = 0 (G_1 = 0), d/d gamma_2 = (G_2 - v_2) V_boot / T = 0.
    d_gamma1 = (returns[1] - V[1]) * returns[2] / 3 + (returns[0] - V[0]) * 0.9 * returns[2] / 3
    np.testing.assert_allclose(d_discounts, [0.0, d_gamma1, 0.0], rtol=1e-12, atol=1e-15)
    assert abs(d_gamma1) > 0.1


# --- one-step (TD) returns --------------------------------------------------------------------


def test_one_step_returns_by_hand_with_a_truncated_step():
    # G_t = r_t + discount_t V(s_{t+1}); step 1 is terminal (discount 0), step 2 is truncated:
    # it bootstraps from V(final_obs) = 1.5, not from V(s_3) = -0.3 (the next episode's state).
    # G_0 = 1 + 0.9 * 0.5 = 1.45;  G_1 = 0 + 0 * 2 = 0;  G_2 = -1 + 0.9 * 1.5 = 0.35.
    v_next = jnp.asarray([0.5, 2.0, -0.3])
    truncated = jnp.asarray([False, False, True])
    v_final = jnp.asarray([7.0, 7.0, 1.5])  # read only where truncated
    r, d = jnp.asarray(REWARDS), jnp.asarray(DISCOUNTS)
    np.testing.assert_allclose(
        one_step_returns(r, d, v_next, truncated, v_final), [1.45, 0.0, 0.35], rtol=1e-12
    )
    np.testing.assert_allclose(one_step_returns(r, d, v_next), [1.45, 0.0, -1.27], rtol=1e-12)
    with pytest.raises(ValueError, match="v_final_t"):
        one_step_returns(r, d, v_next, truncated)

    # The values are targets: no gradient into v_t nor v_final_t; the discounts keep theirs
    # (d G_t / d discount_t = V(s_{t+1}), 0 where truncated).
    def total(v, v_final, discounts):
        return jnp.sum(one_step_returns(r, discounts, v, truncated, v_final))

    d_v, d_final, d_discounts = jax.grad(total, argnums=(0, 1, 2))(v_next, v_final, d)
    np.testing.assert_array_equal(d_v, np.zeros(3))
    np.testing.assert_array_equal(d_final, np.zeros(3))
    np.testing.assert_allclose(d_discounts, [0.5, 2.0, 1.5], rtol=1e-12)


def test_bootstrapped_returns_td_reads_the_next_states_values():
    r, d = jnp.asarray(REWARDS), jnp.asarray(DISCOUNTS)
    # T = 3: G_t = r_t + discount_t (V(s_1), V(s_2), V(s_3) = V_BOOT)
    #      = (1 + 0.9 * -0.2, 0 + 0 * 0.8, -1 + 0.9 * 2) = (0.82, 0, 0.8).
    td = bootstrapped_returns(r, d, jnp.asarray(V), jnp.asarray(V_BOOT), advantage="td")
    np.testing.assert_allclose(td, [0.82, 0.0, 0.8], rtol=1e-12)
    n_step = bootstrapped_returns(r, d, jnp.asarray(V), jnp.asarray(V_BOOT))
    np.testing.assert_allclose(n_step, [1.0, 0.0, 0.8], rtol=1e-12)  # test_a2c_loss_by_hand
    # T = 1: one step is the whole rollout, so the two agree (0.7 + 0.9 * 2 = 2.5), with or
    # without a truncation (then 0.7 + 0.9 * 1.5 = 2.05).
    args = (jnp.asarray([0.7]), jnp.asarray([0.9]), jnp.asarray([0.3]), jnp.asarray(2.0))
    for extra, expected in (((), 2.5), ((jnp.asarray([True]), jnp.asarray([1.5])), 2.05)):
        td = bootstrapped_returns(*args, *extra, advantage="td")
        np.testing.assert_allclose(td, [expected], rtol=1e-12)
        np.testing.assert_allclose(td, n_step_returns(args[0], args[1], args[3], *extra), rtol=0)
    with pytest.raises(ValueError, match="advantage must be 'n_step' or 'td', got 'gae'"):
        bootstrapped_returns(*args, advantage="gae")
    with pytest.raises(ValueError, match="advantage"):
        a2c_loss(
            jnp.asarray(LOGITS[:1]),
            args[2],
            jnp.asarray(ACTIONS[:1]),
            args[0],
            args[1],
            args[3],
            entropy_cost=0.0,
            value_cost=1.0,
            advantage="td(0)",
        )


# --- Watkins Q(lambda) ----------------------------------------------------------------------------

GAMMA, LAMBDA = 0.9, 0.5


def q_case():
    """T = 4, 2 actions. Q(s_{t+1}) greedy actions: s_1 -> 0, s_2 -> 1, s_3 -> 0, s_4 -> 1.
    Taken actions a_0..a_3 = (1, 0, 0, 0): a_1 = 0 is greedy at s_1, a_2 = 0 is exploratory at s_2
    (greedy is 1), a_3 = 0 is greedy at s_3."""
    q_tm1 = np.array([[0.1, 0.2], [0.3, -0.1], [0.0, 0.4], [0.5, 0.5]])
    q_t = np.array([[1.0, 0.5], [0.2, 0.6], [0.7, -0.3], [0.1, 0.9]])
    actions = np.array([1, 0, 0, 0])
    rewards = np.array([0.5, -1.0, 2.0, 0.25])
    return q_tm1, q_t, actions, rewards


def test_watkins_lambdas_cut_at_the_exploratory_action():
    _, q_t, actions, _ = q_case()
    lambdas = watkins_lambdas(jnp.asarray(q_t), jnp.asarray(actions), LAMBDA)
    # lambda_t looks at a_{t+1}: a_1 greedy, a_2 exploratory, a_3 greedy, a_4 unknown.
    np.testing.assert_array_equal(lambdas, [LAMBDA, 0.0, LAMBDA, 0.0])


def test_q_lambda_loss_by_hand_with_a_cut_at_t_equal_1():
    q_tm1, q_t, actions, rewards = q_case()
    v = q_t.max(-1)  # (1.0, 0.6, 0.7, 0.9)
    g3 = rewards[3] + GAMMA * v[3]
    g2 = rewards[2] + GAMMA * ((1 - LAMBDA) * v[2] + LAMBDA * g3)
    g1 = rewards[1] + GAMMA * v[1]  # cut: a_2 was exploratory, G_2 does not enter
    g0 = rewards[0] + GAMMA * ((1 - LAMBDA) * v[0] + LAMBDA * g1)
    td = np.array([g0, g1, g2, g3]) - q_tm1[np.arange(4), actions]
    args = tuple(map(jnp.asarray, (q_tm1, actions, rewards, np.full(4, GAMMA), q_t)))
    loss, metrics = q_lambda_loss(*args, lambda_=LAMBDA)
    np.testing.assert_allclose(loss, 0.5 * np.mean(td**2), rtol=1e-12)
    assert metrics["td_loss"] is loss

    # Past the cut, later rewards do not reach t = 0 and 1:

    grads = jax.grad(
        lambda r: q_lambda_loss(args[0], args[1], r, args[3], args[4], lambda_=LAMBDA)[0]
    )(args[2])
    # d loss / d r_t = sum_s td_s dG_s/dr_t / T: r_2 reaches only G_2 (and nothing before the cut).
    np.testing.assert_allclose(grads[2], td[2] / 4, rtol=1e-12)
    np.testing.assert_allclose(grads[3], (td[3] + td[2] * GAMMA * LAMBDA) / 4, rtol=1e-12)
    np.testing.assert_allclose(grads[1], (td[1] + td[0] * GAMMA * LAMBDA) / 4, rtol=1e-12)
    np.testing.assert_allclose(grads[0], td[0] / 4, rtol=1e-12)


def test_q_lambda_gradients_reach_only_the_taken_action_values():
    q_tm1, q_t, actions, rewards = q_case()
    args = tuple(map(jnp.asarray, (q_tm1, actions, rewards, np.full(4, GAMMA), q_t)))
    d_q_tm1, d_q_t = jax.grad(
        lambda a, b: q_lambda_loss(a, args[1], args[2], args[3], b, lambda_=LAMBDA)[0],
        argnums=(0, 1),
    )(args[0], args[4])
    assert np.all(np.asarray(d_q_t) == 0)  # the targets are constants of the parameters
    taken = np.eye(2)[actions].astype(bool)
    assert np.all(np.asarray(d_q_tm1)[~taken] == 0) and np.all(np.asarray(d_q_tm1)[taken] != 0)
