"""Convolutional torsos for image observations (flax linen): MinAtar's and IMPALA's ResNet.

Both take observations ``[..., H, W, C]`` (any number of leading batch axes, channels last, any
dtype; cast to the parameters' float type) and return features ``[..., features]``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _flatten_batch(x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
    """``[..., H, W, C] -> [N, H, W, C]`` and the leading shape to restore."""
    batch = x.shape[:-3]
    return jnp.reshape(x, (math.prod(batch), *x.shape[-3:])), batch


class MinAtarTorso(nn.Module):
    """The MinAtar network's torso (Young & Tian, "MinAtar: An Atari-Inspired Testbed for
    Thorough and Reproducible Reinforcement Learning Experiments", 2019): one 3 x 3
    convolution (stride 1, no padding) with ``channels`` filters, ReLU, then a ReLU layer of
    ``hidden_size`` units. Defaults: 16 filters, 128 units [MinAtar paper]."""

    channels: int = 16
    hidden_size: int = 128

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x, batch = _flatten_batch(obs)
        x = x.astype(jnp.result_type(float))
        x = nn.relu(nn.Conv(self.channels, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = jnp.reshape(x, (x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        return jnp.reshape(x, (*batch, self.hidden_size))


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3 x 3 convolutions keeping the channel count."""

    channels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Conv(self.channels, (3, 3), padding="SAME")(nn.relu(x))
        y = nn.Conv(self.channels, (3, 3), padding="SAME")(nn.relu(y))
        return x + y


class ImpalaTorso(nn.Module):
    """IMPALA's deep ResNet torso (Espeholt et al., "IMPALA", ICML 2018, Figure 3, right): per
    section a 3 x 3 convolution, a 3 x 3 max-pool of stride 2 and ``blocks`` residual blocks;
    sections of 16, 32 and 32 channels; then ReLU and a ReLU layer of 256 units [IMPALA paper].
    (IMPALA's LSTM is not included: the agent here is feed-forward.)"""

    channels: tuple[int, ...] = (16, 32, 32)
    blocks: int = 2
    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x, batch = _flatten_batch(obs)
        x = x.astype(jnp.result_type(float))
        for channels in self.channels:
            x = nn.Conv(channels, (3, 3), padding="SAME")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            for _ in range(self.blocks):
                x = ResidualBlock(channels)(x)
        x = jnp.reshape(nn.relu(x), (x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        return jnp.reshape(x, (*batch, self.hidden_size))
