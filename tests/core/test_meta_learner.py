"""`make_meta_learner(learner, MetaConfig(...), reduce=...)` against the direct builders.

  - `make_meta_learner` gives the numbers of `make_fixed` / `make_metagradient` / `make_bmg` built
    by hand (the default BMG target is a plain step of `target_step_size`; a learner's own
    `target_step` replaces it; `continue_from`, `start_fn` and the meta-optimiser pass through);
  - `MetaConfig` refuses each bad value with a sentence naming the field;
  - `over_batch` is the mean of the per-learner meta-gradients with keys `split(key, B)`, for every
    batching (vmap, map, unroll);
  - `compose(over_batch(), over_devices("d"))` under `jax.shard_map` over 4 host CPU devices gives
    the 1-device numbers.

Everything in float64 (the `x64` fixture of tests/conftest.py), compared to rtol 1e-10 or tighter.
Every comparison runs compiled (eager JAX compiles op by op, far slower for unrolls); a built
meta-learner and its reference are compiled as one program, so the test costs one compile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg.agents.regression import RegressionTask, make_regression_learner
from bmg.core import (
    Learner,
    LearnerState,
    MetaConfig,
    compose,
    gradient_step,
    make_bmg,
    make_fixed,
    make_meta_learner,
    make_metagradient,
    make_target_bootstrap,
    over_batch,
    over_devices,
    parameter_matching,
)

pytestmark = pytest.mark.usefixtures("x64")

K, L = 2, 3
LEARNING_RATE, ADAM_EPS, TARGET_STEP_SIZE = 0.03, 0.5, 0.37  # none a default: passing them matters
TIGHT = dict(rtol=1e-10, atol=1e-14)


def regression(*, deterministic: bool = False):
    """A tiny stochastic (minibatch SGD) linear regression learner, one log learning rate per
    parameter coordinate (`bmg.agents.regression`).

    The data are numpy draws (inputs with scales 1..10, so the coordinates learn at different
    speeds) and the initialisations are compiled: eager JAX ops cost a compile each.
    `deterministic=True` makes every update draw the same minibatch whatever its key (the learner
    is then a function of its state only: what the 1-device = 4-devices invariance needs today).
    """
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((32, 3)) * np.logspace(0.0, 1.0, 3)
    targets = inputs @ rng.standard_normal((3, 1)) + 0.1 * rng.standard_normal((32, 1))
    task = RegressionTask(jnp.asarray(inputs), jnp.asarray(targets))
    learner = make_regression_learner(
        task, batch_size=4, meta_lr="diagonal", init_learning_rate=0.01
    )
    if deterministic:
        update_fn = learner.update_fn
        learner = learner._replace(update_fn=lambda w, s, k: update_fn(w, s, jax.random.key(9)))
    learner = learner._replace(init_state=jax.jit(learner.init_state))
    return learner, jax.jit(learner.init_meta_params)(jax.random.key(3))


def config(algo: str, **overrides) -> MetaConfig:
    fields = dict(
        algo=algo,
        inner_steps=K,
        bootstrap_steps=L if algo == "bmg" else 1,
        learning_rate=LEARNING_RATE,
        adam_eps=ADAM_EPS,
        target_step_size=TARGET_STEP_SIZE,
    )
    return MetaConfig(**{**fields, **overrides})


def adam():
    return optax.adam(LEARNING_RATE, eps=ADAM_EPS)


def direct(learner, algo: str, *, target_step=None, continue_from="inner"):
    """The same meta-learner built by hand from the direct builders."""
    if algo == "fixed":
        return make_fixed(learner.update_fn, num_inner_steps=K)
    if algo == "mg":
        return make_metagradient(
            learner.update_fn, learner.meta_objective, adam(), num_inner_steps=K
        )
    if target_step is None:
        bootstrap = make_target_bootstrap(
            learner.update_fn, L, meta_objective=learner.meta_objective, step_size=TARGET_STEP_SIZE
        )
    else:
        bootstrap = make_target_bootstrap(learner.update_fn, L, final_update_fn=target_step)
    return make_bmg(
        learner.update_fn,
        bootstrap,
        parameter_matching(),
        adam(),
        num_inner_steps=K,
        continue_from=continue_from,
    )


def meta_gradient_and_step(meta_learner, meta_params, state, key):
    """`meta_gradient` and one `step` from `init(meta_params)` (call inside `jax.jit`)."""
    step = meta_learner.step(meta_learner.init(meta_params), state, key)
    return meta_learner.meta_gradient(meta_params, state, key), step


def compiled_pair(built, reference, meta_params, state, key):
    """Both meta-learners' `meta_gradient_and_step`, in one compiled program."""
    run = lambda ml: meta_gradient_and_step(ml, meta_params, state, key)
    return jax.jit(lambda: (run(built), run(reference)))()


