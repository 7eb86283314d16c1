"""bmg.rl: single-stream RL maths in the rlax style, for any gymnax environment.

``rollout``: ``collect`` T steps of one stream with auto-reset, per-step ``discount_t``,
truncation marks and cumulative counters (``Rollout``, ``Stream``, ``start_stream``).
``losses``: ``a2c_loss``, ``q_lambda_loss`` (Watkins), ``n_step_returns``, ``one_step_returns``,
``bootstrapped_returns``,
``truncation_bootstrap``. ``traces``: incremental (backward-view) Q(lambda), Peng's and
Watkins' (``q_lambda_increment``). ``vtrace``: leaky V-trace targets and the IMPALA / STACX loss
(``leaky_vtrace_targets``, ``leaky_vtrace_loss``, ``importance_ratios``). Importable and tested
without any agent or meta-learning.
"""

from bmg.rl.losses import (
    a2c_loss,
    bootstrapped_returns,
    n_step_returns,
    one_step_returns,
    policy_gradient_and_entropy,
    q_lambda_loss,
    truncation_bootstrap,
    watkins_lambdas,
)
from bmg.rl.rollout import Rollout, Stream, collect, start_stream
from bmg.rl.traces import TRACES, q_lambda_increment
from bmg.rl.vtrace import (
    VtraceTargets,
    importance_ratios,
    leaky_vtrace_loss,
    leaky_vtrace_targets,
)

__all__ = [
    "TRACES",
    "Rollout",
    "Stream",
    "VtraceTargets",
    "a2c_loss",
    "bootstrapped_returns",
    "collect",
    "importance_ratios",
    "leaky_vtrace_loss",
    "leaky_vtrace_targets",
    "n_step_returns",
    "one_step_returns",
    "policy_gradient_and_entropy",
    "q_lambda_increment",
    "q_lambda_loss",
    "start_stream",
    "truncation_bootstrap",
    "watkins_lambdas",
]
