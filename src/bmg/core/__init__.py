"""bmg.core: bootstrapped meta-gradients (BMG) and meta-gradients (MG) for any JAX learner.

The algorithm only: it knows nothing of environments, networks or datasets. A learner supplies
`update_fn` (phi, one differentiable update), a `meta_objective` (f) and, for BMG, a matching
function (mu); `make_metagradient` and `make_bmg` return the same `MetaLearner(init, step, ...)`.
"""

from bmg.core.bootstrap import gradient_step, make_target_bootstrap
from bmg.core.matching import (
    kl_and_value,
    parameter_distance,
    parameter_matching,
    policy_kl,
    squared_euclidean,
)
from bmg.core.meta import make_bmg, make_fixed, make_metagradient
from bmg.core.types import (
    Bootstrapped,
    LearnerState,
    MatchingFn,
    MetaLearner,
    MetaObjective,
    MetaState,
    Metrics,
    UpdateFn,
)
from bmg.core.unroll import mean_over_steps, unroll

__all__ = [
    "Bootstrapped",
    "LearnerState",
    "MatchingFn",
    "MetaLearner",
    "MetaObjective",
    "MetaState",
    "Metrics",
    "UpdateFn",
    "gradient_step",
    "kl_and_value",
    "make_bmg",
    "make_fixed",
    "make_metagradient",
    "make_target_bootstrap",
    "mean_over_steps",
    "parameter_distance",
    "parameter_matching",
    "policy_kl",
    "squared_euclidean",
    "unroll",
]
