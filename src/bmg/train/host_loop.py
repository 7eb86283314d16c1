"""The host loop: one compiled step per call, periodic evaluation, model selection, checkpoints.

For systems whose data comes from the host each step (few-shot tasks drawn by a NumPy sampler)
and whose result is a selected model: every `eval_every` steps (and after the last) the state is
scored by `validate`, the best by `score_name` is kept (model selection: the first of equal
scores), and a checkpoint is written, so an interrupted run loses at most `eval_every` steps and
`resume=True` continues it to the numbers an uninterrupted run gives (the training pytree with
its PRNG key, the best model, the host sampler's bit-generator state, the rows and the timings
are all in the checkpoint).

A NaN guard checks, after every step, the quantities `watch` names (e.g. the meta-parameters and
the meta-loss); at the first non-finite one the loop stops with `NonFiniteError`, one sentence
naming the quantity and the step, before anything of that step is written: the last checkpoint
(the last good state) stays as it was.

Progress goes to a `Callbacks` object: before the first, compiling, call of a process, after each
step, during each evaluation and after each score.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bmg.train.api import NonFiniteError  # noqa: F401  (raised here)

PyTree = Any
Progress = Callable[[int, int], None]
"""`progress(done, total)`, e.g. evaluation tasks scored so far."""


class Callbacks:
    """Progress of a host loop; every method is a no-op here: override those you need."""

    def on_start(self, state: LoopState, num_steps: int) -> None:
        """Before the first step (`state.step` steps are already done when resuming)."""

    def on_compile(self, step: int) -> None:
        """Before the first step of this process, which compiles the step (can take minutes)."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        """After step `step` (1-based) with its metrics."""

    def on_validate(self, step: int, done: int, total: int) -> None:
        """During the evaluation after step `step`: `done` of `total` units scored."""

    def on_eval(self, state: LoopState, is_best: bool) -> None:
        """After an evaluation and its checkpoint; `state.rows[-1]` is the new row."""


@dataclasses.dataclass(frozen=True)
class HostLoop:
    """What a system gives the host loop.

    Attributes:
      num_steps: steps in the whole run (>= 1).
      eval_every: steps between evaluations (>= 1); the last step is always evaluated.
      init: `() -> train_state`, the training pytree at step 0 (arrays and PRNG keys).
      init_rng: `() -> np.random.Generator`, the host sampler's generator at step 0.
      step: `(train_state, rng) -> (train_state, metrics)`, one step (it draws its host data
        from `rng`); metrics are scalars, averaged between evaluations into the rows.
      validate: `(train_state, progress) -> {name: float}`, the scores of a state, one of them
        `score_name`; `progress(done, total)` may be called while it runs.
      select: `train_state -> model`, what model selection keeps (e.g. the meta-parameters).
      watch: `(train_state, metrics) -> {description: pytree}`, what must stay finite, e.g.
        `{"the meta-parameters": meta_params, "the meta-loss": metrics["meta/loss"]}`.
      score_name: the `validate` entry that selects the model (higher is better).
      step_name: the rows' name for the step count, e.g. "meta_step".
      nan_hint: the end of the NaN guard's sentence, what a person can do about it.
    """

    num_steps: int
    eval_every: int
    init: Callable[[], PyTree]
    init_rng: Callable[[], np.random.Generator]
    step: Callable[[PyTree, np.random.Generator], tuple[PyTree, dict[str, Any]]]
    validate: Callable[[PyTree, Progress], dict[str, float]]
    select: Callable[[PyTree], PyTree]
    watch: Callable[[PyTree, dict[str, Any]], dict[str, PyTree]]
    score_name: str = "val_accuracy"
    step_name: str = "step"
    nan_hint: str = "lower the learning rates"

    def __post_init__(self):
        for name in ("num_steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


class LoopState(NamedTuple):
    """Everything the host loop needs to continue after `step` steps (what a checkpoint holds)."""

    step: int
    train: PyTree
    best: PyTree
    """the selected model (`HostLoop.select` of the best-scoring state so far)."""
    best_score: float
    """its score; -inf before the first evaluation."""
    best_step: int
    rng_state: dict[str, Any]
    """`np.random.Generator.bit_generator.state` of the host sampler."""
    rows: list[dict[str, float]]
    """one per evaluation: the step, training seconds, metrics averaged since the last
    evaluation, and the scores."""
    train_seconds: float
    """wall-clock seconds of the steps that did not compile (evaluation excluded)."""
    compile_seconds: float
    compiled_calls: int
    """steps that compiled (the first of each process): not counted as training time."""


def initial_state(loop: HostLoop) -> LoopState:
    train = loop.init()
    return LoopState(
        step=0,
        train=train,
        best=loop.select(train),
        best_score=-math.inf,
        best_step=0,
        rng_state=loop.init_rng().bit_generator.state,
        rows=[],
        train_seconds=0.0,
        compile_seconds=0.0,
        compiled_calls=0,
    )


# Checkpoints ------------------------------------------------------------------------------------


def _encode_ints(value: Any) -> Any:
    """Python ints as decimal strings (a PCG64 state holds 128-bit integers, beyond what strict
    JSON readers keep exactly), recursively; `_decode_ints` undoes it."""
    if isinstance(value, dict):
        return {k: _encode_ints(v) for k, v in value.items()}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return {"int": str(int(value))}
    return value


def _decode_ints(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {k: _decode_ints(v) for k, v in value.items()}
    return value


def save(checkpointer, state: LoopState) -> None:
    """Write `state` as checkpoint step `state.step` (arrays and keys in the pytree, the rest in
    the JSON meta; non-finite floats are stored as null)."""
    meta = {
        name: value
        for name, value in state._asdict().items()
        if name not in ("step", "train", "best", "rng_state", "best_score")
    }
    meta["best_score"] = None if math.isinf(state.best_score) else state.best_score
    meta["rng_state"] = _encode_ints(state.rng_state)
    checkpointer.save(state.step, {"train": state.train, "best": state.best}, meta)


def restore(checkpointer, loop: HostLoop) -> LoopState:
    """The `LoopState` of the latest checkpoint. Raises ValueError (or the checkpointer's
    CheckpointError) with one sentence when there is none or it does not fit `loop`."""
    step = checkpointer.latest_step()
    if step is None:
        raise ValueError(
            f"{checkpointer.directory} holds no checkpoint: the run stopped before its first "
            "evaluation, so there is nothing to continue; start it again."
        )
    template = initial_state(loop)
    arrays, meta = checkpointer.restore({"train": template.train, "best": template.best})
    rows = [
        {name: math.nan if value is None else value for name, value in row.items()}
        for row in meta["rows"]
    ]
    best_score = meta["best_score"]
    return LoopState(
        step=step,
        train=arrays["train"],
        best=arrays["best"],
        best_score=-math.inf if best_score is None else float(best_score),
        best_step=int(meta["best_step"]),
        rng_state=_decode_ints(meta["rng_state"]),
        rows=rows,
        train_seconds=float(meta["train_seconds"]),
        compile_seconds=float(meta["compile_seconds"]),
        compiled_calls=int(meta["compiled_calls"]),
    )


# The loop ---------------------------------------------------------------------------------------


@jax.jit
def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def start(loop: HostLoop, checkpointer=None) -> LoopState:
    """The state at step 0, for a new run.

    Raises:
      ValueError: the checkpointer already holds a checkpoint (an earlier run's, whose steps
        this one would collide with), before anything runs.
    """
    latest = None if checkpointer is None else checkpointer.latest_step()
    if latest is not None:
        raise ValueError(
            f"{checkpointer.directory} already holds the checkpoint of "
            f"{loop.step_name.replace('_', '-')} {latest:,} (an earlier run's); continue that "
            "run with resume=True, or give this run another checkpoint directory."
        )
    return initial_state(loop)


def run(
    loop: HostLoop,
    checkpointer=None,
    *,
    resume: bool = False,
    state: LoopState | None = None,
    callbacks: Callbacks | None = None,
) -> LoopState:
    """Run `loop` to `loop.num_steps`, evaluating, selecting and checkpointing as it goes.

    Args:
      loop: the system's `HostLoop`.
      checkpointer: a `bmg.train.checkpoint.Checkpointer` (`save(step, state, meta)`,
        `latest_step()`, `restore(template)`), or None for no checkpoints.
      resume: continue from the checkpointer's latest checkpoint.
      state: the state to run from (`start` or `restore`); `resume` is then not read.
      callbacks: progress (`Callbacks`).

    Returns:
      The final `LoopState` (its `best` is the selected model).

    Raises:
      NonFiniteError: a watched quantity became NaN or infinite (the last checkpoint is kept).
      ValueError / CheckpointError: `resume` without a usable checkpoint; a fresh run (no
        `resume`) whose checkpointer already holds a checkpoint (an earlier run's, whose steps
        this one would collide with), before anything runs.
    """
    callbacks = callbacks or Callbacks()
    if state is None:
        if resume:
            if checkpointer is None:
                raise ValueError("resume=True needs a checkpointer.")
            state = restore(checkpointer, loop)
        else:
            state = start(loop, checkpointer)
    train = state.train
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    train_seconds, compile_seconds = state.train_seconds, state.compile_seconds
    compiled_calls = state.compiled_calls
    sums: dict[str, float] = {}
    since_eval, compiled = 0, False
    callbacks.on_start(state, loop.num_steps)
    for step in range(state.step + 1, loop.num_steps + 1):
        if not compiled:
            callbacks.on_compile(step)
        began = time.perf_counter()
        train, metrics = loop.step(train, rng)
        jax.block_until_ready(train)
        elapsed = time.perf_counter() - began
        if not compiled:  # the first call of a process compiles: not counted as training time
            compiled = True
            compile_seconds += elapsed
            compiled_calls += 1
        else:
            train_seconds += elapsed
        for name, tree in loop.watch(train, metrics).items():
            if not bool(_all_finite(tree)):
                label = loop.step_name.replace("_", "-")
                kept = (
                    f"the checkpoint of {label} {state.step:,} is kept"
                    if checkpointer is not None and state.step > 0
                    else "no checkpoint was written yet"
                )
                raise NonFiniteError(
                    f"{name} became non-finite (NaN or infinite) at {label} {step:,}, "
                    f"so training stopped ({kept}); {loop.nan_hint}."
                )
        values = {name: float(value) for name, value in metrics.items()}
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        since_eval += 1
        callbacks.on_step(step, values)
        if step % loop.eval_every == 0 or step == loop.num_steps:
            scores = loop.validate(
                train, lambda done, total, step=step: callbacks.on_validate(step, done, total)
            )
            row = {
                loop.step_name: step,
                "train_seconds": train_seconds,
                **{name: total / since_eval for name, total in sums.items()},
                **scores,
            }
            sums, since_eval = {}, 0
            score = scores[loop.score_name]
            is_best = score > state.best_score
            state = LoopState(
                step=step,
                train=train,
                best=loop.select(train) if is_best else state.best,
                best_score=score if is_best else state.best_score,
                best_step=step if is_best else state.best_step,
                rng_state=rng.bit_generator.state,
                rows=[*state.rows, row],
                train_seconds=train_seconds,
                compile_seconds=compile_seconds,
                compiled_calls=compiled_calls,
            )
            if checkpointer is not None:
                save(checkpointer, state)
            callbacks.on_eval(state, is_best)
    return state
