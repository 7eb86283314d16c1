"""Epsilon-greedy Q(lambda): MG has no gradient for epsilon, BMG (K = 0) has the closed-form one;
the Q(lambda) step by hand; probes; a zero-gradient state; any gymnax environment (MinAtar)."""

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg import rl
from bmg.agents import stream
from bmg.agents.networks import MLP
from bmg.agents.q_lambda import (
    QLambdaConfig,
    epsilon_greedy_entropy,
    epsilon_greedy_probs,
    make_q_lambda,
)
from bmg.core import (
    Bootstrapped,
    MetaConfig,
    make_bmg,
    make_meta_learner,
    make_metagradient,
    make_target_bootstrap,
)
from bmg.envs import two_colors

ENV = two_colors.make_params(grid_size=3, switch_every=50)
TWO_COLORS = two_colors.TwoColors()
Q_NET = MLP((16, 16), TWO_COLORS.num_actions)  # the agents' Q-network at SMALL's hidden size


@jax.jit  # compiled, as every function the tests run: eagerly, each operation compiles alone
def q_values(params, obs):
    return Q_NET.apply(params, obs)


def epsilon(agent, meta_params, state, *, env_steps=None, history=None):
    """The learner's epsilon as its probes report it, at a given step count or context."""
    extras = state.extras
    if env_steps is not None:
        steps = jnp.asarray(env_steps, jnp.int32)
        extras = extras._replace(stream=extras.stream._replace(env_steps=steps))
    if history is not None:
        extras = extras._replace(reward_history=history)
    return agent.probes(meta_params, state._replace(extras=extras))["epsilon"]


SMALL = dict(hidden_size=16, rollout_length=4, context_length=3, meta_hidden_size=8)


@pytest.fixture(scope="module")
def learner():
    agent = make_q_lambda(QLambdaConfig(**SMALL, context="none"), TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(0))
    return agent, state, agent.init_meta_params(jax.random.key(1))


def test_metagradient_of_epsilon_is_exactly_zero(learner):
    agent, state, meta_params = learner
    mg = make_metagradient(agent.update_fn, agent.meta_objective, optax.sgd(1.0), num_inner_steps=3)
    grads, (x_k, _) = jax.jit(mg.meta_gradient)(meta_params, state, jax.random.key(2))
    assert (
        int(x_k.extras.stream.env_steps) == 4 * 4
    )  # three updates happened (and data was collected)
    assert float(grads["logit"]) == 0.0


@functools.partial(jax.jit, static_argnums=0)
def _bmg_gradient(agent, state, meta_params, target_params):
    """BMG K = 0 meta-gradient against a target whose Q-network is `target_params` (compiled)."""
    target = state._replace(params=target_params)
    bootstrap = lambda w, s, k: Bootstrapped(target=target, state=s, metrics={})
    bmg = make_bmg(agent.update_fn, bootstrap, agent.matching_fn, optax.sgd(1.0), num_inner_steps=0)
    grads, (next_state, metrics) = bmg.meta_gradient(meta_params, state, jax.random.key(3))
    return grads["logit"], metrics["meta/loss"], next_state


def test_bmg_gradient_has_closed_form_and_sign(learner):
    agent, state, meta_params = learner
    eps = jax.nn.sigmoid(meta_params["logit"])
    num_actions = TWO_COLORS.num_actions
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
    now = jnp.argmax(q_values(state.params, obs), -1)
    assert np.all(np.asarray(jnp.argmax(q_values(negated, obs), -1) != now))
    disagree, loss, _ = _bmg_gradient(agent, state, meta_params, negated)
    np.testing.assert_allclose(loss, -np.log(eps / num_actions), rtol=1e-6)
    np.testing.assert_allclose(disagree, -(1 - eps), rtol=1e-5)
    assert disagree < 0


def test_bmg_with_a_real_target_moves_only_epsilon(learner):
    agent, state, meta_params = learner
    bootstrap = make_target_bootstrap(agent.update_fn, 3, final_update_fn=agent.target_step)
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
    assert int(next_state.extras.stream.env_steps) == int(state.extras.stream.env_steps) + 2 * 4


