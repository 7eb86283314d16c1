"""Few-shot MiniImagenet: MAML, first-order MAML and BMG meta-train a conv-4 initialisation.

Protocol (Finn et al., ICML 2017, MiniImagenet; Flennerhag et al., ICLR 2022, few-shot): N-way
K-shot tasks with 15 queries per class; 5 support steps of SGD(0.01) in meta-training and 10 at
test; Adam(1e-3) on the initialisation. Every `eval_every` meta-steps the initialisation is scored
on the same `val_tasks` validation tasks and the best one is kept (model selection); the final
score is its mean accuracy over `test_tasks` test tasks with a 95% confidence interval (1.96
standard errors).

This module declares the config, presets, metrics and the system (data, learner, compiled
meta-step, evaluation); the host-loop runner (`bmg.train.host_loop`) trains it,
and `run` writes the run directory.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bmg import memory
from bmg.agents.fewshot import (
    Task,
    make_evaluate,
    make_learner,
    task_states,
)
from bmg.core import make_meta_learner, over_batch
from bmg.experiments.api import System
from bmg.experiments.fewshot.config import (  # noqa: F401  (the system's config, re-exported)
    MAX_META_LEARNING_RATE,
    MAX_STEP_SIZE,
    META,
    MIN_IMAGE_SIZE,
    NUM_BLOCKS,
    PRESETS,
    SETTINGS,
    FewShotConfig,
    select,
    unused_fields,
)
from bmg.experiments.fewshot.report import REPORT
from bmg.fewshot import data as fewshot_data
from bmg.fewshot.conv4 import Conv4, feature_size
from bmg.train import host_loop
from bmg.train.driver import CHECKPOINTS  # noqa: F401  (the run directory's, re-exported)

METRICS: dict[str, tuple[str, str]] = {
    "meta_step": ("meta-steps", "meta-updates of the initialisation so far"),
    "train_seconds": ("s", "wall-clock of the meta-steps, compilation and evaluation excluded"),
    "val_accuracy": ("fraction", "mean query accuracy over the validation tasks after "
                     "eval_inner_steps support steps from the initialisation"),
    "train/query_loss": ("nats", "query loss of x_K on the meta-batch (mean since last score)"),
    "train/query_accuracy": ("fraction", "query accuracy of x_K on the meta-batch"),
    "inner/loss": ("nats", "support loss during the K inner steps"),
    "inner/accuracy": ("fraction", "support accuracy during the K inner steps"),
    "meta/loss": ("nats", "the loss differentiated: the query loss (maml, fomaml) or the "
                  "matching loss mu (bmg)"),
    "meta/grad_norm": ("", "global norm of the task-averaged meta-gradient"),
    "meta/update_norm": ("", "global norm of Adam's update of the initialisation"),
    "target/distance": ("", "bmg: ||x~ - x_K||, parameter distance to the target"),
    "target/objective": ("nats", "bmg: query loss at x_{K+L-1}, before the target's final step"),
}  # fmt: skip
"""Columns of metrics.csv: name -> (unit, meaning); the glossary is in docs/fewshot.md."""

# Seeds of the evaluation task streams: the same validation tasks at every score.
VAL_SEED, TEST_SEED = 1_000_003, 2_000_003
"""the run directory's orbax checkpoint folder (deleted when the run finishes)."""


def check_image_size(splits: dict[str, fewshot_data.Split], source: Path | None) -> int:
    """The images' side; DataError if the splits differ or the network cannot take it."""
    sizes = {name: split.images.shape[1] for name, split in splits.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size}x{size}" for name, size in sizes.items())
        raise fewshot_data.DataError(
            f"{source}: the splits hold images of different sizes ({listed}); pass "
            "--image-size N to resize them all to N x N."
        )
    side = next(iter(sizes.values()))
    if feature_size(side, num_blocks=NUM_BLOCKS) == 0:
        raise fewshot_data.DataError(
            f"{source}: the images are {side}x{side} px but the {NUM_BLOCKS}-block conv net "
            f"halves the side {NUM_BLOCKS} times and needs at least {MIN_IMAGE_SIZE}x"
            f"{MIN_IMAGE_SIZE}; pass --image-size {MIN_IMAGE_SIZE} (or larger) to resize them."
        )
    return side


