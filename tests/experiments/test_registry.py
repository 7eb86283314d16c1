"""The registry of systems: what the command line is built from."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bmg.experiments.cli import main
from bmg.experiments.registry import ENTRIES, entry_of_run

BLOCK_JAX = """
import sys

JAX_AND_HEAVY = ("jax.", "jaxlib", "gymnax", "flax", "optax", "orbax", "matplotlib", "tensorboardX")

class BlockJax:  # any import of jax (or of what needs it) fails
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith(JAX_AND_HEAVY):
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, BlockJax())
"""


def test_every_systems_settings_and_presets_load_without_jax():
    """`bmg NAME --help` needs a system's settings only: each loads, and each preset builds
    its config, with JAX, gymnax, flax, optax, orbax, matplotlib and TensorBoard unimportable."""
    script = BLOCK_JAX + (
        "from bmg.experiments.registry import ENTRIES\n"
        "for entry in ENTRIES.values():\n"
        "    settings = entry.settings()\n"
        "    for _, overrides in settings.presets.values():\n"
        "        settings.config(**overrides)\n"
        "print(sorted(ENTRIES))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(sorted(ENTRIES))


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_each_system_declares_the_settings_its_command_parses(name):
    entry = ENTRIES[name]
    assert entry.system().settings is entry.settings()


def run_dir(path, experiment, finished=True):
    path.mkdir()
    record = {"config": {}, **({"experiment": experiment} if experiment else {})}
    (path / "config.json").write_text(json.dumps(record))
    if finished:
        (path / "summary.json").write_text("{}")
    return path


def test_resume_and_compare_dispatch_on_the_runs_experiment(tmp_path, capsys):
    """`bmg resume DIR` is `bmg NAME resume DIR` of the run's own system; a run without the key
    is a Two-colors sweep's run from before every run recorded it; an unknown name is refused."""
    minatar = run_dir(tmp_path / "m", "minatar")
    assert entry_of_run(minatar).name == "minatar"
    assert entry_of_run(run_dir(tmp_path / "old", None)).name == "two-colors"
    with pytest.raises(SystemExit) as error:
        main(["resume", str(minatar)])
    assert str(error.value.code).startswith("bmg minatar: error: ")
    assert "holds a finished run" in str(error.value.code)
    unknown = run_dir(tmp_path / "u", "pong")
    with pytest.raises(SystemExit, match="names the experiment 'pong', which this bmg does not"):
        main(["resume", str(unknown)])
    fewshot = run_dir(tmp_path / "f", "fewshot")
    with pytest.raises(SystemExit, match="cannot compare fewshot with minatar runs"):
        main(["compare", str(minatar), str(fewshot)])
    capsys.readouterr()


def test_a_run_of_no_known_system_is_one_sentence_whatever_asks(tmp_path, capsys):
    """An experiment name this bmg does not know, or one that is not a name, is refused in one
    sentence by `bmg resume`, a system's own resume (which points at `bmg resume`) and `bmg
    compare`, and a refused compare
    leaves no --out directory behind."""
    listed = run_dir(tmp_path / "listed", ["x"])
    with pytest.raises(SystemExit, match=r"names the experiment \['x'\], which this bmg"):
        main(["resume", str(listed)])
    unknown = run_dir(tmp_path / "unknown", "pong", finished=False)
    with pytest.raises(SystemExit, match="holds a run of the experiment 'pong', not of two-"):
        main(["two-colors", "resume", str(unknown)])
    with pytest.raises(SystemExit, match="names the experiment 'pong', which this bmg does not"):
        main(["resume", str(unknown)])  # where the system's resume points
    out = tmp_path / "comparison"
    with pytest.raises(SystemExit, match="names the experiment"):
        main(["compare", str(listed), "--out", str(out)])
    assert not out.exists()
    capsys.readouterr()
