"""Norms and clips with a finite gradient at zero, for update rules that are differentiated.

MG and BMG differentiate through the learner's update, clip included. `sqrt` has an infinite
derivative at 0 and `g / ||g||` is 0/0 there, so `optax.clip_by_global_norm` gives NaN
meta-gradients whenever a learner gradient is exactly zero (all-zero parameters, a zero-reward
rollout). These versions use the "double where" form: the norm of an all-zero tree is 0 with
gradient 0, and the clip is the identity (gradient 1) below the threshold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from bmg.core.types import PyTree


def safe_norm(tree: PyTree) -> jax.Array:
    """Global L2 norm of a pytree, `sqrt(sum x^2)`, whose gradient at the zero tree is 0 (not NaN).

    Returns a float scalar; its gradient is x / ||x|| away from zero.
    """
    squares = sum(
        (jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)), jnp.zeros((), jnp.float32)
    )
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` with a finite derivative everywhere (see `safe_norm`).

    u = g if ||g|| <= max_norm else g * max_norm / ||g||. Same values as optax's; differentiating
    the result with respect to anything g depends on never gives NaN.

    Raises:
      ValueError: `max_norm` is not a finite number > 0.
    """
    if not (isinstance(max_norm, int | float) and 0 < max_norm < float("inf")):
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}.")

    def update_fn(updates, state, params=None):
        del params
        norm = safe_norm(updates)
        clip = norm > max_norm
        divisor = jnp.where(clip, norm, 1.0)
        # (g / norm) * max_norm, optax's order of operations: the same floats as optax's clip.
        updates = jax.tree.map(
            lambda g: jnp.where(clip, (g / divisor.astype(g.dtype)) * max_norm, g), updates
        )
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
