"""Two-colors: an actor-critic with a meta-learned entropy cost, or epsilon-greedy Q(lambda) with a
meta-learned epsilon, under a fixed, decaying, meta-gradient (`mg`) or BMG (`bmg`) schedule.

Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (the non-stationary Two-colors
experiment and the epsilon-greedy exploration experiment), with the protocol of Luketina et al.,
"Meta-Gradients in Non-Stationary Environments", CoLLAs 2022, appendix A.3.

This module only declares the system (importing it loads no JAX, so `--help` is fast): its
config and presets, the learner and the meta-learning config it builds, and how the runner's
trace becomes the report's columns. The lifetime runs on the Anakin runner
(`bmg.experiments.runners.anakin`: compiled chunks, seeds vmapped and sharded, orbax
checkpoints, exact resume); `run` drives it into a run directory.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import tyro

from bmg.agents.configs import (
    PROBE_CONTEXTS,
    ActorCriticConfig,
    QLambdaConfig,
    output_parameter,
)
from bmg.checks import check_integer, check_nested, check_real, checks_deferred
from bmg.core.config import MetaConfig
from bmg.envs.two_colors_params import check_params
from bmg.experiments.runners import lifetime
from bmg.experiments.runners.lifetime import CHECKPOINTS

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
class TwoColorsConfig:
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
        return MetaConfig(
            algo=self.algo if meta_learned else "fixed",
            inner_steps=self.num_inner_steps if meta_learned else 1,
            bootstrap_steps=self.bootstrap_steps,
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
    def meta_steps_per_chunk(self) -> int:
        # a lifetime shorter than one chunk is one chunk of its own length (not inflated to one
        # whole chunk)
        chunk_steps = min(self.chunk_steps, self.steps)
        return max(1, math.ceil(chunk_steps / self.steps_per_meta_step))

    @property
    def num_chunks(self) -> int:
        steps_per_chunk = self.meta_steps_per_chunk * self.steps_per_meta_step
        return max(1, math.ceil(self.steps / steps_per_chunk))

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
    unused = {
        f"{other}.{f.name}": f"with --agent {agent}"
        for f in dataclasses.fields(getattr(config, other))
    }
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


def result_rows(run_dir: Path) -> list[dict[str, str]]:
    """The results table row of a finished run (as `bmg compare` prints it)."""
    from bmg.experiments import two_colors_report as report

    return report.comparison_rows([run_dir])


def make_learner(config: TwoColorsConfig, hyper: dict | None = None, env=None):
    """The `bmg.core.Learner` of `config.agent` on Two-colors; `hyper` (agent field -> float32
    scalar, e.g. {"entropy_cost": x}) overrides numbers of `config.ac` / `config.q` as data
    (a sweep lane's values, see `make_sweep_runner`). `env`: (environment, its params), made
    here from `config.env` when None (a sweep makes them once, outside the traced function:
    arrays made while tracing become constants the compiled program takes as extra inputs)."""
    from bmg.agents.actor_critic import make_actor_critic
    from bmg.agents.q_lambda import make_q_lambda
    from bmg.envs import two_colors

    env, env_params = (two_colors.TwoColors(), config.env.params()) if env is None else env
    if config.agent == "ac":
        schedule = "fixed" if config.algo == "fixed" else "meta"
        return make_actor_critic(config.ac, env, env_params, schedule=schedule, hyper=hyper)
    schedule = config.algo if config.algo in ("fixed", "decay") else "meta"
    return make_q_lambda(config.q, env, env_params, schedule=schedule, hyper=hyper)


SCHEDULE_PROBES = ("entropy_cost", "epsilon")  # the meta-learned quantity of ac / q
META_GRAD_NORM = "meta/grad_norm"
"""mg / bmg: the global norm of each meta-step's meta-gradient, recorded per meta-step
(trace.npz: meta_grad_norm) and summarised in summary.json. (Adam's update norm is not recorded:
computing it changed how XLA fused the meta-step, and a sweep's lanes were then no longer bit-
identical to single runs.)"""
META_GRAD_COORDINATES = {
    "meta/grad_abs_max": "meta_grad_abs_max",
    "meta/grad_abs_median": "meta_grad_abs_median",
}
"""mg / bmg: the max and median of |g_i| over the meta-gradient's coordinates per meta-step
(``bmg.core.gradient_statistics``), the quantities Adam's per-coordinate epsilon acts on; the
metric's name -> its trace.npz record."""
META_GRAD_OUTPUT = "meta_grad_output"
"""trace.npz: mg / bmg, the signed meta-gradient of the meta-network's output bias (or of the one
logit without context, ``bmg.agents.configs.output_parameter``) per meta-step; positive pushes
the meta-learned value down."""


def output_gradient_metric(config: TwoColorsConfig) -> str:
    """The meta-step metric of the output parameter's gradient (``META_GRAD_OUTPUT``)."""
    return f"meta/grad/{output_parameter(config.learner)}"


def recorded_metrics(config: TwoColorsConfig) -> tuple[str, ...]:
    """The meta-step metrics a run records per meta-step (none for fixed and decay): the
    meta-loss, the meta-gradient's global norm, its per-coordinate max and median |g_i|, and the
    output parameter's signed gradient."""
    if config.meta_config().algo == "fixed":
        return ()
    return (
        "meta/loss",
        META_GRAD_NORM,
        *META_GRAD_COORDINATES,
        output_gradient_metric(config),
    )


PROBE_CONTEXT_NAMES = tuple(f"context/{name}" for name in PROBE_CONTEXTS)


def recorded_probes(config: TwoColorsConfig) -> tuple[str, ...]:
    """The learner probes a run records per meta-step: the counters, the policy's entropy, the
    meta-learned quantity and, for an actor-critic whose entropy cost is a meta-learned function
    of the reward context (mg / bmg), its value on the five fixed probe contexts
    (``PROBE_CONTEXT_NAMES``; Luketina et al.'s Figure 2), and likewise epsilon for Q(lambda)
    with BMG (Figure 2b). Each record is 20 bytes per meta-step and seed: 13 MB per seed over 10M
    steps for Q(lambda)-BMG with L = 16 (15 environment steps per meta-step); Q(lambda)-MG, one
    meta-step per environment step, would need 200 MB and does not record them."""
    schedule = "entropy_cost" if config.agent == "ac" else "epsilon"
    probes = ("env_steps", "reward_sum", "policy_entropy", schedule)
    meta_algos = ("mg", "bmg") if config.agent == "ac" else ("bmg",)
    if config.learner.context == "reward" and config.algo in meta_algos:
        probes += PROBE_CONTEXT_NAMES
    return probes


class Trace(NamedTuple):
    """Per meta-step records of every seed, host arrays [seeds, meta_steps] (the report's view)."""

    env_steps: np.ndarray  # total environment steps after the meta-step
    reward: np.ndarray  # sum of the rewards of the environment steps taken in the meta-step
    schedule: np.ndarray  # entropy cost (ac) or epsilon (q) after the meta-step
    policy_entropy: np.ndarray  # behaviour policy's entropy on the latest rollout's states
    meta_loss: np.ndarray  # 0 for fixed and decay


def report_trace(initial: dict, trace: dict) -> tuple[Trace, np.ndarray]:
    """(Trace, first-rollout reward per seed) from the runner's probes and metrics.

    Rewards per meta-step are differences of the cumulative `reward_sum` probe, taken in float64.
    """
    cumulative = np.concatenate(
        [initial["reward_sum"][:, None], trace["reward_sum"]], axis=1
    ).astype(np.float64)
    schedule = next(name for name in SCHEDULE_PROBES if name in trace)
    meta_loss = trace.get("meta/loss", np.zeros_like(trace["reward_sum"]))
    report = Trace(
        env_steps=np.asarray(trace["env_steps"]),
        reward=np.diff(cumulative, axis=1),
        schedule=np.asarray(trace[schedule]),
        policy_entropy=np.asarray(trace["policy_entropy"]),
        meta_loss=np.asarray(meta_loss),
    )
    return report, cumulative[:, 0]


def make_runner(config: TwoColorsConfig, run_dir: Path | None = None):
    """The Anakin runner of `config`, checkpointing into `run_dir/checkpoints` when given."""
    from bmg.experiments.checkpoint import Checkpointer
    from bmg.experiments.runners.anakin import Anakin

    learner = make_learner(config)
    meta_config = config.meta_config()
    return Anakin(
        learner,
        meta_config,
        num_seeds=config.seeds,
        first_seed=config.seed,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=config.num_chunks,
        metrics=recorded_metrics(config),
        probes=recorded_probes(config),
        checkpointer=None if run_dir is None else Checkpointer(run_dir / CHECKPOINTS),
    )


def chunk_rows(config: TwoColorsConfig, initial: dict, trace: dict, chunk: int) -> list[dict]:
    """One metrics.csv row per seed for `chunk` of the runner's probes and trace."""
    from bmg.experiments import two_colors_report as report

    trace, first = report_trace(initial, trace)
    return report.chunk_rows(trace, first, chunk, config.meta_steps_per_chunk, config.agent)


def _label(config: TwoColorsConfig) -> str:
    from bmg.experiments import two_colors_report as report

    return report.run_label({"config": dataclasses.asdict(config)})


def _csv_fields(config: TwoColorsConfig) -> list[str]:
    from bmg.experiments import two_colors_report as report

    return report.csv_fields(config.agent)


def _detail(config: TwoColorsConfig, rows: list[dict]) -> str:
    return f"reward/step {rows[0]['reward_per_step']:.3f} (seed {config.seed})"


def prepare(config: TwoColorsConfig) -> lifetime.Prepared:
    """`runners.lifetime.prepare`: compiled before any run directory exists (a lifetime that
    cannot fit in memory is refused with one sentence and leaves nothing behind); says how long
    compiling took."""
    from bmg.experiments.logging import make_console

    prepared = lifetime.prepare(config, make_runner)
    make_console().print(f"compiled in {prepared.runner.compile_seconds:.1f} s")
    return prepared


def run(
    config: TwoColorsConfig | lifetime.Prepared, run_dir: Path, *, resume: bool, console
) -> dict:
    """Train (or continue) the lifetime of `config` (or of a `prepare`d one) in `run_dir`
    (`runners.lifetime.run`): metrics.csv, TensorBoard events, trace.npz, summary.json and plots;
    returns the summary.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError (ValueErrors with one sentence).
    """
    return lifetime.run(REPORTING, make_runner, config, run_dir, resume=resume, console=console)


def write_results(
    config: TwoColorsConfig,
    run_dir: Path,
    initial: dict,
    trace: dict,
    *,
    seconds: float,
    compile_seconds: float,
    host_seconds: float,
) -> dict:
    """trace.npz, summary.json and the plots of a finished lifetime (the runner's `initial`
    probes [seeds] and `trace` [seeds, meta_steps]) in `run_dir`; returns the summary."""
    from bmg.experiments import two_colors_report as report
    from bmg.experiments.rundir import save_npz, write_json

    label = report.run_label({"config": dataclasses.asdict(config)})
    extra = {}  # trace.npz records beyond Trace's, when the run recorded them
    if META_GRAD_NORM in trace:
        extra["meta_grad_norm"] = np.asarray(trace[META_GRAD_NORM])
        for metric, record in META_GRAD_COORDINATES.items():
            extra[record] = np.asarray(trace[metric])
        extra[META_GRAD_OUTPUT] = np.asarray(trace[output_gradient_metric(config)])
    if PROBE_CONTEXT_NAMES[0] in trace:  # [seeds, meta_steps, 5]
        extra["probe_contexts"] = np.stack([trace[n] for n in PROBE_CONTEXT_NAMES], axis=-1)
    trace, first = report_trace(initial, trace)
    save_npz(run_dir / "trace.npz", first_rewards=first, **trace._asdict(), **extra)
    summary = report.summarize(
        trace,
        first,
        switch_every=config.env.switch_every,
        seconds=seconds,
        agent=config.agent,
    )
    if "meta_grad_norm" in extra:
        summary.update(
            report.meta_optimizer_statistics(
                extra["meta_grad_norm"],
                extra["meta_grad_abs_max"],
                extra["meta_grad_abs_median"],
                extra[META_GRAD_OUTPUT],
                adam_eps=config.meta_adam_eps,
            )
        )
    if "probe_contexts" in extra:
        summary.update(report.probe_context_statistics(extra["probe_contexts"], PROBE_CONTEXTS))
    summary["compile_seconds"] = compile_seconds
    summary["host_seconds"] = host_seconds
    write_json(run_dir / "summary.json", summary)
    report.plot_run(
        trace,
        first,
        switch_every=config.env.switch_every,
        out=run_dir,
        title=label,
        agent=config.agent,
    )
    if "probe_contexts" in extra:
        report.plot_probe_contexts(
            trace.env_steps,
            extra["probe_contexts"],
            PROBE_CONTEXTS,
            quantity="entropy cost" if config.agent == "ac" else "epsilon",
            switch_every=config.env.switch_every,
            out=run_dir,
            title=label,
        )
    return summary


REPORTING = lifetime.Reporting(
    name="two-colors",
    unit="steps",
    x_field="env_steps",
    label=_label,
    csv_fields=_csv_fields,
    chunk_rows=chunk_rows,
    detail=_detail,
    write_results=write_results,
)


# Sweeps ---------------------------------------------------------------------------------------

SWEEPABLE: dict[str, str] = {
    "ac.entropy_cost": "the fixed baseline's entropy cost (and mg / bmg's start without "
    "ac.meta_initial)",
    "ac.meta_initial": "mg / bmg: the entropy cost at initialisation",
    "ac.outer_entropy_cost": "mg / bmg: the entropy cost inside the meta-objective",
    "ac.learning_rate": "the actor-critic's inner learning rate",
    "q.epsilon": "the fixed baseline's epsilon (and mg / bmg's start without q.meta_initial)",
    "q.meta_initial": "mg / bmg: epsilon at initialisation",
    "q.learning_rate": "Q(lambda)'s inner learning rate",
    "meta_learning_rate": "mg / bmg: the meta-optimiser's Adam learning rate",
    "meta_adam_eps": "mg / bmg: the meta-optimiser's Adam epsilon",
}
"""Numbers a sweep runs as data in one compiled program (field -> meaning). K, L and every other
field change the program's shapes or structure: one sweep per value."""

Grid = dict[str, tuple[float, ...]]
"""field -> candidate values, e.g. {"ac.entropy_cost": (0.0, 0.1)}; configurations are the
cartesian product, in the grid's order (the last field varies fastest)."""


def _hyper_name(field: str) -> str:
    """The lane's `hyper` key of a grid field: the agent's field name, or meta_learning_rate."""
    return field.rsplit(".", 1)[-1]


def parse_grid(specs: list[str]) -> Grid:
    """`["ac.entropy-cost=0,0.1", "meta-learning-rate=1e-3,1e-4"]` -> a `Grid` (dashes read as
    underscores, as tyro spells flags).

    Raises:
      ValueError: a spec without `=`, a field that is not sweepable, a value that is not a
        number, a repeated field or value, two values equal in float32 (one sentence naming it
        and what is accepted).
    """
    grid: Grid = {}
    accepted = ", ".join(SWEEPABLE)
    for spec in specs:
        field, sep, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(
                f"--grid {spec!r} must read FIELD=V1,V2,... with FIELD one of: {accepted}."
            )
        if field not in SWEEPABLE:
            raise ValueError(
                f"--grid field {field!r} is not a sweepable number; sweepable fields: {accepted} "
                "(K, L and other fields change the program: run one sweep per value)."
            )
        if field in grid:
            raise ValueError(f"--grid field {field!r} is given twice; give its values once.")
        try:
            numbers = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(
                f"--grid {field} values must be numbers separated by commas, got {values!r}."
            ) from None
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"--grid {field} repeats a value in {values!r}; give each once.")
        lanes = np.float32(numbers).tolist()  # the precision a lane runs its numbers at
        for i, j in itertools.combinations(range(len(numbers)), 2):
            if lanes[i] == lanes[j]:
                raise ValueError(
                    f"--grid {field} values {numbers[i]!r} and {numbers[j]!r} are one number in "
                    "float32, the precision the sweep's lanes run at (two lanes of one "
                    "configuration); give each value once."
                )
        grid[field] = numbers
    if not grid:
        raise ValueError(f"a sweep needs at least one --grid FIELD=V1,V2,... ({accepted}).")
    return grid


