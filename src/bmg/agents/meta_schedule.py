"""A meta-learned quantity in (0, 1): sigmoid of a learned logit, or of a network of the context.

Used for the actor-critic's entropy cost and for Q(lambda)'s epsilon (Flennerhag et al., ICLR
2022, section 5; Luketina et al., CoLLAs 2022, appendix A.3: a sigmoid output, pre-trained to
the middle of its range, here by a zero-initialised output layer):

  value = sigmoid(MLP_w(context) + logit(initial))     (context = mean reward of recent rollouts)
  value = sigmoid(w),  w initialised at logit(initial)  (no context)

The network's output layer starts at zero, so the value starts at `initial` for any context. The
context is data: no gradient flows into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bmg.agents.networks import MLP
from bmg.core.types import PyTree


class MetaSchedule(NamedTuple):
    """`init(key) -> meta_params` and `value(meta_params, reward_history) -> scalar in (0, 1)`."""

    init: Callable[[jax.Array], PyTree]
    value: Callable[[PyTree, jax.Array], jax.Array]


def make_meta_schedule(
    initial: float, *, use_context: bool, context_length: int, hidden_size: int
) -> MetaSchedule:
    """sigmoid(MLP_w(context) + logit(initial)) with `use_context`, else sigmoid(w)."""
    initial_logit = jnp.log(initial) - jnp.log1p(-initial)
    net = MLP((hidden_size,), 1, zero_output=True)

    def init(key: jax.Array) -> PyTree:
        if not use_context:
            return {"logit": jnp.asarray(initial_logit, jnp.float32)}
        return {"net": net.init(key, jnp.zeros((context_length,)))}

    def value(meta_params: PyTree, reward_history: jax.Array) -> jax.Array:
        if not use_context:
            return jax.nn.sigmoid(meta_params["logit"])
        context = jax.lax.stop_gradient(reward_history)
        return jax.nn.sigmoid(net.apply(meta_params["net"], context)[0] + initial_logit)

    return MetaSchedule(init=init, value=value)
