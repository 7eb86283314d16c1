"""The MinAtar system's configuration: the game, the STACX learner, the meta-learner, the
lifetime, the presets and which fields a choice of algorithm leaves without effect.

Pure Python (no JAX): `bmg minatar --help`, `bmg atari --help` (whose config reuses these) and the
run-directory readers import it alone. The system itself is `bmg.experiments.minatar.system`.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import tyro

from bmg.agents.configs import StacxConfig, stacx_unused_fields
from bmg.checks import check_integer, check_nested, check_real, checks_now
from bmg.core.config import MetaConfig
from bmg.envs.minatar_params import check_game, check_sticky_action_prob
from bmg.experiments.api import Settings
from bmg.train import lifetime

MAX_STEPS = 2**31 - 1  # the int32 frame counters of a seed
ALGOS = {"impala": "fixed", "stacx": "mg", "bmg": "bmg"}


def stacx_meta_config(config) -> MetaConfig:
    """The ``MetaConfig`` of a STACX system's config (MinAtar's and Atari's: fields ``algo`` in
    ``ALGOS``, ``inner_steps``, ``bootstrap_steps``, ``meta_learning_rate``, ``meta_adam_eps``,
    ``target_step_size``, ``continue_from``); impala takes one learner update per meta-step."""
    algo = ALGOS[config.algo]
    with checks_now():  # derived from this config's fields: checked as it is built
        return MetaConfig(
            algo=algo,
            inner_steps=1 if algo == "fixed" else config.inner_steps,
            bootstrap_steps=config.bootstrap_steps if algo == "bmg" else 1,
            learning_rate=config.meta_learning_rate,
            adam_eps=config.meta_adam_eps,
            target_step_size=config.target_step_size,
            continue_from=config.continue_from if algo == "bmg" else "inner",
        )


@dataclasses.dataclass(frozen=True)
class MinAtarConfig(lifetime.Chunked):
    """One MinAtar run: game and protocol, algorithm, lifetime, seeds and the STACX learner."""

    env: str = "Breakout-MinAtar"
    """the game: Asterix-MinAtar, Breakout-MinAtar, Freeway-MinAtar, Seaquest-MinAtar or
    SpaceInvaders-MinAtar (gymnax)."""
    algo: Literal["impala", "stacx", "bmg"] = "stacx"
    """impala: fixed hyper-parameters (sigma(4.6) = 0.99 of the outer weights); stacx: one-step
    meta-gradient; bmg: bootstrapped meta-gradient [paper]."""
    inner_steps: Annotated[int, tyro.conf.arg(aliases=("--k",))] = 1
    """K, learner updates differentiated per meta-step (stacx >= 1, bmg >= 0) [paper: 1]."""
    bootstrap_steps: Annotated[int, tyro.conf.arg(aliases=("--l",))] = 1
    """L, the BMG target's look-ahead: L - 1 updates, then the target step (bmg only) [paper: 1,
    2, 4, 8]."""
    steps: int = 10_000_000
    """environment frames per seed (MinAtar has no frame skip; rounded up to whole chunks)."""
    seeds: int = 3
    """independent seeds, run in parallel (vmap, sharded over devices)."""
    seed: int = 0
    """first seed; seeds are seed, seed + 1, ..."""
    sticky_action_prob: float = 0.1
    """probability of repeating the previous action (MinAtar's protocol 0.1; Machado et al.,
    2018); 0 = off."""
    full_action_set: bool = True
    """all 6 MinAtar actions (the MinAtar paper's protocol) instead of the game's minimal set."""
    meta_learning_rate: float = 1e-3
    """Adam learning rate of the 18 meta-parameter logits [default]."""
    meta_adam_eps: float = 1e-4
    """Adam epsilon of the meta-optimiser [default]."""
    target_step_size: float = 0.1
    """step of a plain SGD target (stacx.target_step="sgd" only) [default]."""
    continue_from: Literal["target", "inner_params", "inner"] = "target"
    """bmg: the learner goes on from the target's last update x_{K+L-1} ("target"), from x_K's
    parameters with the streams the target advanced ("inner_params"), or from x_K ("inner":
    the streams rewind, so L - 1 rollouts per meta-step are collected again)."""
    chunk_steps: int = 250_000
    """frames per seed per compiled chunk (progress, metrics.csv rows, checkpoints); a lifetime
    shorter than this is one chunk of its own length."""
    batch_devices: int = 1
    """devices splitting each seed's batch of environments (``jax.shard_map``); the rest shard
    the seeds. Must divide stacx.num_envs."""
    stacx: StacxConfig = StacxConfig()
    """the STACX learner (IMPALA's RMSProp epsilon 0.01 for summed losses, rescaled to bmg's
    batch-mean losses: ``StacxConfig.mean_loss_rmsprop_eps``; docs/minatar.md)."""

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (stacx.rmsprop_eps)
        check_game(self.env)
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}; got {self.algo!r}.")
        check_sticky_action_prob(self.sticky_action_prob)
        if self.sticky_action_prob == 1:
            raise ValueError(
                "sticky_action_prob must be below 1 for a run (at 1 the game repeats its first "
                "action forever and the agent's actions never reach it), got 1."
            )
        if self.continue_from not in ("target", "inner_params", "inner"):
            raise ValueError(
                "continue_from must be 'target', 'inner_params' or 'inner', got "
                f"{self.continue_from!r}."
            )
        if not isinstance(self.full_action_set, bool):
            raise ValueError(
                f"full_action_set must be true or false, got {self.full_action_set!r}."
            )
        for name, minimum in (
            ("steps", 1),
            ("seeds", 1),
            ("seed", 0),
            ("chunk_steps", 1),
            ("batch_devices", 1),
        ):
            check_integer(name, getattr(self, name), minimum)
        for name in ("meta_learning_rate", "meta_adam_eps", "target_step_size"):
            check_real(name, getattr(self, name), low=0, low_open=True)
        if self.stacx.num_envs % self.batch_devices:
            raise ValueError(
                f"batch_devices must divide stacx.num_envs = {self.stacx.num_envs}, got "
                f"{self.batch_devices}."
            )
        if self.batch_devices > 1 and self.stacx.target_step == "sgd":
            raise ValueError(
                "stacx.target_step must be 'rmsprop' when batch_devices > 1, got 'sgd'."
            )
        self.meta_config()  # validates K, L, continue_from
        if self.steps_per_meta_step > self.steps:
            raise ValueError(
                f"one meta-step takes {self.steps_per_meta_step:,} frames "
                f"({self.meta_config().updates_per_step} batches of {self.stacx.num_envs} x "
                f"{self.stacx.rollout_length}), more than steps = {self.steps:,}; lower "
                "inner_steps / bootstrap_steps or the batch, or raise steps."
            )
        if self.total_env_steps > MAX_STEPS:
            raise ValueError(
                f"steps = {self.steps:,} (rounded up to {self.total_env_steps:,} by whole chunks) "
                f"is more than a seed's int32 frame counter holds ({MAX_STEPS:,})."
            )
        if self.seed + self.seeds > 2**31:
            raise ValueError(f"seed + seeds must be <= 2**31, got {self.seed + self.seeds}.")

    def meta_config(self) -> MetaConfig:
        """The meta-learning config of ``algo`` (``stacx_meta_config``)."""
        return stacx_meta_config(self)

    @property
    def frames_per_update(self) -> int:
        """B x T frames per learner update (per seed)."""
        return self.stacx.num_envs * self.stacx.rollout_length

    @property
    def steps_per_meta_step(self) -> int:
        """Frames per seed per meta-step: K + L - 1 batches for bmg, K for stacx, 1 for impala.
        With continue_from="inner" the target's frames are collected again each meta-step (the
        streams rewind), so they are not counted twice."""
        config = self.meta_config()
        updates = config.updates_per_step
        if config.algo == "bmg" and config.continue_from == "inner":
            updates = max(config.inner_steps, 1)
        return updates * self.frames_per_update

    @property
    def total_env_steps(self) -> int:
        """Frames per seed actually taken: whole chunks."""
        return self.num_chunks * self.meta_steps_per_chunk * self.steps_per_meta_step


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the defaults below (STACX on Breakout, 3 seeds x 10M frames)", {}),
    "demo": (
        "STACX on Breakout-MinAtar, 2 seeds x 500k frames, 16 environments x 20 steps per "
        "batch (about 7 minutes on 2 CPU cores; the episode return rises from 0.7 to about 4.1, "
        "docs/minatar.md)",
        dict(
            steps=500_000,
            seeds=2,
            chunk_steps=50_000,
            stacx=StacxConfig(num_envs=16, rollout_length=20),
        ),
    ),
    "paper": (
        "the ablation budget: 3 seeds x 10M frames per game (run each game, algo and L), sticky "
        "actions 0.1 and 6 actions, 32 environments x 20 steps per batch",
        dict(steps=10_000_000, seeds=3, chunk_steps=500_000),
    ),
}


def unused_fields(config) -> dict[str, str]:
    """Fields that have no effect on a STACX system's run (MinAtar's or Atari's config), with why
    ({field: "with --algo ..."}): the CLI refuses flags that set them instead of ignoring them."""
    meta = ("meta_learning_rate", "meta_adam_eps", "inner_steps")
    bmg = (
        "bootstrap_steps",
        "target_step_size",
        "continue_from",
        "stacx.target_step",
        "stacx.target_learning_rate",
        "stacx.matching",
        "stacx.matching_value_cost",
    )
    unused = stacx_unused_fields(config.stacx)
    if config.algo == "impala":
        why = "with --algo impala (nothing is meta-learned)"
        return {**unused, **{f: why for f in (*meta, *bmg)}}
    if config.algo == "stacx":
        unused.update({f: "with --algo stacx (only BMG bootstraps a target)" for f in bmg})
    elif config.stacx.target_step == "rmsprop":
        unused["target_step_size"] = (
            "with the RMSProp target step (it steps at --stacx.target-learning-rate; "
            "--target-step-size is the SGD target's)"
        )
    else:
        unused["stacx.target_learning_rate"] = (
            "with --stacx.target-step sgd (it steps by --target-step-size)"
        )
    if config.stacx.matching != "kl_value":
        unused.setdefault("stacx.matching_value_cost", "with --stacx.matching kl")
    return unused


SETTINGS = Settings(MinAtarConfig, PRESETS, unused_fields)
"""The `bmg minatar` command's settings."""
