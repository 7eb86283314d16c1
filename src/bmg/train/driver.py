"""The one driver of a run directory, for every system and runner shape.

A system hands `drive` a `Run`: its runner bound to one run directory (Anakin's compiled
lifetime, the host loop's evaluations, Sebulba's actor-learner updates). The runner runs; each
time it has new metrics.csv rows it emits an `Event` with just those rows (per seed, per chunk,
per evaluation or per log interval: host work per event is proportional to the event, never to
the run so far). `drive` does the rest the same way for all of them: the header line, compile,
start or restore (metrics.csv rewritten from the checkpoint's rows, nothing after them),
metrics.csv, TensorBoard and the progress line of every event, the release of what the run holds
whether it finishes or fails, the results (`Run.finish`) and then the removal of the
checkpoints (the results are kept). Every runner raises `bmg.train.api.NonFiniteError` (a
ValueError with one sentence) at the first non-finite guarded quantity: one policy.

`AnakinRun` binds the compiled runner (`bmg.train.anakin.Anakin`) and a system's `Reporting`
into a `Run` (`drive_anakin` drives one).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

CHECKPOINTS = "checkpoints"


class Event(NamedTuple):
    """What a runner emits when it has new metrics.csv rows.

    Attributes:
      rows: the new rows (one per seed of a chunk, or one per evaluation / log interval).
      step: their x (environment steps per seed, frames or meta-steps): TensorBoard's step and
        the progress bar's position.
      line: the progress line printed in logs (a terminal shows the bar instead).
      rate: the rate shown beside a terminal's bar, e.g. "12,345 steps/s".
    """

    rows: list[dict]
    step: int
    line: str
    rate: str = ""


class Display(Protocol):
    """What a runner may show besides its events (`bmg.train.logging.RunLogger` is one)."""

    def message(self, text: str) -> None:
        """One line above the progress bar (or in the log)."""

    def task(self, description: str, done: int, total: int) -> None:
        """A second bar, e.g. validation tasks; removed once ``done >= total``."""

    def advance(self, completed: int, line: str, *, rate: str = "") -> None:
        """Move the main bar without rows (a terminal only needs the position)."""


class Run(Protocol):
    """A system's runner bound to one run directory: all `drive` needs of it.

    Attributes:
      title: the header after the system's name (what runs, how long, how many seeds).
      fields: metrics.csv columns, in order.
      total: the progress bar's end, in the unit of `Event.step`.
      compiled: whether `compile` has nothing left to do (the bar then starts as "starting").
    """

    title: str
    fields: list[str]
    total: int
    compiled: bool

    def compile(self) -> None:
        """Compile what the run needs (called inside the progress display)."""

    def start(self) -> Any:
        """A fresh state (raises ValueError when the checkpoint directory is not empty)."""

    def restore(self) -> tuple[Any, list[dict]]:
        """The latest checkpoint's state and the metrics.csv rows up to it; raises ValueError
        (CheckpointError) with one sentence when there is none or it does not fit."""

    def run(self, state: Any, on_event: Callable[[Event], None], display: Display) -> Any:
        """Run from `state` to the end, checkpointing as the runner does; returns a result.
        Raises NonFiniteError at the first non-finite guarded quantity."""

    def finish(self, result: Any) -> dict:
        """Write the results (trace.npz, summary.json, plots) and return the summary."""

    def close(self) -> None:
        """Release what the run holds (checkpointer, threads, environments); called once,
        whether the run finished or failed."""


def drive(run: Run, run_dir: Path, *, name: str, resume: bool, console) -> dict:
    """Train (or continue) `run` in `run_dir`; return its summary.

    Writes metrics.csv (from the header; on resume first the checkpoint's rows), TensorBoard
    events and a progress display; then `run.finish`'s results; then removes
    ``run_dir/checkpoints``. Whether it finishes or fails, the logger and `run.close()` are
    released at its end (so a prepared runner runs again in another directory as a new one).

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError (ValueErrors with one sentence), or
      whatever the runner raised, after the release.
    """
    from bmg.train.logging import RunLogger

    logger = None
    try:
        logger = RunLogger(run_dir, run.fields, total_steps=run.total, console=console)
        console.print(f"[bold]{name}[/bold] {run.title} -> {run_dir}")
        # a prepared runner is compiled already (prepare said so): the first chunk starts
        with logger.progress("starting" if run.compiled else "compiling"):
            run.compile()
            if resume:  # metrics.csv again from the checkpoint, nothing after it
                state, rows = run.restore()
                logger.rows(rows, tensorboard=False)
            else:
                state = run.start()

            def on_event(event: Event) -> None:
                logger.rows(event.rows, step=event.step)
                logger.advance(event.step, event.line, rate=event.rate)

            result = run.run(state, on_event, logger)
    except BaseException:  # TensorBoard's writer thread ends, the runner is released; the error
        with contextlib.suppress(Exception):
            _release(logger, run)
        raise
    _release(logger, run)
    summary = run.finish(result)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # finished: the results are kept
    return summary


def _release(logger, run: Run) -> None:
    try:
        if logger is not None:
            logger.close()
    finally:
        run.close()


# The compiled runner (Anakin) ------------------------------------------------------------------


class Piece(NamedTuple):
    """One chunk of a lifetime's trace, as a system's `Reporting.chunk_rows` reads it.

    Attributes:
      index: the chunk, from 0.
      before: name -> [seeds]: each record's value just before the chunk (the probes at
        initialisation for the first chunk, without the records they lack, e.g. the meta-loss).
      values: name -> [seeds, meta-steps of the chunk], host arrays.
    """

    index: int
    before: dict[str, Any]
    values: dict[str, Any]


def piece_of(state, chunk: int) -> Piece:
    """Chunk `chunk` (from 0) of an `anakin.State`'s trace, with the values just before it."""
    return Piece(chunk, state.before(chunk), state.pieces[chunk + 1])