def tree_norm_of_difference(a, b) -> float:
    """The global norm of a - b (in numpy: eager JAX would compile each operation alone)."""
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return float(np.sqrt(sum(np.sum(np.square(np.subtract(x, y))) for x, y in leaves)))


@pytest.mark.parametrize("algo", ["fixed", "mg", "bmg"])
def test_make_meta_learner_equals_the_direct_builders(algo, tree_allclose):
    """Same meta-gradient, continuation state, metrics and `step` (meta-params, Adam state, count).

    The BMG reference is `make_target_bootstrap(update_fn, L, meta_objective=f,
    step_size=alpha)`: the default target is a plain gradient step of `target_step_size` (0.37
    here, not the default 0.1, so ignoring the field would change the numbers).
    """
    learner, meta_params = regression()
    state = learner.init_state(jax.random.key(1))
    key = jax.random.key(2)
    built, reference = compiled_pair(
        make_meta_learner(learner, config(algo)), direct(learner, algo), meta_params, state, key
    )
    tree_allclose(built, reference, **TIGHT)
    (grads, _), step = built
    norm = float(jax.jit(optax.tree.norm)(grads))
    assert norm == 0.0 if algo == "fixed" else norm > 1e-4  # not 0 = 0

    # The meta-optimiser is Adam(learning_rate, eps=adam_eps): one step from zero moments moves
    # each coordinate by lr * g / (|g| + eps), which a wrong eps (or SGD) would change.
    meta_state = step[0]
    expected = jax.jit(
        lambda meta_params, grads: jax.tree.map(
            lambda w, g: w - LEARNING_RATE * g / (jnp.abs(g) + ADAM_EPS), meta_params, grads
        )
    )(meta_params, grads)
    tree_allclose(meta_state.meta_params, expected, **TIGHT)
    assert int(meta_state.step) == 1


def test_learner_target_step_replaces_the_default(tree_allclose):
    """A learner's `target_step` (here RMSProp-preconditioned) is the target's final step."""
    learner, meta_params = regression()
    state = learner.init_state(jax.random.key(1))
    key = jax.random.key(2)
    rmsprop_step = gradient_step(learner.meta_objective, preconditioner=optax.rmsprop(0.05))
    built = make_meta_learner(learner._replace(target_step=rmsprop_step), config("bmg"))
    reference = direct(learner, "bmg", target_step=rmsprop_step)
    tree_allclose(*compiled_pair(built, reference, meta_params, state, key), **TIGHT)


