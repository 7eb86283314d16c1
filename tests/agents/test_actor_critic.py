"""The actor-critic learner against hand computations, closed forms and bmg.core identities.

Everything runs in float64 (learner parameters are cast after initialisation; observations and
rewards stay float32 as the environment makes them), so the references can be compared tightly.
"""

import functools

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg import rl
from bmg.agents import stream
from bmg.agents.actor_critic import ActorCriticConfig, make_actor_critic
from bmg.agents.meta_schedule import make_meta_schedule
from bmg.agents.networks import MLP
from bmg.core import (
    MetaConfig,
    make_bmg,
    make_meta_learner,
    make_metagradient,
    make_target_bootstrap,
    parameter_matching,
)
from bmg.envs import two_colors
from bmg.rl import Rollout

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
PENALTY = 0.1
ENV = two_colors.make_params(grid_size=3, switch_every=50, step_penalty=PENALTY)
TWO_COLORS = two_colors.TwoColors()
env_step = jax.jit(TWO_COLORS.step)  # compiled: eagerly, each of its operations compiles alone
SMALL = dict(hidden_size=16, rollout_length=3, context_length=3)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def make_agent(**overrides):
    """(config, agent, jitted update_fn); one agent per configuration, shared between tests."""
    return _make_agent(tuple(sorted({**SMALL, **overrides}.items())))


@functools.cache
def _make_agent(items):
    config = ActorCriticConfig(**dict(items))
    agent = make_actor_critic(config, TWO_COLORS, ENV)
    return config, agent, jax.jit(agent.update_fn)


# The learner of the loss and update tests: its entropy weight is sigmoid(one logit).
LOSS_AGENT = dict(
    discount=0.9, learning_rate=0.1, value_cost=0.7, context="none", max_grad_norm=0.0
)
CLIP = 0.05  # with this clip the global norm is always clipped in these tests
# The learner of the stream, matching and meta-gradient tests.
STREAM = dict(rollout_length=4, context_length=3)


def run_fast(fn, *args):
    """`jax.jit(fn)(*args)`, compiled with XLA's backend optimisation off (same program, faster
    to compile on a small CPU)."""
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(compiler_options=options)(*args)


def to64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def init(agent, seed=0, jit=False):
    """Learner state (float64 parameters) and the initial meta-parameters.

    Eager by default: most agents here share shapes, so their operations are compiled once for
    all; `jit=True` compiles it as one program (for an agent whose operations no other shares)."""

    def init_fn(key):
        state_key, meta_key = jax.random.split(key)
        state = agent.init_state(state_key)
        return state._replace(params=to64(state.params)), to64(agent.init_meta_params(meta_key))

    return (jax.jit(init_fn) if jit else init_fn)(jax.random.key(seed))


def tree_allclose(a, b, **kwargs):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kwargs)


def tree_sub(a, b):
    return jax.tree.map(jnp.subtract, a, b)


def global_norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x))) for x in jax.tree.leaves(tree))))


# --- Independent references ----------------------------------------------------------------------


def mlp(net_params, x, xp=np):
    """ReLU MLP forward pass read straight from flax's parameter dict (Dense_0, Dense_1, ...)."""
    layers = net_params["params"]
    for i in range(len(layers)):
        layer = layers[f"Dense_{i}"]
        x = x @ xp.asarray(layer["kernel"]) + xp.asarray(layer["bias"])
        if i < len(layers) - 1:
            x = xp.maximum(x, 0.0)
    return x


def with_output(net_params, bias):
    """The same network with a zero output kernel: it outputs `bias` for every input."""
    layers = dict(net_params["params"])
    last = f"Dense_{len(layers) - 1}"
    layers[last] = {
        "kernel": jnp.zeros_like(layers[last]["kernel"]),
        "bias": jnp.asarray(bias, jnp.float64),
    }
    return {"params": layers}


def n_step_returns(rewards, bootstrap, gamma):
    """G_t = sum_{i=t}^{T-1} gamma^(i-t) r_i + gamma^(T-t) V(s_T), term by term."""
    T = len(rewards)
    return np.array(
        [
            sum(gamma ** (i - t) * rewards[i] for i in range(t, T)) + gamma ** (T - t) * bootstrap
            for t in range(T)
        ]
    )


def log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def numpy_terms(params, rollout, gamma):
    """(returns, pg_loss, value_loss, entropy) in numpy."""
    obs = np.asarray(rollout.obs, np.float64)
    rewards = np.asarray(rollout.rewards, np.float64)
    actions = np.asarray(rollout.actions)
    T = len(rewards)
    v = mlp(params["value"], obs)[:, 0]
    returns = n_step_returns(rewards, v[T], gamma)
    logp = log_softmax(mlp(params["policy"], obs[:T]))
    pg_loss = -np.mean(logp[np.arange(T), actions] * (returns - v[:T]))
    value_loss = np.mean((returns - v[:T]) ** 2)
    entropy = np.mean(-np.sum(np.exp(logp) * logp, axis=-1))
    return returns, pg_loss, value_loss, entropy


@jax.jit
def terms_gradient(params, rollout, gamma, weights):
    """The gradient of weights[0] * pg_loss + weights[1] * value_loss + weights[2] * entropy
    (`jax_terms`) at `params`; one compiled program for every test (the weights are data)."""
    weights = jnp.asarray(weights, jnp.float64)
    return jax.grad(lambda p: jnp.stack(jax_terms(p, rollout, gamma)) @ weights)(params)


def jax_terms(params, rollout, gamma):
    """(pg_loss, value_loss, entropy) as differentiable functions of the parameters: the reference
    MLP forward pass fed to `bmg.rl.a2c_loss` (itself tested by hand in tests/rl)."""
    obs = rollout.obs.astype(jnp.float64)
    T = rollout.rewards.shape[0]
    v = mlp(params["value"], obs, jnp)[:, 0]
    discounts = jnp.full((T,), gamma)
    _, metrics = rl.a2c_loss(
        mlp(params["policy"], obs[:T], jnp),
        v[:T],
        rollout.actions,
        rollout.rewards.astype(jnp.float64),
        discounts,
        v[T],
        entropy_cost=0.0,
        value_cost=0.0,
    )
    return metrics["pg_loss"], metrics["value_loss"], metrics["entropy"]


