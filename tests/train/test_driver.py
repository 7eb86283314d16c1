"""The run-directory driver of the compiled runner (`bmg.train.driver`): a failed
run leaves no thread behind, and its `Prepared` runner runs again as a new one would."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console

from bmg.core import Learner, LearnerState, MetaConfig
from bmg.train import driver
from bmg.train.anakin import Anakin

CONFIG = SimpleNamespace(
    lifetime=SimpleNamespace(seeds=2),
    meta_steps_per_chunk=2,
    num_chunks=2,
    total_env_steps=4,
    steps_per_meta_step=1,
)
"""What the driver reads of a system's config (MinAtar's: `lifetime.seeds`, the chunk sizes)."""


def shrinking_learner() -> Learner:
    """x <- x * w, w = 0.5 held fixed, x_0 ~ U(0, 1): one probe, no meta-learning."""
    return Learner(
        init_state=lambda key: LearnerState(params=jax.random.uniform(key)),
        init_meta_params=lambda key: jnp.float32(0.5),
        update_fn=lambda w, state, key: (state._replace(params=state.params * w), {}),
        meta_objective=lambda state, key: (jnp.square(state.params), {}),
        probes=lambda w, state: {"x": state.params},
    )


def prepared() -> driver.Prepared:
    runner = Anakin(
        shrinking_learner(),
        MetaConfig(algo="fixed"),
        num_seeds=CONFIG.lifetime.seeds,
        meta_steps_per_chunk=CONFIG.meta_steps_per_chunk,
        num_chunks=CONFIG.num_chunks,
    )
    runner.compile()
    return driver.Prepared(CONFIG, runner)


class Interrupted(Exception):
    pass


def reporting(fail_at_chunk: list[int]) -> driver.Reporting:
    """Rows of x per seed and chunk; the chunk in `fail_at_chunk` raises once."""

    def chunk_rows(config, piece):
        chunk = piece.index
        if chunk in fail_at_chunk:
            fail_at_chunk.remove(chunk)
            raise Interrupted
        end = (chunk + 1) * config.meta_steps_per_chunk
        return [
            {"seed": seed, "chunk": chunk, "steps": end, "x": float(piece.values["x"][seed, -1])}
            for seed in range(config.lifetime.seeds)
        ]

    def write_results(config, run_dir, initial, trace, **seconds):
        return {"x": trace["x"].tolist()}

    return driver.Reporting(
        name="tiny",
        unit="steps",
        x_field="steps",
        label=lambda config: "tiny",
        csv_fields=lambda config: ["seed", "chunk", "steps", "x"],
        chunk_rows=chunk_rows,
        detail=lambda config, rows: "",
        write_results=write_results,
    )


def alive_after(before: set[threading.Thread]) -> list[str]:
    """Threads started since `before` still alive after up to 5 s each to end (a closed
    multiprocessing queue's feeder thread ends shortly after its close)."""
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


def run(target, run_dir: Path, report: driver.Reporting) -> dict:
    console = Console(file=io.StringIO())
    run_dir.mkdir()
    return driver.drive_anakin(report, None, target, run_dir, resume=False, console=console)


def test_a_failed_run_leaves_no_thread_and_its_runner_runs_again_like_a_new_one(tmp_path):
    """The reporting fails after chunk 2 (its checkpoint written): the run's error comes out,
    TensorBoard's writer thread has ended, and the same prepared runner then runs a new
    directory to the numbers (summary, metrics.csv) of a newly prepared runner."""
    target, report = prepared(), reporting([1])
    before = set(threading.enumerate())
    with pytest.raises(Interrupted):
        run(target, tmp_path / "failed", report)
    assert alive_after(before) == []
    assert (tmp_path / "failed" / "checkpoints" / "2").is_dir()  # kept for a resume
    again = run(target, tmp_path / "again", report)
    fresh = run(prepared(), tmp_path / "fresh", reporting([]))
    assert again == fresh and np.isfinite(again["x"]).all()
    csv = [(tmp_path / name / "metrics.csv").read_text() for name in ("again", "fresh")]
    assert csv[0] == csv[1] and len(csv[0].splitlines()) == 1 + 2 * 2
    assert alive_after(before) == []