def test_continue_from_inner_params_keeps_x_k_params_with_the_target_extras(tree_allclose):
    learner, meta_params = regression()
    state = learner.init_state(jax.random.key(1))
    key = jax.random.key(2)
    built = make_meta_learner(learner, config("bmg", continue_from="inner_params"))
    # The reference continues with the pair (x_K, x_{K+L-1}) itself: a continue_from function.
    both = direct(learner, "bmg", continue_from=lambda inner, target: (inner, target))
    continuation = lambda ml: ml.meta_gradient(meta_params, state, key)[1][0]
    mixed, (inner, target) = jax.jit(lambda: (continuation(built), continuation(both)))()
    # The regression learner's extras count its updates: x_K has K, x_{K+L-1} has K + L - 1.
    assert (int(inner.extras), int(target.extras)) == (K, K + L - 1)
    assert tree_norm_of_difference(target.params, inner.params) > 1e-6  # they really differ
    tree_allclose(mixed, inner._replace(extras=target.extras), rtol=0, atol=0)
    assert int(mixed.extras) == K + L - 1


# MAML-style learner: w is the initialisation (start_fn), x_{k+1} = x_k - eta * (x_k - b).
def test_start_fn_passes_through():
    eta, b, c = 0.3, 0.7, -0.4

    def update_fn(meta_params, state, key):
        return state._replace(params=state.params - eta * (state.params - b)), {}

    def meta_objective(state, key):
        return 0.5 * (state.params - c) ** 2, {}

    learner = Learner(
        init_state=lambda key: LearnerState(params=jnp.asarray(123.0)),
        init_meta_params=lambda key: jnp.asarray(0.9),
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=parameter_matching(),
        start_fn=lambda meta_params, state: state._replace(params=meta_params),
    )
    w, state, key = jnp.asarray(0.9), learner.init_state(None), jax.random.key(0)
    rho = 1 - eta
    x_k = b + rho**K * (w - b)  # d x_K / d w = rho^K
    mg = make_meta_learner(learner, config("mg"))
    mg_grads, (mg_state, _) = jax.jit(mg.meta_gradient)(w, state, key)
    np.testing.assert_allclose(mg_state.params, x_k, rtol=1e-12)
    np.testing.assert_allclose(mg_grads, (x_k - c) * rho**K, rtol=1e-12)
    bmg = make_meta_learner(learner, config("bmg"))
    bmg_grads, _ = jax.jit(bmg.meta_gradient)(w, state, key)
    x_l = b + rho ** (L - 1) * (x_k - b)
    target = x_l - TARGET_STEP_SIZE * (x_l - c)
    np.testing.assert_allclose(bmg_grads, -(target - x_k) * rho**K, rtol=1e-12)


@pytest.mark.parametrize(
    "fields,name",
    [
        (dict(algo="maml"), "algo"),
        (dict(algo="mg", inner_steps=0), "inner_steps"),
        (dict(algo="fixed", inner_steps=0), "inner_steps"),
        (dict(algo="bmg", inner_steps=-1), "inner_steps"),
        (dict(inner_steps=1.5), "inner_steps"),
        (dict(inner_steps=True), "inner_steps"),
        (dict(bootstrap_steps=0), "bootstrap_steps"),
        (dict(bootstrap_steps=2.0), "bootstrap_steps"),
        (dict(algo="bmg", inner_steps=0, bootstrap_steps=1), "bootstrap_steps"),
        (dict(algo="mg", bootstrap_steps=4), "bootstrap_steps .L. = 4 is the BMG target's"),
        (dict(algo="fixed", bootstrap_steps=2), "with algo 'fixed' leave it at 1"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(learning_rate=float("inf")), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(learning_rate="1e-3"), "learning_rate"),
        (dict(adam_eps=0.0), "adam_eps"),
        (dict(target_step_size=float("inf")), "target_step_size"),
        (dict(target_step_size=-0.1), "target_step_size"),
        (dict(continue_from="x_K"), "continue_from"),
    ],
)
def test_meta_config_refuses_bad_values_naming_the_field(fields, name):
    with pytest.raises(ValueError, match=name):
        MetaConfig(**fields)


