"""bmg.core: bootstrapped meta-gradients (BMG) and meta-gradients (MG) for any JAX learner.

The algorithm only: it knows nothing of environments, networks or datasets. A learner supplies
`update_fn` (phi, one differentiable update), a `meta_objective` (f) and, for BMG, a matching
function (mu), together a `Learner`; `make_meta_learner(learner, MetaConfig(...))` (or
`make_fixed` / `make_metagradient` / `make_bmg` directly) returns a `MetaLearner(init, step, ...)`.

Reference: Flennerhag, Schroecker, Zahavy, van Hasselt, Silver, Singh, "Bootstrapped
Meta-Learning", ICLR 2022, arXiv:2109.04504 (section 3).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> the module that defines it; imported on first use (PEP 562) so that importing a light
# submodule such as `bmg.core.config` (MetaConfig, for the command line) does not load JAX.
_EXPORTS = {
    "gradient_step": "bmg.core.bootstrap",
    "make_target_bootstrap": "bmg.core.bootstrap",
    "kl_and_value": "bmg.core.matching",
    "parameter_distance": "bmg.core.matching",
    "parameter_matching": "bmg.core.matching",
    "policy_kl": "bmg.core.matching",
    "squared_euclidean": "bmg.core.matching",
    "MetaConfig": "bmg.core.config",
    "compose": "bmg.core.meta",
    "make_bmg": "bmg.core.meta",
    "make_fixed": "bmg.core.meta",
    "make_meta_learner": "bmg.core.meta",
    "make_metagradient": "bmg.core.meta",
    "over_batch": "bmg.core.meta",
    "over_batch_shards": "bmg.core.meta",
    "over_devices": "bmg.core.meta",
    "clip_by_global_norm": "bmg.core.safe",
    "safe_norm": "bmg.core.safe",
    "Bootstrapped": "bmg.core.types",
    "Learner": "bmg.core.types",
    "LearnerState": "bmg.core.types",
    "MatchingFn": "bmg.core.types",
    "MetaLearner": "bmg.core.types",
    "MetaObjective": "bmg.core.types",
    "MetaState": "bmg.core.types",
    "Metrics": "bmg.core.types",
    "UpdateFn": "bmg.core.types",
    "mean_over_steps": "bmg.core.unrolling",
    "unroll": "bmg.core.unrolling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bmg.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # static analysers see the eager imports
    from bmg.core.bootstrap import gradient_step, make_target_bootstrap  # noqa: F401
    from bmg.core.config import MetaConfig  # noqa: F401
    from bmg.core.matching import (  # noqa: F401
        kl_and_value,
        parameter_distance,
        parameter_matching,
        policy_kl,
        squared_euclidean,
    )
    from bmg.core.meta import (  # noqa: F401
        compose,
        make_bmg,
        make_fixed,
        make_meta_learner,
        make_metagradient,
        over_batch,
        over_batch_shards,
        over_devices,
    )
    from bmg.core.safe import clip_by_global_norm, safe_norm  # noqa: F401
    from bmg.core.types import (  # noqa: F401
        Bootstrapped,
        Learner,
        LearnerState,
        MatchingFn,
        MetaLearner,
        MetaObjective,
        MetaState,
        Metrics,
        UpdateFn,
    )
    from bmg.core.unrolling import mean_over_steps, unroll  # noqa: F401
