"""Atari: IMPALA, STACX (MG) and STACX + BMG on the Arcade Learning Environment, on Sebulba.

Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (the Atari experiments: STACX with a
one-step meta-gradient, and with BMG; 200M frames in IMPALA's actor-learner layout), on the real
emulator (``bmg.envs.atari``, ale-py) with the Sebulba runner
(``bmg.train.sebulba``: actor threads -> queue -> a learner sharded over devices,
several hosts through ``jax.distributed``). The agent is ``bmg.agents.stacx`` (Zahavy et al.,
NeurIPS 2020) with IMPALA's ResNet torso (Espeholt et al., ICML 2018).

Its config and presets are `bmg.experiments.atari.config` (no JAX, so ``--help`` is fast); this
module's ``run`` drives the runner into a run directory like every system's
(config.json, metrics.csv, TensorBoard events, progress with frames/s and ETA, checkpoints,
trace.npz, summary.json, plots). Algorithms as in ``bmg.experiments.minatar.system``: ``impala``
(``MetaConfig(algo="fixed")``), ``stacx`` (``"mg"``, K = ``inner_steps``) and ``bmg`` (K, L =
``bootstrap_steps``; the learner's RMSProp-preconditioned target step and KL matching by default
[paper]; the learner continues from the target, so each of the K + L - 1 batches of a meta-step
trains it).

Frames are emulator frames learned (agent steps x ``frame_skip``): a meta-step consumes N
batches of B streams x T steps (N = K, or K + L - 1 for BMG), that is N x B x T x frame_skip
frames per process; a run learns ``frames`` rounded up to whole meta-steps. Episode returns are
raw (unclipped) and counted when the actors finish them. One run is one seed: the actor-learner
system is asynchronous (the thread schedule decides which parameters act), so runs are repeated
with ``--seed`` rather than vmapped.

Checkpoints (orbax, ``bmg.train.checkpoint``) every ``checkpoint_interval`` meta-steps hold
the learner state (parameters, RMSProp state, meta-parameters, the meta-optimiser's Adam state,
the PRNG key) and, in their JSON, the counters (meta-steps, frames learned and acted, episodes,
seconds) and the metrics rows so far; not the queue or the games. ``bmg atari resume RUN_DIR``
restores them and restarts the actors from fresh games (seeds and acting noise folded with the
meta-step count), so a resumed run is not bit-identical to an uninterrupted one: what is exact is
the learner state at the checkpoint and the counters, which continue (tested).

They go to RUN_DIR/checkpoints, or to ``checkpoint_dir``. A multi-process run checkpoints into
one ``checkpoint_dir`` that every process reaches (a shared filesystem; the same absolute path in
every process's command): all processes save the learner's global arrays together (orbax's
multi-process save: each process writes its own shards, process 0 the JSON, which keeps every
process's counters and rows by process index), and each process resumes with ``bmg atari resume
ITS_RUN_DIR``, all restoring the same step (tested with two processes on localhost).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

from bmg.agents.configs import META_NAMES
from bmg.experiments.api import System
from bmg.experiments.atari.config import (  # noqa: F401  (the system's config, re-exported)
    PRESETS,
    SETTINGS,
    AtariExperimentConfig,
    check_address,
    check_checkpoint_dir,
    check_processes,
    unused_fields,
)
from bmg.experiments.atari.report import REPORT, run_label
from bmg.train.driver import CHECKPOINTS

ACTOR_TIMES = ("env", "inference", "put_wait", "params_wait")
LEARNER_TIMES = ("get_wait", "stack", "transfer", "step", "publish")


# --- building -----------------------------------------------------------------------------------


class Prepared(NamedTuple):
    """A checked config (``prepare``): ale-py and the game exist, the processes are joined."""

    config: AtariExperimentConfig
    processes: int


def prepare(config: AtariExperimentConfig) -> Prepared:
    """Checks made before any run directory exists, each failing with one sentence: ale-py is
    installed and has the game; joins the multi-process run when a coordinator is named
    (``sebulba.initialize_distributed``, before any other JAX work); a multi-process run that
    checkpoints names its shared ``checkpoint_dir`` (``check_checkpoint_dir``); the layout fits
    the devices.

    Raises:
      ValueError: the sentence.
    """
    from bmg.envs.atari import MISSING_ALE, require_ale

    try:
        require_ale()
    except ImportError:
        raise ValueError(MISSING_ALE) from None
    from ale_py import roms

    if config.atari_config().rom not in roms.get_all_rom_ids():
        raise ValueError(
            f"env.game must be one of ale-py's games (such as 'Breakout', 'Pong', 'MsPacman'), got "
            f"{config.env.game!r}."
        )
    from bmg.train.sebulba import initialize_distributed, resolve_devices

    if not config.coordinator_address and os.environ.get("JAX_COORDINATOR_ADDRESS"):
        check_address(os.environ["JAX_COORDINATOR_ADDRESS"], "$JAX_COORDINATOR_ADDRESS")
    initialize_distributed(config.coordinator_address, config.num_processes, config.process_id)
    import jax

    from bmg.train.backend import check_backend

    check_backend()  # JAX's first computation: after joining, before anything else

    check_checkpoint_dir(config, jax.process_count())

    _, learners = resolve_devices(config.sebulba)
    if config.sebulba.batch_size % len(learners):
        raise ValueError(
            f"sebulba.learner_devices ({len(learners)}) must divide the learner batch B = "
            f"rollouts_per_batch x envs_per_thread = {config.sebulba.batch_size}."
        )
    return Prepared(config, jax.process_count())


def make_runner(config: AtariExperimentConfig):
    """The Sebulba runner of ``config`` on ale-py's games (``bmg.envs.atari``)."""
    from bmg.agents.stacx import sebulba_agent
    from bmg.envs.atari import make_vector_env
    from bmg.train.sebulba import Sebulba

    atari = config.atari_config()
    return Sebulba(
        config.sebulba,
        sebulba_agent(config.stacx),
        config.meta,
        lambda index: make_vector_env(atari, config.seed),
        seed=config.seed,
    )


