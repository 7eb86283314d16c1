"""Safe gradients where bmg.core differentiates through a norm, a sqrt or a division.

MG and BMG differentiate through the learner's update. At an exactly-zero learner gradient
(all-zero parameters, a zero-reward rollout) `optax.clip_by_global_norm` and Adam's `sqrt(v)`
have a 0/0 or 0 * inf derivative, so the meta-gradient is NaN and the meta-parameters are NaN for
good after one meta-step. These tests pin `bmg.core.safe_norm` / `clip_by_global_norm` to optax's
values and gradients where optax is fine, show that optax's are NaN at zero (why ours exist), and
record which inner-optimiser settings give finite meta-gradients at zero.

Places where bmg.core itself computes a norm, sqrt or division (read in src/bmg/core):
  - `parameter_distance` (sqrt): only the `target/distance` metric, computed from the primal x_K
    outside any differentiation in `make_bmg`;
  - `gradient_step` with an optax preconditioner (RMSProp/Adam divide by sqrt(v)): only inside the
    target bootstrap, which runs on the primal x_K outside `jax.vjp` and ends in the one
    `stop_gradient`;
  - `optax.tree.norm` for `meta/grad_norm`, `meta/update_norm`, `target/grad_norm`,
    `target/step_norm`: metrics of values already computed, never differentiated.
The tests at the end check the first two at a zero gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg.core import (
    LearnerState,
    clip_by_global_norm,
    gradient_step,
    make_bmg,
    make_metagradient,
    make_target_bootstrap,
    parameter_distance,
    parameter_matching,
    safe_norm,
)

pytestmark = pytest.mark.usefixtures("x64")

MAX_NORM = 1.0


def random_tree(seed: int, scale: float):
    """A small float64 pytree of normal draws times `scale` (numpy draws: nothing to compile)."""
    rng = np.random.default_rng(seed)
    shapes = {"w": (3, 2), "b": (2,), "s": ()}
    return {name: jnp.asarray(scale * rng.standard_normal(shape)) for name, shape in shapes.items()}


def zero_tree():
    return random_tree(0, 0.0)


def clip_with(transform, tree):
    return transform.update(tree, transform.init(tree))[0]


@jax.jit
def norms_and_clips(tree):
    """(safe_norm, optax norm, our clip, optax's clip) of `tree`, in one compiled call."""
    return (
        safe_norm(tree),
        optax.tree.norm(tree),
        clip_with(clip_by_global_norm(MAX_NORM), tree),
        clip_with(optax.clip_by_global_norm(MAX_NORM), tree),
    )


def weighted_sum(tree):
    """A scalar with a non-zero cotangent for every leaf element (so 0 * inf shows up as NaN)."""
    return sum(
        jnp.sum(x * (1.0 + jnp.arange(x.size).reshape(x.shape))) for x in jax.tree.leaves(tree)
    )


def all_finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))


def all_nan(tree) -> bool:
    return all(np.all(np.isnan(np.asarray(x))) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [0.05, 10.0])  # global norm ~0.14 (no clip) and ~28 (clip)
def test_values_equal_optax(seed, scale, tree_allclose):
    tree = random_tree(seed, scale)
    ours_norm, norm, ours, theirs = norms_and_clips(tree)
    assert (norm < MAX_NORM) == (scale < 1.0)  # both regimes are really exercised
    np.testing.assert_allclose(ours_norm, norm, rtol=1e-14)
    tree_allclose(ours, theirs, rtol=1e-14)
    clipped_norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(ours)))
    np.testing.assert_allclose(clipped_norm, min(float(norm), MAX_NORM), rtol=1e-14)
    assert norms_and_clips(zero_tree())[0] == 0.0


@pytest.mark.parametrize("seed", [0])
@pytest.mark.parametrize("scale", [0.05, 10.0])
def test_gradients_equal_optax_away_from_zero(seed, scale, tree_allclose):
    tree = random_tree(seed, scale)
    grads = jax.jit(lambda t: (jax.grad(safe_norm)(t), jax.grad(optax.tree.norm)(t)))(tree)
    tree_allclose(*grads, rtol=1e-12)
    # The full Jacobian of the clip (identity below the threshold, the projection above).
    flat, unravel = jax.flatten_util.ravel_pytree(tree)

    def jacobian(transform):
        clip = lambda v: jax.flatten_util.ravel_pytree(clip_with(transform, unravel(v)))[0]
        return jax.jit(jax.jacobian(clip))(flat)

    ours = jacobian(clip_by_global_norm(MAX_NORM))
    np.testing.assert_allclose(
        ours, jacobian(optax.clip_by_global_norm(MAX_NORM)), rtol=1e-12, atol=1e-15
    )
    if scale < 1.0:
        np.testing.assert_array_equal(ours, np.eye(flat.size))


def test_gradients_at_the_zero_tree_are_finite_where_optax_gives_nan():
    zero = zero_tree()
    # optax: d sqrt(s)/ds at s = 0 is inf, times ds/dx = 0 -> NaN (the reason safe_norm exists).
    assert all_nan(jax.jit(jax.grad(optax.tree.norm))(zero))
    grad = jax.jit(jax.grad(safe_norm))(zero)
    assert all_finite(grad) and all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grad))

    # The clip at zero is below any threshold: the identity, so d weighted_sum(clip(g))/dg is the
    # weights themselves. optax's unselected branch g / ||g|| is 0/0 and poisons the gradient.
    def clipped_sum(transform):
        return jax.jit(jax.grad(lambda g: weighted_sum(clip_with(transform, g))))(zero)

    assert all_nan(clipped_sum(optax.clip_by_global_norm(MAX_NORM)))
    expected = jax.jit(jax.grad(weighted_sum))(zero)
    for g, e in zip(
        jax.tree.leaves(clipped_sum(clip_by_global_norm(MAX_NORM))),
        jax.tree.leaves(expected),
        strict=True,
    ):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("max_norm", [0, -1.0, float("inf"), float("nan"), "1"])