def make_rollout(obs, actions, rewards, discount=0.9):
    """A Two-colors rollout record (never terminated nor truncated: final_obs = obs[1:])."""
    rewards = jnp.asarray(rewards, jnp.float32)
    return Rollout(
        obs=obs,
        actions=jnp.asarray(actions, jnp.int32),
        rewards=rewards,
        discount_t=jnp.full_like(rewards, discount),
        truncated=jnp.zeros(rewards.shape, bool),
        final_obs=obs[1:],
    )


def hand_rollout():
    """Three consistent transitions on the 3 x 3 grid (object 0 is the good one for t < 50).

    s0 -RIGHT-> picks object 0 (+1, everything re-spawns), s1 -UP-> empty cell (-0.1),
    s2 -RIGHT-> picks object 1 (-1, re-spawn), s3.
    """
    states = [
        two_colors.make_state((1, 1), ((1, 2), (0, 0)), 0),
        two_colors.make_state((2, 0), ((0, 2), (1, 1)), 1),
        two_colors.make_state((1, 0), ((0, 2), (1, 1)), 2),
        two_colors.make_state((0, 0), ((2, 1), (2, 2)), 3),
    ]
    rollout = make_rollout(
        jnp.stack([two_colors.observation(s, ENV) for s in states]),
        [RIGHT, UP, RIGHT],
        [1.0, -PENALTY, -1.0],
    )
    return rollout, states[-1]


def with_hand_rollout(state, params=None):
    rollout, env_state = hand_rollout()
    env_stream = state.extras.stream._replace(env_state=env_state, obs=rollout.obs[-1])
    extras = state.extras._replace(rollout=rollout, stream=env_stream)
    return state._replace(params=state.params if params is None else params, extras=extras)


# --- 1. The learner loss and update ------------------------------------------------------------


def test_hand_rollout_is_what_the_environment_does():
    rollout, _ = hand_rollout()
    state = two_colors.make_state((1, 1), ((1, 2), (0, 0)), 0)
    _, state, reward, *_ = env_step(jax.random.key(0), state, RIGHT, ENV)
    assert float(reward) == 1.0
    state = two_colors.make_state((2, 0), ((0, 2), (1, 1)), 1)
    obs, state, reward, *_ = env_step(jax.random.key(0), state, UP, ENV)
    np.testing.assert_array_equal(obs, rollout.obs[2])
    np.testing.assert_allclose(reward, -PENALTY, rtol=1e-7)
    _, _, reward, *_ = env_step(jax.random.key(0), state, RIGHT, ENV)
    assert float(reward) == -1.0


def test_returns_and_loss_terms_with_constant_networks_match_hand_values():
    """Uniform policy, V = 0.5 everywhere, gamma = 0.9, rewards (1, -0.1, -1): by hand

    G_2 = -1 + 0.9 * 0.5 = -0.55,  G_1 = -0.1 + 0.9 G_2 = -0.595,  G_0 = 1 + 0.9 G_1 = 0.4645;
    PG = -mean(log(1/4) (G - 0.5)),  value loss = mean (G - 0.5)^2,  entropy = log 4.
    """
    gamma = float(np.float32(0.9))  # the learner's discounts are float32
    config, agent, update = make_agent(**LOSS_AGENT)
    state, meta_params = init(agent)
    params = {
        "policy": with_output(state.params["policy"], np.zeros(4)),
        "value": with_output(state.params["value"], [0.5]),
    }
    _, metrics = update(meta_params, with_hand_rollout(state, params), jax.random.key(1))

    returns = np.array([0.4645, -0.595, -0.55])
    rewards = np.asarray(hand_rollout()[0].rewards, np.float64)
    np.testing.assert_allclose(n_step_returns(rewards, 0.5, gamma), returns, rtol=1e-6)
    np.testing.assert_allclose(
        metrics["learner/value_loss"], np.mean((returns - 0.5) ** 2), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics["learner/pg_loss"], np.log(4) * np.mean(returns - 0.5), rtol=1e-6
    )
    np.testing.assert_allclose(metrics["learner/entropy"], np.log(4), rtol=1e-12)
    np.testing.assert_allclose(metrics["learner/entropy_cost"], config.entropy_cost, rtol=1e-6)


def test_loss_terms_on_random_networks_match_numpy():
    gamma = float(np.float32(0.9))
    _, agent, update = make_agent(**LOSS_AGENT)
    state, meta_params = init(agent, seed=3)
    state = with_hand_rollout(state)
    _, metrics = update(meta_params, state, jax.random.key(1))
    returns, pg_loss, value_loss, entropy = numpy_terms(state.params, state.extras.rollout, gamma)
    # The bootstrap is V(s_3) of the (random) value net, so G differs from the Monte-Carlo sum.
    assert abs(returns[-1] - (-1.0)) > 1e-3
    np.testing.assert_allclose(metrics["learner/pg_loss"], pg_loss, rtol=1e-10)
    np.testing.assert_allclose(metrics["learner/value_loss"], value_loss, rtol=1e-10)
    np.testing.assert_allclose(metrics["learner/entropy"], entropy, rtol=1e-10)


def test_td_advantage_loss_terms_match_numpy_one_step_returns():
    """advantage="td": G_t = r_t + gamma V(s_{t+1}) in the learner's loss and in f."""
    gamma = float(np.float32(0.9))
    _, agent, update = make_agent(**LOSS_AGENT, advantage="td")
    state, meta_params = init(agent, seed=3)
    state = with_hand_rollout(state)
    rollout = state.extras.rollout
    obs = np.asarray(rollout.obs, np.float64)
    rewards = np.asarray(rollout.rewards, np.float64)
    v = mlp(state.params["value"], obs)[:, 0]
    returns = rewards + gamma * v[1:]
    assert np.abs(returns - numpy_terms(state.params, rollout, gamma)[0])[:2].min() > 1e-3
    logp = log_softmax(mlp(state.params["policy"], obs[:3]))
    pg_loss = -np.mean(logp[np.arange(3), np.asarray(rollout.actions)] * (returns - v[:3]))
    _, metrics = update(meta_params, state, jax.random.key(1))
    np.testing.assert_allclose(metrics["learner/pg_loss"], pg_loss, rtol=1e-10)
    np.testing.assert_allclose(
        metrics["learner/value_loss"], np.mean((returns - v[:3]) ** 2), rtol=1e-10
    )
    _, f_metrics = jax.jit(agent.meta_objective)(state, jax.random.key(0))
    np.testing.assert_allclose(f_metrics["pg_loss"], pg_loss, rtol=1e-10)