# --- reporting ----------------------------------------------------------------------------------


def meta_names(num_heads: int) -> list[str]:
    return [f"head{h}/{name}" for h in range(num_heads) for name in META_NAMES]


def csv_fields(config: AtariExperimentConfig) -> list[str]:
    """metrics.csv columns (one row per ``log_interval`` meta-steps)."""
    return [
        "meta_steps",
        "frames",
        "frames_acted",
        "episodes",
        "episode_return",
        "episode_frames",
        "fps",
        "fps_acted",
        "seconds",
        "lag_mean",
        "lag_max",
        *(f"actor_{name}" for name in ACTOR_TIMES),
        *(f"learner_{name}" for name in LEARNER_TIMES),
        "learner_loss",
        "policy_entropy",
        "meta_loss",
        *meta_names(config.stacx.num_heads),
        "episode_return_sum",
    ]


def label(config: AtariExperimentConfig) -> str:
    """The report's name of a run (``atari.report.run_label``)."""
    return run_label(dataclasses.asdict(config))


def _sigmoid(x) -> float:
    return float(1.0 / (1.0 + math.exp(-float(x))))


class Window:
    """Turns the runner's cumulative ``Stats`` into one metrics row per ``log_interval``
    meta-steps (the differences since the last row)."""

    def __init__(self, stats, seconds_before: float, return_before: float, processes: int):
        self.seconds_before = seconds_before  # of earlier segments (a resumed run)
        self.processes = processes  # frames learned: this process's share x processes
        self.started = time.perf_counter()
        self.return_before = return_before
        self.last = self._read(stats)
        self.last_seconds = 0.0

    def _read(self, stats) -> dict:
        with stats.lock:
            return {
                "episodes": len(stats.episode_returns),
                "actor": dict(stats.actor),
                "learner": dict(stats.learner),
                "lags": len(stats.lags),
                "frames": stats.frames_learned * self.processes,
                "frames_acted": stats.frames_acted,
            }

    def row(self, stats, version: int, metrics: dict, meta_params: dict, num_heads: int) -> dict:
        now = time.perf_counter() - self.started
        with stats.lock:
            start = self.last["episodes"]
            returns = list(stats.episode_returns[start:])
            lengths = list(stats.episode_frames[start:])
            lags = list(stats.lags[self.last["lags"] :])
            actor, learner = dict(stats.actor), dict(stats.learner)
            frames, acted = stats.frames_learned * self.processes, stats.frames_acted
        seconds = max(now - self.last_seconds, 1e-9)
        actor_spent = {k: actor[k] - self.last["actor"][k] for k in ACTOR_TIMES}
        learner_spent = {k: learner[k] - self.last["learner"][k] for k in LEARNER_TIMES}
        actor_total = max(sum(actor_spent.values()), 1e-9)
        learner_total = max(sum(learner_spent.values()), 1e-9)
        self.return_before += float(sum(returns))
        row = {
            "meta_steps": version,
            "frames": frames,
            "frames_acted": acted,
            "episodes": len(returns),
            "episode_return": float(sum(returns) / len(returns)) if returns else math.nan,
            "episode_frames": float(sum(lengths) / len(lengths)) if lengths else math.nan,
            "fps": (frames - self.last["frames"]) / seconds,
            "fps_acted": (acted - self.last["frames_acted"]) / seconds,
            "seconds": self.seconds_before + now,
            "lag_mean": float(sum(lags) / len(lags)) if lags else math.nan,
            "lag_max": max(lags) if lags else math.nan,
            **{f"actor_{k}": v / actor_total for k, v in actor_spent.items()},
            **{f"learner_{k}": v / learner_total for k, v in learner_spent.items()},
            "learner_loss": float(metrics.get("learner/loss", math.nan)),
            "policy_entropy": float(metrics.get("learner/head0/entropy", math.nan)),
            "meta_loss": float(metrics.get("meta/loss", math.nan)),
            "episode_return_sum": self.return_before,
        }
        for h in range(num_heads):
            for name in META_NAMES:
                row[f"head{h}/{name}"] = _sigmoid(meta_params[f"head{h}"][name])
        self.last = {
            "episodes": start + len(returns),
            "actor": actor,
            "learner": learner,
            "lags": self.last["lags"] + len(lags),
            "frames": frames,
            "frames_acted": acted,
        }
        self.last_seconds = now
        return row


