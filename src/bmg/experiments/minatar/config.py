"""The MinAtar system's configuration: the game, the STACX learner, the meta-learner, the
lifetime, the presets and which fields a choice of algorithm leaves without effect.

Pure Python (no JAX): `bmg minatar --help`, `bmg atari --help` (whose config reuses these) and the
run-directory readers import it alone. The system itself is `bmg.experiments.minatar.system`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bmg.agents.configs import StacxConfig, stacx_unused_fields
from bmg.checks import check_integer, check_nested
from bmg.core.config import MetaConfig
from bmg.envs.minatar_params import check_game, check_sticky_action_prob
from bmg.experiments.api import META_RENAMED, Selector, Settings
from bmg.train import lifetime
from bmg.train.lifetime import LifetimeConfig

MAX_STEPS = 2**31 - 1  # the int32 frame counters of a seed
ALGOS = {"impala": "fixed", "stacx": "mg", "bmg": "bmg"}
"""A STACX system's methods and the `MetaConfig.algo` of each."""
METHODS = {core: method for method, core in ALGOS.items()}
"""A STACX run's method (impala, stacx, bmg) by its `MetaConfig.algo`."""

META = MetaConfig(
    algo="mg",
    inner_steps=1,  # [paper: 1]
    bootstrap_steps=1,
    learning_rate=1e-3,  # [default]
    adam_eps=1e-4,  # [default]
    target_step_size=0.1,  # the plain SGD target's step (stacx.target_step="sgd") [default]
)
"""STACX's meta-learner (MinAtar's and Atari's): Adam(1e-3, eps 1e-4) on the 18 meta-parameter
logits, K = 1."""


def stacx_method_label(meta: dict, bmg_options: str) -> str:
    """A STACX run's method as the reports name it, from config.json's "meta": "impala",
    "stacx K=1", or "bmg K=1 L=2 " + ``bmg_options`` (e.g. the target step and matching)."""
    method = METHODS[meta["algo"]]
    if method == "stacx":
        return f"stacx K={meta['inner_steps']}"
    if method == "bmg":
        return f"bmg K={meta['inner_steps']} L={meta['bootstrap_steps']} {bmg_options}"
    return method


def stacx_algo(config) -> str:
    """The method of a STACX system's config: impala, stacx or bmg (from ``meta.algo``)."""
    return METHODS[config.meta.algo]


def stacx_select(config, chosen: dict[str, str], preset: str = ""):
    """``--algo impala | stacx | bmg`` on a STACX system's preset config (MinAtar's or Atari's):
    impala holds the meta-parameters (one learner update per meta-step), stacx meta-learns them
    with MG (K at least 1, L = 1), bmg with BMG (the preset's K and L; its learner goes on from
    the target unless the preset says otherwise)."""
    algo = chosen.get("algo")
    if algo is None:
        return config
    meta, core = config.meta, ALGOS[algo]
    if core == "bmg":
        fields = {} if meta.algo == "bmg" else dict(algo="bmg", continue_from="target")
    else:
        inner_steps = 1 if core == "fixed" else max(meta.inner_steps, 1)
        fields = dict(algo=core, inner_steps=inner_steps, bootstrap_steps=1, continue_from="inner")
        if core == "fixed":  # no differentiated unroll to rematerialise or unroll
            fields.update(remat=False, unroll_loop=False)
    meta = dataclasses.replace(meta, **fields)
    return dataclasses.replace(config, meta=meta)


STACX_SELECTORS = {
    "algo": Selector(
        "impala: fixed hyper-parameters (sigma(4.6) = 0.99 of the outer weights); stacx: "
        "one-step meta-gradient; bmg: bootstrapped meta-gradient [paper]. Sets meta.algo (and "
        "meta.continue_from, meta.bootstrap_steps to their BMG or non-BMG values)",
        tuple(ALGOS),
        stacx_algo,
        owns=("meta.algo",),
    )
}
"""`--algo` of a STACX system."""


