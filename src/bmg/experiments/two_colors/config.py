"""The Two-colors system's configuration: the world, the agents' and the meta-learner's fields,
the presets and which fields a choice of agent and algorithm leaves without effect.

Pure Python (no JAX): `bmg two-colors --help` and the run-directory readers import it alone. The
system itself (the learner, the runner, the report) is `bmg.experiments.two_colors.system`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import tyro

from bmg.agents.configs import ActorCriticConfig, QLambdaConfig, online_unused_fields
from bmg.checks import check_integer, check_nested, check_real, checks_deferred, checks_now
from bmg.core.config import MetaConfig
from bmg.envs.two_colors_params import check_params
from bmg.experiments.api import Settings
from bmg.train import lifetime

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


def resolve_inner_steps(agent: str, algo: str, inner_steps: int | None) -> int:
    """K of a run: `inner_steps` when given, else 0 for BMG on epsilon (agent q: MG's
    meta-gradient for epsilon is exactly zero, BMG's with K = 0 is not) and 1 otherwise."""
    if inner_steps is not None:
        return inner_steps
    return 0 if (agent, algo) == ("q", "bmg") else 1


@dataclasses.dataclass(frozen=True)
class TwoColorsConfig(lifetime.Chunked):
    """One Two-colors run: agent, meta-learning algorithm, lifetime, seeds and world."""

    agent: Literal["ac", "q"] = "ac"
    """ac: actor-critic, meta-learned entropy cost; q: epsilon-greedy Q(lambda), meta-learned
    epsilon."""
    algo: Literal["fixed", "decay", "mg", "bmg"] = "bmg"
    """fixed: the configured entropy cost / epsilon; decay (q): linearly decaying epsilon; mg:
    K-step meta-gradient; bmg: bootstrapped meta-gradient."""
    inner_steps: Annotated[int | None, tyro.conf.arg(aliases=("--k",))] = None
    """K, learner updates differentiated per meta-step (mg >= 1, bmg >= 0). None: the
    algorithm's default, 1, and 0 for BMG on epsilon (agent q), so a preset gives mg and bmg a
    valid K alike. fixed and decay take one update per step and do not use it."""
    bootstrap_steps: Annotated[int, tyro.conf.arg(aliases=("--l",))] = 8
    """L, the BMG target's look-ahead in learner updates (bmg only)."""
    steps: int = 6_400_000
    """environment steps per seed (rounded up to whole chunks; targets' steps count)."""
    seeds: int = 10
    """independent seeds, run in parallel (vmap, sharded over devices)."""
    seed: int = 0
    """first seed; seeds are seed, seed + 1, ..."""
    meta_learning_rate: float = 1e-4
    """Adam learning rate of the meta-parameters [related]."""
    meta_adam_eps: float = 1e-4
    """Adam epsilon of the meta-optimiser [related]."""
    target_step_size: float = 0.1
    """alpha, the actor-critic BMG target's final SGD step on f [default: the learner's learning
    rate]; Q(lambda)'s target ends with its own learning step instead."""
    continue_from: Literal["target", "inner_params"] = "target"
    """bmg: the learner goes on from x_{K+L-1} ("target": every rollout trains the learner) or
    from x_K's parameters with the stream the target advanced ("inner_params")."""
    chunk_steps: int = 200_000
    """environment steps per compiled chunk (progress, metrics.csv rows and checkpoints per
    chunk); a lifetime shorter than this is one chunk of its own length."""
    lane_group: int | None = 8
    """seeds (or a sweep's lanes) vmapped together on one device; a device runs its groups one
    after another inside a chunk, so a group's parameters and states stay in the caches (on a
    2-core CPU, 32 lanes per device at once ran 21% slower in aggregate than 8: docs/benchmarks.md).
    None: all of a device's lanes at once. A lane's numbers depend on its group's size only to
    float reassociation (runs of up to 8 seeds per device are unchanged by it)."""
    ac: ActorCriticConfig = ActorCriticConfig()
    q: QLambdaConfig = QLambdaConfig(trace="forward")
    """Q(lambda) (``--agent q``). The defaults are the earlier reports' (`small-entropy`): SGD 0.1
    per 16-step rollout with the forward view; `related` runs the published agent, Peng's
    incremental Q(lambda) updated at every step."""
    env: EnvConfig = EnvConfig()

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (ac.entropy_cost)
        if self.agent not in AGENTS:
            raise ValueError(f"agent must be one of {', '.join(AGENTS)}; got {self.agent!r}.")
        if self.algo not in AGENTS[self.agent]:
            raise ValueError(
                f"algo for agent {self.agent} must be one of {', '.join(AGENTS[self.agent])}; "
                f"got {self.algo!r}."
            )
        for name, minimum in (("steps", 1), ("seeds", 1), ("seed", 0), ("chunk_steps", 1)):
            check_integer(name, getattr(self, name), minimum)
        if self.lane_group is not None:
            check_integer("lane_group", self.lane_group, 1)
        for name in ("meta_learning_rate", "meta_adam_eps", "target_step_size"):
            check_real(name, getattr(self, name), low=0, low_open=True)
        if self.agent == "ac" and self.algo in ("mg", "bmg"):
            self.ac.check_meta_learned()
        self.meta_config()  # validates K, L, continue_from
        if self.steps_per_meta_step > self.steps:
            raise ValueError(
                f"one meta-step takes {self.steps_per_meta_step:,} environment steps "
                f"({self.meta_config().updates_per_step} rollouts of "
                f"{self.learner.rollout_length}), more than steps = {self.steps:,}; lower "
                "inner_steps / bootstrap_steps or raise steps."
            )
        if self.total_env_steps > MAX_STEPS:
            raise ValueError(
                f"steps = {self.steps:,} (rounded up to {self.total_env_steps:,} by whole chunks) "
                f"is more than a seed's int32 step counter holds ({MAX_STEPS:,}); run at most "
                f"{MAX_STEPS - self.steps_per_meta_step * self.meta_steps_per_chunk:,} steps."
            )
        if self.seed + self.seeds > 2**31:
            raise ValueError(f"seed + seeds must be <= 2**31, got {self.seed + self.seeds}.")

    @property
    def num_inner_steps(self) -> int:
        """K as run: `inner_steps`, or the algorithm's default when it is None."""
        return resolve_inner_steps(self.agent, self.algo, self.inner_steps)

    def meta_config(self) -> MetaConfig:
        """The meta-learning config of `algo` (fixed and decay: one learner update per step)."""
        meta_learned = self.algo in ("mg", "bmg")
        with checks_now():  # derived from this config's fields: checked as it is built
            return MetaConfig(
                algo=self.algo if meta_learned else "fixed",
                inner_steps=self.num_inner_steps if meta_learned else 1,
                bootstrap_steps=self.bootstrap_steps if self.algo == "bmg" else 1,
                learning_rate=self.meta_learning_rate,
                adam_eps=self.meta_adam_eps,
                target_step_size=self.target_step_size,
                continue_from=self.continue_from if self.algo == "bmg" else "inner",
            )

    @property
    def learner(self) -> ActorCriticConfig | QLambdaConfig:
        """The configuration of the chosen agent."""
        return self.ac if self.agent == "ac" else self.q

    @property
    def steps_per_meta_step(self) -> int:
        return self.meta_config().updates_per_step * self.learner.rollout_length

    @property
    def total_env_steps(self) -> int:
        """Environment steps per seed actually taken: whole chunks plus the first rollout."""
        meta_steps = self.num_chunks * self.meta_steps_per_chunk
        return meta_steps * self.steps_per_meta_step + self.learner.rollout_length


SMALL_ENTROPY: dict[str, Any] = dict(
    steps=6_400_000,
    seeds=10,
    chunk_steps=200_000,
    bootstrap_steps=8,
    meta_learning_rate=1e-4,
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
    steps=10_000_000,  # [related: Table 1, totals after 10M steps]
    seeds=10,  # [related: Table 1, 10 seeds]
    chunk_steps=200_000,
    bootstrap_steps=16,  # L [related: AC grid {8, 16} (Table 3); Q grid {16, 32, 128} (Table 4)]
    meta_learning_rate=1e-4,  # [related: grid {1e-3, 1e-4, 1e-5, 1e-6}, Tables 3 and 4 (context)]
    meta_adam_eps=1e-4,  # [related: Tables 3 and 4; Adam betas 0.9 / 0.999, optax's defaults]
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
        "ac.entropy_cost": (0.0, 0.1, 0.2, 0.4, 0.8),  # fixed baseline only
        "meta_learning_rate": (1e-3, 1e-4, 1e-5, 1e-6),  # mg, bmg
        "ac.outer_entropy_cost": (0.0, 0.1),  # mg (and the bmg target's final step)
        "inner_steps": (1, 3, 6),  # K: mg, bmg (a shape: one program per value)
        "bootstrap_steps": (8, 16),  # L: bmg (a shape: one program per value)
    },
    # Table 4 (Q(lambda)): the baseline sweeps its learning rate and epsilon; the meta-learning
    # methods use an inner learning rate of 3e-5 and K = 0.
    "q": {
        "q.learning_rate": (3e-3, 1e-4, 3e-5, 1e-5),  # fixed baseline only
        "q.epsilon": (0.3, 0.1, 0.03, 0.01),  # fixed baseline only
        "meta_learning_rate": (1e-3, 1e-4, 1e-5, 1e-6),  # bmg with reward context
        "meta_learning_rate/no_context": (1e-2, 3e-3, 1e-3, 3e-4),  # bmg, --q.context none
        "bootstrap_steps": (16, 32, 128),  # L: bmg (a shape: one program per value)
    },
}
"""The published grids of the `related` preset (field -> candidates), for a sweep to run."""

