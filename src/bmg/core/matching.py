"""Matching functions mu(x~, x): how far the learner is from its (constant) target.

The primitives work on arrays and pytrees; `parameter_matching` turns the parameter-space one into
a `MatchingFn` over learner states. Output-space matching (policy KL over the states of a rollout)
needs the learner's network, so agents build their `MatchingFn` from `policy_kl` / `kl_and_value`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bmg.core.types import LearnerState, MatchingFn, PyTree


def check_same_structure(
    target: PyTree, tree: PyTree, *, what: str = "target and learner", shapes: bool = True
) -> None:
    """Raise `ValueError` unless the two pytrees have the same structure (and leaf shapes)."""
    target_def, tree_def = jax.tree.structure(target), jax.tree.structure(tree)
    if target_def != tree_def:
        raise ValueError(
            f"{what} trees must have the same structure; got {target_def} and {tree_def}."
        )
    if not shapes:
        return
    for t, x in zip(jax.tree.leaves(target), jax.tree.leaves(tree), strict=True):
        if jnp.shape(t) != jnp.shape(x):
            raise ValueError(
                f"{what} leaves must have the same shapes; got {jnp.shape(t)} and {jnp.shape(x)}."
            )


def squared_euclidean(target: PyTree, params: PyTree, *, mask: PyTree | None = None) -> jax.Array:
    """mu(x~, x) = 1/2 ||x~ - x||^2, summed over all (or the masked-in) leaves.

    Its gradient in x is x - x~, so with x~ = x - alpha grad f(x) it is alpha grad f(x): the
    identity that makes BMG (L = 1) equal alpha x MG.

    Args:
      target: x~ (treated as given; callers pass a stop-gradient-ed target).
      params: x.
      mask: optional pytree of bools with the structure of `params`; False leaves are ignored.
    """
    check_same_structure(target, params)
    if mask is None:
        mask = jax.tree.map(lambda _: True, params)
    check_same_structure(mask, params, what="mask and params", shapes=False)
    terms = jax.tree.map(
        lambda t, x, keep: 0.5 * jnp.sum(jnp.square(t - x)) if keep else jnp.zeros(()),
        target,
        params,
        mask,
    )
    return sum(jax.tree.leaves(terms), jnp.zeros(()))


def parameter_distance(target: PyTree, params: PyTree) -> jax.Array:
    """||x~ - x||_2 over all leaves (a diagnostic: `target/distance`)."""
    return jnp.sqrt(2.0 * squared_euclidean(target, params))


def policy_kl(target_logits: jax.Array, logits: jax.Array, *, reverse: bool = False) -> jax.Array:
    """Mean over a batch of KL(pi_target || pi) for categorical policies given as logits.

    KL(p || q) = sum_a p(a) (log p(a) - log q(a)). The default direction puts the target first, as
    in the paper; `reverse=True` gives KL(pi || pi_target). The last axis holds the actions; all
    leading axes are averaged. For the default direction, d KL / d logits = softmax(logits) -
    softmax(target_logits) per sample.
    """
    if jnp.shape(target_logits) != jnp.shape(logits):
        raise ValueError(
            "target_logits and logits must have the same shape; got "
            f"{jnp.shape(target_logits)} and {jnp.shape(logits)}."
        )
    log_p = jax.nn.log_softmax(target_logits)
    log_q = jax.nn.log_softmax(logits)
    if reverse:
        log_p, log_q = log_q, log_p
    return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))


def kl_and_value(
    target_logits: jax.Array,
    logits: jax.Array,
    target_values: jax.Array,
    values: jax.Array,
    *,
    value_weight: float = 1.0,
    reverse: bool = False,
) -> jax.Array:
    """ "KL & V" matching: policy_kl + value_weight * mean (v_target - v)^2."""
    if jnp.shape(target_values) != jnp.shape(values):
        raise ValueError(
            "target_values and values must have the same shape; got "
            f"{jnp.shape(target_values)} and {jnp.shape(values)}."
        )
    value_error = jnp.mean(jnp.square(target_values - values))
    return policy_kl(target_logits, logits, reverse=reverse) + value_weight * value_error


def parameter_matching(mask: PyTree | None = None) -> MatchingFn:
    """`MatchingFn` for 1/2 ||x~ - x_K(w)||^2 in parameter space (optionally on a leaf subset)."""

    def matching_fn(target: LearnerState, state: LearnerState, meta_params: PyTree) -> jax.Array:
        del meta_params
        return squared_euclidean(target.params, state.params, mask=mask)

    return matching_fn