@dataclasses.dataclass(frozen=True)
class MinAtarConfig(lifetime.Chunked):
    """One MinAtar run: game and protocol, meta-learner, lifetime, seeds and the STACX learner."""

    env: str = "Breakout-MinAtar"
    """the game: Asterix-MinAtar, Breakout-MinAtar, Freeway-MinAtar, Seaquest-MinAtar or
    SpaceInvaders-MinAtar (gymnax)."""
    sticky_action_prob: float = 0.1
    """probability of repeating the previous action (MinAtar's protocol 0.1; Machado et al.,
    2018); 0 = off."""
    full_action_set: bool = True
    """all 6 MinAtar actions (the MinAtar paper's protocol) instead of the game's minimal set."""
    batch_devices: int = 1
    """devices splitting each seed's batch of environments (``jax.shard_map``); the rest shard
    the seeds. Must divide stacx.num_envs."""
    lifetime: LifetimeConfig = LifetimeConfig(steps=10_000_000, seeds=3, chunk_steps=250_000)
    """frames per seed (MinAtar has no frame skip), seeds and frames per compiled chunk."""
    meta: MetaConfig = META
    """the meta-learner of the 18 meta-parameter logits (`bmg.core.MetaConfig`; --algo sets
    algo): K [paper: 1]; L, the BMG target's look-ahead [paper: 1, 2, 4, 8]; Adam's learning rate
    and epsilon [default: 1e-3, 1e-4]; target_step_size, the plain SGD target's step
    (stacx.target_step="sgd"); continue_from, where BMG's learner goes on: from the target's
    last update ("target"), from x_K's parameters with the streams the target advanced
    ("inner_params"), or from x_K ("inner": the streams rewind, so L - 1 rollouts per
    meta-step are collected again)."""
    stacx: StacxConfig = StacxConfig()
    """the STACX learner (IMPALA's RMSProp epsilon 0.01 for summed losses, rescaled to bmg's
    batch-mean losses: ``StacxConfig.mean_loss_rmsprop_eps``; docs/minatar.md)."""

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (stacx.rmsprop_eps)
        check_game(self.env)
        check_sticky_action_prob(self.sticky_action_prob)
        if self.sticky_action_prob == 1:
            raise ValueError(
                "sticky_action_prob must be below 1 for a run (at 1 the game repeats its first "
                "action forever and the agent's actions never reach it), got 1."
            )
        if not isinstance(self.full_action_set, bool):
            raise ValueError(
                f"full_action_set must be true or false, got {self.full_action_set!r}."
            )
        check_integer("batch_devices", self.batch_devices, 1)
        check_stacx_meta(self.meta)
        if self.stacx.num_envs % self.batch_devices:
            raise ValueError(
                f"batch_devices must divide stacx.num_envs = {self.stacx.num_envs}, got "
                f"{self.batch_devices}."
            )
        if self.batch_devices > 1 and self.stacx.target_step == "sgd":
            raise ValueError(
                "stacx.target_step must be 'rmsprop' when batch_devices > 1, got 'sgd'."
            )
        if self.steps_per_meta_step > self.lifetime.steps:
            raise ValueError(
                f"one meta-step takes {self.steps_per_meta_step:,} frames "
                f"({self.meta.updates_per_step} batches of {self.stacx.num_envs} x "
                f"{self.stacx.rollout_length}), more than lifetime.steps = "
                f"{self.lifetime.steps:,}; lower meta.inner_steps / meta.bootstrap_steps or the "
                "batch, or raise lifetime.steps."
            )
        if self.total_env_steps > MAX_STEPS:
            raise ValueError(
                f"lifetime.steps = {self.lifetime.steps:,} (rounded up to "
                f"{self.total_env_steps:,} by whole chunks) is more than a seed's int32 frame "
                f"counter holds ({MAX_STEPS:,})."
            )

    @property
    def algo(self) -> str:
        """The method: impala, stacx or bmg."""
        return stacx_algo(self)

    @property
    def frames_per_update(self) -> int:
        """B x T frames per learner update (per seed)."""
        return self.stacx.num_envs * self.stacx.rollout_length

    @property
    def steps_per_meta_step(self) -> int:
        """Frames per seed per meta-step: K + L - 1 batches for bmg, K for stacx, 1 for impala.
        With continue_from="inner" the target's frames are collected again each meta-step (the
        streams rewind), so they are not counted twice."""
        updates = self.meta.updates_per_step
        if self.meta.algo == "bmg" and self.meta.continue_from == "inner":
            updates = max(self.meta.inner_steps, 1)
        return updates * self.frames_per_update

    @property
    def total_env_steps(self) -> int:
        """Frames per seed actually taken: whole chunks."""
        return self.num_chunks * self.meta_steps_per_chunk * self.steps_per_meta_step


def check_stacx_meta(meta: MetaConfig) -> None:
    """A STACX system's meta-learner: fixed (impala) takes one learner update per meta-step."""
    if meta.algo == "fixed" and meta.inner_steps != 1:
        raise ValueError(
            f"meta.inner_steps must be 1 with meta.algo fixed (impala takes one learner update "
            f"per meta-step), got {meta.inner_steps}."
        )


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the defaults below (STACX on Breakout, 3 seeds x 10M frames)", {}),
    "demo": (
        "STACX on Breakout-MinAtar, 2 seeds x 500k frames, 16 environments x 20 steps per "
        "batch (about 7 minutes on 2 CPU cores; the episode return rises from 0.7 to about 4.1, "
        "docs/minatar.md)",
        dict(
            lifetime=LifetimeConfig(steps=500_000, seeds=2, chunk_steps=50_000),
            stacx=StacxConfig(num_envs=16, rollout_length=20),
        ),
    ),
    "paper": (
        "the ablation budget: 3 seeds x 10M frames per game (run each game, algo and L), sticky "
        "actions 0.1 and 6 actions, 32 environments x 20 steps per batch",
        dict(lifetime=LifetimeConfig(steps=10_000_000, seeds=3, chunk_steps=500_000)),
    ),
}


def unused_fields(config) -> dict[str, str]:
    """Fields that have no effect on a STACX system's run (MinAtar's or Atari's config), with why
    ({field: "with --algo ..."}): the CLI refuses flags that set them instead of ignoring them."""
    # K and L are checked by value instead (1 for impala, L = 1 for stacx): their flags may
    # restate those values; the outer objective is the meta-gradient's
    meta = ("meta.learning_rate", "meta.adam_eps", "meta.remat", "meta.unroll_loop")
    meta += ("stacx.outer_discount", "stacx.outer_lambda", "stacx.outer_kl_cost")
    bmg = (
        "meta.target_step_size",
        "meta.continue_from",
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
        unused["meta.target_step_size"] = (
            "with the RMSProp target step (it steps at --stacx.target-learning-rate; "
            "--meta.target-step-size is the SGD target's)"
        )
    else:
        unused["stacx.target_learning_rate"] = (
            "with --stacx.target-step sgd (it steps by --meta.target-step-size)"
        )
    if config.stacx.matching != "kl_value":
        unused.setdefault("stacx.matching_value_cost", "with --stacx.matching kl")
    return unused


SETTINGS = Settings(
    MinAtarConfig,
    PRESETS,
    unused_fields,
    selectors=STACX_SELECTORS,
    select=stacx_select,
    renamed=META_RENAMED,
)
"""The `bmg minatar` command's settings."""
