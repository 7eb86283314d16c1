"""bmg.rl.vtrace against rlax, a NumPy recursion, finite differences and the trap.

The trap (Flennerhag et al., ICLR 2022, section 6): with rlax's defaults the meta-gradient to
gamma, lambda and alpha is exactly zero; here it is not, and it equals finite differences, while
the gradient to the learner's parameters is rlax's semi-gradient exactly.

Both sides of every comparison run compiled: eagerly, each JAX operation compiles a program of its
own, far slower than one compile on a small CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from bmg.rl.vtrace import importance_ratios, leaky_vtrace_loss, leaky_vtrace_targets

pytestmark = pytest.mark.usefixtures("x64")
T, A = 6, 3


def inputs(seed=0, terminal_at=None):
    """Random single-stream inputs, float64; rho spans both sides of 1."""
    rng = np.random.default_rng(seed)
    discount_t = np.full(T, 0.9)
    if terminal_at is not None:
        discount_t[terminal_at] = 0.0
    return dict(
        logits_t=jnp.asarray(rng.normal(size=(T, A))),
        v_tm1=jnp.asarray(rng.normal(size=T)),
        v_bootstrap=jnp.asarray(rng.normal()),
        a_t=jnp.asarray(rng.integers(0, A, size=T)),
        r_t=jnp.asarray(rng.normal(size=T)),
        discount_t=jnp.asarray(discount_t),
        behaviour_logits_t=jnp.asarray(rng.normal(size=(T, A))),
    )


def numpy_leaky_vtrace(v_tm1, v_boot, r, discount, rho, alpha, lam, rho_bar=1.0, pg_bar=1.0):
    """Zahavy et al., NeurIPS 2020, section 3, written out step by step."""
    v_tm1, r, discount, rho = map(np.asarray, (v_tm1, r, discount, rho))
    v_t = np.append(v_tm1[1:], v_boot)
    c = lam * (alpha * np.minimum(1.0, rho) + (1 - alpha) * rho)
    rho_td = alpha * np.minimum(rho_bar, rho) + (1 - alpha) * rho
    delta = rho_td * (r + discount * v_t - v_tm1)
    acc, errors = 0.0, np.zeros(T)
    for t in reversed(range(T)):
        acc = delta[t] + discount[t] * c[t] * acc
        errors[t] = acc
    targets = v_tm1 + errors
    next_target = np.append(lam * targets[1:] + (1 - lam) * v_tm1[1:], v_boot)
    q = r + discount * next_target
    rho_pg = alpha * np.minimum(pg_bar, rho) + (1 - alpha) * rho
    return targets, rho_pg * (q - v_tm1)


@jax.jit
def ratios(x):
    return importance_ratios(x["logits_t"], x["behaviour_logits_t"], x["a_t"])


@jax.jit
def ours_and_rlax_vtrace(x, lam):
    """(ours at alpha = 1, rlax's V-trace) with lambda traced: one compile for every lambda."""
    rho = ratios(x)
    out = leaky_vtrace_targets(
        x["v_tm1"], x["v_bootstrap"], x["r_t"], x["discount_t"], rho, alpha=1.0, lambda_=lam
    )
    v_t = jnp.append(x["v_tm1"][1:], x["v_bootstrap"])
    ref = rlax.vtrace_td_error_and_advantage(
        x["v_tm1"], v_t, x["r_t"], x["discount_t"], rho, lambda_=lam
    )
    return rho, out, ref


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_alpha_one_is_rlax_vtrace(lam):
    x = inputs()
    rho, out, ref = ours_and_rlax_vtrace(x, lam)
    assert np.any(rho > 1) and np.any(rho < 1)
    np.testing.assert_allclose(out.targets, ref.errors + x["v_tm1"], rtol=1e-12)
    np.testing.assert_allclose(out.pg_advantages, ref.pg_advantage, rtol=1e-12)


@pytest.mark.parametrize("alpha, lam", [(0.3, 0.8), (0.0, 1.0), (1.0, 0.5)])
def test_leaky_targets_match_numpy_recursion(alpha, lam):
    x = inputs(1, terminal_at=2)
    rho = ratios(x)
    out = jax.jit(  # alpha and lambda traced: one compile for every case
        lambda x, rho, alpha, lam: leaky_vtrace_targets(
            x["v_tm1"],
            x["v_bootstrap"],
            x["r_t"],
            x["discount_t"],
            rho,
            alpha=alpha,
            lambda_=lam,
            clip_rho_threshold=1.2,
            clip_pg_rho_threshold=0.9,
        )
    )(x, rho, alpha, lam)
    targets, advantages = numpy_leaky_vtrace(
        x["v_tm1"], x["v_bootstrap"], x["r_t"], x["discount_t"], rho, alpha, lam, 1.2, 0.9
    )
    np.testing.assert_allclose(out.targets, targets, rtol=1e-12)
    np.testing.assert_allclose(out.pg_advantages, advantages, rtol=1e-12)


def test_importance_ratios_are_probability_ratios():
    x = inputs(2)
    rho = ratios(x)
    pi, mu = jax.jit(
        lambda x: [
            jax.nn.softmax(x[k])[jnp.arange(T), x["a_t"]]
            for k in ("logits_t", "behaviour_logits_t")
        ]
    )(x)
    np.testing.assert_allclose(rho, pi / mu, rtol=1e-12)


def loss_and_metrics(x, meta):
    """Our leaky V-trace loss and its metrics at meta = (gamma, lambda, alpha)."""
    gamma, lam, alpha = meta
    return leaky_vtrace_loss(
        x["logits_t"],
        x["v_tm1"],
        x["v_bootstrap"],
        x["a_t"],
        x["r_t"],
        gamma * x["discount_t"],
        x["behaviour_logits_t"],
        alpha=alpha,
        lambda_=lam,
        value_cost=0.3,
        policy_cost=0.8,
        entropy_cost=0.05,
    )


@jax.jit
def loss_at(x, meta):
    return loss_and_metrics(x, meta)[0]


@jax.jit
def rlax_default_loss(x, meta):
    """The same loss written with rlax's defaults: stop_target_gradients=True and
    rlax.policy_gradient_loss (which stops the advantages)."""
    gamma, lam, alpha = meta
    logits, v_tm1 = x["logits_t"], x["v_tm1"]
    v_t = jnp.append(v_tm1[1:], x["v_bootstrap"])
    rho = jax.lax.stop_gradient(importance_ratios(logits, x["behaviour_logits_t"], x["a_t"]))
    out = rlax.leaky_vtrace_td_error_and_advantage(
        v_tm1, v_t, x["r_t"], gamma * x["discount_t"], rho, alpha=alpha, lambda_=lam
    )
    ones = jnp.ones(T)
    value_loss = 0.5 * jnp.mean(jnp.square(out.errors))
    pg = rlax.policy_gradient_loss(logits, x["a_t"], out.pg_advantage, ones)
    entropy = -rlax.entropy_loss(logits, ones)
    return 0.3 * value_loss + 0.8 * pg - 0.05 * entropy


META = jnp.asarray([0.95, 0.8, 0.6])  # gamma, lambda, alpha


def test_loss_value_and_parameter_gradient_equal_rlax_defaults():
    """Same loss, and the learner's gradient (logits, values) is rlax's semi-gradient."""
    x = inputs(3)
    np.testing.assert_allclose(loss_at(x, META), rlax_default_loss(x, META), rtol=1e-12)
    argnames = ("logits_t", "v_tm1", "v_bootstrap")

    def of_params(fn):
        return jax.jit(jax.grad(lambda p: fn({**x, **p}, META)))({k: x[k] for k in argnames})

    ours, ref = of_params(loss_at), of_params(rlax_default_loss)
    for k in argnames:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-10, atol=1e-14)
    assert float(jnp.abs(ours["v_bootstrap"])) == 0.0  # the bootstrap value is a target


