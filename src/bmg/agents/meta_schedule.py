"""A meta-learned quantity in (0, 1): sigmoid of a learned logit, or of a network of the context.

Used for the actor-critic's entropy cost and for Q(lambda)'s epsilon (Flennerhag et al., ICLR
2022, section 5; Luketina et al., CoLLAs 2022, appendix A.3: a ReLU MLP with a sigmoid output,
pre-trained on uniform random contexts in [-1, 1] to output 0.5, the middle of its range):

  value = sigmoid(MLP_w(context) + logit(initial))     (context: ``bmg.agents.stream.context``)
  value = sigmoid(w),  w initialised at logit(initial)  (no context)

Initialisation: exact, not pre-trained. The network's output layer (kernel and bias) starts at
zero, so MLP_w(c) = 0 and the value is exactly ``initial`` (0.5 in the related preset) on every
context, not only on the [-1, 1] contexts a pre-training would see, with no pre-training data,
steps or seed to choose. The hidden layers keep their random initialisation, so the first
meta-gradient reaches the output layer (d value / d W_out = sigmoid' * h != 0) and the next ones
every layer. The context is data: no gradient flows into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bmg.agents.networks import MLP
from bmg.core.types import PyTree


class MetaSchedule(NamedTuple):
    """`init(key) -> meta_params` and `value(meta_params, context) -> scalar in (0, 1)`
    (context: float32[context_length])."""

    init: Callable[[jax.Array], PyTree]
    value: Callable[[PyTree, jax.Array], jax.Array]


def make_meta_schedule(
    initial: float,
    *,
    use_context: bool,
    context_length: int,
    hidden_size: int,
    hidden_layers: int = 1,
) -> MetaSchedule:
    """sigmoid(MLP_w(context) + logit(initial)) with `use_context`, else sigmoid(w); the MLP has
    ``hidden_layers`` ReLU layers of ``hidden_size`` units and a zero-initialised output layer.

    ``initial`` in [0, 1): 0 gives a logit of -inf and a value of exactly 0 (a fixed baseline's
    entropy cost; it cannot be meta-learned).
    """
    initial_logit = jnp.log(initial) - jnp.log1p(-initial)
    net = MLP((hidden_size,) * hidden_layers, 1, zero_output=True)

    def init(key: jax.Array) -> PyTree:
        if not use_context:
            return {"logit": jnp.asarray(initial_logit, jnp.float32)}
        return {"net": net.init(key, jnp.zeros((context_length,)))}

    def value(meta_params: PyTree, context: jax.Array) -> jax.Array:
        if not use_context:
            return jax.nn.sigmoid(meta_params["logit"])
        context = jax.lax.stop_gradient(context)
        return jax.nn.sigmoid(net.apply(meta_params["net"], context)[0] + initial_logit)

    return MetaSchedule(init=init, value=value)