class Reporting(NamedTuple):
    """How a system on the compiled runner reads its trace.

    Attributes:
      name: the experiment's command name, e.g. "two-colors".
      unit: what one environment step is called in progress lines ("steps", "frames").
      x_field: the metrics.csv column holding the environment steps (or frames) of a row.
      label: config -> a short label of the run (headers, plot titles).
      csv_fields: config -> the metrics.csv columns.
      chunk_rows: (config, piece) -> one metrics.csv row per seed for the chunk `piece` holds
        (a `Piece`: what the host does per chunk is proportional to the chunk, not to the run
        so far).
      detail: (config, rows) -> the end of a chunk's progress line, e.g. a reward per seed.
      write_results: (config, run_dir, initial, trace, *, seconds, compile_seconds,
        host_seconds) -> summary; writes trace.npz, summary.json and the plots.
    """

    name: str
    unit: str
    x_field: str
    label: Callable[[Any], str]
    csv_fields: Callable[[Any], list[str]]
    chunk_rows: Callable[[Any, Piece], list[dict]]
    detail: Callable[[Any, list[dict]], str]
    write_results: Callable[..., dict]


class Prepared(NamedTuple):
    """A config with its compiled runner (`prepare`), not yet tied to a run directory."""

    config: Any
    runner: Any


def prepare(config, make_runner: Callable[..., Any]) -> Prepared:
    """Build and compile the lifetime before any run directory exists, so a lifetime that cannot
    fit in memory (XLA's memory analysis) is refused with one sentence and leaves nothing behind.

    Raises:
      OutOfMemoryError (a ValueError): the sentence says how many seeds fit.
    """
    from bmg.train.logging import make_console

    make_console().print(
        f"compiling {config.lifetime.seeds} seeds x {config.meta_steps_per_chunk} meta-steps..."
    )
    runner = make_runner(config)
    runner.compile()
    return Prepared(config, runner)


class AnakinRun:
    """A `Run` of the compiled runner: one event per chunk, its rows from the chunk's piece.

    Args:
      reporting: the system's `Reporting`.
      make_runner: ``(config, run_dir) -> Anakin`` checkpointing into ``run_dir/checkpoints``.
      config: the system's config (with ``seeds``, ``total_env_steps``, ``num_chunks``,
        ``steps_per_meta_step``), or a `Prepared` one (its compiled runner gets the run
        directory's checkpointer).
      run_dir: the run directory.
    """

    def __init__(self, reporting: Reporting, make_runner, config, run_dir: Path):
        from bmg.train.checkpoint import Checkpointer

        if isinstance(config, Prepared):
            config, self.runner = config
            self.runner.checkpointer = Checkpointer(Path(run_dir) / CHECKPOINTS)
        else:
            self.runner = make_runner(config, Path(run_dir))
        self.reporting, self.config, self.run_dir = reporting, config, Path(run_dir)
        self.fields = reporting.csv_fields(config)
        self.total = config.total_env_steps
        self.title = (
            f"{reporting.label(config)}: {config.lifetime.seeds} seeds x "
            f"{config.total_env_steps:,} {reporting.unit} in {config.num_chunks} chunks"
        )

    @property
    def compiled(self) -> bool:
        return self.runner.compiled

    def compile(self) -> None:
        self.runner.compile()

    def start(self):
        return self.runner.start()

    def restore(self):
        state = self.runner.restore()
        rows = [
            row
            for chunk in range(state.chunks_done)
            for row in self.reporting.chunk_rows(self.config, piece_of(state, chunk))
        ]
        return state, rows

    def run(self, state, on_event, display):
        config, reporting, unit = self.config, self.reporting, self.reporting.unit

        def on_chunk(info):
            rows = reporting.chunk_rows(config, piece_of(info.state, info.state.chunks_done - 1))
            done = int(rows[0][reporting.x_field])
            rate = info.meta_steps_per_second * config.steps_per_meta_step
            on_event(
                Event(
                    rows,
                    done,
                    f"chunk {info.state.chunks_done}/{info.num_chunks}: {done:,} {unit} per "
                    f"seed, {rate:,.0f} {unit}/s (all seeds), {reporting.detail(config, rows)}",
                    rate=f"{rate:,.0f} {unit}/s",
                )
            )

        return self.runner.run(state, on_chunk=on_chunk)

    def finish(self, result) -> dict:
        return self.reporting.write_results(
            self.config,
            self.run_dir,
            result.state.initial,
            result.state.trace,
            seconds=result.state.seconds,
            compile_seconds=result.compile_seconds,
            host_seconds=result.state.host_seconds,
        )

    def close(self) -> None:
        """The checkpointer (orbax) is released; the compiled runner stays usable."""
        if self.runner.checkpointer is not None:
            self.runner.checkpointer.close()


def drive_anakin(
    reporting: Reporting, make_runner, config, run_dir: Path, *, resume: bool, console
) -> dict:
    """`drive` of an `AnakinRun`: what the systems on the compiled runner call."""
    run = AnakinRun(reporting, make_runner, config, run_dir)
    return drive(run, run_dir, name=reporting.name, resume=resume, console=console)
