"""The `bmg` command line: a tiny run writes a complete run directory; bad input fails clearly."""

import csv
import json

import numpy as np
import pytest

from bmg.experiments.cli import main

TINY = [
    "--steps", "1200", "--seeds", "2", "--chunk-steps", "400", "--k", "1", "--l", "2",
    "--ac.hidden-size", "8", "--ac.rollout-length", "4", "--env.switch-every", "300",
]  # fmt: skip


def test_two_colors_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    main(["two-colors", "--algo", "bmg", *TINY, "--out", str(out)])
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "trace.npz",
        "cumulative_reward.png",
        "reward_per_step.png",
        "schedule.png",
        "schedule_folded.png",
    ):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["algo"] == "bmg" and config["config"]["l"] == 2
    assert config["git_commit"]
    summary = json.loads((out / "summary.json").read_text())
    trace = np.load(out / "trace.npz")
    # (K + L - 1) rollouts of 4 steps per meta-step; chunks of ceil(400 / 8) = 50 meta-steps.
    assert trace["env_steps"].shape == (2, 150)
    assert summary["env_steps_per_seed"] == 150 * 8 + 4
    total = trace["first_rewards"] + trace["reward"].sum(axis=1)
    np.testing.assert_allclose(summary["total_reward"]["per_seed"], total)
    np.testing.assert_allclose(summary["total_reward"]["mean"], total.mean())
    np.testing.assert_allclose(summary["total_reward"]["se"], total.std(ddof=1) / np.sqrt(2))
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3  # seeds x chunks
    last = [r for r in rows if r["chunk"] == "2"]
    np.testing.assert_allclose([float(r["cumulative_reward"]) for r in last], total, rtol=1e-6)
    # Flips at 300, 600, 900 lie inside the run: the flip statistics exist.
    assert np.isfinite(summary["entropy_after_flip"]["mean"])

    main(["compare", str(out), "--out", str(tmp_path / "cmp")])
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "bmg K=1 L=2" in table
    assert (tmp_path / "cmp" / "comparison_cumulative_reward.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["two-colors", "--algo", "mg", "--k", "0"], "k must be an integer >= 1"),
        (["two-colors", "--agent", "q", "--algo", "ac"], "algo for agent q must be one of"),
        (["two-colors", "--ac.entropy-weight", "1.5"], "entropy_weight must be in (0, 1)"),
        (["two-colors", "--env.switch-every", "0"], "switch_every"),
        (["compare", "/nonexistent/run"], "is not a finished run"),
        (["fly"], "unknown command 'fly'"),
    ],
)
def test_bad_input_fails_with_one_sentence(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        main([*argv, "--out", str(tmp_path / "x")] if argv[0] == "two-colors" else argv)
    assert error.value.code != 0
    printed = " ".join((str(error.value.code) + capsys.readouterr().err).split())
    assert message in printed
    assert "Traceback" not in printed
    assert not (tmp_path / "x").exists()  # nothing started


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as error:
        main(["two-colors", *TINY, "--out", str(out)])
    assert "already holds a run" in str(error.value)
