"""A new experiment system in one file: BMG or MG meta-learns the entropy cost of an actor-critic
on gymnax's CartPole-v1, run by the `bmg` command's machinery (docs/adding-a-system.md).

A system is a config, a learner, a `System` and a report; the engine (`bmg.train`: the Anakin
runner and its run-directory driver) and the command line (`bmg.experiments.command`) do the
rest: presets and flags, the run directory, checkpoints and resume, metrics.csv, TensorBoard,
progress, the results table. Nothing here is a loop.

    python examples/new_system.py bmg --out runs/cartpole-bmg    (or mg, fixed, tiny)
    python examples/new_system.py resume runs/cartpole-bmg

To make it a `bmg` command, add its `ENTRY` to `bmg.experiments.registry.ENTRIES` (with loaders
that import this module's `SETTINGS` and `SYSTEM`).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bmg.agents.configs import ActorCriticConfig
from bmg.checks import check_nested
from bmg.core.config import MetaConfig
from bmg.experiments.api import Report, Settings, System
from bmg.experiments.registry import Entry
from bmg.train import driver, lifetime
from bmg.train.lifetime import LifetimeConfig


# --- 1. the config: nested, frozen, validated without JAX -------------------------------------
@dataclasses.dataclass(frozen=True)
class CartPoleConfig(lifetime.Chunked):
    """An actor-critic on CartPole-v1 with a fixed, MG or BMG entropy cost."""

    lifetime: LifetimeConfig = LifetimeConfig(steps=200_000, seeds=2, chunk_steps=50_000)
    """environment steps per seed, seeds (run in parallel), the first seed and steps per
    compiled chunk, each followed by a checkpoint and metrics.csv rows (`bmg.train.lifetime`)."""
    meta: MetaConfig = MetaConfig(
        algo="bmg", inner_steps=1, bootstrap_steps=2, continue_from="target"
    )
    """fixed / mg / bmg, K, L, the meta-optimiser (`bmg.core.MetaConfig`); BMG's learner goes on
    from the target, so every environment step it takes is the learner's."""
    ac: ActorCriticConfig = ActorCriticConfig(
        hidden_size=64, optimizer="adam", learning_rate=1e-3, context="none"
    )
    """the actor-critic (`bmg.agents.configs.ActorCriticConfig`)."""

    def __post_init__(self):
        check_nested(self)  # checks the nested configs: an error names the path (meta.inner_steps)

    @property
    def algo(self) -> str:  # the run directory's name: runs/cartpole/<algo>-<time>
        return self.meta.algo

    @property
    def steps_per_meta_step(self) -> int:
        return self.meta.updates_per_step * self.ac.rollout_length

    @property
    def total_env_steps(self) -> int:  # whole chunks, plus the first rollout
        steps = self.num_chunks * self.meta_steps_per_chunk * self.steps_per_meta_step
        return steps + self.ac.rollout_length


PRESETS = {
    "bmg": ("BMG K = 1, L = 2: 2 seeds x 200k steps", {}),
    "mg": ("MG K = 1: 2 seeds x 200k steps", dict(meta=MetaConfig(algo="mg", inner_steps=1))),
    "fixed": ("a fixed entropy cost: 2 seeds x 200k steps", dict(meta=MetaConfig(algo="fixed"))),
    "tiny": (
        "a smoke test: BMG, 2 seeds x 2k steps",
        dict(lifetime=LifetimeConfig(steps=2_048, seeds=2, chunk_steps=1_024)),
    ),
}


def unused_fields(config: CartPoleConfig) -> dict[str, str]:
    """The fields a flag may not set for this run (it would have no effect): the command refuses
    them instead of ignoring them."""
    algo = config.meta.algo
    unused = {}
    if algo != "bmg":
        why = f"with meta.algo {algo} (only BMG bootstraps a target)"
        unused.update({f"meta.{f}": why for f in ("bootstrap_steps", "target_step_size")})
    if algo == "fixed":
        why = "with meta.algo fixed (nothing is meta-learned)"
        fields = (
            "meta.inner_steps",
            "meta.learning_rate",
            "meta.adam_eps",
            "ac.outer_entropy_cost",
        )
        unused.update({f: why for f in fields})
    return unused


SETTINGS = Settings(CartPoleConfig, PRESETS, unused_fields)