def _with_field(config: TwoColorsConfig, field: str, value: float) -> TwoColorsConfig:
    if "." in field:
        agent, name = field.split(".")
        inner = dataclasses.replace(getattr(config, agent), **{name: value})
        return dataclasses.replace(config, **{agent: inner})
    return dataclasses.replace(config, **{field: value})


def sweep_configs(base: TwoColorsConfig, grid: Grid) -> list[TwoColorsConfig]:
    """One validated config per grid point (the cartesian product; `dataclasses.replace` runs
    every config check, so a bad value fails here, before anything compiles).

    Raises:
      ValueError: a field that is not sweepable, that belongs to the other agent, or that
        `base.algo` does not use; a grid value the config refuses (one sentence naming both).
    """
    for field in grid:
        if field not in SWEEPABLE:
            raise ValueError(
                f"--grid field {field!r} is not sweepable; sweepable: {', '.join(SWEEPABLE)}."
            )
        if "." in field and field.split(".")[0] != base.agent:
            raise ValueError(
                f"--grid {field} belongs to agent {field.split('.')[0]}, this sweep runs agent "
                f"{base.agent}; sweep {base.agent}.* fields or meta_learning_rate."
            )
        meta_only = field in (
            "meta_learning_rate",
            "meta_adam_eps",
            "ac.outer_entropy_cost",
        ) or field.endswith("meta_initial")
        if meta_only and base.algo not in ("mg", "bmg"):
            raise ValueError(
                f"--grid {field} only changes mg and bmg runs, this sweep runs algo "
                f"{base.algo}; drop it or use --algo mg / bmg."
            )
    configs = []
    for values in itertools.product(*grid.values()):
        config = base
        for field, value in zip(grid, values, strict=True):
            try:
                config = _with_field(config, field, value)
            except ValueError as error:
                raise ValueError(f"--grid {field}={value:g}: {error}") from None
        configs.append(config)
    return configs


