"""Single-stream (leaky) V-trace actor-critic losses in the rlax style, with meta-gradients.

IMPALA's V-trace (Espeholt et al., "IMPALA: Scalable Distributed Deep-RL with Importance
Weighted Actor-Learner Architectures", ICML 2018, section 4) and its leaky form from STACX
(Zahavy et al., "A Self-Tuning Actor-Critic Algorithm", NeurIPS 2020), computed by
``rlax.leaky_vtrace_td_error_and_advantage``. With importance ratios
``rho_t = pi(a_t|s_t) / mu(a_t|s_t)`` (pi the learner's policy, mu the behaviour policy):

  c_t       = lambda * (alpha * min(1, rho_t) + (1 - alpha) * rho_t)          (trace cutting)
  rho~_t    = alpha * min(rho_bar, rho_t) + (1 - alpha) * rho_t              (TD weight)
  v_s       = V(s) + sum_{k>=s} (prod_{i<k} discount_i c_i) rho~_k
                      (r_k + discount_k V(s_{k+1}) - V(s_k))                   (V-trace target)
  A_s       = rho^pg_s (r_s + discount_s ((1 - lambda) V(s_{s+1}) + lambda v_{s+1}) - V(s))

``alpha = 1`` is IMPALA's V-trace exactly; ``alpha = 0`` is plain (unclipped) importance
sampling. The loss on one rollout of T steps is

  loss = value_cost * 1/2 mean_t (v_t - V(s_t))^2 + policy_cost * PG - entropy_cost * H,
  PG   = -mean_t A_t log pi(a_t|s_t),      H = mean_t entropy(pi(.|s_t)) (nats).

Gradients (the trap; Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022, Atari, on
STACX). The learner's parameters must see the usual semi-gradient: no gradient through the
targets ``v_t``, the advantages ``A_t`` or the ratios ``rho_t``. rlax gets there with
``stop_target_gradients=True`` and ``policy_gradient_loss`` stopping the advantages, but that
stops *everything* flowing through the targets, so the meta-gradient to gamma (in
``discount_t``), lambda and alpha is exactly zero. Here the values and the ratios are
stop-gradient-ed as *inputs* and the targets are built with ``stop_target_gradients=False``:
targets and advantages are constants of the parameters but functions of the meta-parameters.
The gradient to the parameters is identical to rlax's defaults (tested).

Arrays are time-major, one stream (batch with ``jax.vmap``); names follow ``bmg.rl.losses``:
``x_tm1`` at s_0..s_{T-1}, ``v_bootstrap`` = V(s_T). Truncated steps (time limits) bootstrap from
the value of ``final_obs`` as in ``bmg.rl.losses.truncation_bootstrap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import rlax

from bmg.core.types import Metrics
from bmg.rl.losses import truncation_bootstrap


class VtraceTargets(NamedTuple):
    """What the (leaky) V-trace recursion returns for one rollout (float[T] each).

    Attributes:
      targets: v_t, the V-trace value targets at s_0..s_{T-1}.
      pg_advantages: A_t, the (clipped-ratio-weighted) policy-gradient advantages.
      rhos: rho_t, the importance ratios pi(a_t|s_t) / mu(a_t|s_t) (unclipped).
    """

    targets: jax.Array
    pg_advantages: jax.Array
    rhos: jax.Array


def importance_ratios(logits_t: jax.Array, behaviour_logits_t: jax.Array, a_t: jax.Array):
    """``rho_t = pi(a_t|s_t) / mu(a_t|s_t)`` from logits float[T, A] and actions int[T]."""
    return jnp.exp(_log_prob(logits_t, a_t) - _log_prob(behaviour_logits_t, a_t))


def _log_prob(logits_t: jax.Array, a_t: jax.Array) -> jax.Array:
    """log pi(a_t|s_t), float[T]."""
    log_probs = jax.nn.log_softmax(logits_t)
    return jnp.take_along_axis(log_probs, a_t[:, None].astype(jnp.int32), axis=-1)[:, 0]


def leaky_vtrace_targets(
    v_tm1: jax.Array,
    v_bootstrap: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    rho_t: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
    *,
    alpha: float | jax.Array = 1.0,
    lambda_: float | jax.Array = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> VtraceTargets:
    """Leaky V-trace targets and advantages (``rlax.leaky_vtrace_td_error_and_advantage``).

    ``v_tm1``, ``v_bootstrap``, ``v_final_t`` and ``rho_t`` are stop-gradient-ed here, as inputs;
    the recursion runs with ``stop_target_gradients=False``, so the outputs carry gradients to
    ``r_t``, ``discount_t`` (a meta-learned gamma), ``alpha`` and ``lambda_`` only.

    Args:
      v_tm1: float[T], V(s_0..s_{T-1}).
      v_bootstrap: scalar V(s_T).
      r_t: float[T]; discount_t: float[T] (gamma * (1 - terminated_t)).
      rho_t: float[T], importance ratios (``importance_ratios``).
      truncated_t, v_final_t: optional time-limit bootstraps (bool[T], float[T]).
      alpha: leaky mixing in [0, 1]; 1 = IMPALA's V-trace.
      lambda_: trace parameter in [0, 1] (scalar or float[T]).
      clip_rho_threshold, clip_pg_rho_threshold: rho_bar for the TD errors and the advantages.

    Returns:
      ``VtraceTargets(targets, pg_advantages, rhos)``.

    Raises:
      ValueError: ``truncated_t`` without ``v_final_t``.
    """
    sg = jax.lax.stop_gradient
    v_tm1, v_bootstrap, rho_t = sg(v_tm1), sg(v_bootstrap), sg(rho_t)
    if truncated_t is not None:
        if v_final_t is None:
            raise ValueError(
                "leaky_vtrace_targets needs v_final_t (values of final_obs) with truncated_t."
            )
        r_t, discount_t = truncation_bootstrap(r_t, discount_t, truncated_t, sg(v_final_t))
    v_t = jnp.concatenate([v_tm1[1:], jnp.reshape(v_bootstrap, (1,))])
    dtype = v_tm1.dtype
    out = rlax.leaky_vtrace_td_error_and_advantage(
        v_tm1,
        v_t,
        r_t.astype(dtype),
        discount_t.astype(dtype),
        rho_t.astype(dtype),
        alpha=jnp.asarray(alpha, dtype),
        lambda_=jnp.asarray(lambda_, dtype),
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
        stop_target_gradients=False,
    )
    return VtraceTargets(out.errors + v_tm1, out.pg_advantage, rho_t)


def leaky_vtrace_loss(
    logits_t: jax.Array,
    v_tm1: jax.Array,
    v_bootstrap: jax.Array,
    a_t: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    behaviour_logits_t: jax.Array,
    truncated_t: jax.Array | None = None,
    v_final_t: jax.Array | None = None,
    *,
    alpha: float | jax.Array = 1.0,
    lambda_: float | jax.Array = 1.0,
    value_cost: float | jax.Array = 0.5,
    policy_cost: float | jax.Array = 1.0,
    entropy_cost: float | jax.Array = 0.01,
    clip_rho_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> tuple[jax.Array, Metrics]:
    """The (leaky) V-trace actor-critic loss of one rollout (see the module docstring).

      loss = value_cost * 1/2 mean_t (v_t - V(s_t))^2 - policy_cost * mean_t A_t log pi(a_t|s_t)
             - entropy_cost * mean_t H(pi(.|s_t)).

    Args:
      logits_t: float[T, A], the learner's policy logits at s_0..s_{T-1} (gradients flow).
      v_tm1: float[T], V(s_0..s_{T-1}) (gradients flow into the squared error only).
      v_bootstrap: scalar V(s_T) (stop-gradient-ed).
      a_t: int[T]; r_t: float[T]; discount_t: float[T].
      behaviour_logits_t: float[T, A], mu's logits (data; stop-gradient-ed).
      truncated_t, v_final_t: optional time-limit bootstraps.
      alpha, lambda_: leaky V-trace mixing and trace parameter (may be traced meta-parameters).
      value_cost, policy_cost, entropy_cost: the loss weights g_v, g_p, g_e (may be traced).
      clip_rho_threshold, clip_pg_rho_threshold: rho_bar.

    Returns:
      ``(loss, {"value_loss", "pg_loss", "entropy", "rho"})``: ``pg_loss`` = PG, ``entropy`` = H
      in nats, ``rho`` the mean importance ratio.
    """
    rho_t = importance_ratios(logits_t, jax.lax.stop_gradient(behaviour_logits_t), a_t)
    vtrace = leaky_vtrace_targets(
        v_tm1,
        v_bootstrap,
        r_t,
        discount_t,
        rho_t,
        truncated_t,
        v_final_t,
        alpha=alpha,
        lambda_=lambda_,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    value_loss = 0.5 * jnp.mean(jnp.square(vtrace.targets - v_tm1))
    # Not rlax.policy_gradient_loss: it stops the advantages, and with them the meta-gradient.
    pg_loss = -jnp.mean(vtrace.pg_advantages * _log_prob(logits_t, a_t))
    entropy = -rlax.entropy_loss(logits_t, jnp.ones(logits_t.shape[:-1], logits_t.dtype))
    loss = value_cost * value_loss + policy_cost * pg_loss - entropy_cost * entropy
    metrics = {
        "value_loss": value_loss,
        "pg_loss": pg_loss,
        "entropy": entropy,
        "rho": jnp.mean(vtrace.rhos),
    }
    return loss, metrics