def test_watkins_q_lambda_by_hand():
    config = QLambdaConfig(
        **SMALL,
        context="none",
        trace="forward",
        trace_lambda=0.5,
        discount=0.9,
        max_grad_norm=0.0,
        learning_rate=0.05,
    )
    agent = make_q_lambda(config, TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(5))
    rollout = state.extras.rollout
    q = np.asarray(q_values(state.params, rollout.obs), np.float64)
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
    _, metrics = jax.jit(agent.update_fn)(
        agent.init_meta_params(jax.random.key(0)), state, jax.random.key(6)
    )
    np.testing.assert_allclose(metrics["learner/td_loss"], expected_loss, rtol=1e-5)


def test_epsilon_greedy_behaviour_and_schedules():
    q = jnp.array([[0.0, 2.0, 1.0, -1.0]])
    np.testing.assert_allclose(epsilon_greedy_probs(q, 0.2), [[0.05, 0.85, 0.05, 0.05]])
    # eps -> 0: the collected actions are the greedy ones.
    agent = make_q_lambda(QLambdaConfig(**SMALL, context="none", epsilon=1e-6), TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(7))
    state, _ = jax.jit(agent.update_fn)({"logit": jnp.asarray(-30.0)}, state, jax.random.key(8))
    rollout = state.extras.rollout
    greedy = jnp.argmax(q_values(state.params, rollout.obs[:-1]), -1)
    np.testing.assert_array_equal(rollout.actions, greedy)
    # Linear decay by environment steps.
    decay = make_q_lambda(
        QLambdaConfig(**SMALL, decay_start=1.0, decay_final=0.1, decay_steps=100),
        TWO_COLORS,
        ENV,
        schedule="decay",
    )
    for steps, expected in ((0, 1.0), (50, 0.55), (100, 0.1), (400, 0.1)):
        eps = epsilon(decay, {}, state, env_steps=steps)
        np.testing.assert_allclose(eps, expected, rtol=1e-6)
    # The reward context feeds the meta-network but carries no gradient.
    meta = make_q_lambda(QLambdaConfig(**SMALL), TWO_COLORS, ENV)
    meta_params = meta.init_meta_params(jax.random.key(9))
    history_grad = jax.grad(lambda h: epsilon(meta, meta_params, state, history=h))(jnp.ones(3))
    assert np.all(np.asarray(history_grad) == 0)
    np.testing.assert_allclose(epsilon(meta, meta_params, state), 0.1, rtol=1e-6)
    extras = state.extras
    assert isinstance(extras, stream.Extras)


def test_config_validation_names_the_field():
    for kwargs, field in (
        (dict(epsilon=0.0), "epsilon"),
        (dict(trace_lambda=2.0), "trace_lambda"),
        (dict(hidden_size=2.5), "hidden_size"),
    ):
        with pytest.raises(ValueError, match=field):
            QLambdaConfig(**kwargs)
    with pytest.raises(ValueError, match="schedule"):
        make_q_lambda(QLambdaConfig(), TWO_COLORS, ENV, schedule="x")
    for kwargs, message in (
        (dict(optimizer="rmsprop"), "optimizer must be 'sgd' or 'adam', got 'rmsprop'."),
        (
            dict(context_normalization="x"),
            "context_normalization must be 'none' or 'running', got 'x'.",
        ),
    ):
        with pytest.raises(ValueError) as error:
            QLambdaConfig(**kwargs)
        assert str(error.value) == message


def test_watkins_cut_at_an_exploratory_action_at_t_1_in_the_agent():
    """A mutation survivor. The stored rollout's actions are greedy except a_2: the trace
    is cut at t = 1 (G_1 = r_1 + g max Q(s_2)), and the agent's TD loss matches the hand value,
    not the uncut one."""
    lam, gamma = 0.5, float(np.float32(0.9))
    config = QLambdaConfig(
        **SMALL, context="none", trace="forward", trace_lambda=lam, discount=0.9, max_grad_norm=0.0
    )
    agent = make_q_lambda(config, TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(5))
    rollout = state.extras.rollout
    q = np.asarray(q_values(state.params, rollout.obs), np.float64)
    greedy = q.argmax(-1)
    a = greedy[:4].copy()
    a[2] = (greedy[2] + 1) % 4  # exploratory at s_2
    rollout = rollout._replace(actions=jnp.asarray(a, jnp.int32))
    state = state._replace(extras=state.extras._replace(rollout=rollout))
    r = np.asarray(rollout.rewards, np.float64)
    v = q[1:].max(-1)
    g3 = r[3] + gamma * v[3]
    g2 = r[2] + gamma * ((1 - lam) * v[2] + lam * g3)
    g1 = r[1] + gamma * v[1]  # cut: a_2 is exploratory
    g0 = r[0] + gamma * ((1 - lam) * v[0] + lam * g1)
    qa = q[np.arange(4), a]
    expected = 0.5 * np.mean((np.array([g0, g1, g2, g3]) - qa) ** 2)
    uncut_g1 = r[1] + gamma * ((1 - lam) * v[1] + lam * g2)
    uncut_g0 = r[0] + gamma * ((1 - lam) * v[0] + lam * uncut_g1)
    uncut = 0.5 * np.mean((np.array([uncut_g0, uncut_g1, g2, g3]) - qa) ** 2)
    assert abs(uncut - expected) > 1e-4 * abs(expected)
    _, metrics = jax.jit(agent.target_step)({"logit": jnp.asarray(0.0)}, state, jax.random.key(6))
    np.testing.assert_allclose(metrics["learner/td_loss"], expected, rtol=1e-5)


