"""The Two-colors system's configuration: the world, the agents' and the meta-learner's fields,
the presets and which fields a choice of agent and algorithm leaves without effect.

Pure Python (no JAX): `bmg two-colors --help` and the run-directory readers import it alone. The
system itself (the learner, the runner, the report) is `bmg.experiments.two_colors.system`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from bmg.agents.configs import ActorCriticConfig, QLambdaConfig, online_unused_fields
from bmg.checks import check_integer, check_nested, checks_deferred
from bmg.core.config import MetaConfig
from bmg.envs.two_colors_params import check_params
from bmg.experiments.api import META_RENAMED, Selector, Settings
from bmg.train import lifetime
from bmg.train.lifetime import LifetimeConfig

MAX_STEPS = 2**31 - 1  # the int32 environment-step counters of a seed


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The Two-colors world."""

    switch_every: int = 100_000
    """steps between flips of the rewarding colour [paper]."""
    respawn: Literal["all", "object"] = "all"
    """after a pick-up re-spawn everything [related] or only the collected object."""
    step_penalty: float = 0.0
    """reward on steps without a pick-up is -step_penalty [default]."""
    grid_size: int = 5
    """grid side [paper]."""

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        check_params(self.grid_size, self.switch_every, self.respawn, self.step_penalty)

    def params(self):
        """The environment's `bmg.envs.two_colors.EnvParams`."""
        from bmg.envs import two_colors

        return two_colors.make_params(
            grid_size=self.grid_size,
            switch_every=self.switch_every,
            respawn=self.respawn,
            step_penalty=self.step_penalty,
        )


AGENTS = {"ac": ("fixed", "mg", "bmg"), "q": ("fixed", "decay", "mg", "bmg")}
"""The agents and the methods of each."""


def default_inner_steps(agent: str, algo: str) -> int:
    """K when a preset gives none: 0 for BMG on epsilon (agent q: MG's meta-gradient for epsilon
    is exactly zero, BMG's with K = 0 is not) and 1 otherwise."""
    return 0 if (agent, algo) == ("q", "bmg") else 1


