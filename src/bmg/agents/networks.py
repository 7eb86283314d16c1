"""Networks shared by the learners."""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax

BIAS_INITS = ("zeros", "uniform")


class MLP(nn.Module):
    """ReLU MLP with a linear output layer.

    Weights: PyTorch's default ``nn.Linear`` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Biases: ``bias_init`` "zeros" (this implementation's default, the value every documented run
    before the ``port`` preset used) or "uniform", PyTorch's default U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) (e.g. the public PyTorch port of BMG on Two-colors). ``zero_output`` starts the
    output layer (kernel and bias) at zero, so the network outputs exactly 0 on every input (the
    meta-network's exact initialisation, ``bmg.agents.meta_schedule``).
    """

    hidden_sizes: tuple[int, ...]
    output_size: int
    zero_output: bool = False
    bias_init: Literal["zeros", "uniform"] = "zeros"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.bias_init not in BIAS_INITS:
            raise ValueError(f"bias_init must be 'zeros' or 'uniform', got {self.bias_init!r}.")
        init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size, kernel_init=init, bias_init=self._bias(x.shape[-1]))(x))
        if self.zero_output:
            return nn.Dense(
                self.output_size, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros
            )(x)
        return nn.Dense(self.output_size, kernel_init=init, bias_init=self._bias(x.shape[-1]))(x)

    def _bias(self, fan_in: int):
        """The bias initialiser of a layer with ``fan_in`` inputs."""
        if self.bias_init == "zeros":
            return nn.initializers.zeros
        bound = 1.0 / fan_in**0.5
        return lambda key, shape, dtype=jax.numpy.float32: jax.random.uniform(
            key, shape, dtype, -bound, bound
        )