def memory_needed(config: FewShotConfig, side: int) -> dict[str, int]:
    """Lower bounds of the bytes a run at `side` x `side` px holds besides the dataset:

    - "activations": one task's first-block feature maps (side^2 x filters float32 per image)
      that the meta-gradient keeps for its backward pass: the query images at x_K and the
      support images of every differentiated inner step (one for fomaml);
    - "tasks": the largest batch of tasks sampled on the host (the meta-batch or an evaluation
      batch), as float32 images.
    """
    kept = 1 if config.first_order else config.meta.inner_steps
    maps = config.ways * (config.queries + config.shots * kept)
    largest_eval = min(config.eval_batch_size, max(config.val_tasks, config.test_tasks))
    tasks = max(config.meta_batch_size, largest_eval) * config.ways * config.images_per_class
    return {
        "activations": maps * side * side * config.filters * 4,
        "tasks": tasks * side * side * 3 * 4,
    }


def check_memory(config: FewShotConfig, side: int) -> None:
    """Refuse, with one sentence giving the estimate and what is available, a run at `side` px
    whose `memory_needed` cannot fit: on an accelerator the activations in its free memory and
    the tasks in the host's, on CPU both in the host's (`bmg.memory.available_memory`)."""
    needed = memory_needed(config, side)
    fmt = memory.format_bytes
    activations = (
        f"one task's first-block activations kept for the meta-gradient at {side}x{side} px, "
        f"{fmt(needed['activations'])}"
    )
    tasks = f"a batch of sampled tasks' images in float32, {fmt(needed['tasks'])}"
    hint = (
        "lower --image-size (MiniImagenet is 84), --filters, --eval-batch-size or --meta-batch-size"
    )
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:  # an accelerator: the activations live in its memory
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        what = f"a few-shot run ({activations}) on {device.device_kind}"
        memory.check_fits(needed["activations"], what, hint, available=free)
        memory.check_fits(needed["tasks"], f"a few-shot run ({tasks})", hint)
    else:
        what = f"a few-shot run ({activations}, and {tasks})"
        memory.check_fits(needed["activations"] + needed["tasks"], what, hint)