@dataclasses.dataclass(frozen=True)
class TwoColorsConfig(lifetime.Chunked):
    """One Two-colors run: the learner (actor-critic or Q(lambda)), its meta-learner, the
    lifetime and seeds, and the world."""

    lifetime: LifetimeConfig = LifetimeConfig(steps=6_400_000, seeds=10, chunk_steps=200_000)
    """environment steps per seed, seeds (in parallel), first seed, steps per compiled chunk."""
    lane_group: int | None = 8
    """seeds (or a sweep's lanes) vmapped together on one device; a device runs its groups one
    after another inside a chunk, so a group's parameters and states stay in the caches (on a
    2-core CPU, 32 lanes per device at once ran 21% slower in aggregate than 8: docs/benchmarks.md).
    None: all of a device's lanes at once. A lane's numbers depend on its group's size only to
    float reassociation (runs of up to 8 seeds per device are unchanged by it)."""
    meta: MetaConfig = MetaConfig(
        algo="bmg",
        inner_steps=1,
        bootstrap_steps=8,
        learning_rate=1e-4,  # [related]
        adam_eps=1e-4,  # [related]
        target_step_size=0.1,
        continue_from="target",
    )
    """the meta-learner of the entropy cost (ac) or epsilon (q) (`bmg.core.MetaConfig`; --algo
    sets algo): K; L, the BMG target's look-ahead; Adam's learning rate and epsilon [related:
    1e-4, 1e-4]; target_step_size, alpha of the actor-critic BMG target's final SGD step on f
    (Q(lambda)'s target ends with its own learning step); continue_from, where BMG's learner
    goes on: from x_{K+L-1} ("target": every rollout trains the learner) or from x_K's parameters
    with the stream the target advanced ("inner_params")."""
    learner: ActorCriticConfig | QLambdaConfig = ActorCriticConfig()
    """the agent (--agent sets it): the actor-critic with a meta-learned entropy cost, or
    epsilon-greedy Q(lambda) with a meta-learned epsilon."""
    env: EnvConfig = EnvConfig()

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (learner.entropy_cost)
        if not isinstance(self.learner, ActorCriticConfig | QLambdaConfig):
            raise ValueError(
                "learner must be an ActorCriticConfig or a QLambdaConfig, got "
                f"{type(self.learner).__name__}."
            )
        if self.lane_group is not None:
            check_integer("lane_group", self.lane_group, 1)
        if self.meta.continue_from == "inner" and self.meta.algo == "bmg":
            raise ValueError(
                "meta.continue_from must be 'target' or 'inner_params' for bmg on Two-colors, "
                "got 'inner'."
            )
        if self.agent == "q" and self.learner.epsilon_decay and self.meta.algo != "fixed":
            raise ValueError(
                f"learner.epsilon_decay is the fixed 'decay' baseline's, so with meta.algo "
                f"{self.meta.algo} leave it False."
            )
        if self.meta.algo == "fixed" and self.meta.inner_steps != 1:
            raise ValueError(
                f"meta.inner_steps must be 1 with meta.algo fixed (one learner update per step), "
                f"got {self.meta.inner_steps}."
            )
        if self.agent == "ac" and self.meta.algo in ("mg", "bmg"):
            self.learner.check_meta_learned()
        if self.steps_per_meta_step > self.lifetime.steps:
            raise ValueError(
                f"one meta-step takes {self.steps_per_meta_step:,} environment steps "
                f"({self.meta.updates_per_step} rollouts of {self.learner.rollout_length}), more "
                f"than lifetime.steps = {self.lifetime.steps:,}; lower meta.inner_steps / "
                "meta.bootstrap_steps or raise lifetime.steps."
            )
        if self.total_env_steps > MAX_STEPS:
            most = MAX_STEPS - self.steps_per_meta_step * self.meta_steps_per_chunk
            raise ValueError(
                f"lifetime.steps = {self.lifetime.steps:,} (rounded up to "
                f"{self.total_env_steps:,} by whole chunks) is more than a seed's int32 step "
                f"counter holds ({MAX_STEPS:,}); run at most {most:,} steps."
            )

    @property
    def agent(self) -> str:
        """ac (actor-critic) or q (Q(lambda)), by the learner's type."""
        return "ac" if isinstance(self.learner, ActorCriticConfig) else "q"

    @property
    def algo(self) -> str:
        """The method: fixed, decay (q: epsilon_decay), mg or bmg."""
        if self.meta.algo == "fixed" and self.agent == "q" and self.learner.epsilon_decay:
            return "decay"
        return self.meta.algo

    @property
    def steps_per_meta_step(self) -> int:
        return self.meta.updates_per_step * self.learner.rollout_length

    @property
    def total_env_steps(self) -> int:
        """Environment steps per seed actually taken: whole chunks plus the first rollout."""
        meta_steps = self.num_chunks * self.meta_steps_per_chunk
        return meta_steps * self.steps_per_meta_step + self.learner.rollout_length


@dataclasses.dataclass(frozen=True)
class Preset:
    """A Two-colors preset: its values for both agents, so that ``--agent`` and ``--algo``
    choose among them (`config`)."""

    help: str
    ac: ActorCriticConfig = ActorCriticConfig()
    q: QLambdaConfig = QLambdaConfig(trace="forward")
    """Q(lambda) (``--agent q``). The defaults are the earlier reports' (`small-entropy`): SGD 0.1
    per 16-step rollout with the forward view; `related` runs the published agent, Peng's
    incremental Q(lambda) updated at every step."""
    meta: MetaConfig = TwoColorsConfig.meta
    """BMG's meta-learner: its L, continue_from and optimiser serve mg too (L = 1)."""
    inner_steps: int | None = None
    """K; None: `default_inner_steps` of the agent and method."""
    lifetime: LifetimeConfig = TwoColorsConfig.lifetime
    env: EnvConfig = EnvConfig()
    agent: str = "ac"
    algo: str = "bmg"

    def config(self, agent: str | None = None, algo: str | None = None) -> TwoColorsConfig:
        """The preset's config for ``agent`` and ``algo`` (the preset's own when None).

        Raises:
          ValueError: an unknown ``agent``, or an ``algo`` that is not a method of ``agent`` (one
            sentence naming those accepted).
        """
        agent = self.agent if agent is None else agent
        algo = self.algo if algo is None else algo
        if agent not in AGENTS:
            raise ValueError(f"--agent must be one of {', '.join(AGENTS)}; got {agent!r}.")
        if algo not in AGENTS[agent]:
            raise ValueError(
                f"--algo {algo} is not a method of agent {agent}; its methods: "
                f"{', '.join(AGENTS[agent])}."
            )
        learner = self.ac if agent == "ac" else self.q
        if agent == "q":
            learner = dataclasses.replace(learner, epsilon_decay=algo == "decay")
        if algo in ("fixed", "decay"):
            fields = dict(algo="fixed", inner_steps=1, bootstrap_steps=1, continue_from="inner")
        else:
            inner_steps = self.inner_steps
            if inner_steps is None:
                inner_steps = default_inner_steps(agent, algo)
            fields = dict(algo=algo, inner_steps=inner_steps)
            if algo == "mg":
                fields.update(bootstrap_steps=1, continue_from="inner")
        meta = dataclasses.replace(self.meta, **fields)
        return TwoColorsConfig(lifetime=self.lifetime, meta=meta, learner=learner, env=self.env)