def sweep_lanes(base: TwoColorsConfig, grid: Grid) -> tuple[dict[str, np.ndarray], list[int]]:
    """(hyper, lane_seeds) of a sweep: lane c * seeds + s runs configuration c (the
    `sweep_configs` order) with seed `base.seed + s`; hyper maps the lane's `hyper` names to
    float32 [configurations * seeds]."""
    points = list(itertools.product(*grid.values()))
    hyper = {
        _hyper_name(field): np.repeat(np.asarray([p[i] for p in points], np.float32), base.seeds)
        for i, field in enumerate(grid)
    }
    seeds = [base.seed + s for _ in points for s in range(base.seeds)]
    return hyper, seeds


def make_sweep_runner(base: TwoColorsConfig, grid: Grid, checkpoint_dir: Path | None = None):
    """The Anakin runner of a whole sweep: one compiled program whose lanes are the grid's
    configurations x `base.seeds` seeds, vmapped and sharded over devices; lane i reproduces the
    single run (`make_runner`) of its configuration and seed. Each lane's learner and
    meta-optimiser (`optax.adam(meta_learning_rate, eps=meta_adam_eps)`, as `make_meta_learner`
    builds it) are made from the lane's numbers inside the traced function.

    Raises:
      ValueError: see `sweep_configs`.
    """
    import optax

    from bmg.core import make_meta_learner
    from bmg.experiments.checkpoint import Checkpointer
    from bmg.experiments.runners.anakin import Anakin

    sweep_configs(base, grid)  # validates every grid point
    hyper, seeds = sweep_lanes(base, grid)
    meta_config = base.meta_config()
    from bmg.envs import two_colors

    env = (two_colors.TwoColors(), base.env.params())

    meta_fields = ("meta_learning_rate", "meta_adam_eps")

    def build(lane_hyper):
        agent_hyper = {k: v for k, v in lane_hyper.items() if k not in meta_fields}
        learner = make_learner(base, hyper=agent_hyper, env=env)
        optimizer = None
        if any(name in lane_hyper for name in meta_fields):
            optimizer = optax.adam(
                lane_hyper.get("meta_learning_rate", base.meta_learning_rate),
                eps=lane_hyper.get("meta_adam_eps", base.meta_adam_eps),
            )
        return learner, make_meta_learner(learner, meta_config, meta_optimizer=optimizer)

    return Anakin(
        build,
        None,
        num_seeds=len(seeds),
        first_seed=base.seed,
        meta_steps_per_chunk=base.meta_steps_per_chunk,
        num_chunks=base.num_chunks,
        metrics=recorded_metrics(base),
        probes=recorded_probes(base),
        checkpointer=None if checkpoint_dir is None else Checkpointer(checkpoint_dir),
        hyper=hyper,
        lane_seeds=seeds,
    )


