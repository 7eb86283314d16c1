"""MAML and BMG on the conv-4 net: identities, finite differences and batching invariance."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bmg.fewshot.conv4 import BatchStatNorm, Conv4, feature_size, max_pool_2x2
from bmg.fewshot.learner import (
    Task,
    make_evaluate,
    make_learner,
    make_meta_learner,
    make_meta_step,
    task_at,
)

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


def system(algo="maml", *, k=2, l=1, matching="kl", target_step_size=INNER_LR, filters=4):
    model = Conv4(num_classes=WAYS, filters=filters, num_blocks=2)
    learner = make_learner(
        model.apply,
        inner_learning_rate=INNER_LR,
        first_order=algo == "fomaml",
        matching=matching,
    )
    meta_learner = make_meta_learner(
        learner,
        algo,
        optax.sgd(1.0),
        num_inner_steps=k,
        num_bootstrap_steps=l,
        target_step_size=target_step_size,
    )
    params = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
    params = jax.tree.map(lambda x: x.astype(jnp.float64), params)
    return model, learner, meta_learner, params


def task_gradient(meta_learner, params, task):
    from bmg.core import LearnerState

    grads, (state, metrics) = meta_learner.meta_gradient(
        params, LearnerState(params=params, extras=task), jax.random.key(1)
    )
    return grads, state, metrics


def tree_allclose(a, b, **kwargs):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kwargs)


def first_task(tasks):
    return task_at(tasks, 0)


def query_loss_after(learner, params, task, k):
    loss, _ = learner.adapt(params, task, k)
    return loss


@pytest.mark.parametrize("k", [1, 3])
def test_bmg_with_one_query_step_and_parameter_matching_is_alpha_times_maml(k):
    alpha = 0.05
    task = first_task(random_tasks(jax.random.key(2), 1))
    _, _, maml, params = system("maml", k=k)
    _, _, bmg, _ = system("bmg", k=k, l=1, matching="params", target_step_size=alpha)
    maml_grads, _, _ = task_gradient(maml, params, task)
    bmg_grads, _, _ = task_gradient(bmg, params, task)
    tree_allclose(bmg_grads, jax.tree.map(lambda g: alpha * g, maml_grads), rtol=1e-9, atol=1e-14)


def test_maml_gradient_matches_finite_differences_of_the_adapted_query_loss():
    task = first_task(random_tasks(jax.random.key(3), 1))
    _, learner, maml, params = system("maml", k=2)
    grads, _, metrics = task_gradient(maml, params, task)
    loss = lambda w: query_loss_after(learner, w, task, 2)
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
    _, learner, fomaml, params = system("fomaml", k=3)
    _, _, maml, _ = system("maml", k=3)
    grads, state, _ = task_gradient(fomaml, params, task)
    expected = jax.grad(lambda x: learner.meta_objective(state._replace(params=x), None)[0])(
        state.params
    )
    tree_allclose(grads, expected, rtol=1e-10, atol=1e-14)
    second_order, _, _ = task_gradient(maml, params, task)
    difference = sum(
        float(jnp.sum(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(second_order), strict=True)
    )
    assert difference > 1e-6  # the second-order terms are really there


def test_bmg_kl_gradient_is_zero_when_the_target_equals_the_learner():
    # L = 1 with a zero-size final step: the target is x_K itself, so KL and its gradient vanish.
    task = first_task(random_tasks(jax.random.key(6), 1))
    _, _, bmg, params = system("bmg", k=2, l=1, target_step_size=1e-300)
    grads, _, metrics = task_gradient(bmg, params, task)
    assert abs(float(metrics["meta/loss"])) < 1e-12
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-10


@pytest.mark.parametrize("algo", ["maml", "bmg"])
def test_task_batching_modes_give_the_same_meta_step(algo):
    tasks = random_tasks(jax.random.key(7), 3)
    _, learner, meta_learner, params = system(algo, k=2, l=2)
    optimizer = optax.sgd(1.0)
    results = {}
    for batching in ("vmap", "map", "unroll"):
        step = jax.jit(make_meta_step(learner, meta_learner, optimizer, batching))
        results[batching] = step(params, optimizer.init(params), tasks, jax.random.key(8))
    for batching in ("map", "unroll"):
        params_and_state, metrics = results[batching][:2], results[batching][2]
        tree_allclose(params_and_state, results["vmap"][:2], rtol=1e-9, atol=1e-12)
        tree_allclose(metrics, results["vmap"][2], rtol=1e-6)  # accuracies are float32


def test_meta_step_uses_the_mean_of_the_task_gradients():
    tasks = random_tasks(jax.random.key(9), 2)
    _, learner, maml, params = system("maml", k=1)
    optimizer = optax.sgd(1.0)
    step = make_meta_step(learner, maml, optimizer, "unroll")
    new_params, _, _ = step(params, optimizer.init(params), tasks, jax.random.key(1))
    grads = [task_gradient(maml, params, task_at(tasks, i))[0] for i in (0, 1)]
    expected = jax.tree.map(lambda p, a, b: p - (a + b) / 2, params, *grads)
    tree_allclose(new_params, expected, rtol=1e-9, atol=1e-12)


def test_evaluate_adapts_from_the_initialisation_and_scores_the_query_set():
    tasks = random_tasks(jax.random.key(10), 2)
    model, learner, _, params = system("maml")
    losses, accuracies = make_evaluate(learner, 4, "unroll")(params, tasks)

    def support_loss(p, task):
        logits = model.apply(p, task.support_images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, task.support_labels).mean()

    for i in range(2):
        task = task_at(tasks, i)
        x = params
        for _ in range(4):  # four plain SGD steps on the support loss
            grads = jax.grad(support_loss)(x, task)
            x = jax.tree.map(lambda p, g: p - INNER_LR * g, x, grads)
        logits = model.apply(x, task.query_images)
        np.testing.assert_allclose(
            accuracies[i], np.mean(np.argmax(logits, -1) == task.query_labels), rtol=1e-12
        )
        np.testing.assert_allclose(
            losses[i],
            optax.softmax_cross_entropy_with_integer_labels(logits, task.query_labels).mean(),
            rtol=1e-10,
        )


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
    params = model.init(jax.random.key(0), jnp.zeros((1, 84, 84, 3)))
    assert params["params"]["Dense_0"]["kernel"].shape == (feature_size(84), 5) == (800, 5)
    assert model.apply(params, jnp.zeros((7, 84, 84, 3))).shape == (7, 5)


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


def test_evaluation_batchings_agree():
    tasks = random_tasks(jax.random.key(11), 2)
    _, learner, _, params = system("maml")
    results = [make_evaluate(learner, 4, b)(params, tasks) for b in ("vmap", "map", "unroll")]
    for other in results[1:]:
        tree_allclose(other, results[0], rtol=1e-9, atol=1e-12)
