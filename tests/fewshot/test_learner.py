"""MAML and BMG on the conv-4 net through `bmg.core`: the few-shot `Learner`, `MetaLearner.step`
over a meta-batch against a hand-written reference (per-task meta-gradients averaged, then Adam),
identities, finite differences and batching invariance."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg.agents.fewshot import (
    CORE_ALGO,
    Task,
    adapt,
    make_evaluate,
    make_learner,
    task_at,
    task_states,
)
from bmg.core import Learner, LearnerState, MetaConfig, make_meta_learner, over_batch
from bmg.fewshot.conv4 import BatchStatNorm, Conv4, feature_size, max_pool_2x2

WAYS, SHOTS, QUERIES, SIZE = 3, 2, 2, 16
INNER_LR = 0.1


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def random_tasks(key, num_tasks):
    """Tasks whose classes differ in mean colour, so the support set carries signal."""
    keys = jax.random.split(key, 4)
    means = jax.random.normal(keys[0], (num_tasks, WAYS, 1, 1, 3))

    def images(key, per_class):
        noise = jax.random.normal(key, (num_tasks, WAYS, per_class, SIZE, SIZE, 3))
        return (means[:, :, None] + noise).reshape(num_tasks, WAYS * per_class, SIZE, SIZE, 3)

    def labels(per_class):
        return jnp.tile(jnp.repeat(jnp.arange(WAYS), per_class), (num_tasks, 1))

    return Task(images(keys[1], SHOTS), labels(SHOTS), images(keys[2], QUERIES), labels(QUERIES))


def network(filters=4):
    model = Conv4(num_classes=WAYS, filters=filters, num_blocks=2)

    @jax.jit
    def init(key):
        params = model.init(key, jnp.zeros((1, SIZE, SIZE, 3)))
        return jax.tree.map(lambda x: x.astype(jnp.float64), params)

    return model, init


def system(
    algo="maml",
    *,
    inner_steps=2,
    bootstrap_steps=1,
    matching="kl",
    target_step_size=INNER_LR,
    batching="vmap",
    meta_optimizer=None,
    learning_rate=1.0,
):
    """(model, learner, meta-learner, w_0); the meta-optimiser is SGD(1) unless given."""
    model, init = network()
    learner = make_learner(
        model.apply,
        init,
        inner_learning_rate=INNER_LR,
        first_order=algo == "fomaml",
        matching=matching,
    )
    config = MetaConfig(
        algo=CORE_ALGO[algo],
        inner_steps=inner_steps,
        bootstrap_steps=bootstrap_steps if algo == "bmg" else 1,  # L: BMG's alone
        learning_rate=learning_rate,
        target_step_size=target_step_size,
    )
    meta_learner = make_meta_learner(
        learner,
        config,
        reduce=over_batch(batching),
        meta_optimizer=meta_optimizer if meta_optimizer is not None else optax.sgd(1.0),
    )
    return model, learner, meta_learner, init(jax.random.key(0))


def task_gradient(params, task, **kwargs):
    """The meta-gradient of one task (a meta-batch of one: the mean is the task's own)."""
    _, _, meta_learner, _ = system(**kwargs)
    tasks = jax.tree.map(lambda x: x[None], task)
    meta_gradient = jax.jit(  # compiled: run eagerly, each of its ~400 operations compiles alone
        lambda w, tasks: meta_learner.meta_gradient(w, task_states(w, tasks), jax.random.key(1))
    )
    grads, (state, metrics) = meta_gradient(params, tasks)
    return grads, jax.tree.map(lambda x: x[0], state), metrics


def tree_allclose(a, b, **kwargs):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kwargs)


def first_task(tasks):
    return task_at(tasks, 0)


# The reference: what `make_meta_step` of bmg.fewshot.learner (commit fef3c3b) did, by hand --------


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def sgd_steps(apply, x, task, steps, *, first_order=False):
    """`steps` plain SGD steps of size INNER_LR on the support loss."""
    for _ in range(steps):
        grads = jax.grad(
            lambda p: cross_entropy(apply(p, task.support_images), task.support_labels)
        )(x)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        x = jax.tree.map(lambda p, g: p - INNER_LR * g, x, grads)
    return x


