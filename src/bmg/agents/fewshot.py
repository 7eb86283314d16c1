"""MAML and BMG for few-shot classification: a `bmg.core.Learner` for N-way tasks.

The meta-parameters w are the network's initialisation (Finn et al., ICML 2017). For one task
with support set S and query set Q, the learner starts at x_0 = w (`start_fn`) and takes SGD steps
on the support loss (phi, `update_fn`),

  x_{k+1} = x_k - a grad l_S(x_k)        (first order: the gradient is held constant),

and the meta-objective is the query loss f(x) = l_Q(x) (Flennerhag et al., ICLR 2022,
the multi-task few-shot experiment):

  MAML (MG):  w <- w - b grad_w l_Q(x_K(w))
  BMG:        x~ = x_{K+L-1} - a grad l_Q(x_{K+L-1}), no gradient (L-1 more support steps, then
              one step on the query loss);  w <- w - b grad_w mu(x~, x_K(w)) with
              mu = KL(softmax f_x~(Q) || softmax f_x_K(Q)) averaged over the query images, or
              1/2 ||x~ - x_K||^2 ("params").

The learner state of one task is `LearnerState(params, extras=Task)`; a meta-batch is the same
with a leading task axis on every leaf (`task_states`), and `make_meta_learner(learner,
MetaConfig(...), reduce=over_batch(task_batching))` averages the per-task meta-gradients before
Adam. How the tasks are batched is a speed choice only: "vmap" (one batched program), "map"
(`lax.map`, one task at a time in a loop) or "unroll" (a Python loop inside the compiled step);
all give the same numbers.

In few-shot learning K names the shots; the inner-step count is `inner_steps` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bmg.agents.configs import CORE_ALGO  # noqa: F401  (re-exported)
from bmg.agents.configs import FEWSHOT_ALGOS as ALGOS  # noqa: F401  (re-exported)
from bmg.core import Learner, LearnerState, parameter_matching, policy_kl, unroll
from bmg.core.meta import BATCHINGS, batch_map
from bmg.core.types import PyTree

Algo = Literal["maml", "fomaml", "bmg"]
Matching = Literal["kl", "params"]
TaskBatching = Literal["vmap", "map", "unroll"]
TASK_BATCHINGS = BATCHINGS


class Task(NamedTuple):
    """One N-way task (or a batch of them with a leading task axis)."""

    support_images: jax.Array  # float32 [N*shots, S, S, C]
    support_labels: jax.Array  # int32 [N*shots]
    query_images: jax.Array  # float32 [N*queries, S, S, C]
    query_labels: jax.Array  # int32 [N*queries]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of logits [N, ways] against integer labels [N]."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, accuracy


def make_learner(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    init_params: Callable[[jax.Array], PyTree],
    *,
    inner_learning_rate: float,
    first_order: bool = False,
    matching: Matching = "kl",
    task_shapes: Task | None = None,
) -> Learner:
    """The few-shot `Learner` of one task.

    Args:
      apply_fn: the network, `(params, images [N, S, S, C]) -> logits [N, ways]`.
      init_params: `key -> params`, w_0 (`Learner.init_meta_params`).
      inner_learning_rate: a, the support-set SGD step.
      first_order: hold the support gradient constant (first-order MAML).
      matching: "kl" (KL between the target's and x_K's query predictions) or "params"
        (1/2 ||x~ - x_K||^2).
      task_shapes: a `Task` of arrays (or `jax.ShapeDtypeStruct`s) with one task's shapes, for
        `init_state` (a zero task: a template for shapes and checkpoints). None: `init_state`
        raises.

    Returns:
      `Learner` with `start_fn` x_0 = w; `update_fn` one support SGD step (metrics
      `inner/loss`, `inner/accuracy`); `meta_objective` the query loss (metrics
      `query_accuracy`); `matching_fn` as `matching` says; `probes` the `query_loss` and
      `query_accuracy` of a state; `target_step` None (the core's plain gradient step of size
      `MetaConfig.target_step_size` on the query loss).

    Raises:
      ValueError: an unknown `matching`.
    """
    if matching not in ("kl", "params"):
        raise ValueError(f"matching must be 'kl' or 'params', got {matching!r}.")

    def support_loss(params, task: Task):
        return cross_entropy(apply_fn(params, task.support_images), task.support_labels)

    def update_fn(meta_params, state: LearnerState, key):
        del meta_params, key
        (loss, accuracy), grads = jax.value_and_grad(support_loss, has_aux=True)(
            state.params, state.extras
        )
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        params = jax.tree.map(lambda x, g: x - inner_learning_rate * g, state.params, grads)
        return state._replace(params=params), {"inner/loss": loss, "inner/accuracy": accuracy}

    def meta_objective(state: LearnerState, key):
        del key
        task: Task = state.extras
        loss, accuracy = cross_entropy(apply_fn(state.params, task.query_images), task.query_labels)
        return loss, {"query_accuracy": accuracy}

    def start_fn(meta_params, state: LearnerState) -> LearnerState:
        return state._replace(params=meta_params)

    def kl_matching(target: LearnerState, state: LearnerState, meta_params):
        del meta_params
        images = state.extras.query_images
        return policy_kl(apply_fn(target.params, images), apply_fn(state.params, images))

    def probes(meta_params, state: LearnerState):
        del meta_params
        loss, metrics = meta_objective(state, None)
        return {"query_loss": loss, "query_accuracy": metrics["query_accuracy"]}

    def init_state(key: jax.Array) -> LearnerState:
        if task_shapes is None:
            raise ValueError("init_state needs make_learner(..., task_shapes=...); none given.")
        task = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), task_shapes)
        return LearnerState(params=init_params(key), extras=task)

    return Learner(
        init_state=init_state,
        init_meta_params=init_params,
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=kl_matching if matching == "kl" else parameter_matching(),
        start_fn=start_fn,
        probes=probes,
    )


def task_states(meta_params: PyTree, tasks: Task) -> LearnerState:
    """The learner state of a meta-batch: one state per task, stacked on a leading task axis.

    `params` hold w for every task (replaced by `start_fn` anyway: x_0 = w), `extras` the task.
    """
    size = tasks.query_labels.shape[0]
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *jnp.shape(x))), meta_params)
    return LearnerState(params=params, extras=tasks)


def task_at(tasks: Task, index: int) -> Task:
    """The `index`-th task of a batch."""
    return jax.tree.map(lambda x: x[index], tasks)


def adapt(learner: Learner, meta_params: PyTree, task: Task, num_steps: int) -> LearnerState:
    """x_k from w on one task's support set (`num_steps` SGD steps, no meta-gradient)."""
    state = learner.start_fn(meta_params, LearnerState(params=meta_params, extras=task))
    state, _ = unroll(learner.update_fn, meta_params, state, jax.random.key(0), num_steps)
    return state


def make_evaluate(learner: Learner, num_steps: int, batching: TaskBatching = "vmap"):
    """`evaluate(meta_params, tasks) -> (query losses [T], query accuracies [T])` after
    `num_steps` support steps from w on each task (`learner.probes` of the adapted state)."""

    def one(meta_params, task: Task):
        probes = learner.probes(meta_params, adapt(learner, meta_params, task, num_steps))
        return probes["query_loss"], probes["query_accuracy"]

    def evaluate(meta_params, tasks: Task):
        return batch_map(lambda task: one(meta_params, task), batching)(tasks)

    return evaluate