@pytest.mark.parametrize("max_grad_norm", [0.0, CLIP])
def test_update_is_minus_lr_times_clipped_gradient(max_grad_norm):
    """x' - x = -lr * clip(grad(PG + value_cost * MSE - eps * H)), clip to the global norm."""
    gamma = float(np.float32(0.9))
    config, agent, update = make_agent(**{**LOSS_AGENT, "max_grad_norm": max_grad_norm})
    lr, value_cost = config.learning_rate, config.value_cost
    state, _ = init(agent, seed=5)
    state = with_hand_rollout(state)
    logit = jnp.float64(0.3)  # eps = sigmoid(0.3) ~ 0.57: the entropy term matters
    eps = jax.nn.sigmoid(logit)

    # grad(PG + value_cost * MSE - eps * H)
    grads = terms_gradient(state.params, state.extras.rollout, gamma, (1.0, value_cost, -eps))
    norm = global_norm(grads)
    scale = 1.0 if max_grad_norm == 0 else min(1.0, max_grad_norm / norm)
    if max_grad_norm == CLIP:
        assert scale < 0.5  # the clip is active
    assert global_norm(grads["policy"]) > 1e-3 and global_norm(grads["value"]) > 1e-3

    new_state, _ = update({"logit": logit}, state, jax.random.key(1))
    expected_update = jax.tree.map(lambda g: -lr * scale * g, grads)
    tree_allclose(tree_sub(new_state.params, state.params), expected_update, rtol=1e-8, atol=1e-13)


def test_entropy_cost_moves_the_policy_only():
    """d x'/d eps = lr * dH/dx for the policy and exactly 0 for the value net."""
    gamma = float(np.float32(0.9))
    config, agent, update = make_agent(**LOSS_AGENT)
    state, _ = init(agent, seed=5)
    state = with_hand_rollout(state)
    logit = jnp.float64(-1.0)

    def new_params(logit):
        return agent.update_fn({"logit": logit}, state, jax.random.key(1))[0].params

    jacobian = run_fast(jax.jacfwd(new_params), logit)
    assert all(np.all(np.asarray(j) == 0) for j in jax.tree.leaves(jacobian["value"]))
    dh = terms_gradient(state.params, state.extras.rollout, gamma, (0.0, 0.0, 1.0))
    sigmoid_slope = jax.nn.sigmoid(logit) * (1 - jax.nn.sigmoid(logit))
    expected = jax.tree.map(lambda g: config.learning_rate * sigmoid_slope * g, dh["policy"])
    assert global_norm(expected) > 1e-6
    tree_allclose(jacobian["policy"], expected, rtol=1e-8, atol=1e-13)

    # The value step does not depend on eps at all, bit for bit...
    logits = (jnp.float64(-3.0), jnp.float64(2.0))
    low, high = (update({"logit": w}, state, jax.random.key(1))[0].params for w in logits)
    for x, y in zip(jax.tree.leaves(low["value"]), jax.tree.leaves(high["value"]), strict=True):
        np.testing.assert_array_equal(x, y)
    # ...unless the global-norm clip is active: both networks share one clip, whose scale
    # depends on eps through the policy gradient.
    _, clipped_agent, clipped = make_agent(**{**LOSS_AGENT, "max_grad_norm": CLIP})
    clipped_state = with_hand_rollout(init(clipped_agent, seed=5)[0])
    tree_allclose(clipped_state.params, state.params, rtol=0)  # the same learner, clipped
    low, high = (clipped({"logit": w}, clipped_state, jax.random.key(1))[0].params for w in logits)
    assert global_norm(tree_sub(low["value"], high["value"])) > 1e-6


# --- 2. The entropy cost -----------------------------------------------------------------------


@functools.cache
def probe_state(agent):
    """The agent's initial state (eager, cached: call it outside any trace)."""
    return agent.init_state(jax.random.key(0))


def entropy_cost(agent, meta_params, history, state=None):
    """The entropy cost at context `history`, as the learner's probes report it (compiled);
    `state` defaults to `probe_state(agent)`."""
    state = probe_state(agent) if state is None else state
    return _entropy_cost(agent, meta_params, state, history)


@functools.partial(jax.jit, static_argnums=0)
def _entropy_cost(agent, meta_params, state, history):
    state = state._replace(extras=state.extras._replace(reward_history=history))
    return agent.probes(meta_params, state)["entropy_cost"]


def test_entropy_cost_without_context_is_sigmoid_of_the_logit():
    _, agent, _ = make_agent(context="none", entropy_cost=0.2)
    meta_params = agent.init_meta_params(jax.random.key(0))
    np.testing.assert_allclose(entropy_cost(agent, meta_params, jnp.ones(3)), 0.2, rtol=1e-6)
    for w in (-3.0, 0.0, 1.5):
        eps = entropy_cost(agent, {"logit": jnp.asarray(w)}, jnp.ones(3))
        np.testing.assert_allclose(eps, 1 / (1 + np.exp(-w)), rtol=1e-12)
    state = probe_state(agent)
    grad = jax.jit(jax.grad(lambda w: entropy_cost(agent, {"logit": w}, jnp.ones(3), state)))(
        jnp.asarray(1.5)
    )
    np.testing.assert_allclose(grad, np.exp(-1.5) / (1 + np.exp(-1.5)) ** 2, rtol=1e-12)


def test_entropy_cost_with_reward_context():
    _, agent, _ = make_agent(context="reward", entropy_cost=0.2, context_length=3)
    meta_params = agent.init_meta_params(jax.random.key(0))
    histories = [jnp.zeros(3), jnp.array([1.0, -0.5, 0.25]), jnp.array([-1.0, -1.0, 3.0])]
    # Zero-initialised output layer: exactly the configured cost, whatever the context.
    for history in histories:
        np.testing.assert_allclose(entropy_cost(agent, meta_params, history), 0.2, rtol=1e-12)

    # A trained meta-network (random output layer) depends on the context...
    layers = meta_params["net"]["params"]
    kernel = jax.random.normal(jax.random.key(1), layers["Dense_1"]["kernel"].shape)
    output = {"kernel": kernel, "bias": layers["Dense_1"]["bias"]}
    trained = {"net": {"params": {**layers, "Dense_1": output}}}
    values = [float(entropy_cost(agent, trained, h)) for h in histories]
    assert len(set(values)) == len(values)
    # ...but the context is data: no gradient flows into it, while the meta-parameters get one.
    state = probe_state(agent)
    grads = jax.jit(jax.grad(lambda w, h: entropy_cost(agent, w, h, state), argnums=(0, 1)))
    for history in histories[1:]:
        meta_grad, context_grad = grads(trained, history)
        np.testing.assert_array_equal(context_grad, np.zeros(3))
        assert global_norm(meta_grad) > 1e-6