def test_meta_config_accepts_the_edges():
    assert MetaConfig(algo="bmg", inner_steps=0, bootstrap_steps=2).updates_per_step == 1
    assert MetaConfig(algo="bmg", inner_steps=3, bootstrap_steps=4).updates_per_step == 6
    assert MetaConfig(algo="mg", inner_steps=3).updates_per_step == 3


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(learning_rate=True), "learning_rate must be a finite number > 0, got True."),
        (dict(adam_eps=False), "adam_eps must be a finite number > 0, got False."),
        (dict(target_step_size=True), "target_step_size must be a finite number > 0, got True."),
        (dict(bootstrap_steps=True), "bootstrap_steps (L) must be an integer >= 1, got True."),
        (dict(remat="yes"), "remat must be True or False, got 'yes'."),
        (dict(unroll_loop=1), "unroll_loop must be True or False, got 1."),
        (dict(algo=["bmg"]), "algo must be one of fixed, mg, bmg, got ['bmg']."),
        (dict(continue_from=["inner"]), "continue_from must be 'inner', 'target' or"),
    ],
)
def test_meta_config_refuses_a_value_of_another_type(fields, message):
    """Numbers refuse bools, bool fields refuse anything but a bool, in one sentence."""
    with pytest.raises(ValueError) as error:
        MetaConfig(**fields)
    assert str(error.value).startswith(message) and str(error.value).count(". ") == 0


@pytest.mark.parametrize(
    "fields,name",
    [
        (dict(algo="mg", continue_from="target"), "continue_from = 'target' is a bmg option"),
        (dict(algo="fixed", continue_from="inner_params"), "continue_from = 'inner_params'"),
        (dict(algo="fixed", remat=True), "remat applies to the differentiated unroll"),
        (dict(algo="fixed", unroll_loop=True), "unroll_loop applies to the differentiated"),
    ],
)
def test_meta_config_refuses_options_its_algo_does_not_use(fields, name):
    with pytest.raises(ValueError, match=f"^{re.escape(name)}"):
        MetaConfig(**fields)
    MetaConfig(**{**fields, "algo": "bmg"})  # bmg uses them all


def test_bmg_with_k_0_refuses_a_matching_fn_blind_to_the_meta_parameters():
    """Parameter matching reads no meta-parameter: with K = 0 nothing is differentiated, so the
    meta-gradient would be zero forever; refused at the first trace. A matching that reads them
    (even with K = 0), or a start_fn of them, is accepted; stop_gradient hides them."""
    learner, meta_params = regression()
    state = learner.init_state(jax.random.key(0))
    k0 = config("bmg", inner_steps=0, bootstrap_steps=2)

    def first_step(learner):
        meta_learner = make_meta_learner(learner, k0)
        return jax.jit(meta_learner.step)(meta_learner.init(meta_params), state, jax.random.key(1))

    with pytest.raises(ValueError, match="^BMG with inner_steps K = 0 needs a matching_fn"):
        first_step(learner)
    matching = learner.matching_fn
    hidden = lambda t, s, w: matching(t, s, w) + jnp.sum(jax.lax.stop_gradient(w[0]["w"]))
    with pytest.raises(ValueError, match="K = 0"):
        first_step(learner._replace(matching_fn=hidden))
    reads = lambda t, s, w: matching(t, s, w) + jnp.sum(jnp.square(w[0]["w"]))
    _, _, metrics = first_step(learner._replace(matching_fn=reads))
    assert float(metrics["meta/grad_norm"]) > 0
    scaled = lambda w, s: s._replace(params=jax.tree.map(lambda p, r: p * jnp.exp(r), s.params, w))
    _, _, metrics = first_step(learner._replace(start_fn=scaled))
    assert float(metrics["meta/grad_norm"]) > 0


def test_bmg_without_matching_fn_is_refused():
    learner, _ = regression()
    with pytest.raises(ValueError, match="matching_fn"):
        make_meta_learner(learner._replace(matching_fn=None), config("bmg"))
    make_meta_learner(learner._replace(matching_fn=None), config("mg"))  # MG needs none


