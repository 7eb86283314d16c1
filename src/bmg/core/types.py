"""State containers and the function protocols of `bmg.core`.

Paper notation -> code: learner parameters x -> `LearnerState.params`, meta-parameters w ->
`meta_params`, one learner update phi -> `UpdateFn`, the meta-objective f -> `MetaObjective`, the
(pseudo-)metric mu -> `MatchingFn`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

PyTree = Any
Metrics = dict[str, jax.Array]


class LearnerState(NamedTuple):
    """Everything one learner carries between updates.

    Attributes:
      params: the learner parameters x (any pytree).
      opt_state: the inner optimiser's state (optax), `()` for plain SGD.
      extras: anything else the learner needs and carries forward: environment state, the
        latest rollout, a context buffer, a step counter, a task's data. The core never reads it.
    """

    params: PyTree
    opt_state: PyTree = ()
    extras: PyTree = ()


class MetaState(NamedTuple):
    """The meta-learner: meta-parameters w, the meta-optimiser's state and a step count."""

    meta_params: PyTree
    opt_state: PyTree
    step: jax.Array


class UpdateFn(Protocol):
    """phi: one learner update, `x_{k+1} = x_k + phi(x_k, data_k, w)`.

    Must be differentiable in `meta_params` (including through the inner optimiser) and take
    every random draw from `key`. Returns the new state and a flat dict of scalar metrics.
    """

    def __call__(
        self, meta_params: PyTree, state: LearnerState, key: jax.Array
    ) -> tuple[LearnerState, Metrics]: ...


class MetaObjective(Protocol):
    """f: a scalar loss of a learner state, e.g. the policy-gradient loss on its latest rollout.

    Gradients flow into `state.params` (and, through them, into the meta-parameters for MG).
    Returns `(loss, metrics)`.
    """

    def __call__(self, state: LearnerState, key: jax.Array) -> tuple[jax.Array, Metrics]: ...


class MatchingFn(Protocol):
    """mu(x~, x_K(w)): a scalar (pseudo-)distance from the learner to the target.

    `target` is a constant (stop-gradient-ed). `meta_params` is passed so that quantities that
    depend on the meta-parameters directly, not through the learner (K = 0, e.g. the epsilon of an
    epsilon-greedy policy), can be matched; most matching functions ignore it.
    """

    def __call__(
        self, target: LearnerState, state: LearnerState, meta_params: PyTree
    ) -> jax.Array: ...


class FinalUpdateFn(Protocol):
    """The last step of a target bootstrap, same signature as `UpdateFn`."""

    def __call__(
        self, meta_params: PyTree, state: LearnerState, key: jax.Array
    ) -> tuple[LearnerState, Metrics]: ...


class Bootstrapped(NamedTuple):
    """What a target bootstrap returns.

    Attributes:
      target: x~, the learner state after L-1 updates and the final step; stop-gradient-ed.
      state: x_{K+L-1}, the learner state before the final step (a learner may continue from it).
      metrics: metrics of the L-1 updates (mean) and of the final step.
    """

    target: LearnerState
    state: LearnerState
    metrics: Metrics


TargetBootstrap = Callable[[PyTree, LearnerState, jax.Array], Bootstrapped]

StartFn = Callable[[PyTree, LearnerState], LearnerState]
"""x_0 as a function of w, `(meta_params, state) -> state` (MAML: the initialisation is w)."""

Probes = Callable[[PyTree, LearnerState], Metrics]
"""Named scalars of a learner state that an experiment reads, `(meta_params, state) -> dict`."""

MetaGradientFn = Callable[
    [PyTree, LearnerState, jax.Array], tuple[PyTree, tuple[LearnerState, Metrics]]
]
"""`(meta_params, learner_state, key) -> (grads, (next_learner_state, metrics))`."""

Reduce = Callable[[MetaGradientFn], MetaGradientFn]
"""Turns a meta-gradient into a reduced one: averaged over a batch of tasks or over devices."""


class Learner(NamedTuple):
    """Everything `bmg.core` needs of a learner, and what an experiment may read of it.

    An agent (actor-critic, Q(lambda), STACX, regression, few-shot) is a function of its config
    returning one of these; `make_meta_learner(learner, MetaConfig(...))` then builds fixed, MG or
    BMG meta-learning for it, and a runner drives it. The experiment layer never reads
    `LearnerState.extras`: it reads `probes`.

    Attributes:
      init_state: `key -> LearnerState`, x_0 (with the first rollout, an optimiser state, ...).
      init_meta_params: `key -> meta_params`, w_0.
      update_fn: phi, one learner update differentiable in w (`UpdateFn`).
      meta_objective: f (`MetaObjective`): MG's objective and, by default, the objective of the
        BMG target's final step.
      matching_fn: mu (`MatchingFn`); None for a learner that only supports fixed and MG.
      target_step: the BMG target's final (L-th) step (`FinalUpdateFn`); None = a plain gradient
        step of size `MetaConfig.target_step_size` on `meta_objective`.
      start_fn: x_0 as a function of w (`StartFn`), differentiated with the unroll; None = the
        state as given.
      probes: `(meta_params, state) -> {name: scalar}`, the quantities an experiment reports
        (e.g. `env_steps`, `reward_sum` counters, the meta-learned `entropy_cost` or `epsilon`);
        names are the learner's documented vocabulary. None = no probes.
    """

    init_state: Callable[[jax.Array], LearnerState]
    init_meta_params: Callable[[jax.Array], PyTree]
    update_fn: UpdateFn
    meta_objective: MetaObjective
    matching_fn: MatchingFn | None = None
    target_step: FinalUpdateFn | None = None
    start_fn: StartFn | None = None
    probes: Probes | None = None


class MetaLearner(NamedTuple):
    """A meta-learning algorithm (MG or BMG) as pure functions.

    Attributes:
      init: `init(meta_params) -> MetaState`.
      step: `step(meta_state, learner_state, key) -> (meta_state, learner_state, metrics)`: one
        meta-update; the learner state returned is where the learner continues.
      meta_gradient: `meta_gradient(meta_params, learner_state, key) -> (grads, aux)`, the raw
        meta-gradient used by `step` (aux holds the continuation state and metrics).
    """

    init: Callable[[PyTree], MetaState]
    step: Callable[[MetaState, LearnerState, jax.Array], tuple[MetaState, LearnerState, Metrics]]
    meta_gradient: MetaGradientFn