class FewShotSystem:
    """Data, learner, compiled meta-step and evaluation for one config.

    Loading and checking the data happens here (DataError with one sentence), so build the
    system before creating a run directory. A run that cannot fit in memory (`check_memory`)
    is refused with one sentence, before the data is loaded when `image_size` is set.

    `log`, when set, receives the progress lines of compiling: "compiling the meta-step ..."
    before the first call of each compiled program and "compiled in 12.3 s" after it.
    """

    def __init__(self, config: FewShotConfig, splits: dict[str, fewshot_data.Split] | None = None):
        self.config = config
        self.log: Callable[[str], None] | None = None
        self._compiled: set = set()
        if config.image_size is not None:
            check_memory(config, config.image_size)
        if splits is None:
            if config.data_dir is None:
                raise ValueError("--data-dir is required (a MiniImagenet or synthetic dataset).")
            splits = fewshot_data.load_splits(
                config.data_dir,
                image_size=config.image_size,
                min_per_class=config.images_per_class,
            )
        image_size = check_image_size(splits, config.data_dir)
        if config.image_size is None:
            check_memory(config, image_size)
        self.splits = splits
        self.samplers = {
            name: fewshot_data.TaskSampler(
                split, ways=config.ways, shots=config.shots, queries=config.queries
            )
            for name, split in splits.items()
        }
        self.model = Conv4(num_classes=config.ways, filters=config.filters, num_blocks=NUM_BLOCKS)
        shape = lambda n: jax.ShapeDtypeStruct((n, image_size, image_size, 3), jnp.float32)
        labels = lambda n: jax.ShapeDtypeStruct((n,), jnp.int32)
        self.learner = make_learner(
            self.model.apply,
            lambda key: self.model.init(key, jnp.zeros((1, image_size, image_size, 3))),
            inner_learning_rate=config.inner_learning_rate,
            first_order=config.first_order,
            matching=config.matching,
            task_shapes=Task(
                shape(config.ways * config.shots),
                labels(config.ways * config.shots),
                shape(config.ways * config.queries),
                labels(config.ways * config.queries),
            ),
        )
        self.meta_learner = make_meta_learner(
            self.learner, config.meta, reduce=over_batch(config.task_batching)
        )
        self.train_step = jax.jit(self._train_step)
        # compiled: run op by op, the net's initialisation compiles hundreds of tiny programs
        self._init_meta_state = jax.jit(
            lambda key: self.meta_learner.init(self.learner.init_meta_params(key))
        )
        self.evaluate_batch = jax.jit(
            make_evaluate(self.learner, config.eval_inner_steps, config.task_batching)
        )

    def _train_step(self, train: dict, tasks: Task) -> tuple[dict, dict]:
        """One meta-step on a meta-batch: `MetaLearner.step` on the stacked task states, plus
        the query loss and accuracy of x_K (the learner's probes) as `train/...`."""
        key, step_key = jax.random.split(train["key"])
        meta_state = train["meta_state"]
        states = task_states(meta_state.meta_params, tasks)
        meta_state, states, metrics = self.meta_learner.step(meta_state, states, step_key)
        probes = jax.vmap(self.learner.probes, in_axes=(None, 0))(meta_state.meta_params, states)
        metrics = {**metrics, **{f"train/{k}": jnp.mean(v) for k, v in probes.items()}}
        return {"meta_state": meta_state, "key": key}, metrics

    def _first_call(self, key, what: str, detail: str, fn, *args):
        """`fn(*args)`; the first call with `key` compiles: announced on `self.log` ("compiling
        {what} ({detail}; ...") and timed (the first call's run included, as the host loop's
        compile_seconds)."""
        if key in self._compiled:
            return fn(*args)
        if self.log is not None:
            self.log(f"compiling {what} ({detail}; once per process, can take minutes) ...")
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        self._compiled.add(key)
        if self.log is not None:
            self.log(f"compiled in {time.perf_counter() - start:.1f} s")
        return out

    def init(self) -> dict:
        """The training pytree at meta-step 0: the meta-state (w_0, Adam) and the PRNG key."""
        init_key, key = jax.random.split(jax.random.key(self.config.seed))
        return {"meta_state": self._init_meta_state(init_key), "key": key}

    def sample(self, split: str, rng: np.random.Generator, num_tasks: int) -> Task:
        return Task(*self.samplers[split].sample(rng, num_tasks))

    def step(self, train: dict, rng: np.random.Generator) -> tuple[dict, dict]:
        """One meta-step on a meta-batch of training tasks drawn from `rng`."""
        config, size = self.config, self.config.meta_batch_size
        tasks = self.sample("train", rng, size)
        detail = f"{size} task{'s' * (size != 1)}, {config.algo}"
        return self._first_call("meta-step", "the meta-step", detail, self.train_step, train, tasks)

    def evaluate(self, meta_params, split: str, num_tasks: int, seed: int, progress=None):
        """Query accuracy [num_tasks] of each task (fixed by `seed`) after `eval_inner_steps`
        support steps from `meta_params`; `progress(done, total)` after each batch.

        Batches of min(eval_batch_size, num_tasks) tasks; a shorter last batch is padded with
        copies of its first task (scored, then dropped: tasks are adapted independently), so
        an evaluation compiles one program, not a second one for the remainder."""
        rng = np.random.default_rng(seed)
        accuracies = []
        batch = min(self.config.eval_batch_size, num_tasks)
        for start in range(0, num_tasks, batch):
            count = min(batch, num_tasks - start)
            tasks = self.sample(split, rng, count)
            if count < batch:
                tasks = jax.tree.map(
                    lambda x, n=batch - count: np.concatenate([x, np.repeat(x[:1], n, axis=0)]),
                    tasks,
                )
            steps = self.config.eval_inner_steps
            detail = f"{batch} tasks x {steps} support step{'s' * (steps != 1)}"
            _, accuracy = self._first_call(
                ("evaluation", batch),
                "the evaluation",
                detail,
                self.evaluate_batch,
                meta_params,
                tasks,
            )
            accuracies.append(np.asarray(accuracy)[:count])
            if progress is not None:
                progress(start + len(accuracies[-1]), num_tasks)
        return np.concatenate(accuracies)

    def host_loop(self) -> host_loop.HostLoop:
        """This system as the host loop's `HostLoop`."""
        config = self.config
        return host_loop.HostLoop(
            num_steps=config.meta_steps,
            eval_every=config.eval_every,
            init=self.init,
            init_rng=lambda: np.random.default_rng(config.seed),
            step=self.step,
            validate=lambda train, progress: {
                "val_accuracy": float(
                    self.evaluate(
                        train["meta_state"].meta_params, "val", config.val_tasks, VAL_SEED, progress
                    ).mean()
                )
            },
            select=lambda train: train["meta_state"].meta_params,
            watch=lambda train, metrics: {
                "the initialisation (meta-parameters)": train["meta_state"].meta_params,
                "the meta-loss (meta/loss)": metrics["meta/loss"],
                "the query loss (train/query_loss)": metrics["train/query_loss"],
            },
            score_name="val_accuracy",
            step_name="meta_step",
            nan_hint="lower --meta.learning-rate or --inner-learning-rate and start again",
        )