def _detail(row: dict) -> str:
    ret = row["episode_return"]
    return (
        f"episode return {'-' if math.isnan(ret) else f'{ret:.1f}'} "
        f"({row['episodes']} episodes), lag {row['lag_mean']:.2f}"
    )


def summarize(config: AtariExperimentConfig, rows: list[dict], processes: int) -> dict:
    """summary.json: the raw return of the episodes ending in the first and the last 10% of
    rows (one run is one seed: a mean without a standard error), the latter human-normalised,
    the protocol, the counters, frames/s (compilation included), the policy lag and the final
    meta-parameters."""
    from bmg.envs import atari_scores
    from bmg.experiments.atari import report as atari_report
    from bmg.experiments.report.stats import mean_se

    trace = trace_of(rows)
    final = atari_report.fraction_return(trace, last=True)
    first = atari_report.fraction_return(trace, last=False)
    seconds = rows[-1]["seconds"]
    lags = [r["lag_mean"] for r in rows if not math.isnan(r["lag_mean"])]
    try:
        hns = atari_scores.human_normalized(config.env.game, final)
    except ValueError:  # a game outside the 57
        hns = math.nan
    summary = {
        "game": config.env.game,
        "protocol": {
            k: getattr(config.env, k)
            for k in (
                "frame_skip",
                "frame_size",
                "frame_stack",
                "sticky_action_prob",
                "noop_max",
                "full_action_space",
                "max_episode_frames",
                "episodic_life",
                "fire_reset",
            )
        },
        "processes": processes,
        "seeds": 1,
        "meta_steps": rows[-1]["meta_steps"],
        "frames_per_seed": int(rows[-1]["frames"]),
        "frames_acted": int(rows[-1]["frames_acted"]),
        "episodes": mean_se([trace["episodes"][-1]]),
        "return_first_10pct": mean_se([first]),
        "return_last_10pct": mean_se([final]),
        "human_normalized_last_10pct": hns,
        "seconds": seconds,
        "frames_per_second": rows[-1]["frames"] / seconds if seconds > 0 else math.nan,
        "lag_mean": sum(lags) / len(lags) if lags else math.nan,
    }
    for name in meta_names(config.stacx.num_heads):
        summary[name] = mean_se([rows[-1][name]])
    return summary


def _cumsum(values):
    total = 0
    for v in values:
        total += v
        yield total


