"""The driver of a run directory for every system on the compiled runner (`anakin.Anakin`).

An experiment declares how its trace reads (`Reporting`: the rows of a chunk, one progress detail,
the results it writes at the end); `drive` does the rest the same way for all of them: compile,
start or restore from the checkpoint, rewrite metrics.csv from a restored trace, log every chunk
(metrics.csv, TensorBoard, the progress line with its rate and ETA), write the results, and drop
the checkpoints once the lifetime is finished (its trace.npz is kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

CHECKPOINTS = "checkpoints"


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
    """What an experiment on the compiled runner tells the driver.

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
        f"compiling {config.seeds} seeds x {config.meta_steps_per_chunk} meta-steps..."
    )
    runner = make_runner(config)
    runner.compile()
    return Prepared(config, runner)


def drive(
    reporting: Reporting,
    make_runner: Callable[..., Any],
    config,
    run_dir: Path,
    *,
    resume: bool,
    console,
) -> dict:
    """Train (or continue) the lifetime of `config` (or of a `Prepared` one) in `run_dir`: write
    metrics.csv, TensorBoard events and, once finished, the experiment's results; return the
    summary. `make_runner(config, run_dir)` builds the `Anakin` runner checkpointing into
    `run_dir/checkpoints`. Whether it finishes or fails, the run's logger and checkpointer are
    closed at its end, so a `Prepared` runner runs again in another directory as a new one would.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError (ValueErrors with one sentence).
    """
    import shutil

    from bmg.train.checkpoint import Checkpointer
    from bmg.train.logging import RunLogger

    if isinstance(config, Prepared):
        config, runner = config
        runner.checkpointer = Checkpointer(run_dir / CHECKPOINTS)
    else:
        runner = make_runner(config, run_dir)
    unit = reporting.unit
    logger = RunLogger(
        run_dir, reporting.csv_fields(config), total_steps=config.total_env_steps, console=console
    )
    console.print(
        f"[bold]{reporting.name}[/bold] {reporting.label(config)}: {config.seeds} seeds x "
        f"{config.total_env_steps:,} {unit} in {config.num_chunks} chunks -> {run_dir}"
    )
    try:
        # a prepared runner is compiled already (prepare said so): the first chunk starts
        with logger.progress("starting" if runner.compiled else "compiling"):
            runner.compile()
            state = runner.restore() if resume else runner.start()
            if resume:  # metrics.csv again from the checkpoint's trace, nothing after it
                for chunk in range(state.chunks_done):
                    rows = reporting.chunk_rows(config, piece_of(state, chunk))
                    logger.rows(rows, tensorboard=False)

            def on_chunk(info):
                rows = reporting.chunk_rows(
                    config, piece_of(info.state, info.state.chunks_done - 1)
                )
                done = int(rows[0][reporting.x_field])
                logger.rows(rows, step=done)
                rate = info.meta_steps_per_second * config.steps_per_meta_step
                logger.advance(
                    done,
                    f"chunk {info.state.chunks_done}/{info.num_chunks}: {done:,} {unit} per seed, "
                    f"{rate:,.0f} {unit}/s (all seeds), {reporting.detail(config, rows)}",
                    rate=f"{rate:,.0f} {unit}/s",
                )

            result = runner.run(state, on_chunk=on_chunk)
    except BaseException:  # TensorBoard's writer thread ends, orbax is released; the error stays
        with contextlib.suppress(Exception):
            _release(logger, runner)
        raise
    _release(logger, runner)
    summary = reporting.write_results(
        config,
        run_dir,
        result.state.initial,
        result.state.trace,
        seconds=result.state.seconds,
        compile_seconds=result.compile_seconds,
        host_seconds=result.state.host_seconds,
    )
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # finished: trace.npz is kept
    return summary


def _release(logger, runner) -> None:
    """Close what a run holds: the logger (TensorBoard's writer thread and file) and the
    runner's checkpointer (orbax), so nothing of it outlives the run, failed or not."""
    logger.close()
    if runner.checkpointer is not None:
        runner.checkpointer.close()
