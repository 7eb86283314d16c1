"""The standard few-shot backbone: four conv blocks and a linear head (Vinyals et al.; MAML).

block(x) = max_pool_2x2(relu(batch_norm(conv_3x3(x))))  with 32 filters, x4, then flatten and a
linear head with one logit per way. 84x84 inputs give 5x5x32 = 800 features.

Batch norm always normalises with the statistics of the batch it is given (no running averages),
as in the MAML reference implementation: a task's support set and its query set are each
normalised by their own statistics ("transductive" batch norm). Its scale and offset are ordinary
parameters, adapted in the inner loop with everything else; the convolutions have no bias (batch
norm would subtract it again: its gradient is zero up to rounding, which Adam would amplify).
The convolutions are ``bmg.agents.torsos.Conv``: flax's layer computed as a matrix product over
patches, whose gradients XLA runs fast on CPU also inside loops (the MAML inner loop).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bmg.agents.torsos import Conv


class BatchStatNorm(nn.Module):
    """y = scale * (x - mean_B(x)) / sqrt(var_B(x) + eps) + offset, statistics over N, H, W."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        offset = self.param("offset", nn.initializers.zeros, (features,))
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        return scale * (x - mean) * jax.lax.rsqrt(var + self.epsilon) + offset


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, VALID (an odd last row / column is dropped).

    Same values and gradients as `nn.max_pool(x, (2, 2), (2, 2))`. The gradient goes through a
    one-hot mask of each window's argmax (held constant), so exactly one element per window gets
    it, however XLA recomputes the window. (`x.reshape(...).max(...)` differentiates by comparing
    the window with its maximum; once XLA recomputed the batch-normalised window inside a vmapped
    scan with different rounding, that comparison failed and the float64 gradient was off by up
    to 0.18, a test in tests/fewshot/test_learner.py.) At 84x84 on CPU it is about 15% faster per
    MAML meta-step than `nn.max_pool`, and needs half the memory (docs/fewshot.md).
    """
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    windows = jnp.stack([x[:, :, i, :, j] for i in range(2) for j in range(2)], axis=-1)
    winner = jnp.argmax(jax.lax.stop_gradient(windows), axis=-1)
    return jnp.sum(windows * jax.nn.one_hot(winner, 4, dtype=x.dtype), axis=-1)


class Conv4(nn.Module):
    """Images [N, S, S, C] (NHWC) -> logits [N, num_classes]."""

    num_classes: int
    filters: int = 32
    num_blocks: int = 4

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images
        for _ in range(self.num_blocks):
            x = Conv(self.filters, (3, 3), padding="SAME", use_bias=False)(x)
            x = BatchStatNorm()(x)
            x = nn.relu(x)
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(x)


def feature_size(image_size: int, *, filters: int = 32, num_blocks: int = 4) -> int:
    """Flattened features before the head: each block halves the side (floor)."""
    side = image_size
    for _ in range(num_blocks):
        side //= 2
    return side * side * filters