def test_probe_contexts_give_the_entropy_cost_at_those_contexts():
    """context/{name} probes = the entropy cost the learner would use at that context; the five
    contexts are high / rising (newest last) / zero / falling / low."""
    _, agent, _ = make_agent(context="reward", entropy_cost=0.2, context_length=3)
    meta_params = agent.init_meta_params(jax.random.key(0))
    layers = meta_params["net"]["params"]
    kernel = jax.random.normal(jax.random.key(1), layers["Dense_1"]["kernel"].shape)
    trained = {"net": {"params": {**layers, "Dense_1": {**layers["Dense_1"], "kernel": kernel}}}}
    contexts = np.asarray(stream.probe_contexts(3, normalized=False))
    np.testing.assert_allclose(
        contexts,
        [[0.3, 0.3, 0.3], [-0.3, 0, 0.3], [0, 0, 0], [0.3, 0, -0.3], [-0.3, -0.3, -0.3]],
        atol=1e-7,
    )
    assert np.asarray(stream.probe_contexts(3, normalized=True)).max() == pytest.approx(0.9)
    probes = jax.jit(agent.probes)(trained, probe_state(agent))
    values = []
    for name, context in zip(stream.PROBE_CONTEXTS, contexts, strict=True):
        expected = entropy_cost(agent, trained, jnp.asarray(context, jnp.float32))
        np.testing.assert_allclose(probes[f"context/{name}"], expected, rtol=1e-6)
        values.append(float(expected))
    assert len(set(values)) == 5


