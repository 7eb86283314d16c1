"""`bmg fewshot` end to end on synthetic data: run directory, model selection, protocol, errors."""

import csv
import json
import shutil

import jax
import numpy as np
import pytest
from flax import serialization

from bmg.experiments import fewshot as fs
from bmg.experiments.cli import main
from bmg.fewshot.data import load_splits
from bmg.fewshot.synthetic import make_synthetic

SHORT = [
    "--preset", "tiny", "--meta-steps", "6", "--eval-every", "3", "--val-tasks", "12",
    "--test-tasks", "30", "--eval-batch-size", "12", "--meta-batch-size", "2", "--k", "1",
    "--l", "2", "--filters", "8", "--eval-inner-steps", "5",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "pkl"
    make_synthetic(out, format="pkl", classes=6, per_class=12, size=16, seed=0)
    return out


@pytest.fixture(scope="module")
def bmg_run(data_dir, tmp_path_factory):
    """An uninterrupted short BMG run (validation scores at meta-steps 3 and 6)."""
    out = tmp_path_factory.mktemp("bmg") / "run"
    main(["fewshot", *SHORT, "--algo", "bmg", "--data-dir", str(data_dir), "--out", str(out)])
    return out


def test_fewshot_run_directory_and_model_selection(bmg_run, tmp_path):
    out = bmg_run
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "best.msgpack",
        "latest.msgpack",
        "test_accuracies.npz",
        "accuracy_vs_meta_step.png",
        "accuracy_vs_wall_clock.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / fs.CHECKPOINT).exists()  # finished runs keep best.msgpack, not the state
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["meta_step"]) for r in rows] == [3, 6]
    summary = json.loads((out / "summary.json").read_text())
    val = [float(r["val_accuracy"]) for r in rows]
    assert summary["best_val_accuracy"] == max(val)
    assert summary["best_meta_step"] == 3 * (1 + int(np.argmax(val)))
    # The 95% interval is 1.96 standard errors of the per-task accuracies.
    test = np.load(out / "test_accuracies.npz")["test_accuracy"]
    assert test.shape == (30,) and summary["test_tasks"] == 30
    np.testing.assert_allclose(summary["test_accuracy"], test.mean(), rtol=1e-6)
    assert test.std() > 0  # tasks differ, so the interval is not trivially 0
    np.testing.assert_allclose(summary["test_ci95"], 1.96 * test.std(ddof=1) / np.sqrt(30))
    # The saved best initialisation reproduces its validation score.
    config = fs.FewShotConfig(**{**json.loads((out / "config.json").read_text())["config"]})
    system = fs.FewShotSystem(config)
    template, _ = system.init(jax.random.key(0))
    best = serialization.from_state_dict(
        template, serialization.msgpack_restore((out / "best.msgpack").read_bytes())
    )
    val_again = system.evaluate(best, "val", config.val_tasks, fs.VAL_SEED)
    np.testing.assert_allclose(val_again.mean(), summary["best_val_accuracy"], rtol=1e-6)
    main(["compare", str(out), "--out", str(tmp_path / "compare")])
    table = (tmp_path / "compare" / "comparison.md").read_text()
    assert "bmg K=1 L=2 5-way 1-shot seed 0" in table
    assert f"{100 * summary['test_accuracy']:.2f} ± {100 * summary['test_ci95']:.2f}%" in table
    assert (tmp_path / "compare" / "accuracy_vs_wall_clock.png").is_file()


class Crash(Exception):
    pass


def _without_timings(path):
    with path.open() as f:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(f)]


