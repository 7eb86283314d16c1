"""MG and BMG against identities, closed forms and finite differences (float64).

Everything runs compiled: eager JAX compiles each operation as a program of its own (hundreds for
one meta-gradient), far slower than one compile on a small CPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from bmg.agents.regression import make_ill_conditioned_task, make_regression_learner
from bmg.core import (
    Bootstrapped,
    LearnerState,
    MetaConfig,
    gradient_step,
    make_bmg,
    make_meta_learner,
    make_metagradient,
    make_target_bootstrap,
    parameter_matching,
    squared_euclidean,
    unroll,
)
from bmg.core.meta import gradient_statistics


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def regression(meta_lr="diagonal", hidden_sizes=(8,)):
    """A small stochastic (minibatch) MLP regression learner and its initial states."""
    with jax.enable_x64(True):  # the cached arrays are float64 whoever asks first
        return _regression(meta_lr, hidden_sizes)


@functools.cache
def _regression(meta_lr, hidden_sizes):
    task = jax.jit(make_ill_conditioned_task, static_argnames=("num_examples", "dim"))(
        jax.random.key(0), num_examples=64, dim=4
    )
    learner = make_regression_learner(
        task, hidden_sizes=hidden_sizes, batch_size=8, meta_lr=meta_lr, init_learning_rate=0.05
    )
    state = jax.jit(learner.init_state)(jax.random.key(1))
    return learner, state, jax.jit(learner.init_meta_params)(jax.random.key(3))


def tree_allclose(a, b, **kwargs):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kwargs)


@pytest.mark.parametrize("num_inner_steps", [1, 3])
def test_bmg_with_one_plain_step_and_squared_distance_is_alpha_times_mg(num_inner_steps):
    learner, state, meta_params = regression()
    alpha, beta = 0.3, 0.1
    key = jax.random.key(2)
    mg = make_metagradient(
        learner.update_fn,
        learner.meta_objective,
        optax.sgd(alpha * beta),
        num_inner_steps=num_inner_steps,
    )
    bootstrap = make_target_bootstrap(
        learner.update_fn, 1, meta_objective=learner.meta_objective, step_size=alpha
    )
    bmg = make_bmg(
        learner.update_fn,
        bootstrap,
        parameter_matching(),
        optax.sgd(beta),
        num_inner_steps=num_inner_steps,
    )
    run = lambda ml: (
        ml.meta_gradient(meta_params, state, key)[0],
        ml.step(ml.init(meta_params), state, key),
    )
    (mg_grads, mg_step), (bmg_grads, bmg_step) = jax.jit(lambda: (run(mg), run(bmg)))()
    assert optax.global_norm(mg_grads) > 1e-3  # the identity is not 0 = 0
    tree_allclose(bmg_grads, jax.tree.map(lambda g: alpha * g, mg_grads), rtol=1e-10, atol=1e-14)

    # Same identity one level up: BMG with meta-lr beta moves w exactly as MG with alpha * beta.
    (mg_meta, mg_state, _), (bmg_meta, bmg_state, _) = mg_step, bmg_step
    tree_allclose(bmg_meta.meta_params, mg_meta.meta_params, rtol=1e-10, atol=1e-14)
    tree_allclose(bmg_state, mg_state, rtol=0, atol=0)  # both continue from x_K


def test_target_is_a_constant():
    """The meta-gradient is unchanged when the target is replaced by a precomputed constant."""
    learner, state, meta_params = regression()
    key = jax.random.key(3)
    inner_key, target_key = jax.random.split(key)
    bootstrap = make_target_bootstrap(
        learner.update_fn, 4, meta_objective=learner.meta_objective, step_size=0.1
    )
    x_k, _ = jax.jit(lambda w: unroll(learner.update_fn, w, state, inner_key, 2))(meta_params)
    constant = jax.jit(bootstrap)(meta_params, x_k, target_key)
    frozen_bootstrap = lambda w, s, k: Bootstrapped(
        jax.tree.map(np.asarray, constant.target), constant.state, {}
    )
    kwargs = dict(num_inner_steps=2)
    live = make_bmg(learner.update_fn, bootstrap, parameter_matching(), optax.sgd(1.0), **kwargs)
    frozen = make_bmg(
        learner.update_fn, frozen_bootstrap, parameter_matching(), optax.sgd(1.0), **kwargs
    )
    tree_allclose(
        jax.jit(live.meta_gradient)(meta_params, state, key)[0],
        jax.jit(frozen.meta_gradient)(meta_params, state, key)[0],
        rtol=1e-12,
    )

    # And no gradient flows through the bootstrap itself, even if a user differentiates it.
    def through_target(w):
        x_k, _ = unroll(learner.update_fn, w, state, inner_key, 2)
        target = bootstrap(w, x_k, target_key).target
        return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(target.params))

    grads = jax.jit(jax.grad(through_target))(meta_params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


# A scalar quadratic learner: f(x) = a/2 x^2, x_{k+1} = (1 - eta a) x_k with eta = exp(w).
A, X0, ALPHA = 2.0, 1.5, 0.2


def quadratic_update(meta_params, state, key):
    x = state.params
    return state._replace(params=x - jnp.exp(meta_params) * A * x), {}


def quadratic_objective(state, key):
    return 0.5 * A * state.params**2, {}


@pytest.mark.parametrize("num_inner_steps", [1, 2, 5])
@pytest.mark.parametrize("num_bootstrap_steps", [1, 3])
def test_quadratic_learner_matches_closed_form(num_inner_steps, num_bootstrap_steps):
    K, L = num_inner_steps, num_bootstrap_steps
    w = jnp.log(0.1)
    eta = jnp.exp(w)
    rho = 1 - eta * A
    state = LearnerState(params=jnp.asarray(X0))
    x_k = rho**K * X0
    dx_k_dw = K * rho ** (K - 1) * (-A * eta) * X0

    mg = make_metagradient(quadratic_update, quadratic_objective, optax.sgd(1.0), num_inner_steps=K)
    bootstrap = make_target_bootstrap(
        quadratic_update, L, meta_objective=quadratic_objective, step_size=ALPHA
    )
    bmg = make_bmg(
        quadratic_update, bootstrap, parameter_matching(), optax.sgd(1.0), num_inner_steps=K
    )
    (mg_grad, (mg_state, mg_metrics)), (bmg_grad, (_, bmg_metrics)) = jax.jit(
        lambda w, key: (mg.meta_gradient(w, state, key), bmg.meta_gradient(w, state, key))
    )(w, jax.random.key(0))
    np.testing.assert_allclose(mg_state.params, x_k, rtol=1e-12)
    np.testing.assert_allclose(mg_metrics["meta/loss"], 0.5 * A * x_k**2, rtol=1e-12)
    np.testing.assert_allclose(mg_grad, A * x_k * dx_k_dw, rtol=1e-12)

    target = rho ** (L - 1) * (1 - ALPHA * A) * x_k
    np.testing.assert_allclose(bmg_metrics["meta/loss"], 0.5 * (target - x_k) ** 2, rtol=1e-12)
    np.testing.assert_allclose(bmg_metrics["target/distance"], abs(target - x_k), rtol=1e-12)
    np.testing.assert_allclose(bmg_grad, -(target - x_k) * dx_k_dw, rtol=1e-12)


# MAML: w is the initialisation, x_0 = w; inner loss a/2 (x - b)^2, step eta; f(x) = 1/2 (x - c)^2.
B, C, ETA = 0.7, -0.4, 0.1


def maml_update(meta_params, state, key):
    x = state.params
    return state._replace(params=x - ETA * A * (x - B)), {}


def maml_objective(state, key):
    return 0.5 * (state.params - C) ** 2, {}


def start_from_meta_params(meta_params, state):
    return state._replace(params=meta_params)


@pytest.mark.parametrize("num_inner_steps", [1, 3])
def test_start_fn_makes_the_initialisation_the_meta_parameter(num_inner_steps):
    K, L = num_inner_steps, 2
    w = jnp.asarray(0.9)
    placeholder = LearnerState(params=jnp.asarray(123.0))  # overwritten by start_fn
    rho = 1 - ETA * A
    x_k = B + rho**K * (w - B)  # x_k - b contracts by rho per step; dx_K/dw = rho^K
    key = jax.random.key(0)

    mg = make_metagradient(
        maml_update,
        maml_objective,
        optax.sgd(1.0),
        num_inner_steps=K,
        start_fn=start_from_meta_params,
    )
    mg_grad, (mg_state, _) = jax.jit(mg.meta_gradient)(w, placeholder, key)
    np.testing.assert_allclose(mg_state.params, x_k, rtol=1e-12)
    np.testing.assert_allclose(mg_grad, (x_k - C) * rho**K, rtol=1e-12)

    bootstrap = make_target_bootstrap(
        maml_update, L, meta_objective=maml_objective, step_size=ALPHA
    )
    bmg = make_bmg(
        maml_update,
        bootstrap,
        parameter_matching(),
        optax.sgd(1.0),
        num_inner_steps=K,
        start_fn=start_from_meta_params,
    )
    bmg_grad, _ = jax.jit(bmg.meta_gradient)(w, placeholder, key)
    x_l = B + rho ** (L - 1) * (x_k - B)
    target = x_l - ALPHA * (x_l - C)
    np.testing.assert_allclose(bmg_grad, -(target - x_k) * rho**K, rtol=1e-12)


def test_unroll_scan_equals_python_loop_and_remat_and_unroll_loop_change_nothing():
    learner, state, meta_params = regression()
    key = jax.random.key(4)
    # The scan and the straight-line unroll compiled; the Python loop calls the compiled update.
    scanned, metrics = jax.jit(lambda w: unroll(learner.update_fn, w, state, key, 5))(meta_params)
    looped = state
    update = jax.jit(learner.update_fn)
    for i, step_key in enumerate(jax.random.split(key, 5)):
        looped, step_metrics = update(meta_params, looped, step_key)
        np.testing.assert_allclose(
            metrics["learner/batch_loss"][i], step_metrics["learner/batch_loss"]
        )
    tree_allclose(scanned, looped, rtol=1e-12)
    assert int(scanned.extras) == 5
    straight, _ = jax.jit(lambda w: unroll(learner.update_fn, w, state, key, 5, unroll_loop=True))(
        meta_params
    )
    tree_allclose(straight, looped, rtol=1e-12)

    def meta_loss(w, remat, unroll_loop):
        x_k, _ = unroll(learner.update_fn, w, state, key, 5, remat=remat, unroll_loop=unroll_loop)
        return learner.meta_objective(x_k, key)[0]

    grad, remat_grad, straight_grad = jax.jit(
        lambda w: [
            jax.grad(meta_loss)(w, *flags)
            for flags in ((False, False), (True, False), (False, True))
        ]
    )(meta_params)
    tree_allclose(remat_grad, grad, rtol=1e-12)
    tree_allclose(straight_grad, grad, rtol=1e-12)


def test_vmap_over_seeds_equals_separate_runs():
    learner, _, _ = regression()
    bootstrap = make_target_bootstrap(
        learner.update_fn, 3, meta_objective=learner.meta_objective, step_size=0.1
    )
    bmg = make_bmg(
        learner.update_fn, bootstrap, parameter_matching(), optax.adam(1e-2), num_inner_steps=2
    )

    def run(seed):
        init_key, run_key = jax.random.split(jax.random.key(seed))
        state = learner.init_state(init_key)
        meta_state = bmg.init(learner.init_meta_params(jax.random.key(3)))

        def body(carry, key):
            meta_state, state = carry
            meta_state, state, metrics = bmg.step(meta_state, state, key)
            return (meta_state, state), metrics["meta/loss"]

        return jax.lax.scan(body, (meta_state, state), jax.random.split(run_key, 4))

    batched = jax.jit(jax.vmap(run))(jnp.arange(2))
    for seed in range(2):
        single = jax.jit(run)(seed)
        tree_allclose(jax.tree.map(lambda x, s=seed: x[s], batched), single, rtol=1e-10, atol=1e-12)


def test_meta_gradients_match_finite_differences():
    learner, state, meta_params = regression(meta_lr="scalar")
    key = jax.random.key(5)
    inner_key, objective_key = jax.random.split(key)

    def mg_loss(w):
        x_k, _ = unroll(learner.update_fn, w, state, inner_key, 3)
        return learner.meta_objective(x_k, objective_key)[0]

    check_grads(jax.jit(mg_loss), (meta_params,), order=1, modes=["rev"], eps=1e-5)

    bootstrap = make_target_bootstrap(
        learner.update_fn, 4, meta_objective=learner.meta_objective, step_size=0.1
    )
    target = jax.jit(
        lambda w: bootstrap(w, unroll(learner.update_fn, w, state, inner_key, 3)[0], objective_key)
    )(meta_params).target

    def bmg_loss(w):
        x_k, _ = unroll(learner.update_fn, w, state, inner_key, 3)
        return squared_euclidean(target.params, x_k.params)

    check_grads(jax.jit(bmg_loss), (meta_params,), order=1, modes=["rev"], eps=1e-5)
    bmg = make_bmg(
        learner.update_fn, bootstrap, parameter_matching(), optax.sgd(1.0), num_inner_steps=3
    )
    np.testing.assert_allclose(
        jax.jit(bmg.meta_gradient)(meta_params, state, key)[0],
        jax.jit(jax.grad(bmg_loss))(meta_params),
        rtol=1e-10,
    )


def test_zero_inner_steps_uses_direct_dependence_on_meta_params():
    """K = 0: eps-greedy over 3 actions; matching -log pi_eps(a*) with a* the current greedy."""
    num_actions = 3
    state = LearnerState(params=jnp.array([0.0, 1.0, 0.5]))  # greedy action 1

    def bootstrap(meta_params, state, key):
        return Bootstrapped(target=state, state=state, metrics={})  # target greedy = 1 as well

    def matching(target, state, meta_params):
        eps = jax.nn.sigmoid(meta_params)
        greedy = jax.nn.one_hot(jnp.argmax(state.params), num_actions)
        probs = (1 - eps) * greedy + eps / num_actions
        return -jnp.log(probs[jnp.argmax(target.params)])

    bmg = make_bmg(quadratic_update, bootstrap, matching, optax.sgd(1.0), num_inner_steps=0)
    w = jnp.asarray(0.3)
    grad, (next_state, metrics) = jax.jit(bmg.meta_gradient)(w, state, jax.random.key(0))
    eps = jax.nn.sigmoid(w)
    p = 1 - eps + eps / num_actions
    # d/dw -log(1 - eps (1 - 1/A)) = (1 - 1/A) eps (1 - eps) / p > 0: agreement pushes eps down.
    np.testing.assert_allclose(grad, (1 - 1 / num_actions) * eps * (1 - eps) / p, rtol=1e-12)
    assert grad > 0
    tree_allclose(next_state, state, rtol=0)


def test_preconditioned_target_step():
    learner, state, meta_params = regression()
    key = jax.random.key(6)
    decay, lr, eps = 0.9, 0.01, 1e-8

    @jax.jit  # every step and its reference, one program
    def steps_and_references(meta_params, state):
        grads = jax.grad(lambda p: learner.meta_objective(state._replace(params=p), key)[0])(
            state.params
        )
        sgd_step = gradient_step(learner.meta_objective, preconditioner=optax.sgd(0.1))
        plain_step = gradient_step(learner.meta_objective, step_size=0.1)
        sgd = (
            sgd_step(meta_params, state, key)[0].params,
            plain_step(meta_params, state, key)[0].params,
        )

        rms_step = gradient_step(
            learner.meta_objective, preconditioner=optax.rmsprop(lr, decay=decay, eps=eps)
        )
        expected = jax.tree.map(
            lambda p, g: p - lr * g / jnp.sqrt((1 - decay) * g**2 + eps), state.params, grads
        )
        rms = (rms_step(meta_params, state, key)[0].params, expected)

        # "learner": the learner's own accumulated second moments precondition the step.
        rmsprop = optax.rmsprop(lr, decay=decay, eps=eps)
        nu = jax.tree.map(lambda p: jnp.full_like(p, 4.0), state.params)
        opt_state = rmsprop.init(state.params)
        learner_state = state._replace(opt_state=(opt_state[0]._replace(nu=nu), *opt_state[1:]))
        own_step = gradient_step(
            learner.meta_objective, preconditioner=rmsprop, preconditioner_state="learner"
        )
        expected = jax.tree.map(
            lambda p, g: p - lr * g / jnp.sqrt(decay * 4.0 + (1 - decay) * g**2 + eps),
            state.params,
            grads,
        )
        return sgd, rms, (own_step(meta_params, learner_state, key)[0].params, expected)

    sgd, rms, own = steps_and_references(meta_params, state)
    tree_allclose(*sgd, rtol=1e-12)
    tree_allclose(*rms, rtol=1e-10)
    tree_allclose(*own, rtol=1e-10)


def test_continue_from_options():
    learner, state, meta_params = regression()
    K, L = 2, 4
    bootstrap = make_target_bootstrap(
        learner.update_fn, L, meta_objective=learner.meta_objective, step_size=0.1
    )
    key = jax.random.key(7)

    def continuation(continue_from):
        bmg = make_bmg(
            learner.update_fn,
            bootstrap,
            parameter_matching(),
            optax.sgd(1.0),
            num_inner_steps=K,
            continue_from=continue_from,
        )
        return bmg.meta_gradient(meta_params, state, key)[1][0]

    mix = lambda inner, boot: inner._replace(extras=boot.extras)
    inner, target, mixed = jax.jit(  # one program
        lambda: tuple(continuation(c) for c in ("inner", "target", mix))
    )()
    assert int(inner.extras) == K
    assert int(target.extras) == K + L - 1
    tree_allclose(mixed.params, inner.params, rtol=0)
    assert int(mixed.extras) == K + L - 1


def test_step_does_not_retrace():
    learner, state, meta_params = regression()
    traces = []

    def counting_update(meta_params, state, key):
        traces.append(1)
        return learner.update_fn(meta_params, state, key)

    bootstrap = make_target_bootstrap(
        counting_update, 2, meta_objective=learner.meta_objective, step_size=0.1
    )
    bmg = make_bmg(
        counting_update, bootstrap, parameter_matching(), optax.adam(1e-3), num_inner_steps=2
    )
    step = jax.jit(bmg.step)
    meta_state = bmg.init(meta_params)
    meta_state, state, _ = step(meta_state, state, jax.random.key(0))
    count = len(traces)
    assert count > 0
    for i in range(3):
        meta_state, state, _ = step(meta_state, state, jax.random.key(i + 1))
    assert len(traces) == count


def test_invalid_arguments_fail_with_clear_errors():
    learner, state, meta_params = regression()
    opt = optax.sgd(1.0)
    with pytest.raises(ValueError, match="num_inner_steps"):
        make_metagradient(learner.update_fn, learner.meta_objective, opt, num_inner_steps=0)
    with pytest.raises(ValueError, match="num_inner_steps"):
        make_bmg(learner.update_fn, None, parameter_matching(), opt, num_inner_steps=-1)
    with pytest.raises(ValueError, match="num_bootstrap_steps"):
        make_target_bootstrap(learner.update_fn, 0, meta_objective=learner.meta_objective)
    with pytest.raises(ValueError, match="final_update_fn or meta_objective"):
        make_target_bootstrap(learner.update_fn, 2)
    with pytest.raises(ValueError, match="continue_from"):
        make_bmg(learner.update_fn, None, None, opt, num_inner_steps=1, continue_from="x")
    with pytest.raises(ValueError, match="step_size"):
        gradient_step(learner.meta_objective, step_size=0.0)

    bootstrap = make_target_bootstrap(learner.update_fn, 1, meta_objective=learner.meta_objective)
    vector_matching = lambda target, state, w: jax.tree.leaves(state.params)[0].ravel()
    bmg = make_bmg(learner.update_fn, bootstrap, vector_matching, opt, num_inner_steps=1)
    with pytest.raises(ValueError, match="matching_fn must return a scalar"):  # when traced
        jax.eval_shape(bmg.meta_gradient, meta_params, state, jax.random.key(0))
    with pytest.raises(ValueError, match="same structure"):
        squared_euclidean({"a": jnp.zeros(2)}, {"b": jnp.zeros(2)})
    with pytest.raises(ValueError, match="same shapes"):
        squared_euclidean({"a": jnp.zeros(2)}, {"a": jnp.zeros(3)})


def test_gradient_statistics_by_hand():
    grads = {
        "a": jnp.array([[1.0, -3.0], [0.5, 2.0]]),
        "b": {"bias": jnp.array([-0.25])},
        "c": jnp.asarray(4.0),
    }
    stats = gradient_statistics(grads)
    assert set(stats) == {
        "meta/grad_abs_max",
        "meta/grad_abs_median",
        "meta/grad/b/bias",
        "meta/grad/c",
    }  # no signed entry for the 4-coordinate leaf "a"
    coordinates = np.abs([1.0, -3.0, 0.5, 2.0, -0.25, 4.0])
    assert float(stats["meta/grad_abs_max"]) == 4.0
    np.testing.assert_allclose(stats["meta/grad_abs_median"], np.median(coordinates), rtol=1e-15)
    assert float(stats["meta/grad_abs_median"]) == 1.5  # (1 + 2) / 2
    assert float(stats["meta/grad/b/bias"]) == -0.25 and stats["meta/grad/b/bias"].shape == ()
    assert float(stats["meta/grad/c"]) == 4.0
    # Sequence indices name their leaves too; an empty tree has no statistics.
    assert set(gradient_statistics({"w": (jnp.ones(2), -jnp.ones((1, 1)))})) == {
        "meta/grad_abs_max",
        "meta/grad_abs_median",
        "meta/grad/w/1",
    }
    assert gradient_statistics({}) == {}


def test_meta_step_metrics_hold_the_meta_gradients_statistics():
    """A BMG meta-step's metrics: max and median |g_i| of its own meta-gradient (numpy), the
    signed gradient of its one-coordinate leaf, and max |g_i| <= ||g||."""
    learner, state, meta_params = regression()  # diagonal: one log learning rate per coordinate
    meta_learner = make_meta_learner(learner, MetaConfig(algo="bmg", bootstrap_steps=2))
    key = jax.random.key(8)
    grads, (_, _, metrics) = jax.jit(
        lambda: (
            meta_learner.meta_gradient(meta_params, state, key)[0],
            meta_learner.step(meta_learner.init(meta_params), state, key),
        )
    )()
    coordinates = np.concatenate([np.abs(np.ravel(g)) for g in jax.tree.leaves(grads)])
    assert coordinates.size > 1 and coordinates.max() > 1e-6
    np.testing.assert_allclose(metrics["meta/grad_abs_max"], coordinates.max(), rtol=1e-12)
    np.testing.assert_allclose(  # the middle pair's mean rounded to float32
        metrics["meta/grad_abs_median"], np.median(coordinates), rtol=1e-7
    )
    assert float(metrics["meta/grad_abs_max"]) <= float(metrics["meta/grad_norm"])
    # The regression's output bias (one target) is the only one-coordinate leaf.
    signed = {name: value for name, value in metrics.items() if name.startswith("meta/grad/")}
    singles = [g for g in jax.tree.leaves(grads) if np.size(g) == 1]
    assert len(signed) == len(singles) == 1
    np.testing.assert_allclose(next(iter(signed.values())), np.ravel(singles[0])[0], rtol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 29441])
def test_median_of_nonnegative_equals_numpys(size):
    """The O(n) bisection median equals numpy's sorted median on |g| with repeats, zeros,
    subnormals, huge values and inf; NaN gives NaN."""
    from bmg.core.meta import median_of_nonnegative

    rng = np.random.default_rng(size)
    x = np.abs(rng.standard_normal(size)).astype(np.float32) * 10.0 ** rng.integers(-40, 30, size)
    x = x.astype(np.float32)
    x[rng.random(size) < 0.1] = 0.0
    if size > 2:
        x[:2] = [np.inf, 1e-45]
        x[2:5] = x[5] if size > 5 else x[2]
    median = jax.jit(median_of_nonnegative)
    assert float(median(jnp.asarray(x))) == float(
        np.median(x.astype(np.float64)).astype(np.float32)
    )
    x[0] = np.nan
    assert np.isnan(float(median(jnp.asarray(x))))
    with pytest.raises(ValueError, match="non-empty float32 vector"):
        median_of_nonnegative(jnp.zeros((2, 2)))