def test_running_context_statistics_match_numpy():
    """Welford's running mean / std against numpy's on a sequence with a large offset (where the
    naive sum-of-squares formula loses float32 precision), and the normalised context."""
    values = (100.0 + np.random.default_rng(0).normal(0.0, 0.3, 200)).astype(np.float32)
    stats = jax.jit(
        lambda xs: jax.lax.scan(lambda s, x: (s.push(x), None), stream.RunningStats.zeros(), xs)[0]
    )(values)
    assert int(stats.count) == 200 and stats.mean.dtype == jnp.float32
    np.testing.assert_allclose(stats.mean, np.mean(values, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(stats.std, np.std(values, dtype=np.float64), rtol=1e-4)
    history = jnp.asarray(values[-5:])
    extras = stream.Extras(None, None, history, stats)
    z = (values[-5:] - np.mean(values, dtype=np.float64)) / np.sqrt(
        np.var(values, dtype=np.float64) + stream.CONTEXT_VARIANCE_EPS
    )
    np.testing.assert_allclose(stream.context(extras), np.tanh(z), rtol=1e-3, atol=1e-5)
    assert np.all(np.abs(stream.context(extras)) <= 1)
    # Without statistics the context is the raw history, untouched.
    raw = stream.Extras(None, None, history)
    assert stream.context(raw) is history


def test_meta_network_outputs_its_initial_value_on_every_context():
    """The exact initialisation (zero output layer + logit(initial)): 0.5 on random contexts,
    inside and far outside [-1, 1]; the output layer still gets a meta-gradient."""
    schedule = make_meta_schedule(
        0.5, use_context=True, context_length=10, hidden_size=64, hidden_layers=2
    )
    meta_params = jax.jit(schedule.init)(jax.random.key(3))
    shapes = jax.tree.map(jnp.shape, meta_params["net"]["params"])
    assert [shapes[f"Dense_{i}"]["kernel"] for i in range(3)] == [(10, 64), (64, 64), (64, 1)]
    contexts = jax.jit(
        lambda: jnp.concatenate(
            [
                jax.random.uniform(jax.random.key(4), (500, 10), minval=-1.0, maxval=1.0),
                100.0 * jax.random.normal(jax.random.key(5), (500, 10)),
            ]
        )
    )()
    values = jax.jit(jax.vmap(schedule.value, in_axes=(None, 0)))(meta_params, contexts)
    np.testing.assert_array_equal(values, np.full(1000, 0.5))
    grads = jax.jit(jax.grad(schedule.value))(meta_params, contexts[0])["net"]["params"]
    assert global_norm(grads["Dense_2"]) > 1e-3


def meta_schedule(init, initial=0.5):
    return make_meta_schedule(initial, use_context=True, context_length=3, hidden_size=8, init=init)


def test_meta_schedule_zero_output_and_random_initialisations():
    contexts = jax.random.uniform(jax.random.key(4), (5, 3), minval=-1.0, maxval=1.0)
    key = jax.random.key(3)
    zero = meta_schedule("zero_output")
    values = jax.vmap(zero.value, in_axes=(None, 0))(zero.init(key), contexts)
    np.testing.assert_array_equal(values, np.full(5, 0.5))

    random = meta_schedule("random")
    meta_params = random.init(key)
    values = np.asarray(jax.vmap(random.value, in_axes=(None, 0))(meta_params, contexts))
    logits = mlp(meta_params["net"], np.asarray(contexts, np.float64))[:, 0]  # + logit(0.5) = 0
    np.testing.assert_allclose(values, 1 / (1 + np.exp(-logits)), rtol=1e-6)
    assert np.abs(values - 0.5).max() > 1e-3 and len(set(values.tolist())) == 5


def test_meta_schedule_pretrained_initialisation_fits_its_initial_value():
    contexts = jax.random.uniform(jax.random.key(5), (100, 3), minval=-1.0, maxval=1.0)
    distances = {}
    for init in ("pretrained", "random"):
        schedule = meta_schedule(init, initial=0.3)
        meta_params = jax.jit(schedule.init)(jax.random.key(7))
        values = jax.jit(jax.vmap(schedule.value, in_axes=(None, 0)))(meta_params, contexts)
        distances[init] = np.abs(np.asarray(values, np.float64) - 0.3)
    assert distances["pretrained"].max() < 0.02
    # Random starts near 0.3 too (a small net around logit(0.3)), but ten times farther here.
    assert distances["random"].mean() > 3 * distances["pretrained"].mean()
    with pytest.raises(ValueError, match="meta_init must be one of .*got 'pre-trained'"):
        meta_schedule("pre-trained")


def test_agent_context_is_normalised_by_running_statistics_of_its_rollouts():
    """The learner pushes every rollout's mean reward (first rollout included) into its running
    statistics, and its meta-network reads tanh((h - mean) / sqrt(var + 1e-8))."""
    n = 5
    config, agent, update = make_agent(
        **{**STREAM, "context_length": n + 1},  # holds every rollout's mean reward
        context_normalization="running",
        meta_hidden_size=8,
        meta_hidden_layers=2,
        entropy_cost=0.3,
    )
    state, meta_params = init(agent, seed=2)
    for i in range(n):
        state, _ = update(meta_params, state, jax.random.key(200 + i))
    history = np.asarray(state.extras.reward_history, np.float64)
    stats = state.extras.context_stats
    assert int(stats.count) == n + 1
    np.testing.assert_allclose(stats.mean, history.mean(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats.std, history.std(), rtol=1e-5, atol=1e-7)
    assert history.std() > 0  # the check sees more than one value
    # A meta-network with a non-zero output layer reads the normalised context.
    layers = meta_params["net"]["params"]
    kernel = jax.random.normal(jax.random.key(1), layers["Dense_2"]["kernel"].shape)
    trained = {"net": {"params": {**layers, "Dense_2": {**layers["Dense_2"], "kernel": kernel}}}}
    context = np.tanh((history - history.mean()) / np.sqrt(history.var() + 1e-8))
    net = MLP((8, 8), 1, zero_output=True)
    expected = jax.jit(lambda w, h: jax.nn.sigmoid(net.apply(w, h)[0] + np.log(0.3 / 0.7)))(
        trained["net"], context
    )
    probes = jax.jit(agent.probes)(trained, state)
    np.testing.assert_allclose(probes["entropy_cost"], expected, rtol=1e-5)


def test_a_zero_entropy_cost_is_a_fixed_baseline_only():
    config = ActorCriticConfig(**SMALL, entropy_cost=0.0)
    fixed = make_actor_critic(config, TWO_COLORS, ENV, schedule="fixed")
    state, meta_params = init(fixed)
    assert float(fixed.probes(meta_params, state)["entropy_cost"]) == 0.0
    with pytest.raises(ValueError) as error:
        make_actor_critic(config, TWO_COLORS, ENV)  # schedule="meta"
    assert str(error.value) == (
        "entropy_cost = 0.0 is the initial value of the meta-learned entropy cost (a sigmoid) for "
        "mg and bmg, so it must be in (0, 1) there; set meta_initial in (0, 1) or use algo fixed."
    )
    # meta_initial sets where MG / BMG start; the fixed baseline keeps entropy_cost.
    config = ActorCriticConfig(**SMALL, entropy_cost=0.0, meta_initial=0.5)
    meta = make_actor_critic(config, TWO_COLORS, ENV)
    state, meta_params = init(meta)
    assert float(meta.probes(meta_params, state)["entropy_cost"]) == 0.5


def test_a_fixed_entropy_cost_is_constant_whatever_the_meta_network_initialisation():
    """The fixed baseline's entropy cost is its value on every context, even with meta_init
    "random" (which only a meta-learned schedule uses) and PyTorch biases."""
    config = ActorCriticConfig(**SMALL, entropy_cost=0.3, meta_init="random", bias_init="uniform")
    fixed = make_actor_critic(config, TWO_COLORS, ENV, schedule="fixed")
    state, meta_params = init(fixed)
    probes = fixed.probes(meta_params, state)
    for name in ("entropy_cost", *(f"context/{c}" for c in stream.PROBE_CONTEXTS)):
        np.testing.assert_allclose(float(probes[name]), 0.3, rtol=1e-12)
    meta = make_actor_critic(config, TWO_COLORS, ENV)  # the same config, meta-learned: random
    state, meta_params = init(meta)
    values = [float(meta.probes(meta_params, state)[f"context/{c}"]) for c in stream.PROBE_CONTEXTS]
    assert len(set(values)) == len(values)


# --- 3. The stream: continuity and accounting ----------------------------------------------------


def decode(obs, grid_size=3):
    """Observation -> EnvState (time 0; only positions are encoded)."""
    blocks = np.asarray(obs).reshape(6, grid_size).argmax(axis=-1)  # agent col, row, obj0 ...
    cells = blocks.reshape(3, 2)[:, ::-1]  # (row, col) of agent, obj0, obj1
    return two_colors.make_state(cells[0], cells[1:], 0)


def test_stream_continuity_accounting_and_probes():
    T, n = STREAM["rollout_length"], 4
    _, agent, update = make_agent(**STREAM)
    state, meta_params = init(agent, seed=7)
    extras = state.extras
    rollouts = [extras.rollout]
    # The initial rollout counts.
    assert int(extras.stream.env_steps) == T and int(extras.stream.env_state.time) == T
    np.testing.assert_allclose(extras.stream.reward_sum, np.sum(extras.rollout.rewards), rtol=1e-12)
    np.testing.assert_allclose(extras.reward_history, [0, 0, np.mean(extras.rollout.rewards)])

    for i in range(1, n + 1):
        state, metrics = update(meta_params, state, jax.random.key(100 + i))
        extras = state.extras
        rollout = extras.rollout
        assert int(extras.stream.env_steps) == T * (i + 1)
        assert int(extras.stream.env_state.time) == T * (i + 1)
        # The stream continues: no reset between rollouts.
        np.testing.assert_array_equal(rollout.obs[0], rollouts[-1].obs[-1])
        np.testing.assert_array_equal(
            rollout.obs[-1], two_colors.observation(extras.stream.env_state, ENV)
        )
        np.testing.assert_allclose(metrics["env/rollout_reward"], np.sum(rollout.rewards))
        rollouts.append(rollout)

    all_rewards = np.concatenate([np.asarray(r.rewards, np.float64) for r in rollouts])
    np.testing.assert_allclose(extras.stream.reward_sum, all_rewards.sum(), rtol=1e-6)
    np.testing.assert_allclose(
        extras.reward_history, [np.mean(r.rewards) for r in rollouts[-3:]], rtol=1e-6
    )
    assert len(set(np.round(all_rewards, 4))) > 1  # the accounting sees more than one reward

    # The probes: cumulative counters (first rollout included), the policy's entropy on the latest
    # rollout's states, the entropy cost at the current context.
    probes = jax.jit(agent.probes)(meta_params, state)
    assert probes["env_steps"].dtype == jnp.int32 and int(probes["env_steps"]) == T * (n + 1)
    assert probes["reward_sum"].dtype == jnp.float32
    np.testing.assert_allclose(probes["reward_sum"], all_rewards.sum(), rtol=1e-6)
    assert int(probes["episodes"]) == 0 and float(probes["episode_return_sum"]) == 0.0
    logp = log_softmax(mlp(state.params["policy"], np.asarray(extras.rollout.obs[:-1])))
    entropy = np.mean(-np.sum(np.exp(logp) * logp, axis=-1))
    np.testing.assert_allclose(probes["policy_entropy"], entropy, rtol=1e-10)
    np.testing.assert_allclose(probes["entropy_cost"], 0.01, rtol=1e-10)

    # Every transition is the environment's: replay it from the decoded observation.
    for rollout in rollouts:
        for t in range(T):
            obs, _, reward, *_ = env_step(
                jax.random.key(0), decode(rollout.obs[t]), rollout.actions[t], ENV
            )
            assert float(reward) == float(rollout.rewards[t])
            if float(reward) == -np.float32(PENALTY):  # no pick-up: deterministic next cell
                np.testing.assert_array_equal(obs, rollout.obs[t + 1])


@pytest.mark.parametrize("action", [DOWN, LEFT])
def test_actions_are_drawn_from_the_updated_policy(action):
    _, agent, update = make_agent(**STREAM)
    state, meta_params = init(agent)
    bias = np.zeros(4)
    bias[action] = 50.0  # pi(action) = 1 - 3e-22; one clipped SGD step moves the bias <= 0.1
    params = {**state.params, "policy": with_output(state.params["policy"], bias)}
    state, _ = update(meta_params, state._replace(params=params), jax.random.key(1))
    np.testing.assert_array_equal(state.extras.rollout.actions, np.full(4, action))


# --- 4. The matching function -------------------------------------------------------------------


def numpy_kl(target_params, params, obs):
    log_p = log_softmax(mlp(target_params["policy"], obs))
    log_q = log_softmax(mlp(params["policy"], obs))
    return np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))


@pytest.mark.parametrize("matching", ["kl", "kl_value"])
def test_matching_fn(matching):
    weight = 0.7
    _, _, update = make_agent(**STREAM)
    _, agent, _ = make_agent(**STREAM, matching=matching, matching_value_cost=weight)
    state, meta_params = init(agent, seed=11)
    # The target: the learner one update on (its step magnified 5 times), with its new rollout.
    target, _ = update(meta_params, state, jax.random.key(1))
    target = target._replace(
        params=jax.tree.map(lambda t, x: x + 5.0 * (t - x), target.params, state.params)
    )

    matching_fn = jax.jit(agent.matching_fn)
    assert float(matching_fn(state, state, meta_params)) == 0.0
    assert float(matching_fn(target, target, meta_params)) == 0.0
    mu = float(matching_fn(target, state, meta_params))
    obs = np.asarray(target.extras.rollout.obs[:-1], np.float64)
    expected = numpy_kl(target.params, state.params, obs)
    if matching == "kl_value":
        v_target = mlp(target.params["value"], obs)[:, 0]
        v = mlp(state.params["value"], obs)[:, 0]
        expected += weight * np.mean((v_target - v) ** 2)
    assert expected > 1e-6
    np.testing.assert_allclose(mu, expected, rtol=1e-10)
    # The states are the target's rollout's: the learner's own rollout does not enter.
    other = with_hand_rollout(state)
    np.testing.assert_allclose(matching_fn(target, other, meta_params), mu, rtol=1e-12)

    grads = jax.jit(
        jax.grad(lambda p: agent.matching_fn(target, state._replace(params=p), meta_params))
    )(state.params)
    assert global_norm(grads["policy"]) > 1e-6
    if matching == "kl":
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads["value"]))
    else:
        assert global_norm(grads["value"]) > 1e-6