def test_over_batch_refuses_an_unknown_batching():
    with pytest.raises(ValueError, match="batching"):
        over_batch("pmap")


B = 2


def stacked_states(learner, size: int):
    return jax.jit(jax.vmap(learner.init_state))(jax.random.split(jax.random.key(1), size))


def index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_over_batch_is_the_mean_of_individual_meta_gradients(tree_allclose):
    """Grads and metrics are the means over B of the per-learner ones (learner i with key i of
    `jax.random.split(key, B)`), next states come back stacked in order, and `step` applies Adam
    to the mean. vmap, map and unroll are speed choices: the same numbers. (BMG; `over_batch`
    wraps any meta-gradient function the same way.)"""
    learner, meta_params = regression()
    states = stacked_states(learner, B)
    key = jax.random.key(5)
    single = jax.jit(make_meta_learner(learner, config("bmg")).meta_gradient)
    results = [
        single(meta_params, index(states, i), k) for i, k in enumerate(jax.random.split(key, B))
    ]
    mean = jax.jit(lambda trees: jax.tree.map(lambda *xs: sum(xs) / B, *trees))
    grads = mean([r[0] for r in results])
    metrics = mean([r[1][1] for r in results])
    next_states = jax.tree.map(lambda *xs: np.stack(xs), *(r[1][0] for r in results))
    assert tree_norm_of_difference(results[0][0], results[1][0]) > 1e-6  # a mean of different ones

    def batched(batching):
        return make_meta_learner(learner, config("bmg"), reduce=over_batch(batching))

    (vmap_gradient, (meta_state, stepped, step_metrics)), map_gradient, unroll_gradient = jax.jit(
        lambda: (
            meta_gradient_and_step(batched("vmap"), meta_params, states, key),
            batched("map").meta_gradient(meta_params, states, key),
            batched("unroll").meta_gradient(meta_params, states, key),
        )
    )()
    for b_grads, (b_states, b_metrics) in (vmap_gradient, map_gradient, unroll_gradient):
        tree_allclose(b_grads, grads, **TIGHT)
        tree_allclose(b_states, next_states, **TIGHT)  # stacked, in order
        tree_allclose(b_metrics, metrics, **TIGHT)  # averaged

    @jax.jit  # the reference Adam step and norm, one program
    def adam_step_and_norm(meta_params, grads):
        updates, _ = adam().update(grads, adam().init(meta_params), meta_params)
        return optax.apply_updates(meta_params, updates), optax.tree.norm(grads)

    expected, norm = adam_step_and_norm(meta_params, grads)
    tree_allclose(meta_state.meta_params, expected, **TIGHT)
    tree_allclose(stepped, next_states, **TIGHT)
    np.testing.assert_allclose(step_metrics["meta/grad_norm"], norm, rtol=1e-10)


# --- over_devices: 4 forced host CPU devices, in a subprocess -------------------------------
#
# `--xla_force_host_platform_device_count=4` only takes effect if XLA_FLAGS is set before JAX
# initialises its CPU backend, which happens once per process, at the first computation. In a
# pytest session other modules (and this one) have computed long before, so setting the flag in
# a test module is order-dependent and silently gives 1 device. A fresh interpreter with the flag
# in its environment is the robust way: it runs `_four_device_run` below (this very module,
# imported there) and writes its numbers to an .npz; the tests here compare them with the
# 1-device numbers computed in this process. Marked slow: a second interpreter and its compiles.

NUM_DEVICES, GLOBAL_BATCH = 4, 8
# name: (deterministic learner?, shard_map's check_vma)
CASES = {"det": (True, True), "det_no_vma": (True, False), "sto": (False, True)}


