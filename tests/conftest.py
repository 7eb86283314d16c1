"""Shared test fixtures: float64 on demand and a pytree comparison built on chex.

Use them as fixtures (no import of this module needed):

  pytestmark = pytest.mark.usefixtures("x64")          # a whole module in float64

  def test_something(tree_allclose):
      tree_allclose(actual, expected, rtol=1e-10, atol=1e-14)
"""

from __future__ import annotations

import os
from pathlib import Path

# Tests compile hundreds of small programs, so compiling is most of their time on a small CPU:
#  * XLA's backend optimisations and LLVM's expensive passes cost more compile time than they save
#    in run time here (measured: about 30% less CPU time for the agents' and core's tests); both
#    sides of every comparison are compiled alike;
#  * one persistent compilation cache for the session, shared by the xdist workers and by the
#    subprocesses of the end-to-end tests (which inherit this environment): identical programs
#    built by different tests compile once (about a third of the costly compiles of tests/core
#    and tests/fewshot hit the cache on a cold run), and a re-run of the suite starts warm. It is
#    bounded (least recently used entries go first; needs `filelock`, a dev dependency) and
#    lives in .pytest_cache (`make clean`).
# A value set by the caller wins.
ROOT = Path(__file__).resolve().parents[1]
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    ).strip()
# One CPU device in every test process, whatever ran first: the CLI's `use_all_cpu_cores` would
# otherwise give the process two devices when a CLI test happens to start JAX's backend, and
# tests comparing programs bit for bit (a sweep's lane against its single run) would depend on
# the order pytest-xdist hands out files. Tests of several devices start their own processes.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=1"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_cache" / "xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 2**30))

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
