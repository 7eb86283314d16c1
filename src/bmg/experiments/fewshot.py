"""Few-shot MiniImagenet: MAML, first-order MAML and BMG meta-train a conv-4 initialisation.

Protocol (paper-notes section 5): N-way K-shot tasks with 15 queries per class; 5 support steps
of SGD(0.01) in meta-training and 10 at test; Adam(1e-3) on the initialisation. Every
`eval_every` meta-steps the initialisation is scored on the same `val_tasks` validation tasks and
the best one is kept (model selection); the final score is its mean accuracy over `test_tasks`
test tasks with a 95% confidence interval (1.96 standard errors).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

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


class TrainState(NamedTuple):
    """Everything `train` needs to continue a run after `meta_step` meta-steps."""

    meta_step: int
    meta_params: Any
    opt_state: Any
    key: jax.Array
    rng_state: dict[str, Any]
    """`np.random.Generator.bit_generator.state` of the training-task sampler."""
    best_params: Any
    best_val_accuracy: float
    best_meta_step: int
    train_seconds: float
    compile_seconds: float
    compiled_calls: int
    """meta-step calls that compiled (one per process): not counted as training time."""
    rows: list[dict[str, float]]


def initial_state(system: FewShotSystem) -> TrainState:
    key = jax.random.key(system.config.seed)
    init_key, key = jax.random.split(key)
    meta_params, opt_state = system.init(init_key)
    return TrainState(
        meta_step=0,
        meta_params=meta_params,
        opt_state=opt_state,
        key=key,
        rng_state=np.random.default_rng(system.config.seed).bit_generator.state,
        best_params=meta_params,
        best_val_accuracy=-1.0,
        best_meta_step=0,
        train_seconds=0.0,
        compile_seconds=0.0,
        compiled_calls=0,
        rows=[],
    )


def train(
    system: FewShotSystem,
    on_eval: Callable[[TrainState, bool], None] | None = None,
    resume: TrainState | None = None,
) -> dict[str, Any]:
    """Meta-train with model selection on validation; score the selected initialisation on test.

    `on_eval(state, is_best)` is called at every validation score with the state after it
    (`state.rows[-1]`: meta_step, wall-clock training seconds, meta-batch metrics averaged since
    the last score, val accuracy), e.g. to write metrics and checkpoints. `resume` (a state
    `on_eval` was given) continues a run to the numbers an uninterrupted run gives.
    Returns the summary (best validation score, test accuracy with its 95% interval, timings).
    """
    config = system.config
    state = initial_state(system) if resume is None else resume
    meta_params, opt_state, key = state.meta_params, state.opt_state, state.key
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    train_seconds, compile_seconds = state.train_seconds, state.compile_seconds
    compiled_calls = state.compiled_calls
    metric_sums, steps_since_eval, compiled = {}, 0, False
    for step in range(state.meta_step + 1, config.meta_steps + 1):
        tasks = system.sample("train", rng, config.meta_batch_size)
        key, step_key = jax.random.split(key)
        start = time.perf_counter()
        meta_params, opt_state, metrics = system.meta_step(meta_params, opt_state, tasks, step_key)
        jax.block_until_ready(meta_params)
        elapsed = time.perf_counter() - start
        if not compiled:  # the first call of a process compiles; not counted as training time
            compiled = True
            compile_seconds += elapsed
            compiled_calls += 1
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
            is_best = row["val_accuracy"] > state.best_val_accuracy
            state = TrainState(
                meta_step=step,
                meta_params=meta_params,
                opt_state=opt_state,
                key=key,
                rng_state=rng.bit_generator.state,
                best_params=meta_params if is_best else state.best_params,
                best_val_accuracy=row["val_accuracy"] if is_best else state.best_val_accuracy,
                best_meta_step=step if is_best else state.best_meta_step,
                train_seconds=train_seconds,
                compile_seconds=compile_seconds,
                compiled_calls=compiled_calls,
                rows=[*state.rows, row],
            )
            if on_eval is not None:
                on_eval(state, is_best)
    test = system.evaluate(state.best_params, "test", config.test_tasks, TEST_SEED)
    test_mean, test_ci = confidence_interval(test)
    timed_steps = max(config.meta_steps - state.compiled_calls, 1)
    summary = {
        "algo": config.algo,
        "ways": config.ways,
        "shots": config.shots,
        "best_val_accuracy": state.best_val_accuracy,
        "best_meta_step": state.best_meta_step,
        "test_accuracy": test_mean,
        "test_ci95": test_ci,
        "test_tasks": len(test),
        "seconds_per_meta_step": state.train_seconds / timed_steps,
        "train_seconds": state.train_seconds,
        "compile_seconds": state.compile_seconds,
    }
    return {"summary": summary, "rows": state.rows, "best_params": state.best_params, "test": test}


CHECKPOINT = "checkpoint.msgpack"


def save_checkpoint(run_dir: Path, state: TrainState) -> None:
    """`run_dir/checkpoint.msgpack`, written atomically: arrays as msgpack, the rest as JSON."""
    arrays = {
        "meta_params": state.meta_params,
        "opt_state": state.opt_state,
        "best_params": state.best_params,
        "key": jax.random.key_data(state.key),
    }
    scalars = {name: value for name, value in state._asdict().items() if name not in arrays}
    payload = {
        "arrays": serialization.to_state_dict(arrays),
        # JSON: the sampler's 128-bit state does not fit msgpack integers.
        "scalars": json.dumps(scalars),
    }
    tmp = run_dir / (CHECKPOINT + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(payload))
    os.replace(tmp, run_dir / CHECKPOINT)


def _shapes(tree) -> list[tuple[int, ...]]:
    return [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def load_checkpoint(run_dir: Path, system: FewShotSystem) -> TrainState:
    """The TrainState `save_checkpoint` left in `run_dir`; ValueError if absent or unusable."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ValueError(
            f"{path} is missing: the run stopped before its first validation score, so there is "
            "nothing to continue; start it again."
        )
    template = initial_state(system)
    target = {
        "meta_params": template.meta_params,
        "opt_state": template.opt_state,
        "best_params": template.best_params,
        "key": jax.random.key_data(template.key),
    }
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        arrays = serialization.from_state_dict(target, payload["arrays"])
        scalars = json.loads(payload["scalars"])
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path} cannot be read as a checkpoint ({error}).") from None
    if _shapes(arrays) != _shapes(target):
        raise ValueError(f"{path} does not fit config.json: the parameter shapes differ.")
    return TrainState(
        **scalars,
        meta_params=arrays["meta_params"],
        opt_state=arrays["opt_state"],
        best_params=arrays["best_params"],
        key=jax.random.wrap_key_data(arrays["key"]),
    )
