"""Convolutional torsos for image observations (flax linen): MinAtar's and IMPALA's ResNet.

Both take observations ``[..., H, W, C]`` (any number of leading batch axes, channels last, any
dtype; cast to the parameters' float type) and return features ``[..., features]``.

Convolutions are ``Conv``: the same layer as ``flax.linen.Conv`` (same parameters, names,
shapes, initialisers and padding rules) computed as one matrix product over the kh x kw
shifted copies of the input ("patches"), so its forward and both backward passes are dot
products. On CPU, XLA runs the kernel gradient of its own convolution about 10-15x slower
inside a loop (``lax.scan``, every meta-step of the compiled runner) than outside one
(jax-ml/jax issue #12868): a MinAtar-sized STACX update measured 1.8 s alone, 16 s inside a
one-step scan, 0.55 s / 0.60 s with ``Conv`` (``benchmarks/conv_speed.py``, docs/minatar.md).
``conv="xla"``
on the torsos keeps flax's layer (for accelerators, where the vendor convolution is faster and
patches cost kh x kw times the activation memory).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis under XLA's / TensorFlow's "SAME" rule:
    ``ceil(size / stride)`` outputs, the odd pixel of padding after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def patches(x: jax.Array, kernel: tuple[int, int], stride: tuple[int, int], padding: str):
    """``[N, H, W, C] -> [N, H', W', kh * kw * C]``: each output pixel's receptive field,
    flattened in (row, column, channel) order (the order of a ``[kh, kw, C, F]`` kernel
    reshaped to ``[kh * kw * C, F]``). ``padding``: "SAME" (zeros, ``same_padding``) or
    "VALID"."""
    (kh, kw), (sh, sw) = kernel, stride
    if padding == "SAME":
        x = jnp.pad(
            x, ((0, 0), same_padding(x.shape[1], kh, sh), same_padding(x.shape[2], kw, sw), (0, 0))
        )
    elif padding != "VALID":
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}.")
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    rows = [
        x[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(rows, axis=-1)


class Conv(nn.Module):
    """``flax.linen.Conv`` (2-D, channels last, dilation 1, one feature group) as a matrix
    product of ``patches`` with the kernel: the same parameters (``kernel [kh, kw, C, F]``,
    ``bias [F]``), initialisers (LeCun normal, zeros) and default names (``Conv_0``, ...), so
    a model initialises to the same values with either layer; outputs agree to float rounding
    (tested). Input ``[..., H, W, C]``, output ``[..., H', W', F]``."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features)
        )
        flat, batch = _flatten_batch(x)
        y = patches(flat, self.kernel_size, self.strides, self.padding) @ jnp.reshape(
            kernel, (-1, self.features)
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return jnp.reshape(y, (*batch, *y.shape[1:]))


def make_conv(kind: str):
    """The convolution layer of a torso's ``conv`` field: "patches" (``Conv``) or "xla"
    (``flax.linen.Conv``)."""
    if kind == "patches":
        return Conv
    if kind == "xla":
        return nn.Conv
    raise ValueError(f"conv must be 'patches' or 'xla', got {kind!r}.")


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
    conv: str = "patches"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x, batch = _flatten_batch(obs)
        x = x.astype(jnp.result_type(float))
        conv = make_conv(self.conv)
        x = nn.relu(conv(self.channels, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = jnp.reshape(x, (x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        return jnp.reshape(x, (*batch, self.hidden_size))


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3 x 3 convolutions keeping the channel count."""

    channels: int
    conv: str = "patches"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = make_conv(self.conv)
        y = conv(self.channels, (3, 3), padding="SAME")(nn.relu(x))
        y = conv(self.channels, (3, 3), padding="SAME")(nn.relu(y))
        return x + y


class ImpalaTorso(nn.Module):
    """IMPALA's deep ResNet torso (Espeholt et al., "IMPALA", ICML 2018, Figure 3, right): per
    section a 3 x 3 convolution, a 3 x 3 max-pool of stride 2 and ``blocks`` residual blocks;
    sections of 16, 32 and 32 channels; then ReLU and a ReLU layer of 256 units [IMPALA paper].
    (IMPALA's LSTM is not included: the agent here is feed-forward.)"""

    channels: tuple[int, ...] = (16, 32, 32)
    blocks: int = 2
    hidden_size: int = 256
    conv: str = "patches"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x, batch = _flatten_batch(obs)
        x = x.astype(jnp.result_type(float))
        conv = make_conv(self.conv)
        for channels in self.channels:
            x = conv(channels, (3, 3), padding="SAME")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            for _ in range(self.blocks):
                x = ResidualBlock(channels, self.conv)(x)
        x = jnp.reshape(nn.relu(x), (x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden_size)(x))
        return jnp.reshape(x, (*batch, self.hidden_size))
