"""A supervised regression learner whose learning rates are meta-learned.

Learner: an MLP (no hidden layer = linear regression) trained by SGD on minibatches of a fixed
dataset, with per-coordinate learning rates exp(w):

  x_{k+1} = x_k - exp(w) * grad_x 1/2 mean_{(a, y) in batch_k} ||MLP_x(a) - y||^2

`w` is a log learning rate, either one scalar for all parameters ("scalar") or one per parameter
coordinate ("diagonal", a meta-learned diagonal preconditioner). The meta-objective f is the loss
on the whole dataset. Used by the README example, the core tests and `benchmarks/core_cost.py`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from bmg.core.matching import parameter_matching
from bmg.core.types import Learner, LearnerState, PyTree


class RegressionTask(NamedTuple):
    """A fixed dataset: inputs [N, D] and targets [N, O]."""

    inputs: jax.Array
    targets: jax.Array


def make_ill_conditioned_task(
    key: jax.Array,
    *,
    num_examples: int = 512,
    dim: int = 16,
    condition_number: float = 100.0,
    noise: float = 0.1,
) -> RegressionTask:
    """Linear targets y = a . x* + noise with input scales spread over sqrt(condition_number).

    Input coordinate i has standard deviation s_i, log-spaced from 1 to sqrt(condition_number), so
    the Hessian of the least-squares loss has condition number about `condition_number`: one
    learning rate for all coordinates is either too small for the flat ones or unstable for the
    steep ones; a diagonal preconditioner fixes that.
    """
    input_key, weight_key, noise_key = jax.random.split(key, 3)
    scales = jnp.logspace(0.0, 0.5 * jnp.log10(condition_number), dim)
    inputs = jax.random.normal(input_key, (num_examples, dim)) * scales
    true_weights = jax.random.normal(weight_key, (dim, 1))
    targets = inputs @ true_weights + noise * jax.random.normal(noise_key, (num_examples, 1))
    return RegressionTask(inputs=inputs, targets=targets)


def init_mlp(key: jax.Array, layer_sizes: tuple[int, ...]) -> list[dict[str, jax.Array]]:
    """LeCun-normal weights and zero biases for an MLP with the given layer sizes."""
    keys = jax.random.split(key, len(layer_sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (fan_in, fan_out)) / jnp.sqrt(fan_in),
            "b": jnp.zeros((fan_out,)),
        }
        for k, fan_in, fan_out in zip(keys, layer_sizes[:-1], layer_sizes[1:], strict=True)
    ]


def mlp_apply(params: list[dict[str, jax.Array]], inputs: jax.Array) -> jax.Array:
    """tanh MLP; the last layer is linear."""
    hidden = inputs
    for layer in params[:-1]:
        hidden = jnp.tanh(hidden @ layer["w"] + layer["b"])
    return hidden @ params[-1]["w"] + params[-1]["b"]


def mse_loss(params: PyTree, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """1/2 mean ||MLP_x(a) - y||^2."""
    return 0.5 * jnp.mean(jnp.sum(jnp.square(mlp_apply(params, inputs) - targets), axis=-1))


def make_regression_learner(
    task: RegressionTask,
    *,
    hidden_sizes: tuple[int, ...] = (),
    batch_size: int = 32,
    meta_lr: Literal["scalar", "diagonal"] = "scalar",
    init_learning_rate: float = 0.01,
) -> Learner:
    """Build phi (minibatch SGD with learning rates exp(w)) and f (full-dataset loss).

    Returns a `Learner` with parameter matching (1/2 squared distance) for BMG; `init_meta_params`
    ignores its key (every log learning rate starts at log(init_learning_rate)).

    Args:
      task: the dataset.
      hidden_sizes: MLP hidden layer sizes; () is linear regression.
      batch_size: examples per learner update, drawn uniformly with replacement.
      meta_lr: "scalar" (one log learning rate) or "diagonal" (one per parameter coordinate).
      init_learning_rate: exp(w) at initialisation.
    """
    if meta_lr not in ("scalar", "diagonal"):
        raise ValueError(f"meta_lr must be 'scalar' or 'diagonal', got {meta_lr!r}.")
    if not 1 <= batch_size <= task.inputs.shape[0]:
        raise ValueError(
            f"batch_size must be in [1, {task.inputs.shape[0]}] (the dataset size), "
            f"got {batch_size!r}."
        )
    if not init_learning_rate > 0:
        raise ValueError(f"init_learning_rate must be > 0, got {init_learning_rate!r}.")
    layer_sizes = (task.inputs.shape[1], *hidden_sizes, task.targets.shape[1])

    def init_state(key: jax.Array) -> LearnerState:
        params = init_mlp(key, layer_sizes)
        return LearnerState(params=params, opt_state=(), extras=jnp.zeros((), jnp.int32))

    def init_meta_params(key: jax.Array) -> PyTree:
        shapes = jax.eval_shape(lambda k: init_mlp(k, layer_sizes), key)
        log_lr = jnp.log(init_learning_rate)
        if meta_lr == "scalar":
            return jnp.asarray(log_lr, dtype=jax.tree.leaves(shapes)[0].dtype)
        return jax.tree.map(lambda p: jnp.full(p.shape, log_lr, p.dtype), shapes)

    def update_fn(meta_params: PyTree, state: LearnerState, key: jax.Array):
        index = jax.random.randint(key, (batch_size,), 0, task.inputs.shape[0])
        loss, grads = jax.value_and_grad(mse_loss)(
            state.params, task.inputs[index], task.targets[index]
        )
        if meta_lr == "scalar":
            rates = jax.tree.map(lambda g: jnp.exp(meta_params), grads)
        else:
            rates = jax.tree.map(jnp.exp, meta_params)
        params = jax.tree.map(lambda p, r, g: p - r * g, state.params, rates, grads)
        new_state = LearnerState(params=params, opt_state=(), extras=state.extras + 1)
        return new_state, {"learner/batch_loss": loss}

    def meta_objective(state: LearnerState, key: jax.Array):
        del key  # the full dataset: deterministic.
        return mse_loss(state.params, task.inputs, task.targets), {}

    return Learner(
        init_state=init_state,
        init_meta_params=init_meta_params,
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=parameter_matching(),
    )