def reference_task_gradient(apply, w, task, algo, matching, inner_steps, bootstrap_steps, alpha):
    """d/dw of the task's meta-loss, written out: MAML / FOMAML's query loss at x_K(w), or BMG's
    matching loss to the constant target x~ = (L-1 support steps, one query step of size alpha)
    from x_K."""
    query = lambda x: cross_entropy(apply(x, task.query_images), task.query_labels)

    def inner(w):
        return sgd_steps(apply, w, task, inner_steps, first_order=algo == "fomaml")

    if algo in ("maml", "fomaml"):
        return jax.grad(lambda w: query(inner(w)))(w)
    x_k = inner(w)
    x = sgd_steps(apply, x_k, task, bootstrap_steps - 1)
    target = jax.tree.map(lambda p, g: p - alpha * g, x, jax.grad(query)(x))
    target = jax.lax.stop_gradient(target)

    def matching_loss(w):
        x = inner(w)
        if matching == "params":
            return 0.5 * sum(
                jnp.sum((a - b) ** 2)
                for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(x), strict=True)
            )
        p = jax.nn.log_softmax(apply(target, task.query_images))
        q = jax.nn.log_softmax(apply(x, task.query_images))
        return jnp.mean(jnp.sum(jnp.exp(p) * (p - q), axis=-1))

    return jax.grad(matching_loss)(w)