def test_summed_kl_is_rollout_length_times_the_mean():
    T = STREAM["rollout_length"]
    _, mean_agent, update = make_agent(**STREAM)
    _, sum_agent, _ = make_agent(**STREAM, kl_reduction="sum")
    state, meta_params = init(sum_agent, seed=11)
    tree_allclose(state.params, init(mean_agent, seed=11)[0].params, rtol=0)  # the same learner
    target, _ = update(meta_params, state, jax.random.key(1))
    target = target._replace(
        params=jax.tree.map(lambda t, x: x + 5.0 * (t - x), target.params, state.params)
    )
    mean_mu, sum_mu = jax.jit(
        lambda: tuple(a.matching_fn(target, state, meta_params) for a in (mean_agent, sum_agent))
    )()
    obs = np.asarray(target.extras.rollout.obs[:-1], np.float64)
    expected = numpy_kl(target.params, state.params, obs)
    assert expected > 1e-6
    np.testing.assert_allclose(mean_mu, expected, rtol=1e-10)
    np.testing.assert_allclose(sum_mu, T * expected, rtol=1e-10)
    np.testing.assert_allclose(sum_mu, T * mean_mu, rtol=1e-14)


def test_learner_update_target_step_is_the_learners_update_without_a_rollout():
    assert make_agent(**STREAM)[1].target_step is None  # default: a plain step on f
    _, agent, update = make_agent(**STREAM, target_step="learner_update")
    state, meta_params = init(agent, seed=4)
    key = jax.random.key(6)
    target, metrics = jax.jit(agent.target_step)(meta_params, state, key)
    updated, update_metrics = update(meta_params, state, key)
    assert global_norm(tree_sub(updated.params, state.params)) > 1e-6
    tree_allclose(target.params, updated.params, rtol=1e-12, atol=1e-15)
    tree_allclose(target.opt_state, updated.opt_state, rtol=1e-12, atol=1e-15)
    # No rollout collected: the extras (rollout, stream, context) are the input state's.
    tree_allclose(target.extras, state.extras, rtol=0, atol=0)
    assert int(updated.extras.stream.env_steps) == 2 * int(state.extras.stream.env_steps)
    for name in ("learner/pg_loss", "learner/value_loss", "learner/entropy"):
        np.testing.assert_allclose(metrics[name], update_metrics[name], rtol=1e-12)