PORT_SOURCE = "MagiFeeney/Bootstrapped-Meta-Learning, first commit 60cc887"
PORT: dict[str, Any] = dict(
    algo="bmg",
    inner_steps=7,  # K [port: BMG/readme.md, -K 7]
    bootstrap_steps=9,  # L [port: BMG/readme.md, -L 9]
    steps=3_200_000,  # [default: the port ran 6.4M steps (BMG/readme.md -m 6400000), 1 seed]
    seeds=4,  # [default: the port's figures are 1 seed]
    chunk_steps=200_000,
    meta_learning_rate=1e-4,  # [port: BMG/main.py, Adam lr 1e-4]
    meta_adam_eps=1e-4,  # [port: BMG/main.py, Adam eps 1e-4, betas 0.9 / 0.999]
    target_step_size=0.1,  # [port: BMG/Trainer.py, the final step is the inner SGD(0.1) on PG]
    continue_from="target",  # [port: BMG/Trainer.py, continue from x_{K+L-1}]
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

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the defaults below (the paper's 10 seeds x 6.4M steps)", {}),
    "small-entropy": (
        "the defaults before the related preset (entropy cost 0.01, 1 x 32 meta-network on raw "
        "rewards; 10 seeds x 6.4M steps): the earlier reports' runs",
        SMALL_ENTROPY,
    ),
    "related": (
        "every published value of Luketina et al., CoLLAs 2022, appendix A.3 (actor-critic; "
        "Q(lambda) with --agent q): 10 seeds x 10M steps, running-normalised reward context, "
        "meta-network output 0.5 at the start",
        RELATED,
    ),
    "demo": (
        "the related preset's published values with only steps and seeds scaled down: 4 seeds "
        "x 1M steps (ten flips); minutes on 2 cores for the actor-critic, about ten times longer "
        "for Q(lambda) (--agent q), which updates at every step",
        {**RELATED, "steps": 1_000_000, "seeds": 4, "chunk_steps": 100_000},
    ),
    "port": (
        f"the public PyTorch port of BMG ({PORT_SOURCE}): K = 7, L = 9, 1-step TD advantages, "
        "no clip, KL summed over states, raw context, 10 -> 32 -> 1 random meta-network, "
        "step penalty 0.04, object re-spawn; 4 seeds x 3.2M steps",
        PORT,
    ),
    "paper": (
        "10 seeds x 6.4M steps, flips every 100k steps",
        dict(steps=6_400_000, seeds=10, chunk_steps=200_000),
    ),
    "exploration": (
        "epsilon-greedy Q(lambda), BMG with K = 0 and L = 16 on epsilon; 10 seeds x 3.2M steps "
        "and a 10x meta-learning rate (with L = 128 a lifetime holds too few meta-steps for "
        "Adam(1e-4) to move epsilon: docs/exploration.md)",
        dict(
            agent="q",
            algo="bmg",  # K: the default, 0 for bmg (1 for mg with `--algo mg`)
            bootstrap_steps=16,
            steps=3_200_000,
            seeds=10,
            chunk_steps=200_000,
            meta_learning_rate=1e-3,
            # the reports' Q(lambda) (docs/exploration.md): one forward-view update per rollout
            q=QLambdaConfig(trace="forward"),
        ),
    ),
}


CONFIG = TwoColorsConfig


def unused_fields(config: TwoColorsConfig) -> dict[str, str]:
    """Fields that have no effect on ``config``'s run, with why ({field: "with --algo ..."}): the
    CLI refuses flags that set them instead of ignoring them."""
    agent, algo = config.agent, config.algo
    other = "q" if agent == "ac" else "ac"
    unused = online_unused_fields(config.learner, agent)
    unused.update(
        {
            f"{other}.{f.name}": f"with --agent {agent}"
            for f in dataclasses.fields(getattr(config, other))
        }
    )
    meta = ("meta_learning_rate", "meta_adam_eps", "inner_steps")
    bmg = ("bootstrap_steps", "target_step_size", "continue_from")
    schedule = [  # the meta-learned schedule's fields
        f"{agent}.{name}"
        for name in (
            "context",
            "context_length",
            "context_normalization",
            "meta_hidden_size",
            "meta_hidden_layers",
            "meta_initial",
        )
    ]
    schedule.append(f"{agent}.meta_init")
    if agent == "ac":
        schedule.append("ac.outer_entropy_cost")
        bmg += ("ac.matching", "ac.matching_value_cost", "ac.kl_reduction", "ac.target_step")
    else:
        decay = ("q.decay_start", "q.decay_final", "q.decay_steps")
        if algo != "decay":
            unused.update(
                {f: f"with --algo {algo} (they set --algo decay's schedule)" for f in decay}
            )
        else:
            unused["q.epsilon"] = "with --algo decay (epsilon follows --q.decay-*)"
    fixed_value = "ac.entropy_cost" if agent == "ac" else "q.epsilon"
    if algo in ("mg", "bmg") and getattr(config, agent).meta_initial is not None:
        unused[fixed_value] = (
            f"with --algo {algo} and {agent}.meta_initial set (the meta-learned value starts at "
            "meta_initial)"
        )
    if algo not in ("mg", "bmg"):
        why = f"with --algo {algo} (nothing is meta-learned)"
        unused.update({f: why for f in (*meta, *bmg, *schedule)})
    elif algo == "mg":
        unused.update({f: "with --algo mg (only BMG bootstraps a target)" for f in bmg})
    else:
        if agent == "q":
            unused["target_step_size"] = "with --agent q (Q(lambda) brings its own target step)"
        else:
            if config.ac.matching != "kl_value":
                unused["ac.matching_value_cost"] = "with --ac.matching kl"
            if config.ac.target_step == "learner_update":
                unused["target_step_size"] = (
                    "with --ac.target-step learner_update (the target's final step is phi's own)"
                )
    return unused


SETTINGS = Settings(TwoColorsConfig, PRESETS, unused_fields)
"""The `bmg two-colors` command's settings."""