def test_probes():
    agent = make_q_lambda(QLambdaConfig(**SMALL, context="none", epsilon=0.2), TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(7))
    meta_params = agent.init_meta_params(jax.random.key(0))
    rewards = [np.asarray(state.extras.rollout.rewards)]
    for i in range(3):
        state, _ = jax.jit(agent.update_fn)(meta_params, state, jax.random.key(20 + i))
        rewards.append(np.asarray(state.extras.rollout.rewards))
    probes = jax.jit(agent.probes)(meta_params, state)
    assert probes["env_steps"].dtype == jnp.int32 and int(probes["env_steps"]) == 4 * 4
    np.testing.assert_allclose(probes["reward_sum"], np.sum(rewards), rtol=1e-6)
    assert int(probes["episodes"]) == 0 and float(probes["episode_return_sum"]) == 0.0
    np.testing.assert_allclose(probes["epsilon"], 0.2, rtol=1e-6)
    # The behaviour's mean entropy on the latest rollout's states, from its probabilities.
    probs = np.asarray(
        epsilon_greedy_probs(q_values(state.params, state.extras.rollout.obs[:-1]), 0.2)
    )
    entropy = np.mean(-np.sum(probs * np.log(probs), axis=-1))
    np.testing.assert_allclose(probes["policy_entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(epsilon_greedy_entropy(0.2, 4), entropy, rtol=1e-5)


def test_matching_reads_epsilon_at_the_learners_own_context():
    """A mutation survivor: with reward context, mu uses eps(w, context of x_K), not the
    target's context."""
    agent = make_q_lambda(QLambdaConfig(**SMALL), TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(0))
    meta_params = agent.init_meta_params(jax.random.key(1))
    layers = meta_params["net"]["params"]  # a trained meta-network: eps depends on the context
    kernel = jax.random.normal(jax.random.key(2), layers["Dense_1"]["kernel"].shape)
    meta_params = {
        "net": {"params": {**layers, "Dense_1": {**layers["Dense_1"], "kernel": kernel}}}
    }
    own, other = jnp.array([0.5, -0.5, 1.0]), jnp.array([-1.0, 0.25, 0.0])
    state = state._replace(extras=state.extras._replace(reward_history=own))
    target = state._replace(extras=state.extras._replace(reward_history=other))
    eps_own = float(epsilon(agent, meta_params, state))
    eps_other = float(epsilon(agent, meta_params, target))
    assert abs(eps_own - eps_other) > 1e-3
    # Same parameters: the greedy actions agree and mu = -log(1 - eps + eps / |A|).
    mu = float(jax.jit(agent.matching_fn)(target, state, meta_params))
    np.testing.assert_allclose(mu, -np.log(1 - eps_own + eps_own / 4), rtol=1e-5)
    assert abs(mu + np.log(1 - eps_other + eps_other / 4)) > 1e-4


def test_zero_gradient_state_gives_finite_meta_gradients():
    """For Q(lambda): all-zero Q-network and a zero-reward rollout (the learner's
    gradient is exactly zero; default clip 1.0). MG: exactly 0 (epsilon is not in the update).
    BMG (K = 1, L = 1): finite, the closed form of agreeing greedy actions."""
    config = QLambdaConfig(**SMALL, context="none")
    assert config.max_grad_norm == 1.0
    agent = make_q_lambda(config, TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(0))
    meta_params = agent.init_meta_params(jax.random.key(1))
    rollout = state.extras.rollout._replace(rewards=jnp.zeros(4, jnp.float32))
    state = state._replace(
        params=jax.tree.map(jnp.zeros_like, state.params),
        extras=state.extras._replace(rollout=rollout),
    )
    key = jax.random.key(3)
    mg = make_meta_learner(agent, MetaConfig(algo="mg", inner_steps=1))
    grads, _ = jax.jit(mg.meta_gradient)(meta_params, state, key)
    assert float(grads["logit"]) == 0.0
    bmg = make_meta_learner(agent, MetaConfig(algo="bmg", inner_steps=1, bootstrap_steps=1))
    grads, (_, metrics) = jax.jit(bmg.meta_gradient)(meta_params, state, key)
    eps = float(jax.nn.sigmoid(meta_params["logit"]))
    p = 1 - eps + eps / 4
    np.testing.assert_allclose(grads["logit"], (1 - 1 / 4) * eps * (1 - eps) / p, rtol=1e-5)
    np.testing.assert_allclose(metrics["meta/loss"], -np.log(p), rtol=1e-6)


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", float("nan")),
        ("discount", float("inf")),
        ("max_grad_norm", float("nan")),
        ("trace_lambda", float("nan")),
        ("epsilon", float("inf")),
        ("decay_start", float("nan")),
        ("decay_steps", 0),
        ("adam_eps", float("nan")),
        ("adam_b1", 1.0),
        ("adam_b2", -0.1),
        ("adam_eps_root", float("inf")),
        ("meta_initial", 0.0),
        ("meta_initial", 1.0),
        ("meta_hidden_layers", 0),
    ],
)
def test_config_rejects_non_finite_values_in_one_sentence(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be .*, got {value!r}\\.$"):
        QLambdaConfig(**{field: value})


@pytest.mark.slow
def test_bmg_runs_on_minatar_breakout(two_finite_meta_steps):
    """The agent on an episodic gymnax image game; BMG's meta-step (K = 0, L = 2) holds the
    fixed learner's updates (fixed and MG run the same agent code on Two-colors above)."""
    env, env_params = gymnax.make("Breakout-MinAtar")
    config = QLambdaConfig(hidden_size=16, rollout_length=4, context_length=3)
    for algo, inner, bootstrap in (("bmg", 0, 2),):
        agent = make_q_lambda(
            config, env, env_params, schedule="fixed" if algo == "fixed" else "meta"
        )
        # Initialised compiled (eagerly, each operation of the game's reset and steps compiles
        # alone).
        agent = agent._replace(
            init_state=jax.jit(agent.init_state), init_meta_params=jax.jit(agent.init_meta_params)
        )
        meta_config = MetaConfig(
            algo=algo, inner_steps=inner, bootstrap_steps=bootstrap, continue_from="inner_params"
        )
        probes = two_finite_meta_steps(agent, meta_config)
        assert int(probes["env_steps"]) == 4 * (1 + 2 * meta_config.updates_per_step), algo


@pytest.mark.parametrize("lambda_", [0.0, 0.9])
def test_one_step_rollout_loss_is_one_step_q_learning_by_hand(lambda_):
    """T = 1 (an update at every environment step, Luketina et al., CoLLAs 2022, Table 4):
    G_0 = r_0 + discount_0 max_a Q(s_1, a) whatever lambda; loss = 1/2 (G_0 - Q(s_0, a_0))^2."""
    loss, _ = jax.jit(rl.q_lambda_loss)(  # one compile, lambda_ traced: both cases share it
        jnp.array([[1.0, 2.0, 0.0, -1.0]]),  # Q(s_0, .)
        jnp.array([1]),  # a_0: Q(s_0, a_0) = 2
        jnp.array([0.5]),  # r_0
        jnp.array([0.9]),  # discount_0
        jnp.array([[3.0, -1.0, 0.0, 1.0]]),  # Q(s_1, .): max 3
        lambda_=lambda_,
    )
    np.testing.assert_allclose(loss, 0.5 * (0.5 + 0.9 * 3.0 - 2.0) ** 2, rtol=1e-6)  # 0.72


ADAM = dict(
    SMALL,
    rollout_length=1,
    optimizer="adam",
    learning_rate=1e-3,
    adam_eps=1e-4,
    adam_b1=0.9,
    adam_b2=0.999,
    max_grad_norm=0.0,
    discount=0.9,
    context="none",
)


def test_per_step_adam_update_by_hand():
    """One Q(lambda) step at T = 1 with Adam: the loss is the one-step TD loss on the single
    stored transition, and the first Adam step is x - lr g / (sqrt(g^2 + eps_root) + eps)
    (bias-corrected moments m_hat = g, v_hat = g^2; Kingma & Ba, 2015)."""
    config = QLambdaConfig(**ADAM)
    agent = make_q_lambda(config, TWO_COLORS, ENV)
    state = jax.jit(agent.init_state)(jax.random.key(11))  # T = 1: shapes no other test shares
    meta_params = agent.init_meta_params(jax.random.key(0))
    rollout = state.extras.rollout
    assert rollout.obs.shape[0] == 2 and rollout.actions.shape == (1,)
    a0, r0, d0 = int(rollout.actions[0]), float(rollout.rewards[0]), float(rollout.discount_t[0])
    np.testing.assert_allclose(d0, 0.9)  # Two-colors never terminates

    def hand_loss(params):
        target = r0 + d0 * jnp.max(jax.lax.stop_gradient(q_values(params, rollout.obs[1])))
        return 0.5 * (target - q_values(params, rollout.obs[0])[a0]) ** 2

    loss, _ = jax.jit(agent.meta_objective)(state, None)
    hand_value, grads = jax.jit(jax.value_and_grad(hand_loss))(state.params)
    np.testing.assert_allclose(loss, hand_value, rtol=1e-6)
    stepped, _ = jax.jit(agent.target_step)(meta_params, state, jax.random.key(12))
    expected = jax.tree.map(
        lambda x, g: (
            np.asarray(x, np.float64)
            - 1e-3
            * np.asarray(g, np.float64)
            / (np.sqrt(np.asarray(g, np.float64) ** 2 + 1e-8) + 1e-4)
        ),
        state.params,
        grads,
    )
    jax.tree.map(
        lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7),
        stepped.params,
        expected,
    )
    # ... and optax's Adam with the same hyper-parameters agrees.
    optax_adam = optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-4, eps_root=1e-8)
    updates, _ = jax.jit(lambda g, x: optax_adam.update(g, optax_adam.init(x)))(grads, state.params)
    jax.tree.map(
        lambda got, x, u: np.testing.assert_allclose(got, x + u, rtol=1e-6, atol=1e-8),
        stepped.params,
        state.params,
        updates,
    )
    # The learner goes on one environment step per update; the context holds single rewards.
    state, _ = jax.jit(agent.update_fn)(meta_params, state, jax.random.key(13))
    assert int(state.extras.stream.env_steps) == 2
    np.testing.assert_array_equal(state.extras.reward_history[-1], state.extras.rollout.rewards[0])


