"""Networks shared by the learners."""

from __future__ import annotations

import flax.linen as nn
import jax


class MLP(nn.Module):
    """ReLU MLP with a linear output layer; ``zero_output`` starts that layer (kernel and bias) at
    zero, so the network outputs exactly 0 on every input (the meta-network's exact
    initialisation, ``bmg.agents.meta_schedule``)."""

    hidden_sizes: tuple[int, ...]
    output_size: int
    zero_output: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # PyTorch's default Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) [default].
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size, kernel_init=init)(x))
        output_init = nn.initializers.zeros if self.zero_output else init
        return nn.Dense(self.output_size, kernel_init=output_init)(x)
