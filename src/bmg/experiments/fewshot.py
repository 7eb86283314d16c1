"""Few-shot MiniImagenet: MAML, first-order MAML and BMG meta-train a conv-4 initialisation.

Protocol (paper-notes section 5): N-way K-shot tasks with 15 queries per class; 5 support steps
of SGD(0.01) in meta-training and 10 at test; Adam(1e-3) on the initialisation. Every
`eval_every` meta-steps the initialisation is scored on the same `val_tasks` validation tasks and
the best one is kept (model selection); the final score is its mean accuracy over `test_tasks`
test tasks with a 95% confidence interval (1.96 standard errors).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bmg.core.unroll import check_integer
from bmg.fewshot import data as fewshot_data
from bmg.fewshot.conv4 import Conv4
from bmg.fewshot.learner import (
    ALGOS,
    TASK_BATCHINGS,
    Task,
    make_evaluate,
    make_learner,
    make_meta_learner,
    make_meta_step,
)


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """One few-shot run (sources in paper-notes.md section 5)."""

    data_dir: Path | None = None
    """MiniImagenet (or `bmg fewshot make-synthetic` data): Ravi & Larochelle csv splits with an
    images/ folder, or the mini-imagenet-cache-*.pkl files."""
    algo: Literal["maml", "fomaml", "bmg"] = "bmg"
    """maml (second order, the MG baseline), fomaml (first order) or bmg."""
    ways: int = 5
    shots: int = 1
    queries: int = 15
    """query images per class [standard]."""
    k: int = 5
    """K, support steps differentiated in meta-training [MAML: 5]."""
    l: int = 5
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
    """[MAML: 60,000]."""
    eval_every: int = 1_000
    """meta-steps between validation scores (and checkpoints)."""
    val_tasks: int = 600
    """validation tasks per score (the same tasks every time)."""
    test_tasks: int = 600
    """test tasks for the final score [standard: 600]."""
    eval_batch_size: int = 50
    """tasks per compiled evaluation call."""
    image_size: int | None = None
    """side of the images fed to the net (resized at load); None = as stored [MiniImagenet 84]."""
    filters: int = 32
    task_batching: Literal["vmap", "map", "unroll"] = "unroll"
    """how a meta-batch's tasks are batched in the compiled step: same numbers, different speed
    (docs/fewshot.md: on CPU "unroll" is fastest)."""
    unroll_loops: bool = True
    """compile the meta-step's inner and target steps as straight-line code instead of lax.scan
    loops: same numbers, longer compiles, 2.3x faster per MAML step on CPU at 84x84
    (docs/fewshot.md).
    Evaluation keeps the loop: unrolling eval_inner_steps x eval_batch_size tasks compiles for
    minutes."""
    seed: int = 0

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        minimums = dict(
            ways=2, shots=1, queries=1, k=1, l=1, eval_inner_steps=1, meta_batch_size=1,
            meta_steps=1, eval_every=1, val_tasks=1, test_tasks=1, eval_batch_size=1, filters=1,
            seed=0,
        )  # fmt: skip
        for name, minimum in minimums.items():
            check_integer(name, getattr(self, name), minimum)
        if self.image_size is not None:
            check_integer("image_size", self.image_size, 16)
        for name in ("inner_learning_rate", "meta_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if self.target_step_size is not None and not self.target_step_size > 0:
            raise ValueError(f"target_step_size must be > 0, got {self.target_step_size!r}.")
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


PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores: 16x16 images (`bmg fewshot make-synthetic` data), 5 queries per
    # class, 300 meta-steps; everything else as the paper preset.
    "tiny": dict(
        queries=5, meta_steps=300, eval_every=50, val_tasks=100, test_tasks=600, image_size=16
    ),
    # The MAML protocol at 84x84 (a GPU job).
    "paper": dict(image_size=84),
}


class FewShotSystem:
    """Data, model, compiled meta-step and evaluation for one config."""

    def __init__(self, config: FewShotConfig, splits: dict[str, fewshot_data.Split] | None = None):
        self.config = config
        if splits is None:
            if config.data_dir is None:
                raise ValueError("--data-dir is required (a MiniImagenet or synthetic dataset).")
            splits = fewshot_data.load_splits(
                config.data_dir,
                image_size=config.image_size,
                min_per_class=config.images_per_class,
            )
        self.splits = splits
        self.samplers = {
            name: fewshot_data.TaskSampler(
                split, ways=config.ways, shots=config.shots, queries=config.queries
            )
            for name, split in splits.items()
        }
        image_size = splits["train"].images.shape[1]
        self.model = Conv4(num_classes=config.ways, filters=config.filters)
        self.init_params = lambda key: self.model.init(
            key, jnp.zeros((1, image_size, image_size, 3))
        )
        learner = make_learner(
            self.model.apply,
            inner_learning_rate=config.inner_learning_rate,
            first_order=config.algo == "fomaml",
            matching=config.matching,
        )
        self.meta_optimizer = optax.adam(config.meta_learning_rate)
        meta_learner = make_meta_learner(
            learner,
            config.algo,
            self.meta_optimizer,
            num_inner_steps=config.k,
            num_bootstrap_steps=config.l,
            target_step_size=config.target_step_size or config.inner_learning_rate,
            unroll_loop=config.unroll_loops,
        )
        self.meta_step = jax.jit(
            make_meta_step(learner, meta_learner, self.meta_optimizer, config.task_batching)
        )
        self.evaluate_batch = jax.jit(
            make_evaluate(learner, config.eval_inner_steps, config.task_batching)
        )

    def init(self, key: jax.Array):
        meta_params = self.init_params(key)
        return meta_params, self.meta_optimizer.init(meta_params)

    def sample(self, split: str, rng: np.random.Generator, num_tasks: int) -> Task:
        return Task(*self.samplers[split].sample(rng, num_tasks))

    def evaluate(self, meta_params, split: str, num_tasks: int, seed: int) -> np.ndarray:
        """Query accuracy of each of `num_tasks` tasks (fixed by `seed`) after adaptation."""
        rng = np.random.default_rng(seed)
        accuracies = []
        batch = self.config.eval_batch_size
        for start in range(0, num_tasks, batch):
            tasks = self.sample(split, rng, min(batch, num_tasks - start))
            _, accuracy = self.evaluate_batch(meta_params, tasks)
            accuracies.append(np.asarray(accuracy))
        return np.concatenate(accuracies)


def confidence_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal confidence interval."""
    accuracies = np.asarray(accuracies, np.float64)
    half_width = 1.96 * accuracies.std(ddof=1) / math.sqrt(len(accuracies))
    return float(accuracies.mean()), float(half_width)