def test_an_interrupted_run_resumes_to_the_same_results(bmg_run, data_dir, tmp_path, monkeypatch):
    """Killed at the second validation score (metrics.csv and latest.msgpack written, the
    checkpoint not), then `--resume`: the rows, the selected initialisation and the test score
    are those of the uninterrupted run."""
    out = tmp_path / "run"
    save_checkpoint = fs.save_checkpoint

    def crash_at_meta_step_6(run_dir, state):
        if state.meta_step == 6:
            raise Crash
        save_checkpoint(run_dir, state)

    monkeypatch.setattr(fs, "save_checkpoint", crash_at_meta_step_6)
    argv = ["fewshot", *SHORT, "--algo", "bmg", "--data-dir", str(data_dir), "--out", str(out)]
    with pytest.raises(Crash):
        main(argv)
    monkeypatch.undo()
    assert len(_without_timings(out / "metrics.csv")) == 2
    with pytest.raises(SystemExit, match="already holds a run.*--resume"):
        main(argv)
    with pytest.raises(SystemExit, match=r"drop the other arguments \(--seed 1\)"):
        main(["fewshot", "--resume", str(out), "--seed", "1"])
    main(["fewshot", "--resume", str(out)])
    (resumed_record,) = json.loads((out / "config.json").read_text())["resumed"]
    assert resumed_record["after_meta_step"] == 3
    assert _without_timings(out / "metrics.csv") == _without_timings(bmg_run / "metrics.csv")
    assert (out / "best.msgpack").read_bytes() == (bmg_run / "best.msgpack").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((bmg_run / "summary.json").read_text())
    for name in ("best_val_accuracy", "best_meta_step", "test_accuracy", "test_ci95"):
        assert summary[name] == expected[name], name
    assert not (out / fs.CHECKPOINT).exists()
    with pytest.raises(SystemExit, match="finished run.*nothing to resume"):
        main(["fewshot", "--resume", str(out)])


def test_resume_needs_a_checkpoint(bmg_run, tmp_path):
    out = tmp_path / "run"  # stopped before its first validation score: only config.json
    out.mkdir()
    shutil.copy(bmg_run / "config.json", out)
    with pytest.raises(SystemExit, match="checkpoint.msgpack is missing"):
        main(["fewshot", "--resume", str(out)])
    with pytest.raises(SystemExit, match="config.json cannot be read"):
        main(["fewshot", "--resume", str(tmp_path / "missing")])


def test_training_is_deterministic_and_the_seed_matters(data_dir):
    splits = load_splits(data_dir, image_size=16, min_per_class=6)
    base = dict(
        data_dir=data_dir, algo="maml", queries=5, k=1, meta_steps=3, eval_every=3,
        val_tasks=8, test_tasks=8, meta_batch_size=2, filters=8, image_size=16,
        eval_inner_steps=2,
    )  # fmt: skip
    results = [
        fs.train(fs.FewShotSystem(fs.FewShotConfig(**base, seed=s), splits)) for s in (0, 0, 1)
    ]
    first, again, other = (r["summary"] for r in results)
    assert first["test_accuracy"] == again["test_accuracy"]
    assert results[0]["rows"][0]["train/query_loss"] == results[1]["rows"][0]["train/query_loss"]
    assert results[0]["rows"][0]["train/query_loss"] != results[2]["rows"][0]["train/query_loss"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--data-dir is required"),
        (["--data-dir", "/nonexistent/mini"], "/nonexistent/mini"),
        (["--queries", "20"], "needed"),
        (["--ways", "9"], "9"),
        (["--k", "0"], "k must be"),
        (["--matching", "cosine"], "cosine"),
    ],
)
def test_bad_input_fails_with_one_sentence(data_dir, tmp_path, flags, message, capsys):
    args = ["fewshot", "--preset", "tiny", "--out", str(tmp_path / "run")]
    if flags and flags[0] != "--data-dir":
        args += ["--data-dir", str(data_dir)]
    with pytest.raises(SystemExit) as error:
        main(args + flags)
    text = str(error.value.code) + capsys.readouterr().err
    assert message in text, text
    assert not (tmp_path / "run" / "config.json").exists()


def test_make_synthetic_command(tmp_path, capsys):
    main(["fewshot", "make-synthetic", "--out", str(tmp_path / "d"), "--format", "csv",
          "--classes", "3", "--per-class", "4", "--size", "8"])  # fmt: skip
    splits = load_splits(tmp_path / "d")
    assert {name: s.num_classes for name, s in splits.items()} == {"train": 3, "val": 3, "test": 3}
    with pytest.raises(SystemExit):
        main(["fewshot", "make-synthetic", "--out", str(tmp_path / "e"), "--format", "png"])
    assert "--format" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="classes"):
        main(["fewshot", "make-synthetic", "--out", str(tmp_path / "f"), "--format", "csv",
              "--classes", "1"])  # fmt: skip
