"""Epsilon-greedy Q(lambda): MG has no gradient for epsilon, BMG (K = 0) has the closed-form one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg.agents import stream
from bmg.agents.q_learning import QLearningConfig, epsilon_greedy_probs, make_q_learner
from bmg.core import Bootstrapped, make_bmg, make_metagradient, make_target_bootstrap
from bmg.envs import two_colors

ENV = two_colors.make_params(grid_size=3, switch_every=50)
SMALL = dict(hidden_size=16, rollout_length=4, context_length=3, meta_hidden_size=8)


@pytest.fixture(scope="module")
def learner():
    agent = make_q_learner(QLearningConfig(**SMALL, context="none"), ENV)
    state = agent.init_state(jax.random.key(0))
    return agent, state, agent.init_meta_params(jax.random.key(1))


def test_metagradient_of_epsilon_is_exactly_zero(learner):
    agent, state, meta_params = learner
    mg = make_metagradient(agent.update_fn, agent.meta_objective, optax.sgd(1.0), num_inner_steps=3)
    grads, (x_k, _) = jax.jit(mg.meta_gradient)(meta_params, state, jax.random.key(2))
    assert int(x_k.extras.env_steps) == 4 * 4  # three updates happened (and data was collected)
    assert float(grads["logit"]) == 0.0


def _bmg_gradient(agent, state, meta_params, target_params):
    """BMG K = 0 meta-gradient against a target whose Q-network is `target_params`."""
    target = state._replace(params=target_params)
    bootstrap = lambda w, s, k: Bootstrapped(target=target, state=s, metrics={})
    bmg = make_bmg(agent.update_fn, bootstrap, agent.matching_fn, optax.sgd(1.0), num_inner_steps=0)
    grads, (next_state, metrics) = bmg.meta_gradient(meta_params, state, jax.random.key(3))
    return grads["logit"], metrics["meta/loss"], next_state


def test_bmg_gradient_has_closed_form_and_sign(learner):
    agent, state, meta_params = learner
    eps = jax.nn.sigmoid(meta_params["logit"])
    num_actions = two_colors.NUM_ACTIONS
    obs = state.extras.rollout.obs[:-1]

    # Target greedy = today's greedy everywhere: mu = -log(1 - eps + eps/A), gradient > 0
    # (a descent step lowers epsilon).
    agree, loss, next_state = _bmg_gradient(agent, state, meta_params, state.params)
    p = 1 - eps + eps / num_actions
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-6)
    np.testing.assert_allclose(agree, (1 - 1 / num_actions) * eps * (1 - eps) / p, rtol=1e-5)
    assert agree > 0
    for after, before in zip(jax.tree.leaves(next_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(after, before)  # K = 0: the learner stays where it is

    # Target greedy differs everywhere (negated Q): mu = -log(eps/A), gradient -(1 - eps) < 0
    # (a descent step raises epsilon).
    layers = state.params["params"]
    last = max(layers)  # the output layer: negating it negates Q exactly
    negated = {"params": {**layers, last: jax.tree.map(jnp.negative, layers[last])}}
    now = jnp.argmax(agent.q_values(state.params, obs), -1)
    assert np.all(np.asarray(jnp.argmax(agent.q_values(negated, obs), -1) != now))
    disagree, loss, _ = _bmg_gradient(agent, state, meta_params, negated)
    np.testing.assert_allclose(loss, -np.log(eps / num_actions), rtol=1e-6)
    np.testing.assert_allclose(disagree, -(1 - eps), rtol=1e-5)
    assert disagree < 0


def test_bmg_with_a_real_target_moves_only_epsilon(learner):
    agent, state, meta_params = learner
    bootstrap = make_target_bootstrap(agent.update_fn, 3, final_update_fn=agent.learn_fn)
    bmg = make_bmg(
        agent.update_fn,
        bootstrap,
        agent.matching_fn,
        optax.sgd(0.1),
        num_inner_steps=0,
        continue_from="target",
    )
    meta_state, next_state, metrics = jax.jit(bmg.step)(
        bmg.init(meta_params), state, jax.random.key(4)
    )
    assert float(metrics["meta/grad_norm"]) > 0
    assert float(meta_state.meta_params["logit"]) != float(meta_params["logit"])
    # continue_from="target": the learner continues from x_{L-1}: 2 more rollouts.
    assert int(next_state.extras.env_steps) == int(state.extras.env_steps) + 2 * 4


def test_watkins_q_lambda_by_hand():
    config = QLearningConfig(
        **SMALL,
        context="none",
        trace_lambda=0.5,
        discount=0.9,
        max_grad_norm=0.0,
        learning_rate=0.05,
    )
    agent = make_q_learner(config, ENV)
    state = agent.init_state(jax.random.key(5))
    rollout = state.extras.rollout
    q = np.asarray(agent.q_values(state.params, rollout.obs), np.float64)
    greedy = q.argmax(-1)
    a, r = np.asarray(rollout.actions), np.asarray(rollout.rewards, np.float64)
    # Backward recursion: G_t = r_t + g [(1 - l_t) max Q(s_{t+1}) + l_t G_{t+1}], l_t cut when
    # a_{t+1} is not greedy, and G_{T-1} = r + g max Q(s_T).
    returns = np.zeros(4)
    following = q[4].max()
    for t in reversed(range(4)):
        trace = 0.5 if t < 3 and a[t + 1] == greedy[t + 1] else 0.0
        returns[t] = r[t] + 0.9 * ((1 - trace) * q[t + 1].max() + trace * following)
        following = returns[t]
    expected_loss = 0.5 * np.mean((returns - q[np.arange(4), a]) ** 2)
    _, metrics = agent.update_fn(
        agent.init_meta_params(jax.random.key(0)), state, jax.random.key(6)
    )
    np.testing.assert_allclose(metrics["learner/td_loss"], expected_loss, rtol=1e-5)


def test_epsilon_greedy_behaviour_and_schedules():
    q = jnp.array([[0.0, 2.0, 1.0, -1.0]])
    np.testing.assert_allclose(epsilon_greedy_probs(q, 0.2), [[0.05, 0.85, 0.05, 0.05]])
    # eps -> 0: the collected actions are the greedy ones.
    agent = make_q_learner(QLearningConfig(**SMALL, context="none", epsilon=1e-6), ENV)
    state = agent.init_state(jax.random.key(7))
    state, _ = agent.update_fn({"logit": jnp.asarray(-30.0)}, state, jax.random.key(8))
    rollout = state.extras.rollout
    greedy = jnp.argmax(agent.q_values(state.params, rollout.obs[:-1]), -1)
    np.testing.assert_array_equal(rollout.actions, greedy)
    # Linear decay by environment steps.
    decay = make_q_learner(
        QLearningConfig(**SMALL, decay_start=1.0, decay_final=0.1, decay_steps=100),
        ENV,
        schedule="decay",
    )
    extras = state.extras
    for steps, expected in ((0, 1.0), (50, 0.55), (100, 0.1), (400, 0.1)):
        eps = decay.epsilon({}, extras._replace(env_steps=jnp.asarray(steps)))
        np.testing.assert_allclose(eps, expected, rtol=1e-6)
    # The reward context feeds the meta-network but carries no gradient.
    meta = make_q_learner(QLearningConfig(**SMALL), ENV)
    meta_params = meta.init_meta_params(jax.random.key(9))
    history_grad = jax.grad(lambda h: meta.epsilon(meta_params, extras._replace(reward_history=h)))(
        jnp.ones(3)
    )
    assert np.all(np.asarray(history_grad) == 0)
    np.testing.assert_allclose(meta.epsilon(meta_params, extras), 0.1, rtol=1e-6)
    assert isinstance(extras, stream.Extras)


def test_config_validation_names_the_field():
    for kwargs, field in (
        (dict(epsilon=0.0), "epsilon"),
        (dict(trace_lambda=2.0), "trace_lambda"),
        (dict(hidden_size=2.5), "hidden_size"),
    ):
        with pytest.raises(ValueError, match=field):
            QLearningConfig(**kwargs)
    with pytest.raises(ValueError, match="schedule"):
        make_q_learner(QLearningConfig(), ENV, schedule="x")
