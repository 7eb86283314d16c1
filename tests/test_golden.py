"""Golden traces: one short run of every system through the `bmg` command, compared with the
numbers stored in tests/golden/ when the engine below the systems was last changed on purpose.

A refactoring of the engine (runners, driver, run directories, configs) must leave these numbers
as they were: on the machine that wrote them, bit for bit (run with ``BMG_GOLDEN_EXACT=1``, as a
change to the engine is checked); on another machine within 1% (XLA may pick other instructions
there, and a learning run amplifies round-off; a discrete accuracy may move by one query), which
still catches a change of what the engine computes. A change that moves them on purpose rewrites
the files in its own commit: ``BMG_GOLDEN_WRITE=1 pytest tests/test_golden.py``.

What is compared: every numeric column of metrics.csv except wall-clock ones, and for the compiled
systems (Two-colors, MinAtar) every array of trace.npz.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from bmg.experiments.cli import main

GOLDEN = Path(__file__).parent / "golden"
CLOCK_WORDS = ("second", "time", "per_s", "/s", "rate", "eta", "wall")

TWO_COLORS = [
    "--steps", "480", "--seeds", "2", "--chunk-steps", "240", "--learner.hidden-size", "8",
    "--learner.rollout-length", "4", "--env.switch-every", "200",
]  # fmt: skip
SYSTEMS = {
    "two-colors-bmg": [
        "two-colors", "default", "--algo", "bmg", "--k", "1", "--l", "2",
        "--learner.meta-hidden-size", "4", *TWO_COLORS,
    ],
    "two-colors-q-bmg": [
        "two-colors", "related", "--agent", "q", "--algo", "bmg", "--steps", "480", "--seeds",
        "2", "--chunk-steps", "240", "--learner.hidden-size", "8", "--env.switch-every", "200",
    ],
    "minatar-bmg": [
        "minatar", "demo", "--steps", "120", "--seeds", "2", "--chunk-steps", "40", "--algo",
        "bmg", "--l", "2", "--stacx.num-envs", "4", "--stacx.rollout-length", "5",
        "--stacx.minatar-channels", "2", "--stacx.hidden-size", "8",
        "--stacx.meta-embedding-size", "2",
    ],
    "fewshot-bmg": [
        "fewshot", "tiny", "--algo", "bmg", "--queries", "5", "--meta-steps", "4",
        "--eval-every", "2", "--val-tasks", "6", "--test-tasks", "6", "--eval-batch-size", "6",
        "--meta-batch-size", "2", "--k", "1", "--l", "2", "--filters",
        "4", "--eval-inner-steps", "2", "--image-size", "16",
    ],
}  # fmt: skip


def numbers(run_dir: Path) -> dict[str, np.ndarray]:
    """The run's numbers that must not move: metrics.csv's numeric, non-clock columns (by
    name, as float64) and trace.npz's arrays (prefixed ``trace/``)."""
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    out = {}
    for name in rows[0]:
        if any(word in name for word in CLOCK_WORDS):
            continue
        try:
            out[f"csv/{name}"] = np.array([float(row[name] or "nan") for row in rows])
        except ValueError:  # a text column
            continue
    if (run_dir / "trace.npz").exists():
        with np.load(run_dir / "trace.npz") as trace:
            out.update({f"trace/{k}": trace[k] for k in trace.files})
    return out


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    from bmg.fewshot.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("golden-data") / "pkl"
    make_synthetic(out, format="pkl", classes=6, per_class=12, size=16, seed=0)
    return out


@pytest.mark.heavy  # in `make test-docs` and `make test-fast`, out of `make test`'s budget
@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_a_short_run_gives_the_golden_numbers(name, tmp_path, synthetic_data, capsys):
    argv = list(SYSTEMS[name])
    if argv[0] == "fewshot":
        argv += ["--data-dir", str(synthetic_data)]
    main([*argv, "--out", str(tmp_path / "run")])
    capsys.readouterr()
    got = numbers(tmp_path / "run")
    path = GOLDEN / f"{name}.npz"
    if os.environ.get("BMG_GOLDEN_WRITE") == "1":
        GOLDEN.mkdir(exist_ok=True)
        np.savez(path, **got)
        pytest.skip(f"wrote {path}")
    with np.load(path) as file:
        want = {k: file[k] for k in file.files}
    assert sorted(got) == sorted(want), "the run records other numbers than the golden one"
    exact = os.environ.get("BMG_GOLDEN_EXACT") == "1"
    for key in sorted(want):
        if exact:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-2, atol=1e-2, err_msg=key)