def trace_of(rows: list[dict]) -> dict[str, list[float]]:
    """trace.npz's columns: every metrics column over rows; ``episodes`` cumulative."""
    trace = {name: [float(r[name]) for r in rows] for name in rows[0]}
    trace["episodes"] = [float(x) for x in _cumsum(trace["episodes"])]
    return trace


# --- the run ------------------------------------------------------------------------------------


def checkpoint_directory(config: AtariExperimentConfig, run_dir: Path) -> Path | None:
    """Where the run's checkpoints go: ``checkpoint_dir``, else RUN_DIR/checkpoints; None with
    ``checkpoint_interval`` = 0."""
    if not config.checkpoint_interval:
        return None
    return Path(config.checkpoint_dir) if config.checkpoint_dir else Path(run_dir) / CHECKPOINTS


def check_new_run(config: AtariExperimentConfig, run_dir: Path | None = None) -> None:
    """A new run never writes into another run's checkpoints (its steps would clash and a later
    resume could restore the other run). The CLI calls it before the run directory exists
    (``run_dir`` None: only a set ``checkpoint_dir`` is checked), ``run`` again for a new run.

    Raises:
      ValueError: the checkpoint directory exists and holds something.
    """
    directory = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if run_dir is not None:
        directory = checkpoint_directory(config, run_dir)
    if directory is not None and directory.exists():
        if directory.is_dir() and not any(directory.iterdir()):
            return
        raise ValueError(
            f"checkpoint_dir {directory} already holds something (another run's checkpoints?); "
            "a new run needs an empty or missing directory: choose another or delete it."
        )


