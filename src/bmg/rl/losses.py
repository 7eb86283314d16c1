"""Single-stream RL losses in the rlax style: time-major arrays of one stream, batch with vmap.

Names follow rlax: for T transitions, ``x_tm1`` is at the T states s_0..s_{T-1} where actions were
taken, ``x_t`` at the T next states s_1..s_T; ``r_t`` and ``discount_t`` belong to transition t.

Gradients. Values used as bootstrap targets are stop-gradient-ed *as inputs* (``v_bootstrap``,
``v_final_t``, ``q_t``, ``q_final_t``), and the returns are built from them with
``stop_target_gradients=False``: the learner's parameters get no gradient through the targets,
while quantities that enter the returns themselves (a meta-learned ``discount_t``, reward
weights) keep theirs. rlax's ``stop_target_gradients=True`` would stop those too (Flennerhag et
al., ICLR 2022, Atari, STACX: meta-gradients to gamma and lambda must flow
through the targets).

Truncation (a time limit, not a terminal state; see ``bmg.rl.rollout``): where ``truncated_t``,
the return is ``r_t + discount_t * v_final_t`` and does not continue into the next episode
(``truncation_bootstrap``). Terminal steps need nothing: their ``discount_t`` is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import rlax

from bmg.core.types import Metrics


def truncation_bootstrap(
    r_t: jax.Array, discount_t: jax.Array, truncated_t: jax.Array, v_final_t: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Fold time-limit bootstraps into rewards and discounts.

    ``r_t' = r_t + discount_t * v_final_t`` and ``discount_t' = 0`` where ``truncated_t``; else
    unchanged (bit for bit). Then ``G_t = r_t' + discount_t' G_{t+1}`` bootstraps from the value
    of the truncated state ``v_final_t`` and stops there.

    Args:
      r_t: float[T]; discount_t: float[T]; truncated_t: bool[T]; v_final_t: float[T], the value of
        the state each step reached (only used where truncated).

    Returns:
      ``(r_t', discount_t')``, float[T] each.
    """
    r = jnp.where(truncated_t, r_t + discount_t * v_final_t, r_t)
    discount = jnp.where(truncated_t, jnp.zeros_like(discount_t), discount_t)
    return r, discount


def n_step_returns(
    r_t: jax.Array,
    discount_t: jax.Array,
    v_bootstrap: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
) -> jax.Array:
    """Bootstrapped returns to the end of the rollout, ``G_t = r_t + discount_t G_{t+1}``,
    ``G_T = v_bootstrap`` (``rlax.discounted_returns``), with time-limit bootstraps folded in.

    ``v_bootstrap`` (V(s_T)) and ``v_final_t`` are stop-gradient-ed here; ``r_t`` and
    ``discount_t`` are not (see the module docstring). Returns float[T].
    """
    r_t, discount_t = _fold_truncation("n_step_returns", r_t, discount_t, truncated_t, v_final_t)
    return rlax.discounted_returns(r_t, discount_t, jax.lax.stop_gradient(v_bootstrap))


def _fold_truncation(caller, r_t, discount_t, truncated_t, v_final_t):
    """``truncation_bootstrap`` with ``v_final_t`` stop-gradient-ed, or the inputs unchanged
    without truncation marks; ``caller`` names the function in the error of a missing
    ``v_final_t``."""
    if truncated_t is None:
        return r_t, discount_t
    if v_final_t is None:
        raise ValueError(f"{caller} needs v_final_t (values of final_obs) with truncated_t.")
    return truncation_bootstrap(r_t, discount_t, truncated_t, jax.lax.stop_gradient(v_final_t))


def one_step_returns(
    r_t: jax.Array,
    discount_t: jax.Array,
    v_t: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
) -> jax.Array:
    """One-step (TD(0)) returns ``G_t = r_t + discount_t V(s_{t+1})`` (Sutton & Barto, 2018,
    eq. 6.2), with time-limit bootstraps folded in (``truncation_bootstrap``).

    ``v_t`` is float[T], V(s_1..s_T), the values of the next states; it and ``v_final_t`` are
    stop-gradient-ed here; ``r_t`` and ``discount_t`` are not (see the module docstring).
    Returns float[T]. For T = 1 it equals ``n_step_returns`` with ``v_bootstrap = v_t[0]``.
    """
    r_t, discount_t = _fold_truncation("one_step_returns", r_t, discount_t, truncated_t, v_final_t)
    return r_t + discount_t * jax.lax.stop_gradient(v_t)


ADVANTAGES = ("n_step", "td")


def bootstrapped_returns(
    r_t: jax.Array,
    discount_t: jax.Array,
    v_tm1: jax.Array,
    v_bootstrap: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
    *,
    advantage: str = "n_step",
) -> jax.Array:
    """The returns of an actor-critic on one rollout: ``n_step_returns`` (bootstrapped at the end
    of the rollout) or, with ``advantage="td"``, ``one_step_returns`` (each step bootstrapped
    from the next state's value).

    Args:
      r_t, discount_t: float[T].
      v_tm1: float[T], V(s_0..s_{T-1}) (only V(s_1..s_{T-1}) are read, with ``advantage="td"``).
      v_bootstrap: scalar V(s_T).
      truncated_t, v_final_t: optional time-limit bootstraps.
      advantage: "n_step" or "td".

    Returns:
      float[T]; the values in them carry no gradient.

    Raises:
      ValueError: an unknown ``advantage``.
    """
    if advantage == "n_step":
        return n_step_returns(r_t, discount_t, v_bootstrap, truncated_t, v_final_t)
    if advantage == "td":
        v_next = jnp.concatenate([v_tm1[1:], jnp.reshape(v_bootstrap, (1,))])
        return one_step_returns(r_t, discount_t, v_next, truncated_t, v_final_t)
    raise ValueError(f"advantage must be 'n_step' or 'td', got {advantage!r}.")


