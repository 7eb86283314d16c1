"""Atari: IMPALA, STACX (MG) and STACX + BMG on the Arcade Learning Environment, on Sebulba.

Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (the Atari experiments: STACX with a
one-step meta-gradient, and with BMG; 200M frames in IMPALA's actor-learner layout), on the real
emulator (``bmg.envs.atari``, ale-py) with the Sebulba runner
(``bmg.train.sebulba``: actor threads -> queue -> a learner sharded over devices,
several hosts through ``jax.distributed``). The agent is ``bmg.agents.stacx`` (Zahavy et al.,
NeurIPS 2020) with IMPALA's ResNet torso (Espeholt et al., ICML 2018).

This module declares the system (importing it loads no JAX, so ``--help`` is fast): its config
and presets, and ``run``, which drives the runner into a run directory like every system's
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
from typing import Annotated, Any, Literal, NamedTuple

import tyro

from bmg.agents.configs import META_NAMES, StacxConfig
from bmg.checks import check_integer, check_nested, check_real
from bmg.core.config import MetaConfig
from bmg.envs.atari import MAX_EPISODE_FRAMES, STICKY_ACTION_PROB, AtariConfig
from bmg.experiments.api import Settings, System
from bmg.experiments.minatar.config import ALGOS, stacx_meta_config
from bmg.experiments.minatar.config import unused_fields as stacx_unused_fields
from bmg.experiments.minatar.report import REPORT
from bmg.memory import INT32_MAX
from bmg.train.driver import CHECKPOINTS
from bmg.train.sebulba import PAPER_LAYOUT, SebulbaConfig

ACTOR_TIMES = ("env", "inference", "put_wait", "params_wait")
LEARNER_TIMES = ("get_wait", "stack", "transfer", "step", "publish")


@dataclasses.dataclass(frozen=True)
class AtariExperimentConfig:
    """One Atari run: game and protocol, algorithm, budget, actor-learner layout and the STACX
    learner (sources: [paper] Flennerhag et al., ICLR 2022; [dqn] Mnih et al., Nature 2015;
    [machado] Machado et al., JAIR 2018; [default] this implementation's choice)."""

    env: str = "Breakout"
    """the game: ALE's ROM id or its CamelCase name ("Breakout", "Pong", "MsPacman")."""
    algo: Literal["impala", "stacx", "bmg"] = "stacx"
    """impala: fixed hyper-parameters; stacx: one-step meta-gradient; bmg: bootstrapped
    meta-gradient [paper]."""
    inner_steps: Annotated[int, tyro.conf.arg(aliases=("--k",))] = 1
    """K, learner updates differentiated per meta-step (stacx >= 1, bmg >= 0) [paper: 1]."""
    bootstrap_steps: Annotated[int, tyro.conf.arg(aliases=("--l",))] = 1
    """L, the BMG target's look-ahead (bmg only) [paper: 1, 2, 4, 8]."""
    frames: int = 200_000_000
    """emulator frames to learn from, all processes together (rounded up to whole meta-steps)
    [paper: 200M]."""
    seed: int = 0
    """the seed of the parameters, the acting noise and the games; one run is one seed."""
    meta_learning_rate: float = 1e-3
    """Adam learning rate of the 18 meta-parameter logits [default]."""
    meta_adam_eps: float = 1e-4
    """Adam epsilon of the meta-optimiser [default]."""
    target_step_size: float = 0.1
    """step of a plain SGD target (stacx.target_step="sgd" only) [default]."""
    continue_from: Literal["target", "inner_params"] = "target"
    """bmg: the learner goes on from the target's last update ("target") or from x_K's
    parameters ("inner_params"); "inner" would learn K of every K + L - 1 batches only."""
    sticky_action_prob: float = STICKY_ACTION_PROB
    """probability of repeating the previous action at each emulator frame [machado: 0.25]."""
    noop_max: int = 0
    """up to this many no-ops at each episode's start (30 in [dqn]); 0 = none."""
    full_action_space: bool = False
    """all 18 actions instead of the game's minimal set ([machado] recommends the full set)."""
    frame_skip: int = 4
    """emulator frames per agent action (max-pooled over the last two) [dqn]."""
    frame_size: int = 84
    """observation height and width, grayscale [dqn: 84]."""
    frame_stack: int = 4
    """observations stacked as channels [dqn]."""
    max_episode_frames: int = MAX_EPISODE_FRAMES
    """emulator frames after which an episode is truncated [machado: 108,000]."""
    episodic_life: bool = False
    """end an episode at every life lost (DQN's trick; off in [machado])."""
    fire_reset: bool = False
    """press FIRE after a reset in games that need it (off in [machado])."""
    env_threads: int = 1
    """C++ threads stepping each actor thread's games (ale-py; 0 = one per core)."""
    sebulba: SebulbaConfig = SebulbaConfig()
    """the actor-learner layout: devices, actor threads, envs per thread E, rollout length T,
    rollouts per batch, queue size."""
    stacx: StacxConfig = StacxConfig(torso="impala")
    """the STACX learner; its num_envs and rollout_length are the layout's B and T."""
    log_interval: int = 10
    """meta-steps per metrics.csv row, TensorBoard point and progress line."""
    checkpoint_interval: int = 100
    """meta-steps between checkpoints (and one at the end); 0 = none."""
    checkpoint_dir: str = ""
    """where the checkpoints go: an absolute path, empty or missing when the run starts; empty =
    RUN_DIR/checkpoints. A multi-process run that checkpoints needs one, the same for every
    process, on a filesystem every process reaches."""
    coordinator_address: str = ""
    """host:port of process 0 for a multi-process run (jax.distributed); empty: a single
    process, or $JAX_COORDINATOR_ADDRESS when set."""
    num_processes: int = 0
    """processes of a multi-process run; 0 = $JAX_NUM_PROCESSES."""
    process_id: int = -1
    """this process's index in [0, num_processes); -1 = $JAX_PROCESS_ID."""

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (stacx.rmsprop_eps)
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}; got {self.algo!r}.")
        if self.continue_from not in ("target", "inner_params"):
            raise ValueError(
                f"continue_from must be 'target' or 'inner_params', got {self.continue_from!r}."
            )
        self.atari_config()  # the protocol's fields, checked by AtariConfig
        for name, minimum in (
            ("frames", 1),
            ("seed", 0),
            ("log_interval", 1),
            ("checkpoint_interval", 0),
            ("num_processes", 0),
            ("process_id", -1),
        ):
            check_integer(name, getattr(self, name), minimum)
        for name in ("meta_learning_rate", "meta_adam_eps", "target_step_size"):
            check_real(name, getattr(self, name), low=0, low_open=True)
        check_processes(self)
        check_checkpoint_dir(self, self.num_processes)
        if not isinstance(self.sebulba, SebulbaConfig):
            raise ValueError(f"sebulba must be a SebulbaConfig, got {self.sebulba!r}.")
        if self.stacx.torso == "minatar" and self.frame_size > 20:
            raise ValueError(
                f"stacx.torso 'minatar' (no pooling) is for MinAtar-sized frames; with frame_size "
                f"= {self.frame_size} use 'impala'."
            )
        layout = self.sebulba
        # the learner's batch is the layout's: B streams x T steps
        stacx = dataclasses.replace(
            self.stacx, num_envs=layout.batch_size, rollout_length=layout.rollout_length
        )
        object.__setattr__(self, "stacx", stacx)
        self.meta_config()  # validates K, L
        processes = max(self.num_processes, 1)  # more processes: fewer, larger meta-steps
        if self.num_meta_steps(processes) > INT32_MAX:
            per_step = self.frames_per_meta_step(processes)
            raise ValueError(
                f"frames = {self.frames:,} is {self.num_meta_steps(processes):,} meta-steps of "
                f"{per_step:,} frames ({processes} process(es)), more than the learner's int32 "
                f"meta-step counter holds ({INT32_MAX:,}); run at most {INT32_MAX * per_step:,} "
                "frames."
            )

    def meta_config(self) -> MetaConfig:
        """The meta-learning config of ``algo`` (MinAtar's rule, ``stacx_meta_config``)."""
        return stacx_meta_config(self)

    def atari_config(self) -> AtariConfig:
        """One actor thread's games with this run's protocol."""
        return AtariConfig(
            game=self.env,
            num_envs=self.sebulba.envs_per_thread,
            frame_skip=self.frame_skip,
            frame_size=self.frame_size,
            frame_stack=self.frame_stack,
            sticky_action_prob=self.sticky_action_prob,
            noop_max=self.noop_max,
            full_action_space=self.full_action_space,
            max_episode_frames=self.max_episode_frames,
            episodic_life=self.episodic_life,
            fire_reset=self.fire_reset,
            num_threads=self.env_threads,
        )

    @property
    def batches_per_meta_step(self) -> int:
        """N: K, or K + L - 1 for BMG."""
        from bmg.train.sebulba import batches_per_meta_step

        return batches_per_meta_step(self.meta_config())

    def frames_per_meta_step(self, processes: int = 1) -> int:
        """Emulator frames one meta-step learns from: N x B x T x frame_skip x processes."""
        layout = self.sebulba
        return (
            self.batches_per_meta_step
            * layout.batch_size
            * layout.rollout_length
            * self.frame_skip
            * processes
        )

    def num_meta_steps(self, processes: int = 1) -> int:
        """Meta-steps of the run: ``frames`` rounded up to whole meta-steps."""
        return max(1, math.ceil(self.frames / self.frames_per_meta_step(processes)))