def _four_device_run(path: str) -> None:
    """Run in the subprocess: one sharded BMG `step` per case, its leaves saved as flat arrays."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    assert jax.device_count() == NUM_DEVICES, jax.devices()
    assert jax.config.jax_enable_x64
    mesh = jax.make_mesh((NUM_DEVICES,), ("d",))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("d"))
    reduce = compose(over_batch(), over_devices("d"))
    out = {}
    for name, (deterministic, check_vma) in CASES.items():
        learner, meta_params = regression(deterministic=deterministic)
        meta_learner = make_meta_learner(learner, config("bmg"), reduce=reduce)
        sharded_step = jax.jit(
            jax.shard_map(
                meta_learner.step,
                mesh=mesh,
                in_specs=(P(), P("d"), P()),
                out_specs=(P(), P("d"), P()),
                check_vma=check_vma,
            )
        )
        states = jax.device_put(stacked_states(learner, GLOBAL_BATCH), split)
        meta_state = jax.device_put(meta_learner.init(meta_params), replicated)
        key = jax.device_put(jax.random.key(5), replicated)
        for i, leaf in enumerate(jax.tree.leaves(sharded_step(meta_state, states, key))):
            out[f"{name}/{i}"] = np.asarray(leaf)
    np.savez(path, **out)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The subprocess's numbers: {f"{case}/{leaf index}": array}."""
    path = tmp_path_factory.mktemp("devices") / "four_devices.npz"
    here = Path(__file__).resolve()
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
        f"--xla_force_host_platform_device_count={NUM_DEVICES}",
        "JAX_PLATFORMS": "cpu",
        "JAX_ENABLE_X64": "1",
    }
    code = (
        f"import sys; sys.path[:0] = [{str(here.parent)!r}, {str(here.parents[2] / 'src')!r}]; "
        f"import {here.stem} as m; m._four_device_run({str(path)!r})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(path) as data:
        return dict(data)


@pytest.fixture(scope="module")
def one_device():
    """The same BMG steps with `over_batch()` over all 8 learners on this process's 1 device."""
    results = {}
    with jax.enable_x64(True):
        for deterministic in (True, False):
            learner, meta_params = regression(deterministic=deterministic)
            meta_learner = make_meta_learner(learner, config("bmg"), reduce=over_batch())
            states = stacked_states(learner, GLOBAL_BATCH)
            step = jax.jit(meta_learner.step)
            results[deterministic] = step(meta_learner.init(meta_params), states, jax.random.key(5))
    return results


def assert_same_as_one_device(name, four_devices, one_device, tree_allclose):
    """The whole `step`: meta-params, Adam state (after one step from zero its first moment is
    (1 - b1) x the reduced meta-gradient, so the meta-gradient is compared too), step count, the
    stacked continuation states (device order = batch order) and the averaged metrics."""
    leaves, treedef = jax.tree.flatten(one_device[CASES[name][0]])
    sharded = [four_devices[f"{name}/{i}"] for i in range(len(leaves))]
    tree_allclose(
        jax.tree.unflatten(treedef, sharded),
        jax.tree.unflatten(treedef, leaves),
        rtol=1e-10,
        atol=1e-13,
    )


@pytest.mark.slow  # a second interpreter with 4 devices: ~30 s of compiles on 2 cores
def test_over_devices_equals_one_device_without_vma_checks(four_devices, one_device, tree_allclose):
    """8 learners, 2 per device over 4 devices == the 8 on one device (`check_vma=False`).

    The learner draws the same minibatch whatever its key (see the stochastic test for why)."""
    assert_same_as_one_device("det_no_vma", four_devices, one_device, tree_allclose)


@pytest.mark.slow
def test_over_devices_equals_one_device(four_devices, one_device, tree_allclose):
    """As above with shard_map's default `check_vma=True`, the way users call it."""
    assert_same_as_one_device("det", four_devices, one_device, tree_allclose)


@pytest.mark.slow
def test_over_devices_equals_one_device_for_a_stochastic_learner(
    four_devices, one_device, tree_allclose
):
    assert_same_as_one_device("sto", four_devices, one_device, tree_allclose)
