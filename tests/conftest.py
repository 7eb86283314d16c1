"""Shared test fixtures: float64 on demand and a pytree comparison built on chex.

Use them as fixtures (no import of this module needed):

  pytestmark = pytest.mark.usefixtures("x64")          # a whole module in float64

  def test_something(tree_allclose):
      tree_allclose(actual, expected, rtol=1e-10, atol=1e-14)
"""

from __future__ import annotations

import os

# Tests compile hundreds of small programs: XLA's backend optimisations cost more compile time
# than they save in run time here (about 30% off a tiny CLI run), and both sides of every
# comparison are compiled alike. A flag set by the caller wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import chex  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


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


@pytest.fixture
def two_finite_meta_steps():
    """`run(learner, meta_config) -> probes`: two jitted meta-steps from fixed keys, asserting
    that every metric, probe, meta-parameter and parameter stays finite (the agents' smoke test
    on a real game)."""
    from bmg.core import make_meta_learner

    def run(learner, meta_config):
        meta_learner = make_meta_learner(learner, meta_config)
        state = learner.init_state(jax.random.key(0))
        meta_state = meta_learner.init(learner.init_meta_params(jax.random.key(1)))
        step = jax.jit(meta_learner.step)
        for i in range(2):
            meta_state, state, metrics = step(meta_state, state, jax.random.key(10 + i))
        probes = learner.probes(meta_state.meta_params, state)
        leaves = jax.tree.leaves((metrics, probes, meta_state.meta_params, state.params))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves), meta_config.algo
        return probes

    return run
