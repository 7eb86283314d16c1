"""Configs of the online RL agents (actor-critic, Q(lambda)): frozen dataclasses, validated.

Pure Python (no JAX), so experiment configs and `bmg ... --help` import fast; the agents that use
them are `bmg.agents.actor_critic` and `bmg.agents.q_lambda`. Every field's docstring names its
source: [paper] Flennerhag et al., ICLR 2022; [related] Luketina et al., "Meta-Gradients in
Non-Stationary Environments", CoLLAs 2022, appendix A.3; [default] this implementation's choice.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from bmg.checks import check_integer, check_real

CONTEXTS = ("reward", "none")
MATCHINGS = ("kl", "kl_value")
Schedule = Literal["fixed", "meta", "decay"]
SCHEDULES = ("fixed", "meta", "decay")


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
    """Fields every online agent shares (actor-critic, Q(lambda)).

    Sources: [paper] Flennerhag et al., ICLR 2022 (Table 1 for the actor-critic on Two-colors);
    [related] Luketina et al., "Meta-Gradients in Non-Stationary Environments", CoLLAs 2022,
    appendix A.3 (Tables 3 and 4); [default] this implementation's choice.
    """

    hidden_size: int = 256
    """width of the two ReLU layers of each MLP (policy, value, Q) [related]."""
    rollout_length: int = 16
    """T, environment steps per rollout; one learner update per rollout [paper: batch 16]."""
    learning_rate: float = 0.1
    """inner SGD learning rate [paper]."""
    discount: float = 0.99
    """gamma; discount_t = gamma * (1 - terminated_t) [paper]."""
    max_grad_norm: float = 1.0
    """clip the learner gradient to this global norm before the SGD step, 0 = off; the clip has a
    finite derivative at a zero gradient (``bmg.core.clip_by_global_norm``) [default: SGD 0.1
    without it diverged (value net to inf) at the first flip in 2 of 10 seeds]."""
    context: Literal["reward", "none"] = "reward"
    """meta-network input: mean reward of recent rollouts, or none (one learned logit) [related]."""
    context_length: int = 10
    """rollouts in the reward context [related: H = 10]."""
    meta_hidden_size: int = 32
    """width of the meta-network's hidden layer [default]."""

    def __post_init__(self):
        for name in ("hidden_size", "rollout_length", "context_length", "meta_hidden_size"):
            check_integer(name, getattr(self, name), 1)
        check_real("learning_rate", self.learning_rate, low=0, low_open=True)
        check_real("discount", self.discount, low=0, high=1)
        check_real("max_grad_norm", self.max_grad_norm, low=0)
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be 'reward' or 'none', got {self.context!r}.")


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(OnlineConfig):
    """Actor-critic learner and its meta-learned entropy cost (shared fields: ``OnlineConfig``)."""

    value_cost: float = 0.5
    """weight of the value loss [default]."""
    entropy_cost: float = 0.01
    """fixed entropy cost of the baseline; initial entropy cost of MG and BMG [default]."""
    outer_entropy_cost: float = 0.0
    """fixed entropy cost inside the meta-objective f (MG, and the BMG target step) [related:
    Luketina et al., CoLLAs 2022, Table 3, 0 or 0.1]."""
    matching: Literal["kl", "kl_value"] = "kl"
    """BMG matching: policy KL, or policy KL + squared value error."""
    matching_value_cost: float = 1.0
    """weight of the value term with matching="kl_value"."""

    def __post_init__(self):
        super().__post_init__()
        check_real("entropy_cost", self.entropy_cost, low=0, high=1, low_open=True, high_open=True)
        for name in ("value_cost", "outer_entropy_cost", "matching_value_cost"):
            check_real(name, getattr(self, name), low=0)
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be 'kl' or 'kl_value', got {self.matching!r}.")


@dataclasses.dataclass(frozen=True)
class QLambdaConfig(OnlineConfig):
    """Q(lambda) learner and its epsilon (shared fields: ``OnlineConfig``; sources there)."""

    trace_lambda: float = 0.9
    """lambda of Watkins Q(lambda) [related]."""
    epsilon: float = 0.1
    """fixed epsilon ("fixed"), or the initial epsilon of the meta-learned schedule ("meta")."""
    decay_start: float = 1.0
    """decay: epsilon at step 0."""
    decay_final: float = 0.01
    """decay: epsilon from `decay_steps` on."""
    decay_steps: int = 1_000_000
    """decay: environment steps over which epsilon falls linearly."""

    def __post_init__(self):
        super().__post_init__()
        check_integer("decay_steps", self.decay_steps, 1)
        for name in ("trace_lambda", "decay_start", "decay_final"):
            check_real(name, getattr(self, name), low=0, high=1)
        check_real("epsilon", self.epsilon, low=0, high=1, low_open=True, high_open=True)