SMALL_ENTROPY: dict[str, Any] = dict(
    lifetime=LifetimeConfig(steps=6_400_000, seeds=10, chunk_steps=200_000),
    meta=dataclasses.replace(TwoColorsConfig.meta, bootstrap_steps=8, learning_rate=1e-4),
    ac=ActorCriticConfig(
        value_cost=0.5,
        entropy_cost=0.01,
        meta_hidden_size=32,
        meta_hidden_layers=1,
        context_normalization="none",
    ),
    q=QLambdaConfig(
        trace="forward",  # the earlier reports' Q(lambda): one forward-view update per rollout
        optimizer="sgd",
        learning_rate=0.1,
        rollout_length=16,
        context_length=10,
        meta_hidden_size=32,
        meta_hidden_layers=1,
        context_normalization="none",
    ),
)
"""The defaults before the `related` preset: entropy cost 0.01 (a tenth of the
smallest non-zero published candidate), a 1 x 32 meta-network on raw rewards, Q(lambda) by SGD 0.1
per 16-step rollout. Kept as `small-entropy` so the earlier reports stay reproducible."""

RELATED: dict[str, Any] = dict(
    lifetime=LifetimeConfig(
        steps=10_000_000,  # [related: Table 1, totals after 10M steps]
        seeds=10,  # [related: Table 1, 10 seeds]
        chunk_steps=200_000,
    ),
    meta=MetaConfig(
        algo="bmg",
        bootstrap_steps=16,  # L [related: AC grid {8, 16} (Table 3); Q grid {16, 32, 128}]
        learning_rate=1e-4,  # [related: grid {1e-3, 1e-4, 1e-5, 1e-6}, Tables 3 and 4]
        adam_eps=1e-4,  # [related: Tables 3 and 4; Adam betas 0.9 / 0.999, optax's defaults]
        target_step_size=0.1,  # alpha [default: the learner's learning rate]
        continue_from="target",
    ),
    ac=ActorCriticConfig(
        hidden_size=256,  # [related: Table 3, policy and value MLPs 2 x 256 ReLU]
        rollout_length=16,  # [related: Table 3, batch 16]
        optimizer="sgd",  # [related: Table 3]
        learning_rate=0.1,  # [related: Table 3]
        discount=0.99,  # [related: Table 3]
        max_grad_norm=10.0,  # [default: none published; SGD 0.1 diverges without a clip, and 1.0
        # halved the fixed baseline's reward; 10 is the largest of 1, 3, 10, 30 that never
        # collapsed, docs/two-colors-results.md "Why our actor-critic earned half"]
        value_cost=1.0,  # [related: Table 3, loss L_pi + L_v + a_ent L_ent]
        entropy_cost=0.2,  # fixed baseline [related: Table 3 grid {0, 0.1, 0.2, 0.4, 0.8}; 0.2
        # the best of our screen at clip 10, docs/two-colors-results.md]
        meta_initial=0.5,  # mg / bmg start [related: A.3, sigmoid output pre-trained to 0.5]
        outer_entropy_cost=0.0,  # [related: Table 3 grid {0, 0.1}]
        context="reward",  # [related: Table 1, reward context]
        context_length=10,  # [related: Table 3, H = 10 rollouts]
        context_normalization="running",  # [related: A.3, running statistics, then tanh]
        meta_hidden_size=64,  # [related: Table 3, 2 x 64 ReLU]
        meta_hidden_layers=2,
    ),
    q=QLambdaConfig(
        hidden_size=256,  # [related: Table 4, Q-MLP 2 x 256 ReLU]
        rollout_length=1,  # [related: Table 4, an update at every environment step]
        optimizer="adam",  # [related: Table 4, Adam eps 1e-4, betas 0.9 / 0.999]
        adam_eps=1e-4,
        adam_b1=0.9,
        adam_b2=0.999,
        learning_rate=3e-5,  # [related: Table 4, the meta-learning methods' inner rate]
        max_grad_norm=0.0,  # [related: Table 4 states no clipping]
        discount=0.99,  # [related: Table 4]
        trace="peng",  # [related: Table 4, "Q(lambda) (Peng & Williams, 1994)", every step]
        trace_lambda=0.9,  # [related: Table 4]
        epsilon=0.1,  # fixed baseline [related: Table 4 grid {0.3, 0.1, 0.03, 0.01}]
        meta_initial=0.5,  # mg / bmg start [related: A.3, sigmoid output pre-trained to 0.5]
        context="reward",  # [related: Table 1, reward context]
        context_length=100,  # [related: Table 4, H = 100 last rewards (T = 1)]
        context_normalization="running",  # [related: A.3, running statistics, then tanh]
        meta_hidden_size=128,  # [related: Table 4, 2 x 128 ReLU]
        meta_hidden_layers=2,
    ),
)
"""Every value Luketina et al., "Meta-Gradients in Non-Stationary Environments", CoLLAs 2022,
appendix A.3 (Tables 3 and 4) publish for Two-colors, for the actor-critic (default) and, with
`--agent q`, Q(lambda) (K = 0 for its BMG, the default of `inner_steps`). Where they publish a
grid, the preset takes one candidate (noted above) and `RELATED_GRID` lists them all."""

