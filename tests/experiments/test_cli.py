"""The `bmg` command line: a tiny run writes a complete run directory; bad input fails clearly."""

import csv
import json
import shutil

import numpy as np
import pytest

from bmg.experiments import two_colors as tc
from bmg.experiments.cli import main

TINY = [
    "--steps", "1200", "--seeds", "2", "--chunk-steps", "400", "--k", "1", "--l", "2",
    "--ac.hidden-size", "8", "--ac.rollout-length", "4", "--env.switch-every", "300",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An uninterrupted tiny BMG run: 2 seeds, 3 chunks."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    main(["two-colors", "--algo", "bmg", *TINY, "--out", str(out)])
    return out


def test_two_colors_run_directory(tiny_run, tmp_path, capsys):
    out = tiny_run
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


class Crash(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_files(tiny_run, tmp_path, monkeypatch, capsys):
    """Killed while saving chunk 2 of 3 (trace.npz written, checkpoint.npz not yet), then
    `--resume`: metrics.csv, trace.npz and summary.json are those of the uninterrupted run."""
    out = tmp_path / "run"
    save_checkpoint = tc.save_checkpoint

    def crash_while_saving_chunk_2(run_dir, checkpoint):
        if checkpoint.chunks_done == 1:
            save_checkpoint(run_dir, checkpoint)
            shutil.copy(run_dir / tc.CHECKPOINT, tmp_path / "chunk1.npz")
        else:  # trace.npz and metrics.csv now hold chunk 2, the checkpoint only chunk 1
            save_checkpoint(run_dir, checkpoint)
            shutil.copy(tmp_path / "chunk1.npz", run_dir / tc.CHECKPOINT)
            raise Crash

    monkeypatch.setattr(tc, "save_checkpoint", crash_while_saving_chunk_2)
    with pytest.raises(Crash):
        main(["two-colors", "--algo", "bmg", *TINY, "--out", str(out)])
    monkeypatch.undo()
    assert np.load(out / "trace.npz")["reward"].shape == (2, 100)
    # Starting it again is refused, pointing at --resume.
    with pytest.raises(SystemExit, match="already holds a run.*--resume"):
        main(["two-colors", "--algo", "bmg", *TINY, "--out", str(out)])
    # A config.json edited to another configuration no longer fits the checkpoint.
    shutil.copytree(out, tmp_path / "edited")
    config = json.loads((out / "config.json").read_text())
    config["config"]["seeds"] = 4
    (tmp_path / "edited" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="checkpoint.npz does not fit config.json"):
        main(["two-colors", "--resume", str(tmp_path / "edited")])

    main(["two-colors", "--resume", str(out)])
    assert "resumed after chunk 1" in " ".join(capsys.readouterr().out.split())
    (resumed_record,) = json.loads((out / "config.json").read_text())["resumed"]
    assert resumed_record["after_chunk"] == 1 and resumed_record["git_commit"]
    assert (out / "metrics.csv").read_text() == (tiny_run / "metrics.csv").read_text()
    resumed, uninterrupted = np.load(out / "trace.npz"), np.load(tiny_run / "trace.npz")
    assert sorted(resumed.files) == sorted(uninterrupted.files)
    for name in resumed.files:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((tiny_run / "summary.json").read_text())
    assert summary["total_reward"] == expected["total_reward"]
    assert not (out / tc.CHECKPOINT).exists()  # finished runs keep no state
    with pytest.raises(SystemExit, match="finished run.*nothing to resume"):
        main(["two-colors", "--resume", str(out)])


def test_resume_takes_no_other_flags(tmp_path):
    with pytest.raises(SystemExit, match=r"drop the other arguments \(--seeds 3\)"):
        main(["two-colors", "--resume", str(tmp_path), "--seeds", "3"])
    with pytest.raises(SystemExit, match="config.json cannot be read"):
        main(["two-colors", "--resume", str(tmp_path / "missing")])


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as error:
        main(["two-colors", *TINY, "--out", str(out)])
    assert "already holds a run" in str(error.value)
