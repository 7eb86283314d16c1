"""The worked examples run and show what their docs say (docs tier: `make test-docs`)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.docs
def test_own_learner_meta_learns_a_weight_decay_that_beats_none():
    """docs/own-learner.md: MG and BMG raise the weight decay from 1e-4 into the ridge optimum's
    range and end below the undecayed learner's validation loss."""
    example = load("own_learner")
    curves = example.run(example.Config(meta_steps=600))
    final = {name: float(loss[-1]) for name, (loss, _) in curves.items()}
    decay = {name: float(d[-1]) for name, (_, d) in curves.items()}
    assert final["MG"] < final["no meta-learning"] - 0.05
    assert final["BMG"] < final["no meta-learning"] - 0.05
    assert decay["no meta-learning"] == pytest.approx(1e-4)
    assert 0.03 < decay["MG"] < 3 and 0.03 < decay["BMG"] < 3


def interrupted(example, out):
    """The example's `tiny` run, Ctrl-C as its first checkpoint is written."""
    from bmg.train.checkpoint import Checkpointer

    save = Checkpointer.save

    def save_then_interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    Checkpointer.save = save_then_interrupt
    try:
        example.main(["tiny", "--out", str(out)])
    finally:
        Checkpointer.save = save


@pytest.mark.docs
def test_a_new_system_in_one_file_runs_on_the_command_machinery(tmp_path, capsys):
    """docs/adding-a-system.md: examples/new_system.py's `tiny` preset writes a run directory
    through the engine's driver (rows per chunk and seed, a summary, its experiment's name),
    refuses to resume a finished run and flags without effect, and says how to continue an
    interrupted run with its own command, as a `bmg` command does."""
    import csv
    import json
    import math

    example = load("new_system")
    out = tmp_path / "run"
    example.main(["tiny", "--out", str(out)])
    assert "| bmg |" in capsys.readouterr().out
    with open(out / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["chunk"], r["seed"]) for r in rows] == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    assert all(float(r["episode_return"]) > 5 for r in rows)  # CartPole pays 1 per step alive
    tiny = example.CartPoleConfig(**example.PRESETS["tiny"][1])
    assert int(rows[-1]["env_steps"]) == tiny.total_env_steps  # every step counted, once
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["final_return"]) == 2 and all(map(math.isfinite, summary["final_return"]))
    assert json.loads((out / "config.json").read_text())["experiment"] == "cartpole"
    with pytest.raises(SystemExit, match="holds a finished run"):
        example.main(["resume", str(out)])
    for preset, flag, message in (
        (
            "fixed",
            "--ac.outer-entropy-cost",
            "--ac.outer-entropy-cost has no effect with meta.algo",
        ),
        ("mg", "--meta.bootstrap-steps", "meta.bootstrap_steps .L. = 2 is the BMG target's"),
    ):
        with pytest.raises(SystemExit, match=message):
            example.main([preset, flag, "2", "--out", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    with pytest.raises(SystemExit, match="continue with `python examples/new_system.py resume"):
        interrupted(example, tmp_path / "cut")