@functools.partial(jax.jit, static_argnames=("lr",))
def reference_adam(w, grads, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step (Kingma & Ba, 2015, Algorithm 1), t = 1, 2, ..."""
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
    v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
    w = jax.tree.map(
        lambda w, m, v: w - lr * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps), w, m, v
    )
    return w, m, v


@pytest.mark.parametrize(
    ("algo", "matching"),
    [
        ("maml", "kl"),
        ("bmg", "kl"),
        pytest.param("fomaml", "kl", marks=pytest.mark.slow),
        pytest.param("bmg", "params", marks=pytest.mark.slow),
    ],
)
def test_meta_step_equals_the_hand_written_average_of_task_gradients_then_adam(algo, matching):
    """Three `MetaLearner.step`s on meta-batches of 3 tasks, against per-task meta-gradients
    averaged by hand and a hand-written Adam (what few-shot did before it used the core's step;
    that code gave these numbers bit for bit, checked when it was replaced)."""
    lr, inner_steps, bootstrap_steps, alpha = 1e-2, 2, 3, 0.05
    model, learner, meta_learner, w0 = system(
        algo,
        inner_steps=inner_steps,
        bootstrap_steps=bootstrap_steps,
        matching=matching,
        target_step_size=alpha,
        meta_optimizer=optax.adam(lr),
    )
    step = jax.jit(
        lambda ms, tasks, key: meta_learner.step(ms, task_states(ms.meta_params, tasks), key)
    )
    reference = jax.jit(
        lambda w, task: reference_task_gradient(
            model.apply, w, task, algo, matching, inner_steps, bootstrap_steps, alpha
        )
    )
    x_k = jax.jit(lambda w, task: sgd_steps(model.apply, w, task, inner_steps))
    mean_of = jax.jit(lambda grads: jax.tree.map(lambda *g: sum(g) / 3, *grads))
    meta_state = jax.jit(meta_learner.init)(w0)
    w, m, v = w0, *(jax.tree.map(jnp.zeros_like, w0),) * 2
    for t in range(1, 4):
        tasks = random_tasks(jax.random.fold_in(jax.random.key(7), t), 3)
        meta_state, states, metrics = step(meta_state, tasks, jax.random.key(t))
        mean = mean_of([reference(w, task_at(tasks, i)) for i in range(3)])
        np.testing.assert_allclose(metrics["meta/grad_norm"], optax.tree.norm(mean), rtol=1e-10)
        # The learner state that comes back is x_K of each task from the w of this step.
        tree_allclose(
            jax.tree.map(lambda x: x[2], states.params),
            x_k(w, task_at(tasks, 2)),
            rtol=1e-10,
            atol=1e-13,
        )
        w, m, v = reference_adam(w, mean, m, v, t, lr)
        tree_allclose(meta_state.meta_params, w, rtol=1e-9, atol=1e-12)
    assert int(meta_state.step) == 3


def test_the_learner_is_a_core_learner_with_probes():
    model, learner, _, params = system("bmg")
    assert isinstance(learner, Learner)
    task = first_task(random_tasks(jax.random.key(12), 1))
    state = learner.start_fn(params, LearnerState(params=None, extras=task))
    assert state.params is params  # x_0 = w
    probes = jax.jit(learner.probes)(params, state)
    logits = jax.jit(model.apply)(params, task.query_images)
    np.testing.assert_allclose(
        probes["query_loss"], cross_entropy(logits, task.query_labels), rtol=1e-12
    )
    np.testing.assert_allclose(
        probes["query_accuracy"], np.mean(np.argmax(logits, -1) == task.query_labels)
    )
    one_step, metrics = jax.jit(learner.update_fn)(params, state, jax.random.key(0))
    sgd_step = jax.jit(lambda x, task: sgd_steps(model.apply, x, task, 1))
    tree_allclose(one_step.params, sgd_step(params, task), rtol=1e-12)
    assert set(metrics) == {"inner/loss", "inner/accuracy"}


@pytest.mark.parametrize("inner_steps", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_bmg_with_one_query_step_and_parameter_matching_is_alpha_times_maml(inner_steps):
    alpha = 0.05
    task = first_task(random_tasks(jax.random.key(2), 1))
    _, _, _, params = system()
    maml_grads, _, _ = task_gradient(params, task, algo="maml", inner_steps=inner_steps)
    bmg_grads, _, _ = task_gradient(
        params, task, algo="bmg", inner_steps=inner_steps, bootstrap_steps=1,
        matching="params", target_step_size=alpha,
    )  # fmt: skip
    tree_allclose(bmg_grads, jax.tree.map(lambda g: alpha * g, maml_grads), rtol=1e-9, atol=1e-14)


@pytest.mark.slow
def test_maml_gradient_matches_finite_differences_of_the_adapted_query_loss():
    task = first_task(random_tasks(jax.random.key(3), 1))
    _, learner, _, params = system("maml")
    grads, _, metrics = task_gradient(params, task, algo="maml", inner_steps=2)
    loss = jax.jit(lambda w: learner.probes(w, adapt(learner, w, task, 2))["query_loss"])
    np.testing.assert_allclose(metrics["meta/loss"], loss(params), rtol=1e-12)
    direction = jax.tree.map(
        lambda x, k: jax.random.normal(k, x.shape, x.dtype),
        params,
        jax.tree.unflatten(
            jax.tree.structure(params),
            list(jax.random.split(jax.random.key(4), len(jax.tree.leaves(params)))),
        ),
    )
    h = 1e-6  # small enough that no ReLU / max-pool switches inside [-h, h]
    shifted = lambda s: jax.tree.map(lambda x, d: x + s * h * d, params, direction)
    numeric = (loss(shifted(1)) - loss(shifted(-1))) / (2 * h)
    analytic = sum(
        jnp.vdot(g, d)
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_first_order_maml_is_the_query_gradient_at_the_adapted_parameters():
    task = first_task(random_tasks(jax.random.key(5), 1))
    _, learner, _, params = system("fomaml")
    grads, state, _ = task_gradient(params, task, algo="fomaml", inner_steps=3)
    expected = jax.jit(
        jax.grad(lambda x: learner.meta_objective(state._replace(params=x), None)[0])
    )(state.params)
    tree_allclose(grads, expected, rtol=1e-10, atol=1e-14)
    second_order, _, _ = task_gradient(params, task, algo="maml", inner_steps=3)
    difference = sum(
        float(jnp.sum(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(second_order), strict=True)
    )
    assert difference > 1e-6  # the second-order terms are really there


def test_bmg_kl_gradient_is_zero_when_the_target_equals_the_learner():
    # L = 1 with a zero-size final step: the target is x_K itself, so KL and its gradient vanish.
    task = first_task(random_tasks(jax.random.key(6), 1))
    _, _, _, params = system()
    grads, _, metrics = task_gradient(
        params, task, algo="bmg", inner_steps=2, bootstrap_steps=1, target_step_size=1e-300
    )
    assert abs(float(metrics["meta/loss"])) < 1e-12
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-10


@pytest.mark.parametrize("algo", ["maml", pytest.param("bmg", marks=pytest.mark.slow)])
def test_task_batching_modes_give_the_same_meta_step(algo):
    tasks = random_tasks(jax.random.key(7), 3)
    results = {}
    for batching in ("vmap", "map", "unroll"):
        _, _, meta_learner, params = system(
            algo, inner_steps=1, bootstrap_steps=2, batching=batching
        )
        step = jax.jit(
            lambda ms, tasks, ml=meta_learner: ml.step(
                ms, task_states(ms.meta_params, tasks), jax.random.key(8)
            )
        )
        results[batching] = step(meta_learner.init(params), tasks)
    for batching in ("map", "unroll"):
        states, metrics = results[batching][:2], results[batching][2]
        tree_allclose(states, results["vmap"][:2], rtol=1e-9, atol=1e-12)
        tree_allclose(metrics, results["vmap"][2], rtol=1e-6)  # accuracies are float32


@pytest.mark.slow
def test_meta_step_uses_the_mean_of_the_task_gradients():
    tasks = random_tasks(jax.random.key(9), 2)
    _, _, maml, params = system("maml", inner_steps=1, batching="unroll")
    new_state, _, _ = jax.jit(
        lambda params, tasks: maml.step(
            maml.init(params), task_states(params, tasks), jax.random.key(1)
        )
    )(params, tasks)
    grads = [task_gradient(params, task_at(tasks, i), inner_steps=1)[0] for i in (0, 1)]
    expected = jax.tree.map(lambda p, a, b: p - (a + b) / 2, params, *grads)
    tree_allclose(new_state.meta_params, expected, rtol=1e-9, atol=1e-12)


def test_evaluate_adapts_from_the_initialisation_and_scores_the_query_set():
    tasks = random_tasks(jax.random.key(10), 2)
    model, learner, _, params = system("maml")
    losses, accuracies = jax.jit(make_evaluate(learner, 4, "unroll"))(params, tasks)
    # four plain SGD steps on the support loss, then the query set
    adapted_logits = jax.jit(
        lambda task: model.apply(sgd_steps(model.apply, params, task, 4), task.query_images)
    )
    for i in range(2):
        task = task_at(tasks, i)
        logits = adapted_logits(task)
        np.testing.assert_allclose(
            accuracies[i], np.mean(np.argmax(logits, -1) == task.query_labels), rtol=1e-12
        )
        np.testing.assert_allclose(losses[i], cross_entropy(logits, task.query_labels), rtol=1e-10)


def test_batch_norm_uses_the_statistics_of_the_batch_it_is_given():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (6, 5, 5, 4))
    norm = BatchStatNorm()
    params = norm.init(jax.random.key(1), x)
    y = norm.apply(params, x)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    # transductive: an image's output depends on the rest of its batch
    assert not np.allclose(norm.apply(params, x[:3])[0], y[0])


def test_conv4_shapes():
    model = Conv4(num_classes=5)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 84, 84, 3)))
    assert params["params"]["Dense_0"]["kernel"].shape == (feature_size(84), 5) == (800, 5)
    assert jax.eval_shape(model.apply, params, jnp.zeros((7, 84, 84, 3))).shape == (7, 5)


@pytest.mark.parametrize("side", [6, 7])
def test_max_pool_equals_flax_max_pool_in_value_and_gradient(side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
    weights = jax.random.normal(jax.random.key(1), reference(x).shape)
    grad = lambda pool: jax.grad(lambda x: jnp.sum(weights * pool(x)))(x)
    np.testing.assert_array_equal(grad(max_pool_2x2), grad(reference))


def test_conv_norm_pool_step_is_the_same_under_vmap_and_scan():
    """Regression: with a pool differentiated by comparing each window to its maximum, this
    float64 SGD step inside a vmapped scan differed from the per-task step by up to 0.18."""

    def loss(kernel, images):
        x = jax.lax.conv_general_dilated(
            images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = BatchStatNorm().apply({"params": {"scale": jnp.ones(4), "offset": jnp.zeros(4)}}, x)
        return jnp.sum(jnp.tanh(max_pool_2x2(x)) ** 2)

    def step_in_scan(kernel, images):
        body = lambda kernel, _: (kernel - 0.1 * jax.grad(loss)(kernel, images), None)
        return jax.lax.scan(body, kernel, None, length=1)[0]

    keys = jax.random.split(jax.random.key(0), 2)
    images = jax.random.normal(keys[0], (2, 6, 8, 8, 3), jnp.float64)
    kernels = jax.random.normal(keys[1], (2, 3, 3, 3, 4), jnp.float64)
    per_task = jnp.stack([step_in_scan(kernels[i], images[i]) for i in range(2)])
    np.testing.assert_allclose(jax.vmap(step_in_scan)(kernels, images), per_task, atol=1e-12)


@pytest.mark.slow
def test_evaluation_batchings_agree():
    tasks = random_tasks(jax.random.key(11), 2)
    _, learner, _, params = system("maml")
    results = [make_evaluate(learner, 4, b)(params, tasks) for b in ("vmap", "map", "unroll")]
    for other in results[1:]:
        tree_allclose(other, results[0], rtol=1e-9, atol=1e-12)
