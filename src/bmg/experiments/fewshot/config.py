"""The few-shot system's configuration: the data, the ways and shots, the inner and meta
optimisers, evaluation, the presets and which fields a choice of algorithm leaves without effect.

Pure Python (no JAX): `bmg fewshot --help` and the run-directory readers import it alone. The
system itself is `bmg.experiments.fewshot.system`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from bmg import memory
from bmg.agents.configs import FEWSHOT_ALGOS as ALGOS
from bmg.checks import check_bool, check_integer, check_nested
from bmg.core.config import BATCHINGS as TASK_BATCHINGS
from bmg.core.config import MetaConfig
from bmg.experiments.api import META_RENAMED, Selector, Settings

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


META = MetaConfig(
    algo="bmg",
    inner_steps=5,  # [MAML: 5 support steps]
    bootstrap_steps=5,  # [default]
    learning_rate=1e-3,  # [MAML: Adam 1e-3]
    target_step_size=0.01,  # [default: the inner learning rate]
    unroll_loop=True,  # 2.3x faster per MAML step on CPU at 84x84 (docs/fewshot-results.md)
)
"""Few-shot's meta-learner: BMG on the initialisation; `--algo maml` / `fomaml` make it MG."""


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """One few-shot run. Sources: [MAML] Finn et al., ICML 2017; [paper] Flennerhag et al., ICLR
    2022; [standard] the few-shot protocol of Vinyals et al., NeurIPS 2016; [default] ours."""

    data_dir: Path | None = None
    """MiniImagenet (or `bmg fewshot make-synthetic` data): Ravi & Larochelle csv splits with an
    images/ folder, or the mini-imagenet-cache-*.pkl files."""
    ways: int = 5
    """N of N-way K-shot: classes per task [standard: 5]."""
    shots: int = 1
    """K of N-way K-shot: support images per class."""
    queries: int = 15
    """query images per class [standard]."""
    eval_inner_steps: int = 10
    """support steps at validation and test [MAML: 10]."""
    inner_learning_rate: float = 0.01
    """SGD step on the support loss [MAML: 0.01]."""
    first_order: Annotated[bool, tyro.conf.Suppress] = False
    """mg: first-order MAML (the meta-gradient skips the inner steps' second derivatives). No
    flag: `--algo fomaml` sets it."""
    matching: Literal["kl", "params"] = "kl"
    """BMG matching: KL between the target's and x_K's predictions on the query images, or the
    squared parameter distance."""
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
    seed: int = 0
    """the seed of the initialisation and of the training task stream (validation and test
    tasks are fixed whatever the seed)."""
    meta: MetaConfig = META
    """the meta-learner of the initialisation (`bmg.core.MetaConfig`): mg (MAML) or bmg; K
    support steps differentiated per meta-step [MAML: 5]; L, the BMG target's look-ahead (L - 1
    more support steps and one query-loss step of size target_step_size); Adam's learning rate
    [MAML: 1e-3]; unroll_loop compiles the inner and target steps as straight-line code (same
    numbers, longer compiles, 2.3x faster per MAML step on CPU at 84x84; evaluation keeps the
    loop). continue_from does not apply: every task starts from the initialisation."""

    def __post_init__(self):
        check_nested(self)  # nested configs first: errors name the path (meta.inner_steps)
        if self.meta.algo not in ("mg", "bmg"):
            raise ValueError(
                f"meta.algo must be mg (MAML) or bmg (few-shot meta-learns the initialisation), "
                f"got {self.meta.algo!r}."
            )
        check_bool("first_order", self.first_order)
        if self.first_order and self.meta.algo == "bmg":
            raise ValueError(
                "first_order is first-order MAML's (--algo fomaml), so with meta.algo bmg leave "
                "it False."
            )
        minimums = dict(
            ways=2, shots=1, queries=1, eval_inner_steps=1, meta_batch_size=1, meta_steps=1,
            eval_every=1, val_tasks=1, test_tasks=1, eval_batch_size=1, filters=1, seed=0,
        )  # fmt: skip
        for name, minimum in minimums.items():
            check_integer(name, getattr(self, name), minimum)
        check_integer("meta.inner_steps (K)", self.meta.inner_steps, 1)
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
        _check_rate("meta.learning_rate", self.meta.learning_rate, MAX_META_LEARNING_RATE)
        _check_rate("meta.target_step_size", self.meta.target_step_size, MAX_STEP_SIZE)
        if self.matching not in ("kl", "params"):
            raise ValueError(f"matching must be 'kl' or 'params', got {self.matching!r}.")
        if self.task_batching not in TASK_BATCHINGS:
            raise ValueError(
                f"task_batching must be one of {', '.join(TASK_BATCHINGS)}, "
                f"got {self.task_batching!r}."
            )

    @property
    def algo(self) -> str:
        """The method: maml, fomaml (mg with first_order) or bmg."""
        if self.meta.algo == "bmg":
            return "bmg"
        return "fomaml" if self.first_order else "maml"

    @property
    def images_per_class(self) -> int:
        return self.shots + self.queries


def select(config: FewShotConfig, chosen: dict[str, str], preset: str = "") -> FewShotConfig:
    """``--algo maml | fomaml | bmg`` on a preset's config: the meta-learner's algorithm (L = 1
    for MG; BMG's L the preset's, or 5 when it had none) and first_order."""
    algo = chosen.get("algo")
    if algo is None:
        return config
    meta = config.meta
    if algo == "bmg":
        bootstrap = meta.bootstrap_steps if meta.algo == "bmg" else META.bootstrap_steps
        meta = dataclasses.replace(meta, algo="bmg", bootstrap_steps=bootstrap)
    else:
        meta = dataclasses.replace(meta, algo="mg", bootstrap_steps=1)
    return dataclasses.replace(config, meta=meta, first_order=algo == "fomaml")


def unused_fields(config: FewShotConfig) -> dict[str, str]:
    """Fields that have no effect on ``config``'s run, with why: the CLI refuses flags that set
    them instead of ignoring them."""
    unused = {"meta.continue_from": "in few-shot (every task starts from the initialisation)"}
    if config.algo != "bmg":
        why = f"with --algo {config.algo} (only BMG bootstraps a target)"
        unused.update({f: why for f in ("meta.target_step_size", "matching")})
    return unused


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


SETTINGS = Settings(
    FewShotConfig,
    PRESETS,
    unused_fields,
    selectors={
        "algo": Selector(
            "maml (second order, the MG baseline), fomaml (first order) or bmg: sets meta.algo, "
            "meta.bootstrap_steps and first_order",
            ALGOS,
            lambda config: config.algo,
            owns=("meta.algo", "first_order"),
        )
    },
    select=select,
    renamed={**META_RENAMED, "--unroll-loops": "--meta.unroll-loop"},
)
"""The `bmg fewshot` command's settings."""
