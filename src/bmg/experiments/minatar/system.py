"""MinAtar: IMPALA, STACX (MG) and STACX + BMG on the gymnax MinAtar games, on the Anakin spine.

Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (the Atari experiments: STACX with a
one-step meta-gradient, and with BMG), here on MinAtar (Young & Tian, 2019) in pure JAX: the
agent is ``bmg.agents.stacx`` (Zahavy et al., "A Self-Tuning Actor-Critic Algorithm", NeurIPS
2020), the games ``bmg.envs.minatar``.

This module only declares the system (importing it loads no JAX, so ``--help`` is fast): its
config and presets, the learner and meta-learning config it builds, and how the runner's trace
becomes the report's columns. The lifetime runs on the Anakin runner
(``bmg.train.anakin``: compiled chunks, seeds vmapped and sharded, one seed's
batch optionally split over devices, orbax checkpoints, exact resume); ``run`` drives it into a
run directory; ``bmg.experiments.minatar.report`` writes the tables and plots.

Algorithms: ``impala`` (``MetaConfig(algo="fixed")``: the initial hyper-parameters, sigma(4.6)),
``stacx`` (``"mg"``, K = ``inner_steps`` = 1 [paper]) and ``bmg`` (K = 1, L = ``bootstrap_steps``,
the learner's RMSProp-preconditioned target step and KL matching by default [paper]). BMG's
learner goes on from the target's last update (``continue_from="target"``) by default: the
L - 1 bootstrap updates act and learn on fresh frames, so no frame is collected and discarded
(the paper does not say which state its learner continues from [default]).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from bmg.experiments.api import System
from bmg.experiments.minatar.config import (  # noqa: F401  (the system's config, re-exported)
    ALGOS,
    MAX_STEPS,
    META,
    PRESETS,
    SETTINGS,
    MinAtarConfig,
    stacx_algo,
    stacx_select,
    unused_fields,
)
from bmg.experiments.minatar.report import REPORT
from bmg.train import driver
from bmg.train.driver import CHECKPOINTS


def make_env(config: MinAtarConfig):
    """``(env, env_params)`` of the configured game and protocol."""
    from bmg.envs import minatar

    return minatar.make(
        config.env,
        sticky_action_prob=config.sticky_action_prob,
        full_action_set=config.full_action_set,
    )


def make_learner(config: MinAtarConfig):
    """The STACX ``bmg.core.Learner`` (its batch split over "batch" with batch_devices > 1)."""
    from bmg.agents.stacx import make_stacx
    from bmg.train.anakin import BATCH_AXIS

    env, env_params = make_env(config)
    axis = BATCH_AXIS if config.batch_devices > 1 else None
    return make_stacx(config.stacx, env, env_params, axis_name=axis)


def make_runner(config: MinAtarConfig, run_dir: Path | None = None):
    """The Anakin runner of ``config``, checkpointing into ``run_dir/checkpoints`` when given."""
    from bmg.train.anakin import Anakin
    from bmg.train.checkpoint import Checkpointer

    return Anakin(
        make_learner(config),
        config.meta,
        num_seeds=config.lifetime.seeds,
        first_seed=config.lifetime.seed,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=config.num_chunks,
        metrics=("meta/loss",) if config.meta.algo != "fixed" else (),
        checkpointer=None if run_dir is None else Checkpointer(run_dir / CHECKPOINTS),
        batch_devices=config.batch_devices,
    )


def chunk_rows(config: MinAtarConfig, piece: driver.Piece) -> list[dict]:
    """One metrics.csv row per seed for a chunk of the runner's trace."""
    from bmg.experiments.minatar import report

    return report.chunk_rows(piece.before, piece.values, piece.index, config.lifetime.seed)


def _label(config: MinAtarConfig) -> str:
    from bmg.experiments.minatar import report

    return report.run_label(dataclasses.asdict(config))


def _csv_fields(config: MinAtarConfig) -> list[str]:
    from bmg.experiments.minatar import report

    return report.csv_fields(config.stacx.num_heads)


def _detail(config: MinAtarConfig, rows: list[dict]) -> str:
    returns = [r["episode_return"] for r in rows]
    return "episode return per seed " + ", ".join(
        "-" if math.isnan(x) else f"{x:.2f}" for x in returns
    )


def write_results(
    config: MinAtarConfig,
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
    from bmg.experiments.minatar import report
    from bmg.train.rundir import save_npz, write_json

    per_chunk = config.meta_steps_per_chunk
    save_npz(run_dir / "trace.npz", **{f"initial/{k}": v for k, v in initial.items()}, **trace)
    summary = report.summarize(initial, trace, per_chunk)
    summary["seconds"] = seconds
    summary["compile_seconds"] = compile_seconds
    summary["host_seconds"] = host_seconds
    frames = (
        config.lifetime.seeds * next(iter(trace.values())).shape[1] * config.steps_per_meta_step
    )
    summary["frames_per_second"] = frames / seconds if seconds > 0 else float("nan")
    summary["meta_steps_per_chunk"] = per_chunk
    report.plot_run(initial, trace, per_chunk, out=run_dir, title=_label(config))
    # summary.json last: it marks the run finished, so a run interrupted while its plots are
    # drawn still resumes (from its last checkpoint) and finishes
    write_json(run_dir / "summary.json", summary)
    return summary


REPORTING = driver.Reporting(
    name="minatar",
    unit="frames",
    x_field="frames",
    label=_label,
    csv_fields=_csv_fields,
    chunk_rows=chunk_rows,
    detail=_detail,
    write_results=write_results,
)


def prepare(config: MinAtarConfig) -> driver.Prepared:
    """`bmg.train.driver.prepare`: compiled before any run directory exists (a lifetime that
    cannot fit in memory is refused with one sentence and leaves nothing behind); says how long
    compiling took."""
    from bmg.train.logging import make_console

    prepared = driver.prepare(config, make_runner)
    make_console().print(f"compiled in {prepared.runner.compile_seconds:.1f} s")
    return prepared


def run(config: MinAtarConfig | driver.Prepared, run_dir: Path, *, resume: bool, console) -> dict:
    """Train (or continue) the lifetime of `config` in `run_dir` (`bmg.train.driver.drive`):
    metrics.csv, TensorBoard events, trace.npz, summary.json and plots; returns the summary.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError (ValueErrors with one sentence).
    """
    return driver.drive_anakin(
        REPORTING, make_runner, config, run_dir, resume=resume, console=console
    )


SYSTEM = System(SETTINGS, run, REPORT, prepare=prepare)
"""`bmg minatar`: the lifetime on the Anakin runner (`run`), compiled first (`prepare`)."""
