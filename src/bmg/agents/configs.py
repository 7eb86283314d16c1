"""Configs of the online RL agents (actor-critic, Q(lambda)): frozen dataclasses, validated.

Pure Python (no JAX), so experiment configs and `bmg ... --help` import fast; the agents that use
them are `bmg.agents.actor_critic` and `bmg.agents.q_lambda`. Every field's docstring names its
source: [paper] Flennerhag et al., ICLR 2022; [related] Luketina et al., "Meta-Gradients in
Non-Stationary Environments", CoLLAs 2022, appendix A.3; [default] this implementation's choice.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import tyro

from bmg.checks import check_bool, check_integer, check_real, checks_deferred

CONTEXTS = ("reward", "none")
NORMALIZATIONS = ("none", "running")
PROBE_CONTEXTS = ("high", "increasing", "zero", "decreasing", "low")
"""The five fixed contexts on which a meta-network's output is recorded over a lifetime
(``bmg.agents.stream.probe_contexts``; the probes of Luketina et al., CoLLAs 2022, Figure 2:
high / increasing / zero / decreasing / low recent rewards)."""
OPTIMIZERS = ("sgd", "adam")
MATCHINGS = ("kl", "kl_value")
META_INITS = ("zero_output", "random", "pretrained")
BIAS_INITS = ("zeros", "uniform")
ADVANTAGES = ("n_step", "td")
KL_REDUCTIONS = ("mean", "sum")
TARGET_STEPS = ("policy_gradient", "learner_update")
Q_TRACES = ("peng", "watkins", "forward")
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
    """width of the two ReLU layers of each MLP (policy, value, Q) [related: Tables 3 and 4,
    2 x 256]."""
    rollout_length: int = 16
    """T, environment steps per rollout; one learner update per rollout [paper: batch 16;
    related: Table 4 updates Q(lambda) at every step, T = 1]. With T = 1 the Q(lambda) loss is
    one-step Q-learning (the forward-view lambda-return of one step is r + gamma max Q(s'))."""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """inner optimiser: SGD [paper; related: Table 3 for the actor-critic] or Adam [related:
    Table 4 for Q(lambda)], after the global-norm clip."""
    learning_rate: float = 0.1
    """inner learning rate [paper: SGD 0.1; related: Table 4, Adam 3e-5 for the meta-learned
    Q(lambda)]."""
    adam_eps: float = 1e-4
    """optimizer="adam": epsilon outside the square root [related: Table 4, 1e-4]."""
    adam_b1: float = 0.9
    """optimizer="adam": beta_1 [related: Table 4]. Luketina et al. add, for Q(lambda), that "a
    momentum term" keeps an exponential moving average of the gradients with discount 0.9 against
    the instability of unbatched updates: read here as Adam's first moment, which is exactly that
    average (beta_1 = 0.9), not a second momentum on top of Adam."""
    adam_b2: float = 0.999
    """optimizer="adam": beta_2 [related: Table 4]."""
    adam_eps_root: float = 1e-8
    """optimizer="adam": epsilon inside the square root, so the update stays differentiable at a
    zero second moment when a meta-gradient flows through it [default]."""
    discount: float = 0.99
    """gamma; discount_t = gamma * (1 - terminated_t) [paper]."""
    max_grad_norm: float = 1.0
    """clip the learner gradient to this global norm before the optimiser step, 0 = off; the
    clip has a finite derivative at a zero gradient (``bmg.core.clip_by_global_norm``) [default:
    SGD 0.1 without it diverged (value net to inf) at the first flip in 2 of 10 seeds]."""
    context: Literal["reward", "none"] = "reward"
    """meta-network input: mean reward of recent rollouts, or none (one learned logit) [related]."""
    context_length: int = 10
    """H, rollouts in the reward context [related: Table 3, H = 10 rollouts; Table 4, H = 100
    rewards, i.e. 100 rollouts of T = 1]."""
    context_normalization: Literal["none", "running"] = "none"
    """"running": each context value is standardised by the running mean and standard deviation
    of every context value so far (Welford's algorithm, carried in the learner state), then
    squashed by tanh into [-1, 1] [related: appendix A.3, "normalised (lifetime or running
    statistics) and squashed by tanh"]; "none": the raw mean rewards [default, the earlier
    presets]."""
    meta_hidden_size: int = 32
    """width of each hidden layer of the meta-network [default: 32; related: Table 3, 64 for
    the actor-critic; Table 4, 128 for Q(lambda)]."""
    meta_hidden_layers: int = 1
    """number of hidden ReLU layers of the meta-network [default: 1; related: Tables 3 and 4,
    2]."""
    meta_initial: float | None = None
    """mg / bmg: the meta-learned value (entropy cost or epsilon) at initialisation, on every
    context with ``meta_init="zero_output"`` (the offset logit(meta_initial) is added to the
    network's output in every case); None = the fixed value (``entropy_cost`` / ``epsilon``)
    [related: appendix A.3, the sigmoid output starts at 0.5, the middle of its range]."""
    meta_init: Literal["zero_output", "random", "pretrained"] = "zero_output"
    """how the meta-network starts (``bmg.agents.meta_schedule``): "zero_output", exactly
    ``meta_initial`` on every context [default]; "random", every layer random (PyTorch's default;
    the public PyTorch port, MagiFeeney/Bootstrapped-Meta-Learning, BMG/Meta.py); "pretrained",
    random then fitted to ``meta_initial`` on uniform contexts in [-1, 1]
    [related: appendix A.3]."""
    bias_init: Literal["zeros", "uniform"] = "zeros"
    """biases of every MLP (policy, value, Q and the meta-network's hidden layers): "zeros"
    [default] or "uniform", PyTorch's default U(+-1/sqrt(fan_in)) (the public PyTorch port)."""

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        for name in (
            "hidden_size",
            "rollout_length",
            "context_length",
            "meta_hidden_size",
            "meta_hidden_layers",
        ):
            check_integer(name, getattr(self, name), 1)
        check_real("learning_rate", self.learning_rate, low=0, low_open=True)
        check_real("adam_eps", self.adam_eps, low=0)
        check_real("adam_eps_root", self.adam_eps_root, low=0)
        for name in ("adam_b1", "adam_b2"):
            check_real(name, getattr(self, name), low=0, high=1, high_open=True)
        check_real("discount", self.discount, low=0, high=1)
        check_real("max_grad_norm", self.max_grad_norm, low=0)
        if self.meta_initial is not None:
            check_real(
                "meta_initial", self.meta_initial, low=0, high=1, low_open=True, high_open=True
            )
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be 'reward' or 'none', got {self.context!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}.")
        if self.context_normalization not in NORMALIZATIONS:
            raise ValueError(
                "context_normalization must be 'none' or 'running', "
                f"got {self.context_normalization!r}."
            )
        if self.meta_init not in META_INITS:
            raise ValueError(
                f"meta_init must be one of {', '.join(META_INITS)}, got {self.meta_init!r}."
            )
        if self.bias_init not in BIAS_INITS:
            raise ValueError(f"bias_init must be 'zeros' or 'uniform', got {self.bias_init!r}.")


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(OnlineConfig):
    """Actor-critic learner and its meta-learned entropy cost (shared fields: ``OnlineConfig``)."""

    value_cost: float = 0.5
    """weight of the value loss [default: 0.5; related: Table 3, 1]."""
    entropy_cost: float = 0.01
    """fixed entropy cost of the baseline, in [0, 1) [default: 0.01; related: Table 3, one of
    0, 0.1, 0.2, 0.4, 0.8]; also the initial entropy cost of MG and BMG unless ``meta_initial``
    is set, and then it must be in (0, 1) (a sigmoid's value: ``check_meta_learned``)."""
    outer_entropy_cost: float = 0.0
    """fixed entropy cost inside the meta-objective f (MG, and the BMG target step) [related:
    Luketina et al., CoLLAs 2022, Table 3, 0 or 0.1]."""
    matching: Literal["kl", "kl_value"] = "kl"
    """BMG matching: policy KL, or policy KL + squared value error."""
    matching_value_cost: float = 1.0
    """weight of the value term with matching="kl_value"."""
    kl_reduction: Literal["mean", "sum"] = "mean"
    """BMG matching: averaged ("mean") [default] or summed ("sum", the public PyTorch port's
    BMG/OnTheFly.py) over the target rollout's T states; with ``matching="kl_value"`` the value
    term is summed too. Summing scales the meta-loss by T, which under Adam is the mean with
    Adam's epsilon divided by T."""
    advantage: Literal["n_step", "td"] = "n_step"
    """the return the advantage and the value loss use, in the learner's loss and in f:
    "n_step", bootstrapped at the end of the rollout [default]; "td", one-step
    r_t + discount_t V(s_{t+1}) (the public PyTorch port's BMG/OnTheFly.py)."""
    target_step: Literal["policy_gradient", "learner_update"] = "policy_gradient"
    """bmg: the target's final (L-th) step: a plain gradient step of ``target_step_size`` on f,
    the policy-gradient loss [paper; related]; or the learner's own update phi on its latest
    rollout (so the target is L plain learner updates ahead; ``target_step_size`` unused)."""

    @property
    def initial_entropy_cost(self) -> float:
        """The entropy cost MG and BMG start from: ``meta_initial``, else ``entropy_cost``."""
        return self.entropy_cost if self.meta_initial is None else self.meta_initial

    def check_meta_learned(self) -> None:
        """Raise ``ValueError`` if MG / BMG cannot start from ``initial_entropy_cost`` (a sigmoid
        of a finite logit lies in (0, 1): 0 is a fixed baseline's value only)."""
        if not 0 < self.initial_entropy_cost < 1:
            raise ValueError(
                f"entropy_cost = {self.entropy_cost!r} is the initial value of the meta-learned "
                "entropy cost (a sigmoid) for mg and bmg, so it must be in (0, 1) there; set "
                "meta_initial in (0, 1) or use algo fixed."
            )

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        super().__post_init__()
        check_real("entropy_cost", self.entropy_cost, low=0, high=1, high_open=True)
        for name in ("value_cost", "outer_entropy_cost", "matching_value_cost"):
            check_real(name, getattr(self, name), low=0)
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be 'kl' or 'kl_value', got {self.matching!r}.")
        for name, accepted in (
            ("kl_reduction", KL_REDUCTIONS),
            ("advantage", ADVANTAGES),
            ("target_step", TARGET_STEPS),
        ):
            if getattr(self, name) not in accepted:
                raise ValueError(
                    f"{name} must be one of {', '.join(accepted)}, got {getattr(self, name)!r}."
                )


@dataclasses.dataclass(frozen=True)
class QLambdaConfig(OnlineConfig):
    """Q(lambda) learner and its epsilon (shared fields: ``OnlineConfig``; sources there)."""

    trace: Literal["peng", "watkins", "forward"] = "peng"
    """the Q(lambda) update (``bmg.agents.q_lambda``): "peng", Peng & Williams' incremental
    Q(lambda) (1994), an eligibility trace over the Q-network's parameters carried across updates
    and one update per environment step (T of them per rollout) [related: Table 4, "Q(lambda)
    (Peng & Williams, 1994)", optimised at every step]; "watkins", the same backward view with
    the trace cut at non-greedy actions (Watkins, 1989); "forward", Watkins' lambda-return
    truncated at the end of each rollout and one update per rollout, no trace carried (with T = 1
    one-step Q-learning). The library's default is peng; the Two-colors CLI's presets other than
    `related` and `demo` keep forward, the agent of their earlier reports."""
    trace_lambda: float = 0.9
    """lambda of Q(lambda) [related: Table 4, 0.9]."""
    epsilon: float = 0.1
    """fixed epsilon ("fixed") [related: Table 4, one of 0.3, 0.1, 0.03, 0.01], or the initial
    epsilon of the meta-learned schedule ("meta") unless ``meta_initial`` is set."""
    epsilon_decay: Annotated[bool, tyro.conf.Suppress] = False
    """epsilon falls linearly from decay_start to decay_final over decay_steps instead of being
    fixed or meta-learned (the "decay" baseline; a fixed meta-learner only). No flag: the
    Two-colors command sets it with --algo decay."""
    decay_start: float = 1.0
    """decay: epsilon at step 0."""
    decay_final: float = 0.01
    """decay: epsilon from `decay_steps` on."""
    decay_steps: int = 1_000_000
    """decay: environment steps over which epsilon falls linearly."""

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        super().__post_init__()
        check_integer("decay_steps", self.decay_steps, 1)
        check_bool("epsilon_decay", self.epsilon_decay)
        for name in ("trace_lambda", "decay_start", "decay_final"):
            check_real(name, getattr(self, name), low=0, high=1)
        check_real("epsilon", self.epsilon, low=0, high=1, low_open=True, high_open=True)
        if self.trace not in Q_TRACES:
            raise ValueError(f"trace must be one of {', '.join(Q_TRACES)}, got {self.trace!r}.")

    @property
    def initial_epsilon(self) -> float:
        """The epsilon a meta-learned schedule starts from: ``meta_initial``, else ``epsilon``."""
        return self.epsilon if self.meta_initial is None else self.meta_initial


def online_unused_fields(config: OnlineConfig, prefix: str) -> dict[str, str]:
    """The fields of an actor-critic or Q(lambda) config that its own choices leave without
    effect, as ``{"<prefix>.<field>": why}`` (a command refuses flags setting them): Adam's
    numbers with SGD; the context's and the meta-network's sizes without a context."""
    unused = {}
    if config.optimizer == "sgd":
        why = f"with --{prefix}.optimizer sgd (they are Adam's)"
        unused.update(
            {f"{prefix}.{n}": why for n in ("adam_eps", "adam_b1", "adam_b2", "adam_eps_root")}
        )
    if config.context == "none":
        why = f"with --{prefix}.context none (the meta-learned value is one logit, no network)"
        names = (
            "context_length",
            "context_normalization",
            "meta_hidden_size",
            "meta_hidden_layers",
        )
        unused.update({f"{prefix}.{n}": why for n in names})
    return unused


def stacx_unused_fields(config: StacxConfig, prefix: str = "stacx") -> dict[str, str]:
    """The torso fields a STACX config's torso does not read, as ``{"<prefix>.<field>": why}``."""
    if config.torso == "minatar":
        why = f"with --{prefix}.torso minatar (they shape the IMPALA ResNet)"
        return {f"{prefix}.{n}": why for n in ("impala_channels", "impala_blocks")}
    return {f"{prefix}.minatar_channels": f"with --{prefix}.torso impala (MinAtar's conv net's)"}


def output_parameter(config: OnlineConfig) -> str:
    """The path of the meta-parameter that sets the meta-learned value's offset: the output
    bias of the meta-network ("net/params/Dense_{layers}/bias", flax's names) with a reward
    context, else the one logit ("logit"). Its meta-gradient's sign says whether a meta-step
    pushes the value up (negative) or down (positive)."""
    if config.context == "reward":
        return f"net/params/Dense_{config.meta_hidden_layers}/bias"
    return "logit"


META_NAMES = ("gamma", "lambda", "g_v", "g_p", "g_e", "alpha")
"""The six meta-parameters of a head, in the order they are embedded."""
TORSOS = ("minatar", "impala")
STACX_TARGET_STEPS = ("rmsprop", "sgd")


@dataclasses.dataclass(frozen=True)
class StacxConfig:
    """The STACX learner (sources: [paper] Flennerhag et al., ICLR 2022, Atari; [stacx]
    Zahavy et al., NeurIPS 2020; [impala] Espeholt et al., ICML 2018, Atari experiments;
    [minatar] Young & Tian, 2019; [default] this implementation's choice)."""

    torso: Literal["minatar", "impala"] = "minatar"
    """shared torso: MinAtar's conv net or IMPALA's deep ResNet."""
    minatar_channels: int = 16
    """filters of the MinAtar torso's convolution [minatar]."""
    impala_channels: tuple[int, ...] = (16, 32, 32)
    """channels of the ResNet's sections [impala]."""
    impala_blocks: int = 2
    """residual blocks per ResNet section [impala]."""
    hidden_size: int | None = None
    """units of the torso's ReLU layer; None = the torso's own (MinAtar 128, IMPALA 256)."""
    conv: Literal["patches", "xla"] = "patches"
    """the torso's convolutions: one matrix product over patches (fast on CPU, also inside the
    compiled loops) or flax's / XLA's convolution (accelerators); the same function
    (``bmg.agents.torsos``) [default]."""
    num_heads: int = 3
    """heads on the torso; head 0 acts, the others are auxiliary [stacx]."""
    meta_embedding_size: int = 16
    """units embedding each head's six sigma values into its input; 0 = not fed [default]."""
    num_envs: int = 32
    """B, environments acting in parallel; one batch = B x T steps [default]."""
    rollout_length: int = 20
    """T, steps per environment per batch (IMPALA's unroll length) [impala]."""
    learning_rate: float = 6e-4
    """RMSProp learning rate [impala, Atari]."""
    rmsprop_decay: float = 0.99
    """RMSProp's decay of the squared-gradient average [impala]."""
    rmsprop_eps: float = 0.01
    """RMSProp's epsilon as IMPALA publishes it (inside the square root), for IMPALA's losses
    summed over the B x T batch [impala]. bmg's losses are batch means, so the optimiser runs
    with eps / (B T)^2 (9.8e-8 for 0.01 at 16 x 20) and its squared-gradient average starts at
    1 / (B T)^2 (TF1's 1.0): IMPALA's update, but for the gradient clip, which acts on the mean
    gradient here (docs/minatar.md)."""
    max_grad_norm: float = 40.0
    """global-norm clip of the learner's batch-mean gradient, 0 = off [impala's value; applied
    to mean, not summed, losses: a default]."""
    reward_clip: float = 1.0
    """rewards clipped to [-reward_clip, reward_clip] in the losses, 0 = off [impala, Atari]."""
    meta_init: float = 4.6
    """initial logit of every meta-parameter, sigmoid(4.6) = 0.99 [stacx]."""
    value_cost: float = 0.25
    """outer value weight; the inner one is value_cost * sigma [paper/stacx]."""
    policy_cost: float = 1.0
    """outer policy weight; the inner one is policy_cost * sigma [paper/stacx]."""
    entropy_cost: float = 0.01
    """outer entropy weight; the inner one is entropy_cost * sigma [paper/stacx]."""
    outer_discount: float = 0.995
    """gamma of the outer loss [paper/stacx]."""
    outer_lambda: float = 1.0
    """lambda of the outer loss (plain V-trace, alpha = 1) [paper/stacx]."""
    outer_kl_cost: float = 1.0
    """g_kl, weight of KL(pre-update || updated policy) in the outer loss [paper/stacx]."""
    clip_rho_threshold: float = 1.0
    """rho_bar of the V-trace TD errors [impala]."""
    clip_pg_rho_threshold: float = 1.0
    """rho_bar of the policy-gradient advantages [impala]."""
    truncation_bootstrap: bool = True
    """bootstrap time limits from V(final_obs) (one more forward pass over the batch); off, a
    truncated step bootstraps from the next episode's first state [default]."""
    target_step: Literal["rmsprop", "sgd"] = "rmsprop"
    """BMG target's final step: preconditioned by the learner's RMSProp state [paper], or a plain
    gradient step of MetaConfig.target_step_size."""
    target_learning_rate: float | None = None
    """learning rate of the RMSProp target step; None = learning_rate [default]."""
    matching: Literal["kl", "kl_value"] = "kl"
    """BMG matching: policy KL, or KL plus squared value error ("KL & V") [paper]."""
    matching_value_cost: float = 1.0
    """weight of the value term with matching="kl_value" [default]."""

    @property
    def mean_loss_rmsprop_eps(self) -> float:
        """The epsilon optax's RMSProp gets: ``rmsprop_eps / (num_envs * rollout_length)^2``.
        With g_sum = B T g_mean and nu_sum = (B T)^2 nu_mean, IMPALA's step on summed losses,
        lr g_sum / sqrt(nu_sum + eps), equals lr g_mean / sqrt(nu_mean + eps / (B T)^2)."""
        return self.rmsprop_eps / float(self.num_envs * self.rollout_length) ** 2

    @property
    def mean_loss_rmsprop_initial_scale(self) -> float:
        """The initial squared-gradient average optax's RMSProp gets (``initial_scale``):
        ``1 / (num_envs * rollout_length)^2``. TensorFlow 1's ``tf.train.RMSPropOptimizer``
        (IMPALA's and STACX's) starts its average at 1.0 (its "rms" slot is created with ones);
        nu_sum = (B T)^2 nu_mean at every step, the first included, when nu_mean starts at
        1 / (B T)^2, the same rescaling as ``mean_loss_rmsprop_eps``."""
        return 1.0 / float(self.num_envs * self.rollout_length) ** 2

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        if self.torso not in TORSOS:
            raise ValueError(f"torso must be 'minatar' or 'impala', got {self.torso!r}.")
        if self.conv not in ("patches", "xla"):
            raise ValueError(f"conv must be 'patches' or 'xla', got {self.conv!r}.")
        for name in ("minatar_channels", "num_heads", "num_envs", "rollout_length"):
            check_integer(name, getattr(self, name), 1)
        check_integer("impala_blocks", self.impala_blocks, 0)
        check_integer("meta_embedding_size", self.meta_embedding_size, 0)
        if self.hidden_size is not None:
            check_integer("hidden_size", self.hidden_size, 1)
        if not (
            isinstance(self.impala_channels, tuple)
            and self.impala_channels
            and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1
                for c in self.impala_channels
            )
        ):
            raise ValueError(
                "impala_channels must be a non-empty tuple of integers >= 1, got "
                f"{self.impala_channels!r}."
            )
        check_bool("truncation_bootstrap", self.truncation_bootstrap)
        positive = ("learning_rate", "rmsprop_eps")
        for name in positive:
            check_real(name, getattr(self, name), low=0, low_open=True)
        if self.target_learning_rate is not None:
            check_real("target_learning_rate", self.target_learning_rate, low=0, low_open=True)
        check_real("rmsprop_decay", self.rmsprop_decay, low=0, high=1, high_open=True)
        for name in ("outer_discount", "outer_lambda"):
            check_real(name, getattr(self, name), low=0, high=1)
        for name in (
            "max_grad_norm",
            "reward_clip",
            "value_cost",
            "policy_cost",
            "entropy_cost",
            "outer_kl_cost",
            "matching_value_cost",
        ):
            check_real(name, getattr(self, name), low=0)
        for name in ("clip_rho_threshold", "clip_pg_rho_threshold"):
            check_real(name, getattr(self, name), low=0, low_open=True)
        check_real("meta_init", self.meta_init)
        if self.target_step not in STACX_TARGET_STEPS:
            raise ValueError(f"target_step must be 'rmsprop' or 'sgd', got {self.target_step!r}.")
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be 'kl' or 'kl_value', got {self.matching!r}.")


FEWSHOT_ALGOS = ("maml", "fomaml", "bmg")
"""The few-shot meta-learners (`bmg.agents.fewshot`)."""
CORE_ALGO = {"maml": "mg", "fomaml": "mg", "bmg": "bmg"}
"""`MetaConfig.algo` of each few-shot algorithm (first-order MAML is MG with a first-order phi)."""