def test_the_trap_meta_gradients_flow_through_the_targets():
    """rlax's defaults give exactly zero for gamma, lambda, alpha; ours give finite differences."""
    x = inputs(4)
    rho = ratios(x)
    assert np.any(rho > 1)  # alpha only matters where rho > 1
    trapped = jax.jit(jax.grad(rlax_default_loss, argnums=1))(x, META)
    np.testing.assert_array_equal(trapped, 0.0)
    grads = jax.jit(jax.grad(loss_at, argnums=1))(x, META)
    assert np.all(np.abs(grads) > 1e-4), grads
    eps = 1e-6
    for i in range(3):
        step = np.zeros(3)
        step[i] = eps
        fd = (loss_at(x, np.asarray(META) + step) - loss_at(x, np.asarray(META) - step)) / (2 * eps)
        np.testing.assert_allclose(grads[i], fd, rtol=1e-6)


def test_loss_terms_match_hand_computation():
    x = inputs(5)
    gamma, lam, alpha = (float(v) for v in META)
    rho = np.asarray(ratios(x))
    targets, advantages = numpy_leaky_vtrace(
        x["v_tm1"], x["v_bootstrap"], x["r_t"], gamma * x["discount_t"], rho, alpha, lam
    )
    log_pi = np.asarray(jax.jit(jax.nn.log_softmax)(x["logits_t"]))
    entropy = -np.mean(np.sum(np.exp(log_pi) * log_pi, axis=-1))
    pg = -np.mean(advantages * log_pi[np.arange(T), x["a_t"]])
    value_loss = 0.5 * np.mean((targets - np.asarray(x["v_tm1"])) ** 2)
    loss, metrics = jax.jit(loss_and_metrics)(x, (gamma, lam, alpha))
    np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=1e-12)
    np.testing.assert_allclose(metrics["pg_loss"], pg, rtol=1e-12)
    np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-12)
    np.testing.assert_allclose(metrics["rho"], rho.mean(), rtol=1e-12)
    np.testing.assert_allclose(loss, 0.3 * value_loss + 0.8 * pg - 0.05 * entropy, rtol=1e-12)


def test_truncation_bootstraps_from_the_final_value_and_cuts_the_trace():
    """A time limit at step 2: targets of steps 0..2 equal a 3-step rollout bootstrapping from
    v_final[2]; steps 3.. are a separate segment."""
    x = inputs(6)
    rho = ratios(x)
    truncated = np.zeros(T, bool)
    truncated[2] = True
    v_final = np.full(T, 7.0)
    args = dict(alpha=0.5, lambda_=0.9)

    @jax.jit  # the trace and its two segments, one program
    def whole_head_tail(x, rho):
        out = leaky_vtrace_targets(
            x["v_tm1"], x["v_bootstrap"], x["r_t"], x["discount_t"], rho, truncated, v_final, **args
        )
        head = leaky_vtrace_targets(
            x["v_tm1"][:3], v_final[2], x["r_t"][:3], x["discount_t"][:3], rho[:3], **args
        )
        tail = leaky_vtrace_targets(
            x["v_tm1"][3:], x["v_bootstrap"], x["r_t"][3:], x["discount_t"][3:], rho[3:], **args
        )
        return out, head, tail

    out, head, tail = whole_head_tail(x, rho)
    np.testing.assert_allclose(out.targets, jnp.concatenate([head.targets, tail.targets]))
    with pytest.raises(ValueError, match="v_final_t"):
        leaky_vtrace_targets(
            x["v_tm1"], x["v_bootstrap"], x["r_t"], x["discount_t"], rho, truncated
        )