RELATED_GRID: dict[str, dict[str, tuple]] = {
    # Luketina et al., CoLLAs 2022, appendix A.3, Table 3 (actor-critic). The best setting per
    # method is reported; MG and BMG sweeps have the same size.
    "ac": {
        "learner.entropy_cost": (0.0, 0.1, 0.2, 0.4, 0.8),  # fixed baseline only
        "meta.learning_rate": (1e-3, 1e-4, 1e-5, 1e-6),  # mg, bmg
        "learner.outer_entropy_cost": (0.0, 0.1),  # mg (and the bmg target's final step)
        "meta.inner_steps": (1, 3, 6),  # K: mg, bmg (a shape: one program per value)
        "meta.bootstrap_steps": (8, 16),  # L: bmg (a shape: one program per value)
    },
    # Table 4 (Q(lambda)): the baseline sweeps its learning rate and epsilon; the meta-learning
    # methods use an inner learning rate of 3e-5 and K = 0.
    "q": {
        "learner.learning_rate": (3e-3, 1e-4, 3e-5, 1e-5),  # fixed baseline only
        "learner.epsilon": (0.3, 0.1, 0.03, 0.01),  # fixed baseline only
        "meta.learning_rate": (1e-3, 1e-4, 1e-5, 1e-6),  # bmg with reward context
        "meta.learning_rate/no_context": (1e-2, 3e-3, 1e-3, 3e-4),  # bmg, --learner.context none
        "meta.bootstrap_steps": (16, 32, 128),  # L: bmg (a shape: one program per value)
    },
}
"""The published grids of the `related` preset (field -> candidates), for a sweep to run."""