def test_bias_init_uniform_is_pytorchs_and_zeros_is_zero():
    """bias_init="uniform": every bias of the policy / value nets (and of the meta-network's
    hidden layer) in U(+-1/sqrt(fan_in)), none zero; "zeros": all zero."""
    _, uniform_agent, _ = make_agent(**STREAM, bias_init="uniform")
    _, zeros_agent, _ = make_agent(**STREAM)
    (uniform, uniform_meta), (zeros, zeros_meta) = init(uniform_agent), init(zeros_agent)
    uniform, zeros = uniform.params, zeros.params
    nets = [uniform["policy"], uniform["value"], uniform_meta["net"]]
    layers = [layer for net in nets for layer in net["params"].values()]
    assert len(layers) == 2 * 3 + 2
    for layer in layers[:-1]:  # the meta-network's output layer starts at zero
        fan_in = layer["kernel"].shape[0]
        bias = np.asarray(layer["bias"])
        bound = 1 / np.sqrt(fan_in)
        assert np.all(bias != 0) and np.all(np.abs(bias) <= bound * (1 + 1e-6)), fan_in
        if bias.size > 1:  # spread over the interval (all 16 inside half of it: p = 2^-16)
            assert np.abs(bias).max() > bound / 2
    np.testing.assert_array_equal(layers[-1]["bias"], [0.0])
    for net in (zeros["policy"], zeros["value"], zeros_meta["net"]):
        for layer in net["params"].values():
            np.testing.assert_array_equal(layer["bias"], np.zeros_like(layer["bias"]))


# --- 5. MG and BMG on the actor-critic ----------------------------------------------------------


def test_bmg_with_one_plain_step_and_parameter_matching_is_alpha_times_mg():
    """L = 1, x~ = x_1 - alpha grad f(x_1), mu = 1/2 ||x~ - x_1(w)||^2: grad mu = alpha grad f."""
    alpha = 0.3
    config, agent, _ = make_agent(**STREAM, outer_entropy_cost=0.05)
    state, meta_params = init(agent, seed=0)
    # Every meta-parameter gets a gradient: a non-zero output layer and a non-zero context.
    meta_params = jax.jit(
        lambda w: jax.tree.map(
            lambda x, n: x + 0.3 * n,
            w,
            to64(jax.tree.map(lambda x: jax.random.normal(jax.random.key(2), x.shape), w)),
        )
    )(meta_params)
    history = jnp.array([0.3, -0.2, 0.5])
    state = state._replace(extras=state.extras._replace(reward_history=history))
    eps = entropy_cost(agent, meta_params, history)

    # The default clip (global norm 1) is active in the inner update: its gradient is
    # grad(PG + value_cost * MSE - eps * H).
    gamma = float(np.float32(config.discount))
    weights = (1.0, config.value_cost, -eps)
    grads = terms_gradient(state.params, state.extras.rollout, gamma, weights)
    assert global_norm(grads) > config.max_grad_norm == 1.0

    key = jax.random.key(3)
    mg = make_metagradient(agent.update_fn, agent.meta_objective, optax.sgd(1.0), num_inner_steps=1)
    bootstrap = make_target_bootstrap(
        agent.update_fn, 1, meta_objective=agent.meta_objective, step_size=alpha
    )
    bmg = make_bmg(
        agent.update_fn, bootstrap, parameter_matching(), optax.sgd(1.0), num_inner_steps=1
    )
    both = lambda *args: (mg.meta_gradient(*args), bmg.meta_gradient(*args))
    (mg_grads, (mg_state, _)), (bmg_grads, (bmg_state, _)) = run_fast(both, meta_params, state, key)
    for g in jax.tree.leaves(mg_grads):
        assert np.abs(np.asarray(g)).max() > 1e-9  # no leaf is trivially 0 = 0
    tree_allclose(bmg_grads, jax.tree.map(lambda g: alpha * g, mg_grads), rtol=1e-10, atol=1e-15)
    tree_allclose(bmg_state.params, mg_state.params, rtol=0, atol=0)  # both continue from x_K
    assert int(bmg_state.extras.stream.env_steps) == 2 * STREAM["rollout_length"]


# --- 6. The outer entropy sign, a zero-gradient state, bad configs --------------------


def test_meta_objective_is_pg_minus_outer_entropy_cost_times_entropy():
    """f = PG - outer_entropy_cost * H against the numpy reference: a flipped sign would be off
    by 2 * 0.3 * H (H ~ log 4 here)."""
    gamma = float(np.float32(0.9))
    _, agent, _ = make_agent(**LOSS_AGENT, outer_entropy_cost=0.3)
    state, _ = init(agent, seed=3)
    state = with_hand_rollout(state)
    _, pg_loss, _, entropy = numpy_terms(state.params, state.extras.rollout, gamma)
    f, metrics = jax.jit(agent.meta_objective)(state, jax.random.key(0))
    assert entropy > 1.0
    np.testing.assert_allclose(f, pg_loss - 0.3 * entropy, rtol=1e-10)
    np.testing.assert_allclose(metrics["pg_loss"], pg_loss, rtol=1e-10)
    # Its gradient is the same combination of the reference terms' gradients.
    rollout = state.extras.rollout
    grad = jax.jit(jax.grad(lambda p: agent.meta_objective(state._replace(params=p), None)[0]))
    expected = terms_gradient(state.params, rollout, gamma, (1.0, 0.0, -0.3))
    tree_allclose(grad(state.params), expected, rtol=1e-8, atol=1e-13)


