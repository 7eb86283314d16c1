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