def unused_fields(config: AtariExperimentConfig) -> dict[str, str]:
    """MinAtar's rule (``bmg.experiments.minatar.config.unused_fields``), and the learner's batch:
    the Sebulba layout decides B and T (``sebulba.*``), so ``stacx.num_envs`` and
    ``stacx.rollout_length`` set by a flag would be overwritten; the CLI refuses them."""
    layout = config.sebulba
    return {
        **stacx_unused_fields(config),
        "stacx.num_envs": (
            "(the Sebulba layout sets the learner's batch B = sebulba.rollouts_per_batch x "
            f"sebulba.envs_per_thread = {layout.batch_size}: set those instead)"
        ),
        "stacx.rollout_length": (
            "(the Sebulba layout sets the learner's T = sebulba.rollout_length = "
            f"{layout.rollout_length}: set that instead)"
        ),
    }


def check_address(address: str, name: str = "coordinator_address") -> None:
    """``address`` is ``host:port`` (a port in 1-65535; an IPv6 host in brackets), what
    ``jax.distributed.initialize`` takes for process 0's coordinator.

    Raises:
      ValueError: one sentence naming ``name``, the value and the accepted form.
    """
    host, colon, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not (colon and host.strip() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(
            f"{name} must be host:port (process 0's host and a port in 1-65535, such as "
            f"10.0.0.1:8476) or empty for a single process, got {address!r}."
        )


def check_processes(config: AtariExperimentConfig) -> None:
    """The multi-process fields name one run: a coordinator (``coordinator_address`` or
    ``$JAX_COORDINATOR_ADDRESS``) of the ``host:port`` form, and ``num_processes`` > 1 or
    ``process_id`` > 0 only with one (without a coordinator the run is a single process, so they
    would be ignored); ``process_id`` < ``num_processes`` when both are given.

    Raises:
      ValueError: one sentence naming the field and what is accepted.
    """
    if config.coordinator_address != "":
        check_address(config.coordinator_address)
    environ = os.environ.get("JAX_COORDINATOR_ADDRESS", "")  # its form: checked in `prepare`
    if not (config.coordinator_address or environ):
        for name, single in (("num_processes", 1), ("process_id", 0)):
            value = getattr(config, name)
            if value > single:
                raise ValueError(
                    f"{name} = {value} needs a coordinator: set coordinator_address (or "
                    "$JAX_COORDINATOR_ADDRESS) to process 0's host:port, since without one the "
                    "run is a single process."
                )
    if config.num_processes and config.process_id >= config.num_processes:
        raise ValueError(
            f"process_id must be in [0, num_processes = {config.num_processes}), got "
            f"{config.process_id}."
        )


def check_checkpoint_dir(config: AtariExperimentConfig, processes: int) -> None:
    """``checkpoint_dir`` is empty or an absolute path, and set when ``processes`` > 1 with
    ``checkpoint_interval`` > 0 (the processes save one checkpoint together into it).

    Raises:
      ValueError: one sentence naming the field and what is accepted.
    """
    from pathlib import PurePath

    directory = config.checkpoint_dir
    if not isinstance(directory, str) or (directory and not PurePath(directory).is_absolute()):
        raise ValueError(
            f"checkpoint_dir must be an absolute path (or empty for RUN_DIR/checkpoints), got "
            f"{directory!r}."
        )
    if directory and Path(directory).exists() and not Path(directory).is_dir():
        raise ValueError(f"checkpoint_dir {directory!r} is a file; name a directory.")
    if processes > 1 and config.checkpoint_interval and not directory:
        raise ValueError(
            f"checkpoint_dir must be set in a run of {processes} processes with "
            f"checkpoint_interval = {config.checkpoint_interval}: the same absolute path for "
            "every process, on a filesystem they all reach (or checkpoint_interval 0 for none)."
        )


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": (
        "the defaults below (STACX on Breakout with the IMPALA ResNet, 200M frames, one actor "
        "thread of 8 games on one device)",
        {},
    ),
    "demo": (
        "a short run on 2 CPU cores (measured in docs/atari.md): IMPALA on Breakout, 42 x 42 "
        "frames, a small ResNet (8 channels, 1 block, 64 units), 16 games x 10 steps per batch, "
        "lr 2e-3, 200k frames",
        dict(
            algo="impala",
            frames=200_000,
            frame_size=42,
            log_interval=10,
            checkpoint_interval=20,
            sebulba=SebulbaConfig(envs_per_thread=16, rollout_length=10, queue_size=1),
            stacx=StacxConfig(
                torso="impala",
                impala_channels=(8, 8, 8),
                impala_blocks=1,
                hidden_size=64,
                meta_embedding_size=8,
                learning_rate=2e-3,
            ),
        ),
    ),
    "paper": (
        "the paper's layout: 2 acting devices of 8 (4 threads x 12 = 48 games), the learner's "
        "batch over the other 6, 200M frames, the IMPALA ResNet",
        dict(frames=200_000_000, sebulba=PAPER_LAYOUT, log_interval=50, checkpoint_interval=1000),
    ),
}

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
            f"env must be one of ale-py's games (such as 'Breakout', 'Pong', 'MsPacman'), got "
            f"{config.env!r}."
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
        config.meta_config(),
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
        "env_steps",
        "episode_return_sum",
    ]