def test_meta_learned_epsilon_starts_at_meta_initial_and_fixed_at_epsilon():
    config = QLambdaConfig(
        **{**SMALL, "context_normalization": "running", "meta_hidden_layers": 2},
        epsilon=0.03,
        meta_initial=0.5,
    )
    meta = make_q_lambda(config, TWO_COLORS, ENV)
    state = meta.init_state(jax.random.key(14))
    assert float(epsilon(meta, meta.init_meta_params(jax.random.key(1)), state)) == 0.5
    fixed = make_q_lambda(config, TWO_COLORS, ENV, schedule="fixed")
    np.testing.assert_allclose(
        epsilon(fixed, fixed.init_meta_params(jax.random.key(1)), state), 0.03, rtol=1e-6
    )


PENG = dict(SMALL, rollout_length=1, context="none", trace="peng", max_grad_norm=0.0)


def test_peng_learner_carries_its_trace_across_per_step_updates():
    """trace="peng", T = 1, SGD: three update_fn calls equal three ``rl.q_lambda_increment``
    steps on the transitions the learner collected, the trace carried between them (lambda acts
    across updates, unlike the forward view at T = 1)."""
    config = QLambdaConfig(**PENG, learning_rate=0.05, trace_lambda=0.8, discount=0.9)
    agent = make_q_lambda(config, TWO_COLORS, ENV)
    state = jax.jit(agent.init_state)(jax.random.key(13))
    meta_params = agent.init_meta_params(jax.random.key(0))
    params, trace = state.params, jax.tree.map(jnp.zeros_like, state.params)
    update = jax.jit(agent.update_fn)
    for i in range(3):
        rollout = state.extras.rollout
        direction, trace, _ = rl.q_lambda_increment(
            Q_NET.apply,
            params,
            trace,
            rollout.obs[0],
            rollout.actions[0],
            rollout.rewards[0],
            rollout.discount_t[0],
            rollout.obs[1],
            lambda_=0.8,
        )
        params = jax.tree.map(lambda x, d: x - 0.05 * d, params, direction)
        state, _ = update(meta_params, state, jax.random.key(30 + i))
        for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for got, want in zip(
            jax.tree.leaves(state.opt_state.trace), jax.tree.leaves(trace), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert max(float(jnp.abs(z).max()) for z in jax.tree.leaves(trace)) > 0


def test_bmg_target_advances_its_own_copy_of_the_trace():
    """The target (L - 1 updates, then one more Q(lambda) step) carries its own trace: the state
    the learner continues from (x_{L-1}) has the trace of its L - 1 updates, not the target's."""
    agent = make_q_lambda(QLambdaConfig(**PENG), TWO_COLORS, ENV)
    state = jax.jit(agent.init_state)(jax.random.key(14))
    meta_params = agent.init_meta_params(jax.random.key(0))
    bootstrap = make_target_bootstrap(agent.update_fn, 3, final_update_fn=agent.target_step)
    out = jax.jit(bootstrap)(meta_params, state, jax.random.key(15))
    advanced, _ = jax.jit(agent.target_step)(meta_params, out.state, jax.random.key(16))
    for target, by_hand in zip(
        *(jax.tree.leaves(s.opt_state.trace) for s in (out.target, advanced)),
        strict=True,
    ):
        np.testing.assert_allclose(target, by_hand, rtol=1e-6, atol=1e-7)
    differs = [
        float(jnp.abs(t - x).max())
        for t, x in zip(
            jax.tree.leaves(out.target.opt_state.trace),
            jax.tree.leaves(out.state.opt_state.trace),
            strict=True,
        )
    ]
    assert max(differs) > 0
    # a meta-step with continue_from="target" goes on from x_{L-1}, with x_{L-1}'s trace.
    bmg = make_meta_learner(
        agent, MetaConfig(algo="bmg", inner_steps=0, bootstrap_steps=3, continue_from="target")
    )
    _, next_state, _ = jax.jit(bmg.step)(bmg.init(meta_params), state, jax.random.key(17))
    assert int(next_state.extras.stream.env_steps) == int(state.extras.stream.env_steps) + 2
    assert isinstance(next_state.opt_state, type(state.opt_state))


def test_trace_field_is_validated():
    with pytest.raises(ValueError, match="^trace must be one of peng, watkins, forward, got 'x'"):
        QLambdaConfig(trace="x")


def test_epsilon_on_the_probe_contexts():
    """``context/{name}`` probes: epsilon of the meta-network on each fixed probe context
    (Luketina et al., Figure 2b), whatever the current context; one logit: the same everywhere."""
    from bmg.agents.configs import PROBE_CONTEXTS

    agent = make_q_lambda(QLambdaConfig(**SMALL, meta_init="random"), TWO_COLORS, ENV)
    state = agent.init_state(jax.random.key(0))
    meta_params = agent.init_meta_params(jax.random.key(1))
    probes = jax.jit(agent.probes)(meta_params, state)
    contexts = stream.probe_contexts(3, normalized=False)
    for name, context in zip(PROBE_CONTEXTS, contexts, strict=True):
        history = jnp.asarray(context)
        np.testing.assert_allclose(
            probes[f"context/{name}"],
            epsilon(agent, meta_params, state, history=history),
            rtol=1e-6,
        )
    assert len({round(float(probes[f"context/{n}"]), 6) for n in PROBE_CONTEXTS}) > 1
    flat = make_q_lambda(QLambdaConfig(**SMALL, context="none", epsilon=0.2), TWO_COLORS, ENV)
    probes = jax.jit(flat.probes)(flat.init_meta_params(jax.random.key(0)), state)
    for name in PROBE_CONTEXTS:
        np.testing.assert_allclose(probes[f"context/{name}"], 0.2, rtol=1e-6)