def confidence_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal confidence interval (0 for one task)."""
    accuracies = np.asarray(accuracies, np.float64)
    if len(accuracies) < 2:
        return float(accuracies.mean()), 0.0
    half_width = 1.96 * accuracies.std(ddof=1) / math.sqrt(len(accuracies))
    return float(accuracies.mean()), float(half_width)


def summarize(config: FewShotConfig, state: host_loop.LoopState, test: np.ndarray) -> dict:
    """summary.json: the selected initialisation's validation and test scores, and timings."""
    test_mean, test_ci = confidence_interval(test)
    timed_steps = max(config.meta_steps - state.compiled_calls, 1)
    return {
        "algo": config.algo,
        "ways": config.ways,
        "shots": config.shots,
        "best_val_accuracy": state.best_score,
        "best_meta_step": state.best_step,
        "test_accuracy": test_mean,
        "test_ci95": test_ci,
        "test_tasks": len(test),
        "seconds_per_meta_step": state.train_seconds / timed_steps,
        "train_seconds": state.train_seconds,
        "compile_seconds": state.compile_seconds,
    }


def train(
    system: FewShotSystem, checkpointer=None, *, resume=False, state=None, callbacks=None
) -> dict:
    """Meta-train with model selection on validation; score the selected initialisation on test.
    From `state` when given (`host_loop.start` / `host_loop.restore`), else as `host_loop.run`
    starts (`resume`: from the checkpointer's latest checkpoint).

    Returns {"summary", "rows", "best_params", "test" (per-task test accuracies), "state"}.
    """
    config = system.config
    log, system.log = system.log, getattr(callbacks, "message", None)  # compiling, compiled in
    try:
        state = host_loop.run(
            system.host_loop(),
            checkpointer,
            resume=resume,
            state=state,
            callbacks=callbacks or RunProgress(),
        )
        progress = getattr(callbacks, "on_test", None)
        test = system.evaluate(state.best, "test", config.test_tasks, TEST_SEED, progress)
    finally:
        system.log = log
    return {
        "summary": summarize(config, state, test),
        "rows": state.rows,
        "best_params": state.best,
        "test": test,
        "state": state,
    }