PORT_SOURCE = "MagiFeeney/Bootstrapped-Meta-Learning, first commit 60cc887"
PORT: dict[str, Any] = dict(
    algo="bmg",
    inner_steps=7,  # K [port: BMG/readme.md, -K 7]
    meta=MetaConfig(
        algo="bmg",
        bootstrap_steps=9,  # L [port: BMG/readme.md, -L 9]
        learning_rate=1e-4,  # [port: BMG/main.py, Adam lr 1e-4]
        adam_eps=1e-4,  # [port: BMG/main.py, Adam eps 1e-4, betas 0.9 / 0.999]
        target_step_size=0.1,  # [port: BMG/Trainer.py, the final step is the inner SGD(0.1)]
        continue_from="target",  # [port: BMG/Trainer.py, continue from x_{K+L-1}]
    ),
    lifetime=LifetimeConfig(
        steps=3_200_000,  # [default: the port ran 6.4M steps (BMG/readme.md -m 6400000), 1 seed]
        seeds=4,  # [default: the port's figures are 1 seed]
        chunk_steps=200_000,
    ),
    ac=ActorCriticConfig(
        hidden_size=256,  # [port: BMG/main.py, policy and value MLPs 2 x 256 ReLU]
        rollout_length=16,  # [port: BMG/main.py, steps_per_rollout 16]
        optimizer="sgd",  # [port: BMG/main.py, MetaSGD lr 0.1]
        learning_rate=0.1,
        discount=0.99,  # [port: BMG/arguments.py]
        max_grad_norm=0.0,  # [port: no gradient clip]
        advantage="td",  # [port: BMG/OnTheFly.py, r + gamma V(s'), detached]
        value_cost=0.5,  # [port: BMG/OnTheFly.py, 0.5 x mean TD-error^2]
        entropy_cost=0.3,  # fixed baseline [port: A2C/arguments.py, 0.3]
        meta_initial=0.5,  # offset logit(0.5) = 0 [port: BMG/Meta.py, sigmoid(MLP(c))]
        meta_init="random",  # [port: BMG/Meta.py, PyTorch's default initialisation]
        bias_init="uniform",  # [port: PyTorch's nn.Linear biases U(+-1/sqrt(fan_in))]
        outer_entropy_cost=0.0,  # [port: BMG/OnTheFly.py, the target step is PG only]
        context="reward",  # [port: BMG/OnTheFly.py, mean reward of the last 10 rollouts]
        context_length=10,
        context_normalization="none",  # [port: raw mean rewards]
        meta_hidden_size=32,  # [port: BMG/main.py, 10 -> 32 -> 1]
        meta_hidden_layers=1,
        matching="kl",  # [port: BMG/OnTheFly.py, KL(target || K-step)]
        kl_reduction="sum",  # [port: BMG/OnTheFly.py, summed over the 16 target states]
    ),
    env=EnvConfig(
        respawn="object",  # [port: BMG/env.py, only the collected object re-spawns]
        step_penalty=0.04,  # [port: BMG/env.py, -0.04 per step without a pick-up]
    ),
)
"""The configuration of the public PyTorch port of BMG on Two-colors whose README figures show
BMG learning an entropy schedule (``PORT_SOURCE``; K = 7, L = 9): each value tagged with the
port's file. The reference point from which ``related`` is reached one difference at a time
(docs/two-colors.md)."""

PRESET_VALUES: dict[str, Preset] = {
    "default": Preset("the defaults below (the paper's 10 seeds x 6.4M steps)"),
    "small-entropy": Preset(
        "the defaults before the related preset (entropy cost 0.01, 1 x 32 meta-network on raw "
        "rewards; 10 seeds x 6.4M steps): the earlier reports' runs",
        **SMALL_ENTROPY,
    ),
    "related": Preset(
        "every published value of Luketina et al., CoLLAs 2022, appendix A.3 (actor-critic; "
        "Q(lambda) with --agent q): 10 seeds x 10M steps, running-normalised reward context, "
        "meta-network output 0.5 at the start",
        **RELATED,
    ),
    "demo": Preset(
        "the related preset's published values with only steps and seeds scaled down: 4 seeds "
        "x 1M steps (ten flips); minutes on 2 cores for the actor-critic, about ten times longer "
        "for Q(lambda) (--agent q), which updates at every step",
        **{
            **RELATED,
            "lifetime": LifetimeConfig(steps=1_000_000, seeds=4, chunk_steps=100_000),
        },
    ),
    "port": Preset(
        f"the public PyTorch port of BMG ({PORT_SOURCE}): K = 7, L = 9, 1-step TD advantages, "
        "no clip, KL summed over states, raw context, 10 -> 32 -> 1 random meta-network, "
        "step penalty 0.04, object re-spawn; 4 seeds x 3.2M steps",
        **PORT,
    ),
    "paper": Preset(
        "10 seeds x 6.4M steps, flips every 100k steps",
        lifetime=LifetimeConfig(steps=6_400_000, seeds=10, chunk_steps=200_000),
    ),
    "exploration": Preset(
        "epsilon-greedy Q(lambda), BMG with K = 0 and L = 16 on epsilon; 10 seeds x 3.2M steps "
        "and a 10x meta-learning rate (with L = 128 a lifetime holds too few meta-steps for "
        "Adam(1e-4) to move epsilon: docs/exploration.md)",
        agent="q",
        algo="bmg",  # K: the default, 0 for bmg (1 for mg with `--algo mg`)
        meta=dataclasses.replace(TwoColorsConfig.meta, bootstrap_steps=16, learning_rate=1e-3),
        lifetime=LifetimeConfig(steps=3_200_000, seeds=10, chunk_steps=200_000),
        # the reports' Q(lambda) (docs/exploration.md): one forward-view update per rollout
        q=QLambdaConfig(trace="forward"),
    ),
}
"""The presets' values for both agents and every method (`Preset.config`)."""