def policy_gradient_and_entropy(
    logits_t: jax.Array, a_t: jax.Array, adv_t: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(PG, H)``: ``PG = -mean_t log pi(a_t|s_t) adv_t`` (``rlax.policy_gradient_loss``; the
    advantages are stop-gradient-ed by rlax) and ``H = mean_t entropy(pi(.|s_t))`` in nats.

    logits_t: float[T, A]; a_t: int[T]; adv_t: float[T]. Returns two scalars.
    """
    weights = jnp.ones_like(adv_t)
    pg_loss = rlax.policy_gradient_loss(logits_t, a_t, adv_t, weights)
    entropy = -rlax.entropy_loss(logits_t, weights)
    return pg_loss, entropy


def a2c_loss(
    logits_t: jax.Array,
    v_t: jax.Array,
    a_t: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    v_bootstrap: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
    *,
    entropy_cost: float | jax.Array,
    value_cost: float | jax.Array,
    advantage: str = "n_step",
) -> tuple[jax.Array, Metrics]:
    """Advantage actor-critic loss on one rollout (Mnih et al., "Asynchronous Methods for Deep
    Reinforcement Learning", ICML 2016; Flennerhag et al., ICLR 2022, Two-colors):

      G_t = n_step_returns(r_t, discount_t, V(s_T))              (bootstrapped to the rollout end;
            or one_step_returns with advantage="td": G_t = r_t + discount_t V(s_{t+1}))
      loss = PG + value_cost * mean_t (G_t - V(s_t))^2 - entropy_cost * H,
      PG = -mean_t log pi(a_t|s_t) sg(G_t - V(s_t)).

    Args:
      logits_t: float[T, A], policy logits at s_0..s_{T-1}.
      v_t: float[T], V(s_0..s_{T-1}) (gradients flow).
      a_t: int[T]; r_t: float[T]; discount_t: float[T].
      v_bootstrap: scalar V(s_T) (stop-gradient-ed).
      truncated_t, v_final_t: optional time-limit bootstraps (see ``n_step_returns``).
      entropy_cost: weight of the entropy bonus (may be a traced, meta-learned scalar).
      value_cost: weight of the value loss.
      advantage: "n_step" or "td" (``bootstrapped_returns``).

    Returns:
      ``(loss, {"pg_loss", "value_loss", "entropy"})``.
    """
    returns = bootstrapped_returns(
        r_t, discount_t, v_t, v_bootstrap, truncated_t, v_final_t, advantage=advantage
    )
    advantages = jax.lax.stop_gradient(returns - v_t)
    value_loss = jnp.mean(jnp.square(returns - v_t))
    pg_loss, entropy = policy_gradient_and_entropy(logits_t, a_t, advantages)
    loss = pg_loss + value_cost * value_loss - entropy_cost * entropy
    return loss, {"pg_loss": pg_loss, "value_loss": value_loss, "entropy": entropy}


def watkins_lambdas(q_t: jax.Array, a_tm1: jax.Array, lambda_: float | jax.Array) -> jax.Array:
    """Watkins' trace: ``lambda_t = lambda * [a_{t+1} = argmax_a q_t(s_{t+1}, a)]`` for
    ``t < T - 1`` and 0 at ``T - 1`` (the next action is not known): the trace is cut after an
    exploratory action (Watkins, 1989; Sutton & Barto, 2018, section 12.10).

    q_t: float[T, A], Q(s_1..s_T); a_tm1: int[T], a_0..a_{T-1}. Returns float[T].
    """
    greedy_next = jnp.concatenate(
        [a_tm1[1:] == jnp.argmax(q_t[:-1], axis=-1), jnp.zeros((1,), bool)]
    )
    return lambda_ * greedy_next.astype(q_t.dtype)


def q_lambda_loss(
    q_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t: jax.Array,
    truncated_t: jax.Array | None = None,
    q_final_t: jax.Array | None = None,
    *,
    lambda_: float | jax.Array,
) -> tuple[jax.Array, Metrics]:
    """Watkins Q(lambda) loss on one rollout (``rlax.q_lambda`` with ``watkins_lambdas``):

      G_t = r_t + discount_t [(1 - lambda_t) max_a q_t(s_{t+1}, a) + lambda_t G_{t+1}],
      loss = 1/2 mean_t (G_t - Q(s_t, a_t))^2.

    Args:
      q_tm1: float[T, A], Q(s_0..s_{T-1}) (gradients flow).
      a_tm1: int[T]; r_t: float[T]; discount_t: float[T].
      q_t: float[T, A], Q(s_1..s_T) (stop-gradient-ed).
      truncated_t, q_final_t: optional time-limit bootstraps: where truncated, G_t = r_t +
        discount_t max_a q_final_t(a), q_final_t float[T, A] at ``final_obs`` (stop-gradient-ed).
      lambda_: the trace parameter.

    Returns:
      ``(loss, {"td_loss": loss})``.
    """
    q_t = jax.lax.stop_gradient(q_t)
    lambdas = watkins_lambdas(q_t, a_tm1, lambda_)
    if truncated_t is not None:
        if q_final_t is None:
            raise ValueError("q_lambda_loss needs q_final_t (Q at final_obs) with truncated_t.")
        v_final = jnp.max(jax.lax.stop_gradient(q_final_t), axis=-1)
        r_t, discount_t = truncation_bootstrap(r_t, discount_t, truncated_t, v_final)
    td = rlax.q_lambda(q_tm1, a_tm1, r_t, discount_t, q_t, lambdas, stop_target_gradients=False)
    loss = 0.5 * jnp.mean(jnp.square(td))
    return loss, {"td_loss": loss}
