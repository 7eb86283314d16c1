"""A learner's update_fn that breaks the contract fails with one sentence naming update_fn and
what it returned (not a lax.scan error), through unroll and through a meta-learner's step."""

import jax
import jax.numpy as jnp
import pytest

from bmg.core import Learner, LearnerState, MetaConfig, make_meta_learner, unroll

STATE = LearnerState(params={"w": jnp.zeros(3)}, opt_state=(), extras=jnp.int32(0))


def good(meta_params, state, key):
    return state._replace(params={"w": state.params["w"] - meta_params}), {
        "loss": jnp.sum(state.params["w"])
    }


@pytest.mark.parametrize(
    "update_fn, message",
    [
        (
            lambda w, s, k: s,
            r"^update_fn must return a pair \(LearnerState, metrics dict\), got a LearnerState "
            r"alone\.",
        ),
        (
            lambda w, s, k: (s, [1.0]),
            r"^update_fn must return \(state, metrics\) with metrics a dict, got list\.",
        ),
        (
            lambda w, s, k: (s._replace(params={"w": jnp.zeros(4)}), {}),
            r"^update_fn changed the state's leaf .*\['w'\].* from float32\[3\] to float32\[4\]; "
            r"each update must keep every leaf's shape and dtype\.",
        ),
        (
            lambda w, s, k: (s._replace(extras=jnp.float32(1.0)), {}),
            r"^update_fn changed the state's leaf .* from int32\[\] to float32\[\];",
        ),
        (
            lambda w, s, k: (s, {"note": "x"}),
            r"^update_fn's metric 'note' must be an array or a number, got str\.",
        ),
        (
            lambda w, s, k: (s._replace(params={"w": s.params["w"], "b": 0.0}), {}),
            r"^update_fn must return a state with the structure of the one it was given",
        ),
    ],
)
def test_a_broken_update_fn_is_named_in_one_sentence(update_fn, message):
    with pytest.raises(ValueError, match=message):
        jax.jit(lambda: unroll(update_fn, jnp.float32(0.1), STATE, jax.random.key(0), 2))()
    learner = Learner(
        init_state=lambda key: STATE,
        init_meta_params=lambda key: jnp.float32(0.1),
        update_fn=update_fn,
        meta_objective=lambda s, k: (jnp.sum(s.params["w"] ** 2), {}),
    )
    meta = make_meta_learner(learner, MetaConfig(algo="mg", inner_steps=1))
    with pytest.raises(ValueError, match=message):
        meta.step(meta.init(jnp.float32(0.1)), STATE, jax.random.key(0))


def test_a_good_update_fn_unrolls():
    state, metrics = jax.jit(lambda: unroll(good, jnp.float32(0.1), STATE, jax.random.key(0), 3))()
    assert jnp.allclose(state.params["w"], -0.3) and metrics["loss"].shape == (3,)


@pytest.mark.parametrize(
    "meta_objective, message",
    [
        (
            lambda s, k: jnp.sum(s.params["w"]),
            r"^meta_objective must return a pair \(scalar loss, ",
        ),
        (lambda s, k: (s.params["w"], {}), r"^meta_objective must return a scalar, got an array "),
        (lambda s, k: (jnp.int32(1), {}), r"^meta_objective must return a floating-point scalar"),
    ],
)
@pytest.mark.parametrize("algo", ["mg", "bmg"])
def test_a_broken_meta_objective_is_named_in_one_sentence(meta_objective, message, algo):
    """MG differentiates f; BMG's default target takes a gradient step on it."""
    learner = Learner(
        init_state=lambda key: STATE,
        init_meta_params=lambda key: jnp.float32(0.1),
        update_fn=good,
        meta_objective=meta_objective,
        matching_fn=lambda t, s, w: jnp.sum((t.params["w"] - s.params["w"]) ** 2),
    )
    meta = make_meta_learner(learner, MetaConfig(algo=algo, inner_steps=1, bootstrap_steps=1))
    with pytest.raises(ValueError, match=message):
        meta.step(meta.init(jnp.float32(0.1)), STATE, jax.random.key(0))


def test_integer_parameters_are_named_in_one_sentence():
    """Meta-parameters and learner parameters are differentiated: an integer leaf is refused
    naming it (not a float0 or grad-of-int error from inside JAX)."""
    learner = Learner(
        init_state=lambda key: STATE,
        init_meta_params=lambda key: {"log_lr": jnp.int32(-4)},
        update_fn=good,
        meta_objective=lambda s, k: (jnp.sum(s.params["w"] ** 2), {}),
    )
    meta = make_meta_learner(learner, MetaConfig(algo="mg", inner_steps=1))
    with pytest.raises(ValueError, match=r"^the meta-parameter leaf \['log_lr'\] is int32\[\]"):
        meta.init({"log_lr": jnp.int32(-4)})
    int_state = LearnerState(params={"w": jnp.zeros(3, jnp.int32)})
    with pytest.raises(ValueError, match=r"^the learner parameter leaf \['w'\] is int32\[3\]"):
        jax.jit(lambda: unroll(good, jnp.float32(0.1), int_state, jax.random.key(0), 1))()


def test_a_matching_fn_blind_to_the_learner_and_the_meta_parameters_is_refused():
    """With K >= 1 a constant matching function gives a zero meta-gradient forever: refused at
    the first trace; one that reads the learner's parameters runs."""
    common = dict(
        init_state=lambda key: STATE,
        init_meta_params=lambda key: jnp.float32(0.1),
        update_fn=good,
        meta_objective=lambda s, k: (jnp.sum(s.params["w"] ** 2), {}),
    )
    constant = Learner(**common, matching_fn=lambda t, s, w: jnp.float32(1.0))
    meta = make_meta_learner(constant, MetaConfig(algo="bmg", inner_steps=1, bootstrap_steps=1))
    with pytest.raises(ValueError, match="^BMG's matching_fn depends on neither the learner's"):
        meta.step(meta.init(jnp.float32(0.1)), STATE, jax.random.key(0))
    reads = Learner(
        **common, matching_fn=lambda t, s, w: jnp.sum((t.params["w"] - s.params["w"]) ** 2)
    )
    meta = make_meta_learner(reads, MetaConfig(algo="bmg", inner_steps=1, bootstrap_steps=1))
    meta.step(meta.init(jnp.float32(0.1)), STATE, jax.random.key(0))
