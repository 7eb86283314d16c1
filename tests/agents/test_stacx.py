"""The STACX learner: initial meta-parameters, acting, the RMSProp update and target step, the
non-zero meta-gradients of all 18 meta-parameters (the trap), and BMG = alpha x MG.

Tests run on a tiny image environment (3 x 3 x 2 observations) so that they compile in
seconds; identities run in float64. The learner on MinAtar Breakout end to end (impala, stacx and
bmg through the CLI, BMG's meta-parameters moving, one batch over 4 devices) is tested in
tests/experiments/minatar/test_minatar.py and by the documented `bmg minatar` commands.
"""

import functools

import chex
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from bmg.agents import stacx
from bmg.agents.stacx import META_NAMES, StacxConfig, make_stacx
from bmg.agents.torsos import ImpalaTorso, MinAtarTorso
from bmg.core import MetaConfig, make_meta_learner, parameter_matching

pytestmark = pytest.mark.usefixtures("x64")


@struct.dataclass
class WalkParams:
    max_steps_in_episode: int = struct.field(pytree_node=False, default=3)


@struct.dataclass
class WalkState:
    pos: jax.Array
    time: jax.Array


class Walk(environment.Environment):
    """A 3 x 3 grid walk from the top-left cell: actions right, down, stay (moving off the grid
    stays). A step down pays 2 (clipped to 1 by the learner), any other step -0.25; reaching
    the centre cell terminates; episodes are truncated after 3 steps (gymnax's time limit).
    Observation [3, 3, 2]: the agent's cell one-hot, and the elapsed fraction of the time limit
    everywhere."""

    @property
    def default_params(self):
        return WalkParams()

    def reset_env(self, key, params):
        state = WalkState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        row, col = state.pos // 3, state.pos % 3
        col = jnp.where(action == 0, jnp.minimum(col + 1, 2), col)
        down = (action == 1) & (row < 2)
        row = jnp.where(down, row + 1, row)
        state = WalkState(row * 3 + col, state.time + 1)
        reward = jnp.where(down, 2.0, -0.25)
        done = self.is_terminal(state, params)
        return self.get_obs(state, params), state, reward, done, {}

    def is_terminal(self, state, params):
        return state.pos == 4

    def get_obs(self, state, params=None, key=None):
        agent = jax.nn.one_hot(state.pos, 9).reshape(3, 3)
        clock = jnp.full((3, 3), state.time / 3.0)
        return jnp.stack([agent, clock], axis=-1).astype(jnp.float32)

    @property
    def num_actions(self):
        return 3

    def action_space(self, params=None):
        return spaces.Discrete(3)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (3, 3, 2), jnp.float32)


WALK = Walk()
# One learner configuration for most tests (one compile of each function, shared): the clip at
# 0.05 is always active here, so the tests cover it.
SMALL = dict(
    minatar_channels=3,
    hidden_size=8,
    meta_embedding_size=3,
    num_envs=3,
    rollout_length=4,
    learning_rate=0.05,
    max_grad_norm=0.05,
    target_learning_rate=0.02,
)
CLIP, TARGET_LR = 0.05, 0.02


def to64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


@functools.cache
def _agent(items):
    config = StacxConfig(**dict(items))
    return config, make_stacx(config, WALK, WALK.default_params)


def agent(**overrides):
    return _agent(tuple(sorted({**SMALL, **overrides}.items())))


def call(fn, *args):
    """`fn(*args)` through the cache of compiled functions (keyed by `fn` and the shapes)."""
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
    leaves, treedef = jax.tree.flatten(shapes)
    return _compiled(fn, treedef, tuple(leaves))(*args)


@functools.cache
def _compiled(fn, treedef, leaves):
    options = {"xla_backend_optimization_level": 0}
    args = jax.tree.unflatten(treedef, leaves)
    return jax.jit(fn).lower(*args).compile(compiler_options=options)