def _fields(config: TwoColorsConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    name: (preset.help, _fields(preset.config())) for name, preset in PRESET_VALUES.items()
}
"""`bmg two-colors PRESET`: name -> (description, the fields of its default agent and method)."""


def select(config: TwoColorsConfig, chosen: dict[str, str], preset: str) -> TwoColorsConfig:
    """``--agent`` and ``--algo`` on ``preset``: its config for that agent and method
    (`Preset.config`); ValueError when the agent has no such method."""
    del config  # the preset's default; the choices rebuild it from the preset's values
    return PRESET_VALUES[preset].config(chosen.get("agent"), chosen.get("algo"))


CONFIG = TwoColorsConfig


def unused_fields(config: TwoColorsConfig) -> dict[str, str]:
    """Fields that have no effect on ``config``'s run, with why ({field: "with --algo ..."}): the
    CLI refuses flags that set them instead of ignoring them. (The other agent's fields do not
    parse at all: ``learner`` holds one agent's config.)"""
    agent, algo = config.agent, config.algo
    unused = online_unused_fields(config.learner, "learner")
    # K and L are checked by value instead (1 for a fixed meta-learner, L = 1 for mg): their
    # flags may restate those values
    meta = ("meta.learning_rate", "meta.adam_eps", "meta.remat", "meta.unroll_loop")
    bmg = ("meta.target_step_size", "meta.continue_from")
    schedule = [  # the meta-learned schedule's fields
        f"learner.{name}"
        for name in (
            "context",
            "context_length",
            "context_normalization",
            "meta_hidden_size",
            "meta_hidden_layers",
            "meta_initial",
            "meta_init",
        )
    ]
    if agent == "ac":
        schedule.append("learner.outer_entropy_cost")
        bmg += tuple(
            f"learner.{name}"
            for name in ("matching", "matching_value_cost", "kl_reduction", "target_step")
        )
    else:
        decay = ("learner.decay_start", "learner.decay_final", "learner.decay_steps")
        if algo != "decay":
            unused.update(
                {f: f"with --algo {algo} (they set --algo decay's schedule)" for f in decay}
            )
        else:
            unused["learner.epsilon"] = "with --algo decay (epsilon follows --learner.decay-*)"
    fixed_value = "learner.entropy_cost" if agent == "ac" else "learner.epsilon"
    if algo in ("mg", "bmg") and config.learner.meta_initial is not None:
        unused[fixed_value] = (
            f"with --algo {algo} and learner.meta_initial set (the meta-learned value starts at "
            "meta_initial)"
        )
    if algo not in ("mg", "bmg"):
        why = f"with --algo {algo} (nothing is meta-learned)"
        unused.update({f: why for f in (*meta, *bmg, *schedule)})
    elif algo == "mg":
        unused.update({f: "with --algo mg (only BMG bootstraps a target)" for f in bmg})
    else:
        if agent == "q":
            unused["meta.target_step_size"] = (
                "with --agent q (Q(lambda) brings its own target step)"
            )
        else:
            if config.learner.matching != "kl_value":
                unused["learner.matching_value_cost"] = "with --learner.matching kl"
            if config.learner.target_step == "learner_update":
                why = (
                    "with --learner.target-step learner_update (the target's final step is "
                    "phi's own)"
                )
                unused["meta.target_step_size"] = why
                unused["learner.outer_entropy_cost"] = why
    return unused


SETTINGS = Settings(
    TwoColorsConfig,
    PRESETS,
    unused_fields,
    selectors={
        "agent": Selector(
            "ac: actor-critic, meta-learned entropy cost; q: epsilon-greedy Q(lambda), "
            "meta-learned epsilon. Sets learner to the preset's config of that agent",
            tuple(AGENTS),
            lambda config: config.agent,
        ),
        "algo": Selector(
            "fixed: the configured entropy cost / epsilon; decay (q): linearly decaying epsilon; "
            "mg: K-step meta-gradient; bmg: bootstrapped meta-gradient. Sets meta (K: 1, or 0 "
            "for bmg on q, unless the preset sets it; L = 1 but for bmg) and "
            "learner.epsilon_decay",
            ("fixed", "decay", "mg", "bmg"),
            lambda config: config.algo,
            owns=("meta.algo", "learner.epsilon_decay"),
        ),
    },
    select=select,
    renamed={**META_RENAMED, "--ac.": "--learner.", "--q.": "--learner. (with --agent q)"},
)
"""The `bmg two-colors` command's settings."""
