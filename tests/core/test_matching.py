"""Matching functions against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bmg.core import kl_and_value, parameter_distance, policy_kl, squared_euclidean

logit_batches = arrays(np.float32, (4, 5), elements=st.floats(-5, 5, allow_nan=False, width=32))


@settings(max_examples=25, deadline=None)
@given(logit_batches, logit_batches)
def test_policy_kl_zero_at_target_and_gradient_is_softmax_difference(target, logits):
    assert abs(float(policy_kl(logits, logits))) < 1e-6
    grad = jax.grad(lambda x: policy_kl(target, x))(logits)
    batch = logits.shape[0]
    expected = (jax.nn.softmax(logits) - jax.nn.softmax(target)) / batch
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    assert float(policy_kl(target, logits)) >= -1e-6


def test_policy_kl_values_and_direction():
    p = jnp.array([0.7, 0.2, 0.1])
    q = jnp.array([0.2, 0.5, 0.3])
    forward = float(jnp.sum(p * jnp.log(p / q)))
    backward = float(jnp.sum(q * jnp.log(q / p)))
    np.testing.assert_allclose(policy_kl(jnp.log(p), jnp.log(q)), forward, rtol=1e-6)
    np.testing.assert_allclose(policy_kl(jnp.log(p), jnp.log(q), reverse=True), backward, rtol=1e-6)
    # Logits are shift-invariant.
    np.testing.assert_allclose(policy_kl(jnp.log(p) + 3.0, jnp.log(q) - 1.0), forward, rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        policy_kl(jnp.zeros((2, 3)), jnp.zeros((2, 4)))


def test_kl_and_value_adds_weighted_value_error():
    target_logits, logits = jnp.log(jnp.array([[0.5, 0.5]])), jnp.log(jnp.array([[0.9, 0.1]]))
    value = kl_and_value(
        target_logits, logits, jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0]), value_weight=0.5
    )
    kl = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    np.testing.assert_allclose(value, kl + 0.5 * (1.0 + 4.0) / 2, rtol=1e-6)


def test_squared_euclidean_mask_and_distance():
    target = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    params = {"a": jnp.array([0.0, 0.0]), "b": jnp.array(1.0)}
    np.testing.assert_allclose(squared_euclidean(target, params), 0.5 * (1 + 4 + 4))
    masked = squared_euclidean(target, params, mask={"a": False, "b": True})
    np.testing.assert_allclose(masked, 0.5 * 4)
    np.testing.assert_allclose(parameter_distance(target, params), 3.0, rtol=1e-6)
    grad = jax.grad(lambda p: squared_euclidean(target, p))(params)
    np.testing.assert_allclose(grad["a"], params["a"] - target["a"])
