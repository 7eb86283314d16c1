"""Shared test fixtures: float64 on demand and a pytree comparison built on chex.

Use them as fixtures (no import of this module needed):

  pytestmark = pytest.mark.usefixtures("x64")          # a whole module in float64

  def test_something(tree_allclose):
      tree_allclose(actual, expected, rtol=1e-10, atol=1e-14)
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Run the test with `jax_enable_x64` on: arrays created inside it are float64 by default.

    Tight comparisons (identities to rtol 1e-10, closed forms) need float64: float32 round-off
    through an unrolled meta-gradient is around 1e-6 relative.
    """
    with jax.enable_x64(True):
        yield


def _comparable(leaf):
    """PRNG key arrays compare by their raw key data; everything else as a numpy array."""
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def assert_tree_allclose(actual, expected, *, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Assert two pytrees have the same structure and element-wise close leaves.

    `chex.assert_trees_all_close` on the trees with PRNG keys replaced by their key data;
    `rtol=0, atol=0` asks for bit-identical leaves.
    """
    actual, expected = jax.tree.map(_comparable, (actual, expected))
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture
def tree_allclose():
    """`assert_tree_allclose(actual, expected, *, rtol=1e-6, atol=0.0)` as a fixture."""
    return assert_tree_allclose