SWEEP_CONFIG = "sweep_config.json"


def config_dir_name(index: int, grid: Grid, config: TwoColorsConfig) -> str:
    """`03-ac.entropy_cost=0.2-meta_learning_rate=0.001`: a configuration's run directory."""
    values = [f"{field}={_get_field(config, field):g}" for field in grid]
    return "-".join([f"{index:02d}", *values])


def _get_field(config: TwoColorsConfig, field: str) -> float:
    if "." in field:
        agent, name = field.split(".")
        return getattr(getattr(config, agent), name)
    return getattr(config, field)


def method_label(config: TwoColorsConfig) -> str:
    """The method a sweep ranks settings of: agent, algo, K, L (bmg) and the context."""
    label = f"{config.agent} {config.algo}"
    if config.algo in ("mg", "bmg"):
        label += f" K={config.num_inner_steps}"
        label += f" L={config.bootstrap_steps}" if config.algo == "bmg" else ""
        label += "" if config.learner.context == "reward" else " no-context"
    return label


def sweep_rows(base: TwoColorsConfig, grid: Grid, summaries: list[dict]) -> list[dict]:
    """One row per configuration, best total reward first (the published protocol picks the
    best setting per method by total reward: Luketina et al., CoLLAs 2022, appendix A.3)."""
    from bmg.experiments import two_colors_report as report

    rows = []
    configs = sweep_configs(base, grid)
    for index, (config, summary) in enumerate(zip(configs, summaries, strict=True)):
        total = summary["total_reward"]
        rows.append(
            {
                "run": config_dir_name(index, grid, config),
                "method": method_label(base),
                **{field: f"{_get_field(config, field):g}" for field in grid},
                "seeds": str(summary["seeds"]),
                "total reward": report.format_mean_se(total, 0),
                "total_reward_mean": total["mean"],
                "reward/step, last 10%": report.format_mean_se(
                    summary["reward_per_step_last_10pct"]
                ),
            }
        )
    rows.sort(key=lambda row: -row["total_reward_mean"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = str(rank)
    return rows


def run_sweep(base: TwoColorsConfig, grid: Grid, sweep_dir: Path, *, resume: bool, console):
    """Run (or continue) a sweep in `sweep_dir`: sweep_config.json, checkpoints/ while it runs,
    then one ordinary run directory per configuration (config.json, trace.npz, summary.json,
    plots: `bmg compare` reads them) and sweep.md / sweep.json ranking them by total reward.
    Returns the rows of sweep.json.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError / ValueError (one sentence).
    """
    from bmg.experiments import rundir
    from bmg.experiments.tables import markdown_table

    configs = sweep_configs(base, grid)
    runner = make_sweep_runner(base, grid, sweep_dir / CHECKPOINTS)
    lanes = runner.num_seeds
    console.print(
        f"[bold]two-colors sweep[/bold]: {len(configs)} configurations x {base.seeds} seeds = "
        f"{lanes} lanes x {base.total_env_steps:,} steps in {base.num_chunks} chunks -> "
        f"{sweep_dir}"
    )
    runner.compile()
    console.print(f"compiled in {runner.compile_seconds:.1f} s")
    # A sweep stopped before its first save has no finished work: its recorded grid starts over
    # (the same numbers as an uninterrupted sweep: the lifetime is deterministic).
    started = resume and runner.checkpointer.latest_step() is not None
    if resume and not started:
        console.print("no checkpoint yet (stopped during the first chunk): starting over")
    state = runner.restore() if started else runner.start()

    def on_chunk(info):
        rate = info.meta_steps_per_second * base.steps_per_meta_step
        console.print(
            f"chunk {info.state.chunks_done}/{info.num_chunks}: {rate:,.0f} steps/s (all "
            f"lanes), host {info.chunk_host_seconds:.2f} s / device {info.chunk_seconds:.2f} s"
        )

    result = runner.run(state, on_chunk=on_chunk)
    final = result.state
    summaries = []
    for index, config in enumerate(configs):
        lanes_of = slice(index * base.seeds, (index + 1) * base.seeds)
        run_dir = sweep_dir / config_dir_name(index, grid, config)
        run_dir.mkdir(parents=True, exist_ok=True)
        as_json = rundir.to_json(config)
        from bmg.experiments.cli import config_digest

        rundir.write_config(run_dir, config, config_digest=config_digest(as_json), sweep=index)
        summaries.append(
            write_results(
                config,
                run_dir,
                {k: v[lanes_of] for k, v in final.initial.items()},
                {k: v[lanes_of] for k, v in final.trace.items()},
                seconds=final.seconds,  # the whole sweep's device time (shared by its lanes)
                compile_seconds=result.compile_seconds,
                host_seconds=final.host_seconds,
            )
        )
    rows = sweep_rows(base, grid, summaries)
    rundir.write_json(
        sweep_dir / "sweep.json",
        {
            "grid": {k: list(v) for k, v in grid.items()},
            "lanes": lanes,
            "seconds": final.seconds,
            "host_seconds": final.host_seconds,
            "compile_seconds": result.compile_seconds,
            "env_steps_per_second": lanes * base.total_env_steps / final.seconds,
            "rows": rows,
        },
    )
    table = [{k: v for k, v in row.items() if k != "total_reward_mean"} for row in rows]
    rundir.write_atomic(sweep_dir / "sweep.md", markdown_table(table) + "\n")
    shutil.rmtree(sweep_dir / CHECKPOINTS, ignore_errors=True)
    return rows