@functools.cache
def init(config, learner, seed=0):
    """Float64 parameters, optimiser state and logits carried, and float64 meta-parameters
    (one compiled program)."""

    def init_fn(key, meta_key):
        state = learner.init_state(key)
        params = to64(state.params)
        extras = state.extras._replace(behaviour_logits=to64(state.extras.behaviour_logits))
        opt_state = stacx.make_optimizer(config).init(params)
        state = state._replace(params=params, opt_state=opt_state, extras=extras)
        return state, to64(learner.init_meta_params(meta_key))

    return call(init_fn, jax.random.key(seed), jax.random.key(seed + 1))


@functools.cache
def updated(config, learner, seed=0):
    """(x_0, x_1, w, metrics of the update): one update from the initial state, so the optimiser
    state and the batch are not the initial ones."""
    state, meta = init(config, learner, seed)
    new, metrics = call(learner.update_fn, meta, state, jax.random.key(seed + 10))
    return state, new, meta, metrics


def test_initial_meta_parameters_are_sigmoid_of_4_6_and_counters_zero():
    config, learner = agent()
    state, meta = init(config, learner)
    assert set(meta) == {"head0", "head1", "head2"}
    assert all(set(meta[h]) == set(META_NAMES) for h in meta)
    probes = call(learner.probes, meta, state)
    names = [f"head{h}/{n}" for h in range(3) for n in META_NAMES]
    assert len(names) == 18
    for name in names:
        np.testing.assert_allclose(probes[name], 1 / (1 + np.exp(-4.6)), rtol=1e-12)
    np.testing.assert_allclose(1 / (1 + np.exp(-4.6)), 0.99, atol=1e-4)
    for name in ("env_steps", "reward_sum", "episodes", "episode_return_sum"):
        assert float(probes[name]) == 0.0


@pytest.mark.parametrize(
    "torso, dense_inputs",
    [(MinAtarTorso(2, 8), 8 * 8 * 2), (ImpalaTorso((2, 3), 1, 8), 3 * 3 * 3)],
    ids=["minatar", "impala"],
)
def test_torsos_apply_per_sample_under_any_batch_axes(torso, dense_inputs):
    """Leading axes [2, 3] give the per-observation features. MinAtar: a valid 3 x 3
    convolution (8 x 8 x 2); IMPALA: two sections of stride-2 pooling (5 x 5, then 3 x 3 x 3)."""
    obs = jax.random.uniform(jax.random.key(0), (2, 3, 10, 10, 4))
    params = call(torso.init, jax.random.key(1), obs[0, 0])
    out, one = call(lambda p, o: (torso.apply(p, o), torso.apply(p, o[1, 2])), params, obs)
    assert out.shape == (2, 3, 8)
    assert params["params"]["Dense_0"]["kernel"].shape == (dense_inputs, 8)
    np.testing.assert_allclose(out[1, 2], one, rtol=1e-10, atol=1e-12)


