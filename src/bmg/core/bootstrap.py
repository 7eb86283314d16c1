"""Target bootstrap (TB): L-1 more learner updates, one final step, no gradient.

  x~ = x_{K+L-1} - alpha * G * grad f(x_{K+L-1}),    x_{K+L-1} = phi^{L-1}(x_K; w held constant)

`G` is the identity (plain gradient step) or any optax transformation (RMSProp, Adam, ...). The
target is a constant for the meta-update, like a TD target: the result passes through
`jax.lax.stop_gradient` exactly once, here.
"""

from __future__ import annotations

from typing import Literal

import jax
import optax

from bmg.checks import check_integer
from bmg.core.types import (
    Bootstrapped,
    FinalUpdateFn,
    LearnerState,
    MetaObjective,
    Metrics,
    PyTree,
    TargetBootstrap,
    UpdateFn,
)
from bmg.core.unrolling import check_objective, mean_over_steps, unroll


def gradient_step(
    meta_objective: MetaObjective,
    *,
    step_size: float = 1.0,
    preconditioner: optax.GradientTransformation | None = None,
    preconditioner_state: Literal["fresh", "learner"] = "fresh",
) -> FinalUpdateFn:
    """The final step of a target: one (preconditioned) gradient step on the meta-objective f.

    Plain: x~ = x - step_size * grad f(x). Preconditioned: x~ = x + u, with
    `u, _ = preconditioner.update(grad f(x), s, x)`; the preconditioner carries its own learning
    rate (e.g. `optax.rmsprop(alpha)`) and `step_size` must be left at 1.0.

    Args:
      meta_objective: f, `meta_objective(state, key) -> (loss, metrics)`.
      step_size: alpha of the plain gradient step (> 0).
      preconditioner: an optax transformation G, or None for the identity.
      preconditioner_state: "fresh" initialises G's state at x for every target; "learner" uses
        the learner's own optimiser state `state.opt_state` (which must then have G's
        structure): the RMSProp target of the paper's Atari agent.

    Returns:
      `final_update_fn(meta_params, state, key) -> (state, metrics)`; only `params` change.
    """
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}.")
    if preconditioner is not None and step_size != 1.0:
        raise ValueError(
            "step_size must be 1.0 when a preconditioner is given: put the learning rate in the "
            f"optax transformation instead (got step_size={step_size!r})."
        )
    if preconditioner_state not in ("fresh", "learner"):
        raise ValueError(
            f"preconditioner_state must be 'fresh' or 'learner', got {preconditioner_state!r}."
        )

    def final_update_fn(meta_params: PyTree, state: LearnerState, key: jax.Array):
        del meta_params  # f does not depend on w.

        def loss_of_params(params):
            return check_objective(meta_objective(state._replace(params=params), key))

        (loss, metrics), grads = jax.value_and_grad(loss_of_params, has_aux=True)(state.params)
        if preconditioner is None:
            updates = jax.tree.map(lambda g: -step_size * g, grads)
        else:
            if preconditioner_state == "learner":
                precond_state = state.opt_state
            else:
                precond_state = preconditioner.init(state.params)
            updates, _ = preconditioner.update(grads, precond_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        final_metrics = {f"target/{name}": value for name, value in metrics.items()}
        final_metrics["target/objective"] = loss
        final_metrics["target/grad_norm"] = optax.tree.norm(grads)
        final_metrics["target/step_norm"] = optax.tree.norm(updates)
        return state._replace(params=new_params), final_metrics

    return final_update_fn


def make_target_bootstrap(
    update_fn: UpdateFn,
    num_steps: int,
    *,
    final_update_fn: FinalUpdateFn | None = None,
    meta_objective: MetaObjective | None = None,
    step_size: float = 1.0,
    unroll_loop: bool = False,
) -> TargetBootstrap:
    """Build TB: from x_K, L-1 updates of phi with w held constant, then one final step.

    Args:
      update_fn: phi, the learner's own update rule.
      num_steps: L >= 1, the number of steps the target looks ahead of x_K.
      final_update_fn: the L-th step, `(meta_params, state, key) -> (state, metrics)`. Default:
        `gradient_step(meta_objective, step_size=step_size)`, a plain gradient step of size alpha
        on the meta-objective. Pass `gradient_step(..., preconditioner=optax.rmsprop(alpha))` for a
        preconditioned target, or `update_fn` itself for L plain learner updates.
      meta_objective: f, required when `final_update_fn` is None.
      step_size: alpha for the default final step.
      unroll_loop: compile the L-1 updates as straight-line code, not a loop (see `unroll`).

    Returns:
      `target_bootstrap(meta_params, state, key) -> Bootstrapped(target, state, metrics)`, with
      `target` = x~ and `state` = x_{K+L-1}, both stop-gradient-ed.
    """
    check_integer("num_bootstrap_steps (L)", num_steps, 1)
    if final_update_fn is None:
        if meta_objective is None:
            raise ValueError(
                "make_target_bootstrap needs final_update_fn or meta_objective (for the default "
                "plain gradient step); got neither."
            )
        final_update_fn = gradient_step(meta_objective, step_size=step_size)

    def target_bootstrap(meta_params: PyTree, state: LearnerState, key: jax.Array):
        unroll_key, final_key = jax.random.split(key)
        state, unroll_metrics = unroll(
            update_fn, meta_params, state, unroll_key, num_steps - 1, unroll_loop=unroll_loop
        )
        target, final_metrics = final_update_fn(meta_params, state, final_key)
        metrics: Metrics = {
            name if name.startswith("target/") else f"target/{name}": value
            for name, value in {**mean_over_steps(unroll_metrics), **final_metrics}.items()
        }
        target, state = jax.lax.stop_gradient((target, state))  # The one target boundary.
        return Bootstrapped(target=target, state=state, metrics=metrics)

    return target_bootstrap