def test_clip_refuses_bad_max_norm(max_norm):
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm(max_norm)


# A learner whose gradient is exactly zero: L(x) = 1/2 ||x||^2 at x = 0, so every update leaves x
# at 0 whatever w is, yet x_1 *depends* on w (x_1 = x_0 - exp(w) * opt(g_0)), so the second update
# differentiates the optimiser at g = 0. The true meta-gradient is exactly 0 (x_K = 0 for all w).
C = jnp.array([1.0, -2.0, 0.5])


def zero_gradient_learner(inner_opt: optax.GradientTransformation):
    def update_fn(meta_params, state, key):
        del key
        grads = jax.grad(lambda x: 0.5 * jnp.sum(x**2))(state.params)
        updates, opt_state = inner_opt.update(grads, state.opt_state, state.params)
        params = state.params + jnp.exp(meta_params) * updates
        return LearnerState(params, opt_state, state.extras), {}

    def meta_objective(state, key):
        return 0.5 * jnp.sum((state.params - C) ** 2), {}  # non-zero cotangent at x = 0

    zero = jnp.zeros(3)
    return update_fn, meta_objective, LearnerState(zero, inner_opt.init(zero))


INNER_OPTIMISERS = {
    # name: (inner optimiser, is its meta-gradient finite at a zero gradient?)
    "sgd": (optax.sgd(1.0), True),
    "sgd+bmg.core.clip_by_global_norm": (
        optax.chain(clip_by_global_norm(1.0), optax.sgd(1.0)),
        True,
    ),
    "sgd+optax.clip_by_global_norm": (
        optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0)),
        False,
    ),
    # RMSProp, eps inside the sqrt (optax's default, TF style): g * rsqrt(nu + eps) is smooth.
    "rmsprop(eps=1e-8)": (optax.rmsprop(1.0, eps=1e-8), True),
    # eps outside the sqrt: d sqrt(nu)/d nu = inf at nu = 0 -> NaN.
    "rmsprop(eps=1e-8, eps_in_sqrt=False)": (
        optax.rmsprop(1.0, eps=1e-8, eps_in_sqrt=False),
        False,
    ),
    # Adam: m / (sqrt(v + eps_root) + eps); eps_root = 0 (optax's default) -> NaN, > 0 finite.
    "adam(eps_root=0)": (optax.adam(1.0), False),
    "adam(eps_root=1e-8)": (optax.adam(1.0, eps_root=1e-8), True),
}


# MG for every setting; BMG differentiates the same unroll (one VJP), checked on two settings.
CASES = [("mg", name) for name in INNER_OPTIMISERS] + [
    ("bmg", "sgd+bmg.core.clip_by_global_norm"),
    ("bmg", "adam(eps_root=0)"),
]


@pytest.mark.parametrize("algo,name", CASES)
def test_meta_gradient_through_inner_optimiser_at_zero_gradient(name, algo):
    inner_opt, finite = INNER_OPTIMISERS[name]
    update_fn, meta_objective, state = zero_gradient_learner(inner_opt)
    if algo == "mg":
        learner = make_metagradient(update_fn, meta_objective, optax.sgd(1.0), num_inner_steps=2)
    else:
        bootstrap = make_target_bootstrap(
            update_fn, 2, meta_objective=meta_objective, step_size=0.1
        )
        learner = make_bmg(
            update_fn, bootstrap, parameter_matching(), optax.sgd(1.0), num_inner_steps=2
        )
    meta_gradient = jax.jit(learner.meta_gradient)
    grads, (next_state, _) = meta_gradient(jnp.asarray(-1.0), state, jax.random.key(0))
    np.testing.assert_array_equal(next_state.params, np.zeros(3))  # the forward pass is fine
    if finite:
        assert grads == 0.0  # the exact meta-gradient: x_K = 0 for every w
    else:
        assert jnp.isnan(grads)


@pytest.mark.parametrize(
    "preconditioner",
    [optax.rmsprop(0.1, eps_in_sqrt=False), optax.adam(0.1)],
    ids=["rmsprop", "adam"],
)
def test_target_step_and_distance_are_not_differentiated(preconditioner):
    """A target at zero gradient with a NaN-prone preconditioner, and x~ = x_K exactly.

    The preconditioned target step divides by sqrt(v) = 0 and `target/distance` = sqrt(0): both
    would give NaN if differentiated. The meta-gradient is finite (exactly 0: x~ = x_K), because
    the target is built from the primal x_K and stop-gradient-ed, and the distance is a metric.
    """
    update_fn, _, state = zero_gradient_learner(optax.sgd(1.0))
    # The target's final step on f(x) = 1/2 ||x||^2 at x = 0: gradient 0, so x~ = x_K = 0.
    zero_objective = lambda s, k: (0.5 * jnp.sum(s.params**2), {})
    final_step = gradient_step(zero_objective, preconditioner=preconditioner)
    bootstrap = make_target_bootstrap(update_fn, 1, final_update_fn=final_step)
    bmg = make_bmg(update_fn, bootstrap, parameter_matching(), optax.sgd(1.0), num_inner_steps=2)
    grads, (_, metrics) = jax.jit(bmg.meta_gradient)(jnp.asarray(-1.0), state, jax.random.key(0))
    assert metrics["target/distance"] == 0.0
    assert grads == 0.0

    # Control: differentiating the distance itself at x~ = x_K is NaN, so this test can tell.
    assert jnp.isnan(jax.grad(lambda x: parameter_distance(jnp.zeros(3), x))(jnp.zeros(3))).all()