# Seeds of the evaluation task streams: the same validation tasks at every score.
VAL_SEED, TEST_SEED = 1_000_003, 2_000_003


def train(
    system: FewShotSystem,
    on_eval: Callable[[dict[str, Any], Any, bool], None] | None = None,
) -> dict[str, Any]:
    """Meta-train with model selection on validation; score the selected initialisation on test.

    `on_eval(row, meta_params, is_best)` is called at every validation score (row: meta_step,
    wall-clock training seconds, meta-batch metrics averaged since the last score, val accuracy),
    e.g. to write metrics and checkpoints.
    Returns the summary (best validation score, test accuracy with its 95% interval, timings).
    """
    config = system.config
    key = jax.random.key(config.seed)
    init_key, key = jax.random.split(key)
    meta_params, opt_state = system.init(init_key)
    rng = np.random.default_rng(config.seed)
    best = dict(val_accuracy=-1.0, meta_step=0)
    best_params = meta_params
    train_seconds, compile_seconds = 0.0, None
    rows, metric_sums, steps_since_eval = [], {}, 0
    for step in range(1, config.meta_steps + 1):
        tasks = system.sample("train", rng, config.meta_batch_size)
        key, step_key = jax.random.split(key)
        start = time.perf_counter()
        meta_params, opt_state, metrics = system.meta_step(meta_params, opt_state, tasks, step_key)
        jax.block_until_ready(meta_params)
        elapsed = time.perf_counter() - start
        if compile_seconds is None:
            compile_seconds = elapsed  # the first call compiles; not counted as training time
        else:
            train_seconds += elapsed
        for name, value in metrics.items():
            metric_sums[name] = metric_sums.get(name, 0.0) + float(value)
        steps_since_eval += 1
        if step % config.eval_every == 0 or step == config.meta_steps:
            val = system.evaluate(meta_params, "val", config.val_tasks, VAL_SEED)
            row = {
                "meta_step": step,
                "train_seconds": train_seconds,
                **{name: total / steps_since_eval for name, total in metric_sums.items()},
                "val_accuracy": float(val.mean()),
            }
            metric_sums, steps_since_eval = {}, 0
            rows.append(row)
            is_best = row["val_accuracy"] > best["val_accuracy"]
            if is_best:
                best = dict(val_accuracy=row["val_accuracy"], meta_step=step)
                best_params = meta_params
            if on_eval is not None:
                on_eval(row, meta_params, is_best)
    test = system.evaluate(best_params, "test", config.test_tasks, TEST_SEED)
    test_mean, test_ci = confidence_interval(test)
    timed_steps = max(config.meta_steps - 1, 1)
    summary = {
        "algo": config.algo,
        "ways": config.ways,
        "shots": config.shots,
        "best_val_accuracy": best["val_accuracy"],
        "best_meta_step": best["meta_step"],
        "test_accuracy": test_mean,
        "test_ci95": test_ci,
        "test_tasks": len(test),
        "seconds_per_meta_step": train_seconds / timed_steps,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
    }
    return {"summary": summary, "rows": rows, "best_params": best_params, "test": test}