class AtariRun:
    """The Sebulba actor-learner run of a prepared config as the driver's `Run`
    (`bmg.train.driver`): one event per ``log_interval`` meta-steps (the row of that window),
    checkpoints every ``checkpoint_interval`` (into ``checkpoint_directory``); at the end
    trace.npz, summary.json and the plots.

    Several processes: every process runs it (its own run directory, the same config and
    ``checkpoint_dir``); they save and restore one checkpoint together
    (``bmg.train.checkpoint``), each keeping its own counters and rows in it.

    Raises (from the constructor):
      ValueError: a new run whose ``checkpoint_dir`` already holds something.
    """

    def __init__(self, prepared: Prepared, run_dir: Path, *, resume: bool):
        from bmg.train.checkpoint import Checkpointer

        config, processes = prepared
        self.config, self.processes, self.run_dir = config, processes, Path(run_dir)
        self.meta_steps = config.num_meta_steps(processes)
        self.per_step = config.frames_per_meta_step(processes)
        self.fields = csv_fields(config)
        self.total = self.meta_steps * self.per_step
        self.compiled = True  # the first meta-step compiles (announced when it has run)
        self.rows: list[dict] = []
        self.seconds_before = 0.0
        self.resumed_at: int | None = None
        directory = checkpoint_directory(config, run_dir)
        if not resume:
            check_new_run(config, run_dir)
        self.directory = directory
        self.runner = make_runner(config)
        self.checkpointer = None if directory is None else Checkpointer(directory)
        self.title = (
            f"{label(config)}: {self.total:,} frames = {self.meta_steps:,} meta-steps of "
            f"{self.per_step:,} frames ({processes} process(es), "
            f"{len(self.runner.learner_devices)} learner device(s))"
        )

    def compile(self) -> None:
        pass

    def start(self):
        return None  # the runner starts a fresh learner

    def restore(self):
        if self.checkpointer is None:
            raise ValueError(
                f"{self.run_dir} has no checkpoints to resume from (checkpoint_interval = 0); "
                "start the run again."
            )
        template = self.runner.init_learner()  # global arrays over every process's learners
        state, meta = self.checkpointer.restore(template)  # this process's counters and rows
        # JSON holds NaN as null
        self.rows = [{k: math.nan if v is None else v for k, v in r.items()} for r in meta["rows"]]
        stats = self.runner.stats
        stats.updates = int(meta["meta_steps"])
        stats.frames_learned = int(meta["frames"])
        stats.frames_acted = int(meta["frames_acted"])
        self.seconds_before = float(meta["seconds"])
        self.resumed_at = stats.updates
        return state, list(self.rows)

    def run(self, state, on_event, display) -> list[dict]:
        from bmg.train.driver import Event
        from bmg.train.sebulba import to_host

        config, runner, rows = self.config, self.runner, self.rows
        total, per_step, processes = self.meta_steps, self.per_step, self.processes
        if self.resumed_at is not None:
            display.message(f"resumed at meta-step {self.resumed_at:,}")
        if processes > 1 and self.checkpointer is not None:
            display.message(
                f"checkpoints of all {processes} processes together -> {self.directory}"
            )
        window = Window(
            runner.stats,
            self.seconds_before,
            float(rows[-1]["episode_return_sum"]) if rows else 0.0,
            processes,
        )

        def save(version: int) -> None:
            # several processes: the global arrays, saved by every process together
            self.checkpointer.save(
                version,
                runner.state if processes > 1 else to_host(runner.state),
                {
                    "meta_steps": version,
                    "frames": runner.stats.frames_learned,
                    "frames_acted": runner.stats.frames_acted,
                    "seconds": window.seconds_before + time.perf_counter() - window.started,
                    "rows": rows,
                },
            )

        compiling = [time.perf_counter()]  # until this process's first meta-step has run

        def on_update(version: int, metrics: dict, stats) -> None:
            if compiling:  # the learner's step and the actors' policy compile on first use
                seconds = time.perf_counter() - compiling.pop()
                display.message(
                    f"compiled in {seconds:.1f} s (the first meta-step, its rollouts included)"
                )
            if version % config.log_interval == 0 or version == total:
                meta_params = to_host(runner.state.meta_state.meta_params)
                row = window.row(stats, version, metrics, meta_params, config.stacx.num_heads)
                rows.append(row)
                remaining = (total - version) * per_step / max(row["fps"], 1e-9)
                on_event(
                    Event(
                        [row],
                        int(row["frames"]),
                        f"meta-step {version:,}/{total:,}: {int(row['frames']):,} frames, "
                        f"{row['fps']:,.0f} frames/s, ETA {remaining / 60:,.1f} min, "
                        f"{_detail(row)}",
                        rate=f"{row['fps']:,.0f} frames/s",
                    )
                )
            if self.checkpointer is not None and (
                version % config.checkpoint_interval == 0 or version == total
            ):
                save(version)

        runner.run(total, state=state, on_update=on_update)
        return rows

    def finish(self, rows: list[dict]) -> dict:
        import jax

        from bmg.experiments.atari import report as atari_report

        if not rows:
            raise ValueError("the run stopped before its first metrics row; start it again.")
        summary = summarize(self.config, rows, self.processes)
        summary["learner_devices"] = len(self.runner.learner_devices)
        summary["devices"] = [str(d) for d in jax.devices()]
        atari_report.write_results(self.run_dir, trace_of(rows), summary, label(self.config))
        if self.checkpointer is not None:  # finished: trace.npz is kept
            self.checkpointer.clear()  # every process together: process 0 deletes the steps
        return summary

    def close(self) -> None:
        try:
            self.runner.close()
        finally:
            if self.checkpointer is not None:
                self.checkpointer.close()


def run(target: AtariExperimentConfig | Prepared, run_dir: Path, *, resume: bool, console) -> dict:
    """Train (or continue) ``target`` in ``run_dir`` with the driver
    (`bmg.train.driver.drive` of an `AtariRun`); returns the summary. The checkpoints are
    deleted once the run has finished.

    Raises:
      ValueError: a new run whose ``checkpoint_dir`` already holds something; a resume without
        checkpoints (``checkpoint_interval`` = 0).
      CheckpointError (a ValueError): a damaged or mismatched checkpoint on resume, or one
        written by another number of processes.
      NonFiniteError: a learner metric became NaN or infinite (the last checkpoint is kept).
    """
    from bmg.train import driver

    prepared = target if isinstance(target, Prepared) else prepare(target)
    atari_run = AtariRun(prepared, Path(run_dir), resume=resume)
    return driver.drive(atari_run, Path(run_dir), name="atari", resume=resume, console=console)


SYSTEM = System(
    SETTINGS,
    run,
    REPORT,
    prepare=prepare,
    check_new_run=check_new_run,
    checkpoint_directory=checkpoint_directory,
    starts_backend=False,  # `prepare` starts it after joining the processes
)
"""`bmg atari`: the Sebulba actor-learner run (`run`), its processes joined first
(`prepare`)."""