def zero_gradient_state(agent, env_params):
    """All-zero parameters and a stored rollout without pick-ups (reward 0 everywhere): the
    learner's gradient is exactly zero (uniform policy, V = 0, zero advantages)."""
    state, meta_params = init(agent)
    env_state = two_colors.make_state((1, 1), ((0, 0), (2, 2)), 0)
    observations = [two_colors.observation(env_state, env_params)]
    for action in (UP, DOWN, LEFT, RIGHT):  # (0, 1), (1, 1), (1, 0), (1, 1): no object
        obs, env_state, reward, *_ = env_step(jax.random.key(0), env_state, action, env_params)
        assert float(reward) == 0.0
        observations.append(obs)
    rollout = make_rollout(jnp.stack(observations), [UP, DOWN, LEFT, RIGHT], np.zeros(4), 0.99)
    env_stream = state.extras.stream._replace(env_state=env_state, obs=rollout.obs[-1])
    extras = state.extras._replace(rollout=rollout, stream=env_stream)
    params = jax.tree.map(jnp.zeros_like, state.params)
    return state._replace(params=params, extras=extras), meta_params


@pytest.mark.parametrize("algo", ["mg", "bmg"])
def test_zero_gradient_state_gives_finite_meta_gradients(algo, monkeypatch):
    """With optax's global-norm clip (default max_grad_norm 1.0) the clip's
    derivative at a zero gradient is 0/0 and the meta-gradient NaN; bmg.core's clip gives 0."""
    env_params = two_colors.make_params(grid_size=3, switch_every=50)  # no step penalty
    config = ActorCriticConfig(**{**SMALL, **STREAM})
    assert config.max_grad_norm == 1.0
    meta_config = MetaConfig(algo=algo, inner_steps=1, bootstrap_steps=1)

    def meta_gradient():
        agent = make_actor_critic(config, TWO_COLORS, env_params)
        state, meta_params = zero_gradient_state(agent, env_params)
        grads, (_, metrics) = run_fast(
            make_meta_learner(agent, meta_config).meta_gradient,
            meta_params,
            state,
            jax.random.key(4),
        )
        return grads, metrics

    grads, metrics = meta_gradient()
    for leaf in jax.tree.leaves(grads):  # 0 up to round-off (the uniform policy's dH/dx ~ 1e-17)
        np.testing.assert_allclose(leaf, np.zeros_like(leaf), atol=1e-12)
    assert np.isfinite(float(metrics["meta/loss"]))
    if algo == "bmg":
        return
    # The same state with optax's clip: NaN (the fault this pins).
    monkeypatch.setattr(stream, "clip_by_global_norm", optax.clip_by_global_norm)
    optax_grads, _ = meta_gradient()
    assert any(np.isnan(np.asarray(leaf)).any() for leaf in jax.tree.leaves(optax_grads))


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", float("inf")),
        ("learning_rate", float("nan")),
        ("learning_rate", 0.0),
        ("learning_rate", True),
        ("discount", float("nan")),
        ("discount", 1.5),
        ("max_grad_norm", float("inf")),
        ("entropy_cost", float("nan")),
        ("entropy_cost", 1.0),
        ("entropy_cost", -0.1),
        ("meta_initial", 0.0),
        ("adam_eps", -1.0),
        ("meta_hidden_layers", 0),
        ("value_cost", float("inf")),
        ("outer_entropy_cost", -0.1),
        ("matching_value_cost", float("nan")),
        ("hidden_size", 2.5),
        ("context", "rewards"),
        ("matching", "l2"),
    ],
)
def test_config_rejects_bad_values_in_one_sentence(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be .*, got {value!r}\\.$"):
        ActorCriticConfig(**{field: value})


# --- 7. Any gymnax environment: MinAtar -------------------------------------------------------


def test_truncated_steps_bootstrap_from_the_value_of_the_final_observation():
    """Breakout-MinAtar with a time limit of 2 steps: steps 1 and 3 of a 4-step rollout are
    truncated, and the value loss bootstraps there from V(final_obs), not from the reset state."""
    env, env_params = gymnax.make("Breakout-MinAtar")
    env_params = env_params.replace(max_steps_in_episode=2)
    config = ActorCriticConfig(
        hidden_size=16, rollout_length=4, context="none", max_grad_norm=0.0, discount=0.9
    )
    agent = make_actor_critic(config, env, env_params)
    state, meta_params = init(agent, seed=2, jit=True)
    rollout = state.extras.rollout
    np.testing.assert_array_equal(rollout.truncated, [False, True, False, True])
    assert not np.array_equal(rollout.final_obs[1], rollout.obs[2])  # a reset in between
    _, metrics, probes = jax.jit(
        lambda w, s, key: (*agent.update_fn(w, s, key), agent.probes(w, s))
    )(meta_params, state, jax.random.key(1))

    flat = lambda x: np.asarray(x, np.float64).reshape(x.shape[0], -1)
    v = mlp(state.params["value"], flat(rollout.obs))[:, 0]
    v_final = mlp(state.params["value"], flat(rollout.final_obs))[:, 0]
    gamma = float(np.float32(0.9))
    rewards = np.asarray(rollout.rewards, np.float64)
    returns, following = np.zeros(4), v[4]
    for t in reversed(range(4)):
        following = rewards[t] + gamma * (v_final[t] if rollout.truncated[t] else following)
        returns[t] = following
    np.testing.assert_allclose(
        metrics["learner/value_loss"], np.mean((returns - v[:4]) ** 2), rtol=1e-10
    )
    assert int(probes["episodes"]) == 2 and int(probes["env_steps"]) == 4


@pytest.mark.slow
def test_bmg_runs_on_minatar_breakout(two_finite_meta_steps):
    """The agent on an episodic gymnax image game (Two-colors-free code paths); BMG's meta-step
    holds MG's K-step unroll and the fixed learner's update (fixed and MG run the same agent
    code on Two-colors in the tests above)."""
    env, env_params = gymnax.make("Breakout-MinAtar")
    config = ActorCriticConfig(hidden_size=16, rollout_length=4, context_length=3)
    agent = make_actor_critic(config, env, env_params)
    # Initialised compiled (eagerly, each operation of the game's reset and steps compiles alone).
    agent = agent._replace(
        init_state=jax.jit(agent.init_state), init_meta_params=jax.jit(agent.init_meta_params)
    )
    for algo, inner, bootstrap in (("bmg", 1, 2),):
        meta_config = MetaConfig(
            algo=algo, inner_steps=inner, bootstrap_steps=bootstrap, continue_from="inner_params"
        )
        probes = two_finite_meta_steps(agent, meta_config)
        # Every environment step counts, the target's included (BMG goes on with its stream).
        assert int(probes["env_steps"]) == 4 * (1 + 2 * meta_config.updates_per_step), algo
