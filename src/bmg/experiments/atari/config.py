"""The `bmg atari` command's configuration: `AtariExperimentConfig`, its checks and presets.

Pure Python (numpy at most; no JAX, orbax or plotting), so ``bmg atari --help`` and parsing a
command line are fast; the system that runs it is `bmg.experiments.atari.system`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from bmg.agents.configs import StacxConfig
from bmg.checks import check_integer, check_nested
from bmg.core.config import MetaConfig
from bmg.envs.atari import AtariConfig
from bmg.experiments.api import META_RENAMED, Settings
from bmg.experiments.minatar.config import (
    META,
    STACX_SELECTORS,
    check_stacx_meta,
    stacx_algo,
    stacx_select,
)
from bmg.experiments.minatar.config import unused_fields as stacx_unused_fields
from bmg.memory import INT32_MAX
from bmg.train.sebulba import PAPER_LAYOUT, SebulbaConfig


@dataclasses.dataclass(frozen=True)
class AtariExperimentConfig:
    """One Atari run: game and protocol, meta-learner, budget, actor-learner layout and the STACX
    learner (sources: [paper] Flennerhag et al., ICLR 2022; [dqn] Mnih et al., Nature 2015;
    [machado] Machado et al., JAIR 2018; [default] this implementation's choice)."""

    frames: int = 200_000_000
    """emulator frames to learn from, all processes together (rounded up to whole meta-steps)
    [paper: 200M]."""
    seed: int = 0
    """the seed of the parameters, the acting noise and the games; one run is one seed."""
    env: AtariConfig = AtariConfig()
    """the game and its protocol (`bmg.envs.atari.AtariConfig`); num_envs is not read: each
    actor thread steps sebulba.envs_per_thread games."""
    meta: MetaConfig = META
    """the meta-learner of the 18 meta-parameter logits (`bmg.core.MetaConfig`; --algo sets
    algo): K [paper: 1]; L, the BMG target's look-ahead [paper: 1, 2, 4, 8]; Adam's learning rate
    and epsilon [default: 1e-3, 1e-4]; target_step_size, the plain SGD target's step
    (stacx.target_step="sgd"); continue_from, where BMG's learner goes on: from the target's
    last update ("target") or from x_K's parameters ("inner_params"); "inner" would learn K of
    every K + L - 1 batches only, and is refused."""
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
        check_stacx_meta(self.meta)
        if self.meta.algo == "bmg" and self.meta.continue_from == "inner":
            raise ValueError(
                "meta.continue_from must be 'target' or 'inner_params' on Atari (with 'inner' "
                "the learner would learn from K of every K + L - 1 batches only), got 'inner'."
            )
        for name, minimum in (
            ("frames", 1),
            ("seed", 0),
            ("log_interval", 1),
            ("checkpoint_interval", 0),
            ("num_processes", 0),
            ("process_id", -1),
        ):
            check_integer(name, getattr(self, name), minimum)
        check_processes(self)
        check_checkpoint_dir(self, self.num_processes)
        if not isinstance(self.sebulba, SebulbaConfig):
            raise ValueError(f"sebulba must be a SebulbaConfig, got {self.sebulba!r}.")
        if not self.env.grayscale:
            raise ValueError("env.grayscale must be True: the STACX torsos take grayscale frames.")
        if self.stacx.torso == "minatar" and self.env.frame_size > 20:
            raise ValueError(
                f"stacx.torso 'minatar' (no pooling) is for MinAtar-sized frames; with "
                f"env.frame_size = {self.env.frame_size} use 'impala'."
            )
        processes = max(self.num_processes, 1)  # more processes: fewer, larger meta-steps
        if self.num_meta_steps(processes) > INT32_MAX:
            per_step = self.frames_per_meta_step(processes)
            raise ValueError(
                f"frames = {self.frames:,} is {self.num_meta_steps(processes):,} meta-steps of "
                f"{per_step:,} frames ({processes} process(es)), more than the learner's int32 "
                f"meta-step counter holds ({INT32_MAX:,}); run at most {INT32_MAX * per_step:,} "
                "frames."
            )

    @property
    def algo(self) -> str:
        """The method: impala, stacx or bmg."""
        return stacx_algo(self)

    def atari_config(self) -> AtariConfig:
        """One actor thread's games with this run's protocol."""
        return dataclasses.replace(self.env, num_envs=self.sebulba.envs_per_thread)

    @property
    def batches_per_meta_step(self) -> int:
        """N: K, or K + L - 1 for BMG."""
        from bmg.train.sebulba import batches_per_meta_step

        return batches_per_meta_step(self.meta)

    def frames_per_meta_step(self, processes: int = 1) -> int:
        """Emulator frames one meta-step learns from: N x B x T x frame_skip x processes."""
        layout = self.sebulba
        return (
            self.batches_per_meta_step
            * layout.batch_size
            * layout.rollout_length
            * self.env.frame_skip
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
        "env.num_envs": (
            "(each actor thread steps sebulba.envs_per_thread = "
            f"{config.sebulba.envs_per_thread} games: set that instead)"
        ),
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
            meta=dataclasses.replace(META, algo="fixed"),
            frames=200_000,
            env=AtariConfig(frame_size=42),
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


SETTINGS = Settings(
    AtariExperimentConfig,
    PRESETS,
    unused_fields,
    selectors=STACX_SELECTORS,
    select=stacx_select,
    renamed={
        **META_RENAMED,
        **{
            f"--{name}": f"--env.{name}"
            for name in (
                "frame-skip",
                "frame-size",
                "frame-stack",
                "sticky-action-prob",
                "noop-max",
                "full-action-space",
                "max-episode-frames",
                "episodic-life",
                "fire-reset",
            )
        },  # fmt: skip
        "--env": "--env.game",
        "--env-threads": "--env.num-threads",
    },
)
"""The `bmg atari` command's settings."""
