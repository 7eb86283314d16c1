"""bmg.core: bootstrapped meta-gradients (BMG) and meta-gradients (MG) for any JAX learner.

The algorithm only: it knows nothing of environments, networks or datasets. A learner supplies
`update_fn` (phi, one differentiable update), a `meta_objective` (f) and, for BMG, a matching
function (mu), together a `Learner`; `make_meta_learner(learner, MetaConfig(...))` (or
`make_fixed` / `make_metagradient` / `make_bmg` directly) returns a `MetaLearner(init, step, ...)`.

Reference: Flennerhag, Schroecker, Zahavy, van Hasselt, Silver, Singh, "Bootstrapped
Meta-Learning", ICLR 2022, arXiv:2109.04504 (section 3; the identity with MG in section 3.1).
"""

from bmg.core.bootstrap import gradient_step, make_target_bootstrap
from bmg.core.matching import (
    kl_and_value,
    parameter_distance,
    parameter_matching,
    policy_kl,
    squared_euclidean,
)
from bmg.core.meta import (
    MetaConfig,
    compose,
    make_bmg,
    make_fixed,
    make_meta_learner,
    make_metagradient,
    over_batch,
    over_devices,
)
from bmg.core.safe import clip_by_global_norm, safe_norm
from bmg.core.types import (
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
from bmg.core.unroll import mean_over_steps, unroll

__all__ = [
    "Bootstrapped",
    "LearnerState",
    "MatchingFn",
    "MetaLearner",
    "Learner",
    "MetaConfig",
    "MetaObjective",
    "MetaState",
    "Metrics",
    "UpdateFn",
    "clip_by_global_norm",
    "compose",
    "gradient_step",
    "kl_and_value",
    "make_bmg",
    "make_fixed",
    "make_meta_learner",
    "make_metagradient",
    "over_batch",
    "over_devices",
    "make_target_bootstrap",
    "mean_over_steps",
    "parameter_distance",
    "parameter_matching",
    "policy_kl",
    "safe_norm",
    "squared_euclidean",
    "unroll",
]
