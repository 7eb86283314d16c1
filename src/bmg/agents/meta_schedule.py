"""A meta-learned quantity in (0, 1): sigmoid of a learned logit, or of a network of the context.

Used for the actor-critic's entropy cost and for Q(lambda)'s epsilon (Flennerhag et al., ICLR
2022, section 5; Luketina et al., CoLLAs 2022, appendix A.3: a ReLU MLP with a sigmoid output,
pre-trained on uniform random contexts in [-1, 1] to output 0.5, the middle of its range):

  value = sigmoid(MLP_w(context) + logit(initial))     (context: ``bmg.agents.stream.context``)
  value = sigmoid(w),  w initialised at logit(initial)  (no context)

Initialisation (``init``, a config field of every online agent: ``OnlineConfig.meta_init``):
- "zero_output" [default]: exact, not pre-trained. The network's output layer (kernel and bias)
  starts at zero, so MLP_w(c) = 0 and the value is exactly ``initial`` (0.5 in the related preset)
  on every context, not only on the [-1, 1] contexts a pre-training would see, with no
  pre-training data, steps or seed to choose. The hidden layers keep their random
  initialisation, so the first meta-gradient reaches the output layer (d value / d W_out =
  sigmoid' * h != 0) and the next ones every layer.
- "random": every layer random (PyTorch's default weights, ``bias_init`` biases), so the value
  starts near, not at, ``initial`` and differs between contexts (the public PyTorch port of BMG,
  MagiFeeney/Bootstrapped-Meta-Learning, ``BMG/Meta.py``: sigmoid(MLP(c)), i.e. initial 0.5).
- "pretrained": "random", then ``PRETRAIN_STEPS`` Adam steps (learning rate ``PRETRAIN_LR``) on
  the squared error between the value and ``initial`` over batches of ``PRETRAIN_BATCH`` contexts
  drawn uniformly from [-1, 1]^H (Luketina et al., CoLLAs 2022, appendix A.3: "pre-trained on
  uniform random contexts to output 0.5"; the number of steps, batch and rate are not published:
  [default] choices here).
The context is data: no gradient flows into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bmg.agents.networks import MLP
from bmg.core.types import PyTree

META_INITS = ("zero_output", "random", "pretrained")
PRETRAIN_STEPS = 500
"""Adam steps of the "pretrained" initialisation [default]."""
PRETRAIN_BATCH = 64
"""Uniform [-1, 1] contexts per pre-training step [default]."""
PRETRAIN_LR = 1e-3
"""Adam learning rate of the pre-training [default]."""


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
    init: str = "zero_output",
    bias_init: str = "zeros",
) -> MetaSchedule:
    """sigmoid(MLP_w(context) + logit(initial)) with `use_context`, else sigmoid(w); the MLP has
    ``hidden_layers`` ReLU layers of ``hidden_size`` units, initialised as ``init`` says (module
    docstring) with ``bias_init`` biases (``bmg.agents.networks.MLP``).

    ``initial`` in [0, 1): 0 gives a logit of -inf and a value of exactly 0 (a fixed baseline's
    entropy cost; it cannot be meta-learned).

    Raises:
      ValueError: ``init`` not among ``META_INITS``.
    """
    if init not in META_INITS:
        raise ValueError(f"meta_init must be one of {', '.join(META_INITS)}, got {init!r}.")
    initial_logit = jnp.log(initial) - jnp.log1p(-initial)
    net = MLP(
        (hidden_size,) * hidden_layers, 1, zero_output=init == "zero_output", bias_init=bias_init
    )

    def value(meta_params: PyTree, context: jax.Array) -> jax.Array:
        if not use_context:
            return jax.nn.sigmoid(meta_params["logit"])
        context = jax.lax.stop_gradient(context)
        return jax.nn.sigmoid(net.apply(meta_params["net"], context)[0] + initial_logit)

    def pretrain(params: PyTree, key: jax.Array) -> PyTree:
        """PRETRAIN_STEPS Adam steps on mean (value(c) - initial)^2, c ~ U[-1, 1]^H."""
        import optax

        optimizer = optax.adam(PRETRAIN_LR)

        def loss(params, contexts):
            values = jax.vmap(lambda c: value({"net": params}, c))(contexts)
            return jnp.mean(jnp.square(values - initial))

        def step(carry, key):
            params, opt_state = carry
            contexts = jax.random.uniform(key, (PRETRAIN_BATCH, context_length), minval=-1.0)
            updates, opt_state = optimizer.update(jax.grad(loss)(params, contexts), opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        keys = jax.random.split(key, PRETRAIN_STEPS)
        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), keys)
        return params

    def init_fn(key: jax.Array) -> PyTree:
        if not use_context:
            return {"logit": jnp.asarray(initial_logit, jnp.float32)}
        init_key, pretrain_key = jax.random.split(key)
        params = net.init(key if init != "pretrained" else init_key, jnp.zeros((context_length,)))
        if init == "pretrained":
            params = pretrain(params, pretrain_key)
        return {"net": params}

    return MetaSchedule(init=init_fn, value=value)