def label(config: AtariExperimentConfig) -> str:
    text = f"{config.env} {config.algo}"
    if config.algo == "stacx":
        text += f" K={config.inner_steps}"
    if config.algo == "bmg":
        text += f" K={config.inner_steps} L={config.bootstrap_steps} {config.stacx.matching}"
    return text


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
            "env_steps": frames,
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
    """summary.json: MinAtar's keys (``bmg compare`` reads both; its "first chunk" is here the
    first 10% of rows) and Atari's own: the raw return of the episodes ending in the last 10% of
    rows and its human-normalised score, the protocol, frames/s (compilation included), lag."""
    from bmg.envs import atari_scores
    from bmg.experiments.atari import report as atari_report
    from bmg.experiments.report.stats import mean_se

    trace = trace_of(rows)
    final = atari_report.fraction_return(trace, last=True)
    first = atari_report.fraction_return(trace, last=False)
    seconds = rows[-1]["seconds"]
    lags = [r["lag_mean"] for r in rows if not math.isnan(r["lag_mean"])]
    try:
        hns = atari_scores.human_normalized(config.env, final)
    except ValueError:  # a game outside the 57
        hns = math.nan
    summary = {
        "game": config.env,
        "protocol": {
            k: getattr(config, k)
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
        "return_first_chunk": mean_se([first]),
        "return_last_10pct": mean_se([final]),
        "human_normalized_last_10pct": hns,
        "seconds": seconds,
        "frames_per_second": rows[-1]["frames"] / seconds if seconds > 0 else math.nan,
        "lag_mean": sum(lags) / len(lags) if lags else math.nan,
        "meta_steps_per_chunk": 1,
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


def result_rows(run_dir: Path) -> list[dict[str, str]]:
    """The results table row of a finished run (MinAtar's comparison columns, and the human-
    normalised score)."""
    from bmg.experiments.minatar import report as minatar_report
    from bmg.train.rundir import read_json

    rows = minatar_report.comparison_rows([run_dir])
    summary = read_json(Path(run_dir) / "summary.json", "a run's summary")
    hns = summary.get("human_normalized_last_10pct", math.nan)
    rows[0]["human-normalised, last 10%"] = "-" if hns is None or math.isnan(hns) else f"{hns:.3f}"
    rows[0]["policy lag"] = f"{summary['lag_mean']:.2f}"
    return rows


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


SETTINGS = Settings(AtariExperimentConfig, PRESETS, unused_fields)
"""The `bmg atari` command's settings."""

SYSTEM = System(
    SETTINGS,
    run,
    REPORT,  # Atari runs keep MinAtar's trace layout
    prepare=prepare,
    check_new_run=check_new_run,
    checkpoint_directory=checkpoint_directory,
    starts_backend=False,  # `prepare` starts it after joining the processes
    results=result_rows,
)
"""`bmg atari`: the Sebulba actor-learner run (`run`), its processes joined first
(`prepare`)."""