def perturb(params, prefix, scale=3.0):
    """Add noise to every parameter of the named head (leaves under params/<prefix>)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    keys = jax.random.split(jax.random.key(7), len(flat))
    leaves = []
    for (path, leaf), key in zip(flat, keys, strict=True):
        hit = any(getattr(p, "key", None) == prefix for p in path)
        leaves.append(leaf + scale * jax.random.normal(key, leaf.shape) if hit else leaf)
    return jax.tree.unflatten(jax.tree.structure(params), leaves)


def test_auxiliary_heads_do_not_act():
    """The collected actions depend on the main head only."""
    config, learner = agent()
    state, meta = init(config, learner)
    key = jax.random.key(3)
    batch = lambda params: (
        call(learner.update_fn, meta, state._replace(params=params), key)[0].extras.batch
    )
    base = batch(state.params)
    aux = batch(perturb(perturb(state.params, "head1"), "head2"))
    chex.assert_trees_all_equal(base.actions, aux.actions)
    chex.assert_trees_all_equal(base.rewards, aux.rewards)
    main = batch(perturb(state.params, "head0"))
    assert not np.array_equal(base.actions, main.actions)


def test_rmsprop_update_is_differentiable_at_a_zero_gradient():
    """eps inside the square root: d update / d gradient at g = 0 is -lr / sqrt(nu + eps),
    finite, also once nu has decayed to 0 (after many zero gradients); with eps = 0 it is
    not."""
    config, _ = agent()
    params = {"w": jnp.zeros(3)}

    def update(g, optimizer, nu):
        state = optimizer.init(params)
        rms = state[-1][0]._replace(nu={"w": jnp.full(3, nu)})
        state = (*state[:-1], (rms, *state[-1][1:]))
        return optimizer.update({"w": g}, state, params)[0]["w"]

    broken = optax.chain(optax.rmsprop(config.learning_rate, decay=config.rmsprop_decay, eps=0.0))
    jac, start_jac, broken_jac = jax.jit(  # one compiled program (eagerly, each compiles alone)
        lambda g: (
            jax.jacfwd(update)(g, stacx.make_optimizer(config), 0.0),
            jax.jacfwd(update)(g, stacx.make_optimizer(config), 1.0),
            jax.jacfwd(update)(g, broken, 0.0),
        )
    )(jnp.zeros(3))
    expected = -config.learning_rate / np.sqrt(config.mean_loss_rmsprop_eps)
    np.testing.assert_allclose(jac, expected * np.eye(3), rtol=1e-12)
    expected = -config.learning_rate / np.sqrt(config.rmsprop_decay + config.mean_loss_rmsprop_eps)
    np.testing.assert_allclose(start_jac, expected * np.eye(3), rtol=1e-12)
    assert not np.all(np.isfinite(broken_jac))


def tf1_rmsprop(grads_sum, *, lr, decay, eps, ms_0=1.0):
    """TensorFlow 1's ``tf.train.RMSPropOptimizer`` (momentum 0, not centred), from its
    documented update: ms <- decay ms + (1 - decay) g^2; mom <- lr g / sqrt(ms + eps);
    x <- x - mom, with its "rms" slot created with ones (``ms_0`` = 1). numpy, float64; the
    updates -mom for the summed-loss gradients ``grads_sum`` (a function of x and the step)."""

    def run(x):
        ms, out = np.full_like(x, ms_0), []
        for t in range(STEPS):
            g = grads_sum(x, t)
            ms = decay * ms + (1.0 - decay) * g * g
            mom = lr * g / np.sqrt(ms + eps)
            x = x - mom
            out.append(-mom)
        return np.stack(out)

    return run


STEPS = 400


def test_rmsprop_on_mean_losses_is_tf1_rmsprop_on_summed_losses_from_the_first_step():
    """IMPALA's optimiser (TF1 RMSProp, eps 0.01 inside the square root, squared-gradient
    average starting at 1) on a loss summed over the B x T samples, 400 steps from the initial
    state, equals make_optimizer's on the batch-mean loss (eps and the initial average divided
    by (B T)^2); the same optimiser with the average starting at 0 (optax's default) does not:
    its first step is several times larger, and its steps 200-300 still are."""
    config = StacxConfig(num_envs=8, rollout_length=5, max_grad_norm=0.0, rmsprop_eps=0.01)
    n = config.num_envs * config.rollout_length
    np.testing.assert_allclose(config.mean_loss_rmsprop_eps, 0.01 / 40**2, rtol=1e-15)
    np.testing.assert_allclose(config.mean_loss_rmsprop_initial_scale, 1 / 40**2, rtol=1e-15)
    rng = np.random.default_rng(0)
    # Per-sample quadratics 1/2 a_i (x - c_i)^2 (elementwise) plus a zero-mean noise
    # sequence, a gradient per step and sample: mean-loss gradients of size 1e-4 to 1e-2.
    a = rng.uniform(0.5, 2.0, (n, 5))
    c = rng.normal(0.0, 1e-2, (n, 5)) * np.array([1e-2, 0.1, 1.0, 0.3, 3e-2])
    noise = rng.normal(0.0, 3e-3, (STEPS, n, 5))

    def grads_sum(x, t):
        return (a * (x - c) + noise[t]).sum(axis=0)

    x_0 = np.array([1e-3, -2e-3, 5e-3, 0.0, 1e-2])
    kwargs = dict(lr=config.learning_rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps)
    impala = tf1_rmsprop(grads_sum, **kwargs)(x_0)

    def ours(optimizer):
        @jax.jit
        def run(x):
            def step(carry, noise_t):
                x, state = carry
                g = (a * (x - c) + noise_t).mean(axis=0)  # the mean loss's gradient
                update, state = optimizer.update({"x": g}, state, {"x": x})
                return (x + update["x"], state), update["x"]

            return jax.lax.scan(step, (x, optimizer.init({"x": x})), noise)[1]

        return np.asarray(run(jnp.asarray(x_0)))

    np.testing.assert_allclose(ours(stacx.make_optimizer(config)), impala, rtol=1e-9, atol=1e-15)
    # The control: the accumulator at 0 is another optimiser for hundreds of steps.
    zero = optax.rmsprop(
        config.learning_rate, decay=config.rmsprop_decay, eps=config.mean_loss_rmsprop_eps
    )
    started_at_zero = ours(zero)
    np.testing.assert_allclose(
        started_at_zero, tf1_rmsprop(grads_sum, **kwargs, ms_0=0.0)(x_0), rtol=1e-9, atol=1e-15
    )
    assert not np.allclose(started_at_zero, impala, rtol=1e-3)
    first = np.abs(started_at_zero[0]).mean() / np.abs(impala[0]).mean()
    late = np.abs(started_at_zero[200:300]).mean() / np.abs(impala[200:300]).mean()
    assert first > 5 and late > 1.5, (first, late)


def test_learner_and_target_step_start_from_tf1s_accumulator():
    """The learner's own initial optimiser state (which the RMSProp target step reads) holds
    the squared-gradient average 1 / (B T)^2 in every leaf, TF1's 1.0 on summed losses, and the
    target step's transformation initialises to the same state."""
    config, learner = agent()
    state = call(learner.init_state, jax.random.key(0))
    nu = state.opt_state[-1][0].nu
    n = config.num_envs * config.rollout_length
    for leaf in jax.tree.leaves(nu):
        np.testing.assert_allclose(leaf, np.full(leaf.shape, 1.0 / n**2), rtol=1e-6)
    target = stacx.make_optimizer(config, TARGET_LR).init(state.params)
    chex.assert_trees_all_equal(target, state.opt_state)


def hand_head_losses(config, params, batch, behaviour_logits, eta, heads, weights, outer):
    """sum over heads of the mean over streams of bmg.rl.vtrace.leaky_vtrace_loss, written out:
    weights = the outer (g_v, g_p, g_e); `outer` = (gamma, lambda, alpha) for all heads, or None
    for each head's own sigma values (scaled weights)."""
    network = stacx.StacxNetwork(stacx.make_torso(config), 3, 3, config.meta_embedding_size)
    T = config.rollout_length
    obs = jnp.concatenate([batch.obs, batch.final_obs], axis=1)
    logits, values = network.apply(params, obs, eta)
    total = 0.0
    for h in range(heads):
        if outer is None:
            gamma, lam, g_v, g_p, g_e, alpha = eta[h]
        else:
            (gamma, lam, alpha), g_v, g_p, g_e = outer, 1.0, 1.0, 1.0
        for b in range(config.num_envs):
            term, _ = stacx.leaky_vtrace_loss(
                logits[b, :T, h],
                values[b, :T, h],
                values[b, T, h],
                batch.actions[b],
                jnp.clip(batch.rewards[b], -1, 1),
                gamma * batch.discount_t[b],
                behaviour_logits[b],
                batch.truncated[b],
                values[b, T + 1 :, h],
                alpha=alpha,
                lambda_=lam,
                value_cost=weights[0] * g_v,
                policy_cost=weights[1] * g_p,
                entropy_cost=weights[2] * g_e,
            )
            total = total + term / config.num_envs
    return total


def test_update_is_one_rmsprop_step_on_the_summed_head_losses():
    """phi: x_1 = x_0 - lr clip(g) / sqrt(decay nu_0 + (1 - decay) clip(g)^2 + eps), nu_0 =
    1 / (B T)^2 (TF1's initial 1.0 on summed losses), g the gradient of the inner loss
    (written out per head and stream from bmg.rl.vtrace) on the batch x_0 collected; the
    behaviour logits are x_0's main head; rewards are clipped."""
    config, learner = agent()
    state, new, meta, metrics = updated(config, learner)
    batch, mu = new.extras.batch, new.extras.behaviour_logits
    weights = (0.25, 1.0, 0.01)
    decay, eps, lr = config.rmsprop_decay, config.mean_loss_rmsprop_eps, config.learning_rate
    nu_0 = 1.0 / (config.num_envs * config.rollout_length) ** 2
    network = stacx.StacxNetwork(stacx.make_torso(config), 3, 3, config.meta_embedding_size)

    @jax.jit  # the whole reference as one program (eagerly, each operation compiles alone)
    def reference(params):
        eta = stacx.meta_values(meta)
        loss = lambda p: hand_head_losses(config, p, batch, mu, eta, 3, weights, None)
        value, grads = jax.value_and_grad(loss)(params)
        norm = optax.tree.norm(grads)

        def step(x, g):
            g = g * CLIP / norm
            return x - lr * g / jnp.sqrt(decay * nu_0 + (1 - decay) * g**2 + eps)

        main = network.apply(params, batch.obs[:, :-1], eta)[0][..., 0, :]
        return value, norm, jax.tree.map(step, params, grads), main

    value, norm, expected, main = reference(state.params)
    np.testing.assert_allclose(metrics["learner/loss"], value, rtol=1e-10)
    assert norm > CLIP  # the clip is active
    chex.assert_trees_all_close(new.params, expected, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(mu, main, rtol=1e-10)
    assert bool(jnp.any(batch.rewards > 1)) and bool(jnp.any(batch.truncated))


@functools.cache
def mg_and_bmg_meta_gradients():
    """MG (K = 1) and BMG (L = 1, plain target step of 0.3, parameter matching) meta-gradients
    at x_1, same key."""
    config, learner = agent()
    _, state, meta, _ = updated(config, learner)
    mg = make_meta_learner(learner, MetaConfig(algo="mg", inner_steps=1))
    bmg = make_meta_learner(
        learner._replace(target_step=None, matching_fn=parameter_matching()),
        MetaConfig(algo="bmg", inner_steps=1, bootstrap_steps=1, target_step_size=0.3),
    )
    key = jax.random.key(4)
    return call(mg.meta_gradient, meta, state, key)[0], call(bmg.meta_gradient, meta, state, key)[0]


def test_mg_meta_gradient_is_nonzero_for_all_18_meta_parameters():
    """The trap's regression test: every meta-parameter of every head gets a meta-gradient."""
    grads, _ = mg_and_bmg_meta_gradients()
    flat = {f"{h}/{n}": float(grads[h][n]) for h in grads for n in grads[h]}
    assert len(flat) == 18
    scale = max(abs(v) for v in flat.values())
    small = {k: v for k, v in flat.items() if not abs(v) > 1e-6 * scale}
    assert np.isfinite(scale) and scale > 0 and not small, small


def test_bmg_one_sgd_step_with_parameter_matching_is_alpha_times_mg():
    """Flennerhag et al., ICLR 2022, section 3.1: L = 1, x~ = x_1 - a grad f(x_1),
    mu = 1/2 ||x~ - x_1(w)||^2  =>  grad_w mu = a grad_w f(x_1(w))."""
    g_mg, g_bmg = mg_and_bmg_meta_gradients()
    chex.assert_trees_all_close(g_bmg, jax.tree.map(lambda g: 0.3 * g, g_mg), rtol=1e-8, atol=1e-16)
    assert optax.tree.norm(g_mg) > 0
    _, learner = agent(target_step="sgd")
    assert learner.target_step is None  # "sgd": MetaConfig.target_step_size's plain step


@pytest.mark.slow
def test_without_the_embedding_gamma_lambda_alpha_get_gradients_through_the_targets():
    """No embedding: gamma, lambda (all heads) and the off-policy auxiliary heads' alpha get
    meta-gradients only through the V-trace targets; the main head acts on-policy (rho = 1), so
    its alpha has no effect at all and its meta-gradient is exactly zero."""
    config, learner = agent(meta_embedding_size=0)
    _, state, meta, _ = updated(config, learner)
    mg = make_meta_learner(learner, MetaConfig(algo="mg", inner_steps=1))
    grads, _ = call(mg.meta_gradient, meta, state, jax.random.key(4))
    flat = {f"{h}/{n}": float(grads[h][n]) for h in grads for n in grads[h]}
    assert flat.pop("head0/alpha") == 0.0
    scale = max(abs(v) for v in flat.values())
    small = {k: v for k, v in flat.items() if not abs(v) > 1e-6 * scale}
    assert not small, small


def test_rmsprop_target_step_is_one_preconditioned_step_on_the_outer_objective():
    """x~ = x - lr_t clip(g) / sqrt(decay nu + (1 - decay) clip(g)^2 + eps), g = grad f(x), nu
    the learner's own RMSProp state (the clip chained in, as in the learner's optimiser):
    written in summed-loss units, TF1's step with g_sum = B T clip(g), ms = (B T)^2 nu and
    IMPALA's eps."""
    config, learner = agent()
    _, state, meta, _ = updated(config, learner)
    optimizer = stacx.make_optimizer(config, TARGET_LR)
    chex.assert_trees_all_equal_structs(
        jax.eval_shape(optimizer.init, state.params), state.opt_state
    )
    target, _ = call(learner.target_step, meta, state, jax.random.key(9))
    nu = state.opt_state[1][0].nu
    decay, eps = config.rmsprop_decay, config.rmsprop_eps
    n = config.num_envs * config.rollout_length

    @jax.jit  # the whole reference as one program (eagerly, each operation compiles alone)
    def reference(state):
        objective = lambda p: learner.meta_objective(state._replace(params=p), None)[0]
        grads = jax.grad(objective)(state.params)
        norm = optax.tree.norm(grads)

        def step(x, g, nu):
            g_sum, ms = n * g * CLIP / norm, n**2 * nu
            return x - TARGET_LR * g_sum / jnp.sqrt(decay * ms + (1 - decay) * g_sum**2 + eps)

        return norm, jax.tree.map(step, state.params, grads, nu)

    norm, expected = reference(state)
    assert norm > CLIP
    chex.assert_trees_all_close(target.params, expected, rtol=1e-9, atol=1e-14)
    chex.assert_trees_all_equal(target.opt_state, state.opt_state)


def test_meta_objective_is_plain_vtrace_with_the_outer_values_and_kl():
    """f(x) on x's own batch, without embedding: the KL to the pre-update policy is 0 and f is
    the main head's plain V-trace loss (alpha = 1) at gamma 0.995, lambda 1 and weights
    (0.25, 1, 0.01); after the update the KL is positive."""
    config, learner = agent(meta_embedding_size=0)
    state, new, meta, _ = updated(config, learner)
    pre = new._replace(params=state.params)  # x_0 with the batch x_0 collected
    loss, metrics = jax.jit(learner.meta_objective)(pre, None)
    assert float(metrics["kl"]) == 0.0
    batch, mu = new.extras.batch, new.extras.behaviour_logits
    expected = jax.jit(  # one program (eagerly, each operation compiles alone)
        lambda params, meta: hand_head_losses(
            config,
            params,
            batch,
            mu,
            stacx.meta_values(meta),
            1,
            (0.25, 1.0, 0.01),
            (0.995, 1.0, 1.0),
        )
    )(state.params, meta)
    np.testing.assert_allclose(loss, expected, rtol=1e-10)
    _, metrics = jax.jit(learner.meta_objective)(new, None)
    assert float(metrics["kl"]) > 0


@pytest.mark.parametrize("matching", ["kl", "kl_value"])
def test_matching_is_zero_at_the_target_and_positive_elsewhere(matching):
    config, learner = agent()
    state, new, meta, _ = updated(config, learner)
    matching_fn = jax.jit(agent(matching=matching)[1].matching_fn)
    assert abs(float(matching_fn(new, new, meta))) < 1e-14
    moved = float(matching_fn(new, new._replace(params=state.params), meta))
    assert moved > 0
    if matching == "kl_value":  # the value term adds to the KL
        assert moved > float(
            jax.jit(learner.matching_fn)(new, new._replace(params=state.params), meta)
        )


@pytest.mark.parametrize(
    "field, value",
    [
        ("torso", "mlp"),
        ("num_envs", 0),
        ("rmsprop_eps", 0.0),
        ("rmsprop_decay", 1.0),
        ("outer_discount", 1.5),
        ("target_step", "adam"),
        ("matching", "l2"),
        ("impala_channels", ()),
    ],
)
def test_config_rejects_bad_values_in_one_sentence(field, value):
    with pytest.raises(ValueError, match=field):
        StacxConfig(**{field: value})


def test_rejects_flat_observations():
    two_colors_like = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match="image observations"):
        make_stacx(StacxConfig(), *two_colors_like)


def test_the_batch_learner_on_an_on_policy_batch_updates_as_the_env_learner():
    """Sebulba's learner (`make_stacx_on_batches`) and Anakin's (`make_stacx`) are one learner:
    given the batch the environment learner collected and, as the actors' logits, its main
    head's logits on it before the update (on-policy, rho = 1), the batch learner's update
    gives the same parameters, optimiser state and metrics, the same meta-objective after it,
    and the same one-step meta-gradient of all 18 meta-parameters (the batch does not depend on
    w: it is collected with stopped-gradient parameters)."""
    from bmg.agents import stream

    config, learner = agent()
    x0, x1, meta, metrics = updated(config, learner)
    key = jax.random.key(10)  # the key `updated` gave the update
    on_batches = stacx.make_stacx_on_batches(
        config, (3, 3, 2), jnp.float32, 3, truncates=stream.can_truncate(WALK)
    )
    first = lambda x: x[None]
    extras = on_batches.batch_extras(
        jax.tree.map(first, x1.extras.batch), first(x1.extras.behaviour_logits)
    )
    state = x0._replace(extras=extras)
    new, batch_metrics = call(on_batches.learner.update_fn, meta, state, key)
    chex.assert_trees_all_close(
        (new.params, new.opt_state), (x1.params, x1.opt_state), rtol=1e-12, atol=1e-14
    )
    assert set(batch_metrics) == set(metrics)
    for name in metrics:
        np.testing.assert_allclose(batch_metrics[name], metrics[name], rtol=1e-10, err_msg=name)

    def outer(learner, start):
        def f(w):
            updated_state, _ = learner.update_fn(w, start, key)
            return learner.meta_objective(updated_state, key)[0]

        return jax.value_and_grad(f)

    value, grad = call(outer(learner, x0), meta)
    batch_value, batch_grad = call(outer(on_batches.learner, state), meta)
    np.testing.assert_allclose(batch_value, value, rtol=1e-10)
    chex.assert_trees_all_close(batch_grad, grad, rtol=1e-9, atol=1e-14)
    assert all(np.any(g != 0) for g in jax.tree.leaves(grad))  # not trivially equal
