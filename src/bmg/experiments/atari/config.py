"""The `bmg atari` command's configuration: `AtariExperimentConfig`, its checks and presets.

Pure Python (numpy at most; no JAX, orbax or plotting), so ``bmg atari --help`` and parsing a
command line are fast; the system that runs it is `bmg.experiments.atari.system`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from bmg.agents.configs import StacxConfig
from bmg.checks import check_integer, check_nested, check_real
from bmg.core.config import MetaConfig
from bmg.envs.atari import MAX_EPISODE_FRAMES, STICKY_ACTION_PROB, AtariConfig
from bmg.experiments.api import Settings
from bmg.experiments.minatar.config import ALGOS, stacx_meta_config
from bmg.experiments.minatar.config import unused_fields as stacx_unused_fields
from bmg.memory import INT32_MAX
from bmg.train.sebulba import PAPER_LAYOUT, SebulbaConfig


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
    """the STACX learner; its num_envs and rollout_length are not read: the Sebulba layout's B
    and T replace them (``bmg.agents.stacx.sebulba_agent``; flags setting them are refused)."""
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
    ``stacx.rollout_length`` are not read; the CLI refuses flags that set them."""
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
        for name, single in (("JAX_NUM_PROCESSES", 1), ("JAX_PROCESS_ID", 0)):
            value = os.environ.get(name, "").strip()
            if value.isdigit() and int(value) > single:
                raise ValueError(
                    f"${name} = {value} needs a coordinator: set $JAX_COORDINATOR_ADDRESS (or "
                    "coordinator_address) to process 0's host:port, since without one the run "
                    "is a single process."
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


SETTINGS = Settings(AtariExperimentConfig, PRESETS, unused_fields)
"""The `bmg atari` command's settings."""
