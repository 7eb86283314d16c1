"""The few-shot system's configuration: the data, the ways and shots, the inner and meta
optimisers, evaluation, the presets and which fields a choice of algorithm leaves without effect.

Pure Python (no JAX): `bmg fewshot --help` and the run-directory readers import it alone. The
system itself is `bmg.experiments.fewshot.system`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

from bmg import memory
from bmg.agents.configs import CORE_ALGO
from bmg.agents.configs import FEWSHOT_ALGOS as ALGOS
from bmg.checks import check_integer, checks_now
from bmg.core.config import BATCHINGS as TASK_BATCHINGS
from bmg.core.config import MetaConfig
from bmg.experiments.api import Settings

NUM_BLOCKS = 4
"""conv blocks of the network; each halves the image side."""
MIN_IMAGE_SIZE = 2**NUM_BLOCKS
"""the smallest image side the network accepts: 16 px leave one feature per filter."""
MAX_STEP_SIZE = 10.0
"""the largest SGD step (inner, target) accepted: beyond it a step only overflows."""
MAX_META_LEARNING_RATE = 1.0
"""the largest Adam step on the initialisation accepted (Adam moves each weight by about it)."""


def _check_rate(name: str, value: Any, maximum: float) -> None:
    """A step size: a finite real number in (0, maximum]; else one-sentence ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise ValueError(
            f"{name} must be a finite number in (0, {maximum:g}], got {value!r} (larger steps "
            "only make the parameters overflow to NaN)."
        )


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """One few-shot run. Sources: [MAML] Finn et al., ICML 2017; [paper] Flennerhag et al., ICLR
    2022; [standard] the few-shot protocol of Vinyals et al., NeurIPS 2016; [default] ours."""

    data_dir: Path | None = None
    """MiniImagenet (or `bmg fewshot make-synthetic` data): Ravi & Larochelle csv splits with an
    images/ folder, or the mini-imagenet-cache-*.pkl files."""
    algo: Literal["maml", "fomaml", "bmg"] = "bmg"
    """maml (second order, the MG baseline), fomaml (first order) or bmg."""
    ways: int = 5
    """N of N-way K-shot: classes per task [standard: 5]."""
    shots: int = 1
    """K of N-way K-shot: support images per class."""
    queries: int = 15
    """query images per class [standard]."""
    inner_steps: int = 5
    """support steps differentiated in meta-training [MAML: 5]."""
    bootstrap_steps: int = 5
    """L, the BMG target's look-ahead: L-1 more support steps and one query step [default]."""
    eval_inner_steps: int = 10
    """support steps at validation and test [MAML: 10]."""
    inner_learning_rate: float = 0.01
    """SGD step on the support loss [MAML: 0.01]."""
    target_step_size: float | None = None
    """step of the BMG target's final query-loss step; None = the inner learning rate."""
    matching: Literal["kl", "params"] = "kl"
    """BMG matching: KL between the target's and x_K's predictions on the query images, or the
    squared parameter distance."""
    meta_learning_rate: float = 1e-3
    """Adam on the initialisation [MAML: 1e-3]."""
    meta_batch_size: int = 4
    """tasks per meta-step [MAML: 4 for 1-shot, 2 for 5-shot]."""
    meta_steps: int = 60_000
    """meta-steps of meta-training (each on meta_batch_size tasks) [MAML: 60,000]."""
    eval_every: int = 1_000
    """meta-steps between validation scores (and checkpoints); at most meta_steps."""
    val_tasks: int = 600
    """validation tasks per score (the same tasks every time)."""
    test_tasks: int = 600
    """test tasks for the final score [standard: 600]."""
    eval_batch_size: int = 50
    """tasks per compiled evaluation call."""
    image_size: int | None = None
    """side of the images fed to the net (resized at load, >= 16); None = as stored
    [MiniImagenet 84]."""
    filters: int = 32
    """filters of each conv block of the conv-4 network [MAML: 32 on MiniImagenet]."""
    task_batching: Literal["vmap", "map", "unroll"] = "unroll"
    """how a meta-batch's tasks are batched in the compiled step: same numbers, different speed
    (docs/fewshot-results.md: on CPU "unroll" is fastest)."""
    unroll_loops: bool = True
    """compile the meta-step's inner and target steps as straight-line code instead of lax.scan
    loops: same numbers, longer compiles, 2.3x faster per MAML step on CPU at 84x84
    (docs/fewshot-results.md).
    Evaluation keeps the loop: unrolling eval_inner_steps x eval_batch_size tasks compiles for
    minutes."""
    seed: int = 0
    """the seed of the initialisation and of the training task stream (validation and test
    tasks are fixed whatever the seed)."""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        minimums = dict(
            ways=2, shots=1, queries=1, inner_steps=1, bootstrap_steps=1, eval_inner_steps=1,
            meta_batch_size=1, meta_steps=1, eval_every=1, val_tasks=1, test_tasks=1,
            eval_batch_size=1, filters=1, seed=0,
        )  # fmt: skip
        for name, minimum in minimums.items():
            check_integer(name, getattr(self, name), minimum)
        if self.meta_steps > memory.INT32_MAX:
            raise ValueError(
                f"meta_steps must be at most {memory.INT32_MAX:,} (what the meta-state's int32 "
                f"step counter holds), got {self.meta_steps:,}."
            )
        if self.eval_every > self.meta_steps:
            raise ValueError(
                f"eval_every must be at most meta_steps = {self.meta_steps:,} (validation every "
                f"eval_every meta-steps is what selects the initialisation), got "
                f"{self.eval_every:,}."
            )
        if self.image_size is not None:
            check_integer("image_size", self.image_size, MIN_IMAGE_SIZE)
        _check_rate("inner_learning_rate", self.inner_learning_rate, MAX_STEP_SIZE)
        _check_rate("meta_learning_rate", self.meta_learning_rate, MAX_META_LEARNING_RATE)
        if self.target_step_size is not None:
            _check_rate("target_step_size", self.target_step_size, MAX_STEP_SIZE)
        if self.matching not in ("kl", "params"):
            raise ValueError(f"matching must be 'kl' or 'params', got {self.matching!r}.")
        if self.task_batching not in TASK_BATCHINGS:
            raise ValueError(
                f"task_batching must be one of {', '.join(TASK_BATCHINGS)}, "
                f"got {self.task_batching!r}."
            )

    @property
    def images_per_class(self) -> int:
        return self.shots + self.queries

    @property
    def meta_config(self) -> MetaConfig:
        """The core's `MetaConfig`: maml/fomaml -> mg, bmg -> bmg; Adam(meta_learning_rate)."""
        with checks_now():  # derived from this config's fields: checked as it is built
            return MetaConfig(
                algo=CORE_ALGO[self.algo],
                inner_steps=self.inner_steps,
                bootstrap_steps=self.bootstrap_steps if self.algo == "bmg" else 1,
                learning_rate=self.meta_learning_rate,
                target_step_size=self.target_step_size or self.inner_learning_rate,
                unroll_loop=self.unroll_loops,
            )


def unused_fields(config: FewShotConfig) -> dict[str, str]:
    """Fields that have no effect on ``config``'s run, with why: the CLI refuses flags that set
    them instead of ignoring them."""
    if config.algo == "bmg":
        return {}
    why = f"with --algo {config.algo} (only BMG bootstraps a target)"
    return {f: why for f in ("bootstrap_steps", "target_step_size", "matching")}


PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("the defaults below (the MAML protocol, images as stored)", {}),
    "tiny": (
        "minutes on 2 CPU cores: 16x16 images (`bmg fewshot make-synthetic` data), 5 queries "
        "per class, 300 meta-steps; everything else as the paper preset",
        dict(
            queries=5, meta_steps=300, eval_every=50, val_tasks=100, test_tasks=600, image_size=16
        ),
    ),
    "paper": ("the MAML protocol at 84x84 (a GPU job)", dict(image_size=84)),
}
"""`bmg fewshot PRESET`: name -> (description, the fields it sets)."""


SETTINGS = Settings(FewShotConfig, PRESETS, unused_fields)
"""The `bmg fewshot` command's settings."""
