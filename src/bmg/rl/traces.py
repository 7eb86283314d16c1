"""Incremental (backward-view) Q(lambda) with function approximation: one update per environment
step, an eligibility trace over the Q-function's parameters carried from update to update.

Two traces, for a Q-function q_theta(s, a) with parameters theta, transition t = (s_t, a_t, r_t,
discount_t, s_{t+1}) and V_theta(s) = max_a q_theta(s, a):

**Peng's Q(lambda)** (Peng & Williams, "Incremental Multi-Step Q-Learning", ICML 1994 / Machine
Learning 22, 1996, the algorithm of their Figure 2 / section 3). Tabular, with a trace Tr(s, a):

    e'_t = r_t + gamma V_t(s_{t+1}) - V_t(s_t)
    e_t  = r_t + gamma V_t(s_{t+1}) - Q_t(s_t, a_t)
    for every (s, a):  Tr(s, a) <- gamma lambda Tr(s, a);  Q(s, a) <- Q(s, a) + alpha Tr(s, a) e'_t
    Q(s_t, a_t) <- Q(s_t, a_t) + alpha e_t
    Tr(s_t, a_t) <- Tr(s_t, a_t) + 1

The past pairs move by the TD error of V (e'), the current pair by the one-step Q-learning error
(e); no trace is cut, whatever the behaviour did. With function approximation the table becomes
theta and the indicator of (s, a) becomes grad q_theta(s, a) (Sutton & Barto, 2nd ed., 2018,
section 12.2's accumulating trace), which is the tabular algorithm exactly for one-hot features:

    zbar_t      = lambda discount_{t-1} (zbar_{t-1} + grad q_{t-1}(s_{t-1}, a_{t-1}))   (zbar_0 = 0)
    theta_{t+1} = theta_t + alpha (e'_t zbar_t + e_t grad q_t(s_t, a_t))

zbar_t is the trace of the pairs before t, already decayed (what the learner carries between
updates); discount_{t-1} = gamma (1 - terminated) is 0 across an episode's end, so the trace
starts afresh in every episode.

**Watkins' Q(lambda)** (Watkins, 1989; Sutton & Barto, 2nd ed., section 12.10): the trace is cut
where the behaviour left the greedy policy,

    z_t         = [a_t = argmax_a q_t(s_t, a)] zbar_t + grad q_t(s_t, a_t)
    theta_{t+1} = theta_t + alpha delta_t z_t
    delta_t     = r_t + discount_t V_t(s_{t+1}) - q_t(s_t, a_t)
    zbar_{t+1}  = lambda discount_t z_t

(the greedy test uses the parameters that chose a_t; a random action that happens to be the
greedy one does not cut).

With lambda = 0 both are one-step Q-learning. ``q_lambda_increment`` returns the *descent
direction* -(theta_{t+1} - theta_t) / alpha, so any optax optimiser applies it in place of a
gradient (plain SGD with learning rate alpha is the equations above).

Time limits: where step t is truncated (not terminated), fold ``r_t + discount_t V(final_obs_t)``
into the reward and 0 into the discount beforehand (``bmg.rl.truncation_bootstrap``): the target
bootstraps from the state reached and the trace stops at the episode's end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

TRACES = ("peng", "watkins")

PyTree = Any


def q_lambda_increment(
    q_fn: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    trace: PyTree,
    obs_t: jax.Array,
    a_t: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    obs_tp1: jax.Array,
    *,
    lambda_: float | jax.Array,
    kind: Literal["peng", "watkins"] = "peng",
    greedy_t: jax.Array | None = None,
) -> tuple[PyTree, PyTree, dict[str, jax.Array]]:
    """One incremental Q(lambda) update of one transition (module docstring's equations).

    Args:
      q_fn: (params, obs float[N, ...]) -> float[N, A], the Q-function (pure).
      params: theta_t.
      trace: zbar_t, a pytree like ``params`` (zeros at the start of a lifetime).
      obs_t, obs_tp1: one observation each (no batch axis), s_t and s_{t+1}.
      a_t: int scalar; r_t, discount_t: float scalars (discount_t = gamma (1 - terminated_t)).
      lambda_: the trace parameter in [0, 1].
      kind: "peng" (Peng & Williams, 1994) or "watkins" (cut at non-greedy actions).
      greedy_t: watkins: bool scalar, whether a_t was greedy for the parameters that chose it;
        None: judged with ``params``.

    Returns:
      ``(direction, zbar_{t+1}, metrics)``: ``direction`` a pytree like ``params`` to *descend*
      (an optimiser's gradient input); metrics ``td_error`` (e_t, or delta_t: the one-step
      Q-learning error, the same in both) and ``trace_correction`` (e'_t for peng, 0 for
      watkins).

    Raises:
      ValueError: an unknown ``kind``.
    """
    if kind not in TRACES:
        raise ValueError(f"kind must be one of {', '.join(TRACES)}, got {kind!r}.")
    both = jnp.stack([obs_t, obs_tp1])
    q_both, vjp = jax.vjp(lambda p: q_fn(p, both), params)
    q_both = jax.lax.stop_gradient(q_both)
    num_actions = q_both.shape[-1]
    # one forward pass for s_t and s_{t+1}; the cotangent selects q(s_t, a_t) alone.
    cotangent = jnp.zeros_like(q_both).at[0].set(jax.nn.one_hot(a_t, num_actions))
    (grad_q,) = vjp(cotangent)
    q_t, q_tp1 = q_both[0], q_both[1]
    target = r_t + discount_t * jnp.max(q_tp1)
    td_error = target - q_t[a_t]
    if kind == "peng":
        correction = target - jnp.max(q_t)
        direction = jax.tree.map(lambda z, g: -(correction * z + td_error * g), trace, grad_q)
        carried = jax.tree.map(jnp.add, trace, grad_q)
    else:
        correction = jnp.zeros_like(td_error)
        if greedy_t is None:
            greedy_t = a_t == jnp.argmax(q_t)
        keep = greedy_t.astype(q_t.dtype)
        carried = jax.tree.map(lambda z, g: keep * z + g, trace, grad_q)
        direction = jax.tree.map(lambda z: -td_error * z, carried)
    decay = lambda_ * discount_t
    next_trace = jax.tree.map(lambda z: decay * z, carried)
    return direction, next_trace, {"td_error": td_error, "trace_correction": correction}