class RunProgress(host_loop.Callbacks):
    """Progress on a rich console: a spinner while compiling, a bar of meta-steps, bars of the
    validation and test tasks, and one line per score. Silent without a console."""

    def __init__(self, config: FewShotConfig | None = None, console=None, on_eval=None):
        self.config, self.console, self.extra_on_eval = config, console, on_eval
        self.progress = self.steps = self.tasks = None

    def __enter__(self):
        if self.console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def message(self, text: str) -> None:
        """One line above the bars (the system's "compiling ..." and "compiled in ...")."""
        if self.console is not None:
            self.console.print(text, soft_wrap=True)

    def on_start(self, state, num_steps):
        if self.progress is not None:
            self.steps = self.progress.add_task("meta-steps", total=num_steps, completed=state.step)

    def on_compile(self, step):  # the system says what compiles and how long it took (`message`)
        if self.progress is not None:
            self.progress.update(self.steps, description="compiling the meta-step")

    def on_step(self, step, metrics):
        if self.progress is not None:
            self.progress.update(self.steps, completed=step, description="meta-steps")

    def _tasks(self, description: str, done: int, total: int):
        if self.progress is None:
            return
        if self.tasks is None:
            self.tasks = self.progress.add_task(description, total=total)
        self.progress.update(self.tasks, completed=done, total=total, description=description)
        if done >= total:
            self.progress.remove_task(self.tasks)
            self.tasks = None

    def on_validate(self, step, done, total):
        self._tasks(f"validation after meta-step {step:,}", done, total)

    def on_test(self, done, total):
        self._tasks("test tasks", done, total)

    def on_eval(self, state, is_best):
        row = state.rows[-1]
        total = f"/{self.config.meta_steps:,}" if self.config is not None else ""
        self.message(
            f"meta-step {row['meta_step']:,}{total}: val accuracy "
            f"{100 * row['val_accuracy']:.2f}%{' (best)' if is_best else ''}, train query "
            f"accuracy {100 * row['train/query_accuracy']:.2f}%, "
            f"{row['train_seconds']:.0f} s training"
        )
        if self.extra_on_eval is not None:
            self.extra_on_eval(state, is_best)


def save_params(path: Path, params) -> None:
    """`params` as flax's msgpack state dict at `path`, written atomically."""
    import os

    from flax import serialization

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(serialization.to_state_dict(params)))
    os.replace(tmp, path)


def load_params(path: Path, template):
    """Parameters `save_params` wrote, onto `template`'s structure."""
    from flax import serialization

    return serialization.from_state_dict(template, serialization.msgpack_restore(path.read_bytes()))


def prepare(config: FewShotConfig) -> FewShotSystem:
    """Load and check the data and build the system: call it before making the run directory,
    so bad data (DataError, a ValueError with one sentence) leaves nothing behind; pass the
    result to `run`."""
    return FewShotSystem(config)


DATA_RECORD = "data.json"
"""The run's record of its data: the absolute data directory and the digest of every split."""