# --- 2. the learner and its runner ---------------------------------------------------------------
def make_runner(config: CartPoleConfig, run_dir: Path | None = None):
    """The Anakin runner of `config`: the actor-critic (`bmg.agents.actor_critic`) on
    CartPole-v1 under `config.meta`, checkpointing into `run_dir/checkpoints` when given."""
    import gymnax

    from bmg.agents.actor_critic import make_actor_critic
    from bmg.train.anakin import Anakin
    from bmg.train.checkpoint import Checkpointer

    env, env_params = gymnax.make("CartPole-v1")
    schedule = "fixed" if config.meta.algo == "fixed" else "meta"
    learner = make_actor_critic(config.ac, env, env_params, schedule=schedule)
    return Anakin(
        learner,
        config.meta,
        num_seeds=config.lifetime.seeds,
        first_seed=config.lifetime.seed,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=config.num_chunks,
        metrics=("meta/loss",) if config.meta.algo != "fixed" else (),
        probes=("env_steps", "episodes", "episode_return_sum", "entropy_cost"),
        checkpointer=None if run_dir is None else Checkpointer(run_dir / driver.CHECKPOINTS),
    )


# --- 3. what a chunk's rows and the finished run's results are ---------------------------------
FIELDS = ["seed", "chunk", "env_steps", "episode_return", "entropy_cost"]


def chunk_rows(config: CartPoleConfig, piece: driver.Piece) -> list[dict[str, Any]]:
    """One metrics.csv row per seed: the mean return of the episodes that ended in the chunk."""
    values, before = piece.values, piece.before
    episodes = values["episodes"][:, -1] - before["episodes"]
    returns = values["episode_return_sum"][:, -1] - before["episode_return_sum"]
    return [
        {
            "seed": config.lifetime.seed + i,
            "chunk": piece.index,
            "env_steps": int(values["env_steps"][i, -1]),
            "episode_return": float(returns[i] / episodes[i]) if episodes[i] else float("nan"),
            "entropy_cost": float(values["entropy_cost"][i].mean()),
        }
        for i in range(config.lifetime.seeds)
    ]


def write_results(config, run_dir: Path, initial, trace, **seconds) -> dict:
    """summary.json: the last chunk's mean episode return per seed, and the times."""
    from bmg.train.rundir import write_json

    m = config.meta_steps_per_chunk
    before = {k: v[:, -m - 1] for k, v in trace.items()} if config.num_chunks > 1 else initial
    last = driver.Piece(config.num_chunks - 1, before, {k: v[:, -m:] for k, v in trace.items()})
    final = [row["episode_return"] for row in chunk_rows(config, last)]
    summary = {"algo": config.meta.algo, "final_return": final, **seconds}
    write_json(run_dir / "summary.json", summary)
    return summary


REPORTING = driver.Reporting(
    name="cartpole",
    unit="steps",
    x_field="env_steps",
    label=lambda config: f"{config.meta.algo} K={config.meta.inner_steps}",
    csv_fields=lambda config: FIELDS,
    chunk_rows=chunk_rows,
    detail=lambda config, rows: (
        f"return {rows[0]['episode_return']:.1f} (seed {config.lifetime.seed})"
    ),
    write_results=write_results,
)


def run(config, run_dir: Path, *, resume: bool, console) -> dict:
    return driver.drive_anakin(
        REPORTING, make_runner, config, run_dir, resume=resume, console=console
    )


# --- 4. the report: read from run directories alone ----------------------------------------------
def check_run(run_dir: Path) -> None:
    if not (Path(run_dir) / "summary.json").is_file():
        raise ValueError(f"{run_dir} is not a finished run: summary.json is missing.")


def comparison_rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    from bmg.train.rundir import read_json

    rows = []
    for run_dir in run_dirs:
        summary = read_json(Path(run_dir) / "summary.json", "a run's summary")
        final = np.asarray(summary["final_return"], float)
        rows.append({"run": summary["algo"], "final return": f"{np.nanmean(final):.1f}"})
    return rows


REPORT = Report(check_run, comparison_rows, plot_comparison=lambda runs, out: None)

SYSTEM = System(SETTINGS, run, REPORT)

ENTRY = Entry(
    "cartpole",
    "train fixed / mg / bmg entropy costs on CartPole-v1; writes a run directory",
    "CartPole-v1 (gymnax): an actor-critic with a fixed, MG or BMG entropy cost.",
    lambda: SETTINGS,
    lambda: SYSTEM,
    all_cpu_cores=True,
    prog="python examples/new_system.py",
)


def main(argv: list[str] | None = None) -> None:
    """`python examples/new_system.py PRESET [flags]` / `resume RUN_DIR`, as `bmg cartpole`."""
    from bmg.experiments.cli import system_command

    system_command(ENTRY, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