def data_digest(splits: dict[str, fewshot_data.Split]) -> str:
    """SHA-256 of every split's name, class names, labels and image bytes (about 1 s per GB),
    so a resume can tell that its data directory still holds the data the run started with."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(splits):
        split = splits[name]
        digest.update(f"{name}:{','.join(split.class_names)}:{split.images.shape}".encode())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
        images = split.images
        for start in range(0, len(images), 1024):  # a memmap is read in pieces
            digest.update(np.ascontiguousarray(images[start : start + 1024]).tobytes())
    return digest.hexdigest()


class FewShotRun:
    """The host loop of `system` as the driver's `Run` (`bmg.train.driver`): one event per
    evaluation (its metrics.csv row), the validation and test tasks as a second bar; at every
    evaluation ``latest.msgpack`` (and ``best.msgpack`` when it scored best) and an orbax
    checkpoint (``checkpoints/``); at the end ``summary.json``, ``test_accuracies.npz`` and the
    accuracy plots (``best.msgpack`` is what is kept of the model)."""

    def __init__(self, system: FewShotSystem, run_dir: Path):
        from bmg.experiments.fewshot import report
        from bmg.train.checkpoint import Checkpointer

        config = system.config
        self.system, self.config, self.run_dir = system, config, Path(run_dir)
        self.loop = system.host_loop()
        self.checkpointer = Checkpointer(self.run_dir / CHECKPOINTS)
        self.label = report.run_label(config)
        self.title = (
            f"{self.label}: {config.meta_steps:,} meta-steps of {config.meta_batch_size} tasks"
        )
        self.fields = None  # the first evaluation's row names them
        self.total = config.meta_steps
        self.compiled = True  # each program compiles on its first call (the system says so)
        self.resumed_after: int | None = None

    def compile(self) -> None:
        pass

    def start(self) -> host_loop.LoopState:
        from bmg.train.rundir import write_json

        state = host_loop.start(self.loop, self.checkpointer)
        data = {
            "data_dir": str(Path(self.config.data_dir).absolute()) if self.config.data_dir else None
        }
        write_json(self.run_dir / DATA_RECORD, {**data, "sha256": data_digest(self.system.splits)})
        return state

    def restore(self) -> tuple[host_loop.LoopState, list[dict]]:
        from bmg.train.rundir import read_json

        path = self.run_dir / DATA_RECORD
        if path.is_file():  # runs written before the record was kept have none
            record = read_json(path, "the run's data record")
            if record.get("sha256") != data_digest(self.system.splits):
                raise ValueError(
                    f"--data-dir {self.config.data_dir} holds other images or labels than the run "
                    f"was trained on ({path} records those of {record.get('data_dir')}), so its "
                    "checkpoint would go on with other data: resume with the data it started with."
                )
        state = host_loop.restore(self.checkpointer, self.loop)
        save_params(self.run_dir / "best.msgpack", state.best)
        self.resumed_after = state.step
        return state, state.rows

    def run(self, state: host_loop.LoopState, on_event, display) -> dict:
        from bmg.train.driver import Event

        config, run_dir = self.config, self.run_dir
        if self.resumed_after is not None:
            display.message(f"resumed after meta-step {self.resumed_after:,}")

        class Callbacks(host_loop.Callbacks):
            message = staticmethod(display.message)  # compiling, compiled in

            def on_step(self, step, metrics):
                display.advance(step, "")  # the bar only; logs get a line per evaluation

            def on_validate(self, step, done, total):
                display.task(f"validation after meta-step {step:,}", done, total)

            def on_test(self, done, total):
                display.task("test tasks", done, total)

            def on_eval(self, state, is_best):
                row = state.rows[-1]
                save_params(run_dir / "latest.msgpack", state.train["meta_state"].meta_params)
                if is_best:
                    save_params(run_dir / "best.msgpack", state.best)
                line = (
                    f"meta-step {row['meta_step']:,}/{config.meta_steps:,}: val accuracy "
                    f"{100 * row['val_accuracy']:.2f}%{' (best)' if is_best else ''}, train "
                    f"query accuracy {100 * row['train/query_accuracy']:.2f}%, "
                    f"{row['train_seconds']:.0f} s training"
                )
                on_event(Event([row], row["meta_step"], line))

        return train(self.system, self.checkpointer, state=state, callbacks=Callbacks())

    def finish(self, result: dict) -> dict:
        from bmg.experiments.fewshot import report
        from bmg.train.rundir import save_npz, write_json

        save_npz(self.run_dir / "test_accuracies.npz", test_accuracy=result["test"])
        report.plot_accuracy([(self.label, result["rows"])], self.run_dir)
        # summary.json last: it marks the run finished, so a run interrupted while its plots are
        # drawn still resumes (from its last checkpoint) and finishes
        write_json(self.run_dir / "summary.json", result["summary"])
        return result["summary"]

    def close(self) -> None:
        self.checkpointer.close()


def run(
    config: FewShotConfig | FewShotSystem,
    run_dir: Path,
    *,
    resume: bool = False,
    console=None,
) -> dict:
    """Train `config` (or a system from `prepare`) into `run_dir` with the driver
    (`bmg.train.driver.drive` of a `FewShotRun`); returns the summary.

    `config.json` and the record of a resume are the caller's (the CLI writes them). A new run
    starts at meta-step 0; `resume=True` continues from the latest checkpoint in `run_dir`
    (raising ValueError / CheckpointError with one sentence, before anything is written, when
    there is none or it is damaged).

    Raises:
      NonFiniteError: training diverged (the last checkpoint is kept; resume is pointless with
        the same config).
    """
    from bmg.train import driver
    from bmg.train.logging import make_console

    system = config if isinstance(config, FewShotSystem) else prepare(config)
    console = make_console(io.StringIO()) if console is None else console
    run = FewShotRun(system, Path(run_dir))
    return driver.drive(run, Path(run_dir), name="fewshot", resume=resume, console=console)


SYSTEM = System(SETTINGS, run, REPORT, prepare=prepare)
"""`bmg fewshot`: data loaded and checked first (`prepare`), then meta-training with model
selection on the host loop (`run`)."""
