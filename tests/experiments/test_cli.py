"""The `bmg` command line: a tiny run writes a complete run directory, an interrupted run resumes
to the same files, and bad input ends with one sentence (no traceback) before anything is written.

Tests that run a lifetime compile it (tens of seconds on 2 shared cores) and are slow; the test
session's persistent XLA compilation cache (tests/conftest.py) lets the interrupted and the
resumed run reuse the tiny run's program.
"""

import csv
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from bmg.experiments.cli import main
from bmg.experiments.two_colors import report
from bmg.experiments.two_colors import system as tc
from bmg.train import rundir
from bmg.train.anakin import Anakin
from bmg.train.lifetime import LifetimeConfig
from bmg.train.rundir import config_digest

TINY = [
    "--steps", "1200", "--seeds", "2", "--chunk-steps", "400", "--k", "1", "--l", "2",
    "--learner.hidden-size", "8", "--learner.rollout-length", "4",
    "--learner.meta-hidden-size", "4", "--env.switch-every", "300",
]  # fmt: skip
SMALL_NETS = [
    "--learner.hidden-size", "8", "--learner.rollout-length", "4",
    "--learner.meta-hidden-size", "4",
]  # fmt: skip
# (a fixed entropy cost takes the first four: it has no meta-network)


def strict_json(path):
    """The JSON in `path`, failing on NaN / Infinity (which strict JSON does not have)."""

    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def exits_with(argv, capsys, message):
    """Run `bmg argv`; it must exit non-zero with `message` in one sentence, no traceback."""
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code not in (0, None)
    printed = " ".join((str(error.value.code) + capsys.readouterr().err).split())
    assert message in printed, printed
    assert "Traceback" not in printed
    return printed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An uninterrupted tiny BMG run: 2 seeds, 3 chunks."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    main(["two-colors", "default", "--algo", "bmg", *TINY, "--out", str(out)])
    return out


@pytest.mark.slow
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
        "window.png",
        "probe_contexts.png",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert not (out / tc.CHECKPOINTS).exists()  # finished runs keep no state
    record = strict_json(out / "config.json")
    config = record["config"]
    meta = config["meta"]
    assert (meta["algo"], meta["inner_steps"], meta["bootstrap_steps"]) == ("bmg", 1, 2)
    assert record["git_commit"] and record["config_digest"] == config_digest(config)
    assert record["preset"] == "default"  # the subcommand the run started from
    summary = strict_json(out / "summary.json")
    trace = np.load(out / "trace.npz")
    # (K + L - 1) rollouts of 4 steps per meta-step (targets' steps count); chunks of
    # ceil(400 / 8) = 50 meta-steps; the first rollout counts too.
    assert trace["env_steps"].shape == (2, 150)
    np.testing.assert_array_equal(np.diff(trace["env_steps"], axis=1), 8)
    np.testing.assert_array_equal(trace["env_steps"][:, 0], 4 + 8)
    assert summary["env_steps_per_seed"] == 150 * 8 + 4
    total = trace["first_rewards"] + trace["reward"].sum(axis=1)
    np.testing.assert_allclose(summary["total_reward"]["per_seed"], total)
    np.testing.assert_allclose(summary["total_reward"]["mean"], total.mean())
    np.testing.assert_allclose(summary["total_reward"]["se"], total.std(ddof=1) / np.sqrt(2))
    # the meta-optimiser's view: the meta-gradient's norm per meta-step, summarised per seed
    grad = trace["meta_grad_norm"]
    assert grad.shape == (2, 150) and np.all(grad > 0)
    np.testing.assert_allclose(
        summary["meta_grad_norm_median"]["per_seed"], np.median(grad, axis=1), rtol=1e-6
    )
    # ... and per coordinate: the max |g_i| is at most the global norm, the median at most the max
    largest, median = trace["meta_grad_abs_max"], trace["meta_grad_abs_median"]
    assert np.all(largest <= grad * (1 + 1e-6)) and np.all(median <= largest)
    ac = config["learner"]  # one hidden layer: H x h + h weights in, h + 1 out
    assert ac["meta_hidden_layers"] == 1
    coordinates = (ac["context_length"] + 2) * ac["meta_hidden_size"] + 1
    assert np.all(largest >= grad / np.sqrt(coordinates) * (1 - 1e-6))
    below = np.mean(largest < config["meta"]["adam_eps"], axis=1)
    np.testing.assert_allclose(summary["meta_grad_max_below_adam_eps"]["per_seed"], below)
    # the output bias is one of the coordinates
    assert np.all(np.abs(trace["meta_grad_output"]) <= largest * (1 + 1e-6))
    # the meta-network on the five fixed contexts after every meta-step (reward context)
    probes = trace["probe_contexts"]
    assert probes.shape == (2, 150, 5) and np.all((probes > 0) & (probes < 1))
    # one meta-step from the zero-initialised output layer: every context gives about 0.01
    np.testing.assert_allclose(probes[:, 0], config["learner"]["entropy_cost"], rtol=1e-3)
    for i, name in enumerate(tc.PROBE_CONTEXTS):
        np.testing.assert_allclose(
            summary[f"probe_context_{name}_last_10pct"]["per_seed"],
            probes[:, -15:, i].mean(axis=1),
            rtol=1e-6,
        )
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3  # seeds x chunks
    assert list(rows[0]) == report.csv_fields("ac")
    last = [r for r in rows if r["chunk"] == "2"]
    np.testing.assert_allclose([float(r["cumulative_reward"]) for r in last], total, rtol=1e-6)
    # Flips at 300, 600, 900 lie inside the run: the flip statistics exist.
    assert summary["entropy_after_flip"]["mean"] is not None
    capsys.readouterr()

    main(["compare", str(out), "--out", str(tmp_path / "cmp")])
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "bmg K=1 L=2" in table and "bmg K=1 L=2" in capsys.readouterr().out
    assert (tmp_path / "cmp" / "comparison_cumulative_reward.png").is_file()
    assert (tmp_path / "cmp" / "comparison_window.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "mg", "--k", "0"], "meta.inner_steps (K) must be an integer >= 1, got 0."),
        (["--algo", "decay"], "--algo decay is not a method of agent ac; its methods: fixed, mg"),
        (
            ["--learner.entropy-cost", "1.5"],
            "learner.entropy_cost must be a finite number in [0, 1)",
        ),
        (["--env.switch-every", "0"], "switch_every"),
        (["--seeds", "0"], "lifetime.seeds must be an integer >= 1, got 0."),
        (["--meta.learning-rate", "inf"], "meta.learning_rate must be a finite number > 0"),
        (
            ["--algo", "mg", "--k", "1000000", "--steps", "1000"],
            "one meta-step takes 16,000,000 environment steps (1000000 rollouts of 16), more "
            "than lifetime.steps = 1,000",
        ),
        (["--steps", "3000000000"], "more than a seed's int32 step counter holds (2,147,483,647)"),
        (["--algo", "ac"], "--algo must be one of fixed, decay, mg, bmg; got 'ac'."),
        (["--agent", "p"], "--agent must be one of ac, q; got 'p'."),
        (
            ["--learner.epsilon", "0.2"],  # a Q(lambda) field
            "--learner.epsilon is not a field of this run's learner (--agent ac); it is one with "
            "--agent q: add that, or drop the flag.",
        ),
        (["--algo", "mg", "--algo=bmg"], "--algo is given twice (mg, bmg); give it once."),
        (
            ["--ac.entropy-cost", "0.1"],  # the flag of an earlier version
            "--ac.entropy-cost is now --learner.entropy-cost (`bmg two-colors PRESET --help` "
            "lists every flag).",
        ),
        (
            ["--meta.algo", "mg"],  # with its label, BMG's L and continue_from: --algo's work
            "--meta.algo is set by --algo (fixed, decay, mg, bmg) with the fields that go with "
            "it: use --algo instead.",
        ),
        (["--learner.epsilon-decay", "True"], "--learner.epsilon-decay is set by --algo"),
    ],
)
def test_bad_run_flags_fail_with_one_sentence_before_anything_is_written(
    argv, message, tmp_path, capsys
):
    out = tmp_path / "x"
    exits_with(["two-colors", "default", *argv, "--out", str(out)], capsys, message)
    assert not out.exists()  # nothing started


@pytest.mark.parametrize("system", ["two-colors", "minatar", "atari"])
def test_the_meta_learning_config_a_system_derives_is_checked_as_flags_are_read(
    system, tmp_path, capsys
):
    """A system builds its `MetaConfig` from its flags inside its own check, while the command
    line defers nested checks: it is checked all the same (BMG with K = 0 and L = 1 takes no
    learner update), before anything is written."""
    out = tmp_path / "x"
    argv = [system, "default", "--algo", "bmg", "--k", "0", "--l", "1", "--out", str(out)]
    exits_with(argv, capsys, "inner_steps + bootstrap_steps - 1 must be >= 1 for bmg")
    assert not out.exists()
    argv = [system, "default", "--algo", "bmg", "--meta.continue-from", "inner", "--out", str(out)]
    if system == "minatar":  # MinAtar's BMG may rewind its streams
        return
    exits_with(argv, capsys, "meta.continue_from must be 'target' or 'inner_params'")
    assert not out.exists()


def test_bad_out_fails_with_one_sentence(tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("keep me")
    exits_with(
        ["two-colors", "demo", "--out", str(file)], capsys, f"--out {file} is a file, not a dir"
    )
    exits_with(
        ["two-colors", "demo", "--out", str(file / "run")],
        capsys,
        f"--out {file / 'run'} cannot be created: {file} is a file, not a directory.",
    )
    exits_with(
        ["two-colors", "demo", "--out", ""], capsys, "--out must name a directory, got an empty"
    )
    assert file.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [file]


def test_flags_before_the_preset_are_one_sentence(capsys):
    exits_with(
        ["two-colors", "--algo", "mg", "demo"],
        capsys,
        "bmg two-colors: error: the preset comes first, then its flags (`bmg two-colors PRESET "
        "--algo ...`); presets: default, small-entropy, related, demo, port, paper, exploration, "
        "resume.",
    )


def test_bad_commands_fail_with_one_sentence(tmp_path, capsys):
    exits_with(["fly"], capsys, "bmg: unknown command 'fly'; choose one of: two-colors")
    exits_with(["compare", str(tmp_path / "nonexistent")], capsys, "is not a finished run")
    exits_with([], capsys, "usage: bmg COMMAND")  # a command is required: a failing status
    exits_with(
        ["two-colors", "resume", str(tmp_path), "--steps", "5"],
        capsys,
        "resume takes the run directory alone (`bmg two-colors resume RUN_DIR`): a run goes on "
        "with the configuration it started with, so '--steps 5' cannot change it.",
    )


def finished_run_dir(path):
    """A hand-made finished Two-colors run (config.json, summary.json, trace.npz), 2 seeds."""
    config = tc.PRESET_VALUES["default"].config(algo="fixed")
    lifetime = LifetimeConfig(steps=2_000, seeds=2, chunk_steps=1_000)
    config = dataclasses.replace(config, lifetime=lifetime)
    steps = np.tile(np.array([1_000, 2_000]), (2, 1))
    zeros = np.zeros((2, 2))
    trace = tc.Trace(steps, np.array([[1.0, 2.0], [3.0, 5.0]]), zeros + 0.01, zeros, zeros)
    path.mkdir(parents=True)
    rundir.write_json(path / "config.json", {"config": dataclasses.asdict(config)})
    summary = report.summarize(trace, np.zeros(2), switch_every=100_000, seconds=1.0)
    rundir.write_json(path / "summary.json", summary)
    rundir.save_npz(path / "trace.npz", first_rewards=np.zeros(2), **trace._asdict())
    return path


def test_compare_refuses_a_run_directory_as_out_and_names_damaged_files(tmp_path, capsys):
    run = finished_run_dir(tmp_path / "run")
    exits_with(["compare", str(run), "--out", str(run)], capsys, f"--out {run} is a run's dir")
    assert not (run / "comparison.md").exists()

    main(["compare", str(run)])  # the table, with '-' where a short run has no data
    assert "| ac entropy-cost=0.01 | - | 2 | 2,000 |" in capsys.readouterr().out  # no preset

    (run / "summary.json").write_text('{"seeds": 2, "total_reward": {"mean": NaN')
    exits_with(["compare", str(run)], capsys, f"{run / 'summary.json'} is not valid JSON")
    run = finished_run_dir(tmp_path / "damaged-config")
    (run / "config.json").write_text("{")
    exits_with(["compare", str(run)], capsys, f"{run / 'config.json'} is not valid JSON")
    run = finished_run_dir(tmp_path / "damaged-trace")
    (run / "trace.npz").write_bytes(b"PK\x03\x04 truncated")
    exits_with(["compare", str(run)], capsys, f"{run / 'trace.npz'} cannot be read")


def fewshot_run_dir(path):
    """A hand-made finished few-shot run (config.json, summary.json, metrics.csv)."""
    from bmg.experiments.fewshot.system import FewShotConfig

    path.mkdir(parents=True)
    from bmg.experiments.fewshot.system import select

    config = select(FewShotConfig(meta_steps=20, eval_every=10), {"algo": "maml"})
    config = dataclasses.asdict(config)
    rundir.write_json(path / "config.json", {"config": config, "experiment": "fewshot"})
    summary = dict(
        best_val_accuracy=0.5, best_meta_step=10, test_accuracy=0.6, test_ci95=0.01,
        test_tasks=600, seconds_per_meta_step=0.1,
    )  # fmt: skip
    rundir.write_json(path / "summary.json", summary)
    (path / "metrics.csv").write_text("meta_step,train_seconds,val_accuracy\n10,1.0,0.5\n")
    return path


def minatar_run_dir(path):
    """A hand-made finished MinAtar run of one meta-step (config.json, summary.json, trace.npz)."""
    from bmg.experiments.minatar.system import MinAtarConfig, stacx_select

    path.mkdir(parents=True)
    config = dataclasses.asdict(stacx_select(MinAtarConfig(), {"algo": "impala"}))
    rundir.write_json(path / "config.json", {"config": config, "experiment": "minatar"})
    stat = {"mean": 1.0, "se": None}
    summary = dict(
        seeds=1, frames_per_seed=640, return_first_chunk=stat, return_last_10pct=stat,
        frames_per_second=None, meta_steps_per_chunk=1,
    )  # fmt: skip
    rundir.write_json(path / "summary.json", summary)
    arrays = {name: np.ones((1, 1)) for name in ("env_steps", "episodes", "episode_return_sum")}
    initial = {"initial/episodes": np.zeros(1), "initial/episode_return_sum": np.zeros(1)}
    rundir.save_npz(path / "trace.npz", **arrays, **initial)
    return path


@pytest.mark.parametrize(
    "make, name, text, message",
    [
        (finished_run_dir, "config.json", "{}", "is not a run's config: it lacks the key config"),
        (finished_run_dir, "config.json", "[1, 2]", "is not a run's config: its top level must"),
        (
            finished_run_dir,
            "config.json",
            '{"config": {"meta": {"algo": "fixed", "inner_steps": 1, "bootstrap_steps": 1}, '
            '"learner": {}, "env": {}}}',
            "is not a Two-colors run's config: it lacks the key config.learner.entropy_cost (a "
            "number)",
        ),
        (finished_run_dir, "summary.json", "[]", "is not a Two-colors run's summary: its top"),
        (
            finished_run_dir,
            "summary.json",
            "{}",
            "Two-colors run's summary: it lacks the key seeds",
        ),
        (
            finished_run_dir,
            "summary.json",
            '{"seeds": 2, "env_steps_per_seed": 10, "total_reward": 5}',
            "total_reward must be a JSON object with mean, se, per_seed, got the number 5",
        ),
        (
            fewshot_run_dir,
            "config.json",
            '{"config": {"shots": 1}, "experiment": "fewshot"}',
            "holds a config this version cannot run: the saved FewShotConfig does not match "
            "this version's: missing",
        ),
        (fewshot_run_dir, "summary.json", '"done"', "few-shot run's summary: its top level must"),
        (
            fewshot_run_dir,
            "summary.json",
            '{"best_val_accuracy": "high"}',
            "best_val_accuracy must be a number, got the string 'high'",
        ),
        (
            fewshot_run_dir,
            "metrics.csv",
            "meta_step,train_seconds,val_accuracy\n10,1.0,high\n",
            "few-shot run's metrics: line 2 column val_accuracy must be a number, got 'high'",
        ),
        (minatar_run_dir, "summary.json", "[]", "is not a MinAtar run's summary: its top level"),
        (
            minatar_run_dir,
            "config.json",
            '{"config": {"stacx": {}, "algo": "bmg", "env": "Breakout-MinAtar"}, '
            '"experiment": "minatar"}',
            "is not a MinAtar run's config: it lacks the key config.meta (a JSON object with "
            "algo, inner_steps, bootstrap_steps)",
        ),
        (minatar_run_dir, "trace.npz", None, "trace.npz is not a MinAtar run's trace"),
    ],
)
def test_compare_names_a_run_file_of_the_wrong_shape(make, name, text, message, tmp_path, capsys):
    """Valid JSON of another shape than a run's (`{}`, a list, a key missing, a string where
    a number belongs), in any kind of run: one sentence naming the file, never a KeyError."""
    run = make(tmp_path / "run")
    main(["compare", str(run)])  # as made, the run compares
    capsys.readouterr()
    if text is None:  # an array the report reads left out
        rundir.save_npz(run / name, env_steps=np.ones((1, 1)))
    else:
        (run / name).write_text(text)
    printed = exits_with(["compare", str(run)], capsys, f"error: {run / name} ")
    assert message in printed, printed


def test_compare_refuses_a_run_named_twice(tmp_path, capsys, monkeypatch):
    """One run passed twice (as written, or by another path to it) would count its seeds twice."""
    run = finished_run_dir(tmp_path / "run")
    exits_with(["compare", str(run), str(run)], capsys, f"{run} is given twice; name each run")
    monkeypatch.chdir(tmp_path)
    exits_with(
        ["compare", str(run), "./run/"],
        capsys,
        f"run is the same run as {run}; name each run once.",
    )


def test_compare_tells_two_runs_of_one_configuration_apart(tmp_path, capsys):
    """Two runs of the same configuration (say, other seeds) get their directory's name after
    their label; a label given once stays as it is."""
    first, second = (finished_run_dir(tmp_path / name) for name in ("seed-a", "seed-b"))
    capsys.readouterr()
    main(["compare", str(first), str(second)])
    printed = capsys.readouterr().out
    assert "(seed-a)" in printed and "(seed-b)" in printed
    from bmg.experiments.cli import label_repeats

    rows = [{"run": "a"}, {"run": "b"}]
    assert label_repeats(rows, [first, second]) == rows


def started_run_dir(path, config, *, digest=True):
    """A run directory as a new run leaves it before its first chunk (config.json only)."""
    path.mkdir(parents=True)
    extra = {"config_digest": config_digest(rundir.to_json(config))} if digest else {}
    rundir.write_config(path, config, **extra)
    return path


def test_resume_refuses_what_it_cannot_continue(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    exits_with(
        ["two-colors", "resume", str(empty)],
        capsys,
        f"{empty} holds no run (config.json is missing); nothing to resume.",
    )
    finished = finished_run_dir(tmp_path / "finished")
    exits_with(
        ["two-colors", "resume", str(finished)],
        capsys,
        f"{finished} holds a finished run (summary.json); nothing to resume.",
    )
    three = dataclasses.replace(tc.TwoColorsConfig(), lifetime=LifetimeConfig(seeds=3))
    edited = started_run_dir(tmp_path / "edited", three)
    record = json.loads((edited / "config.json").read_text())
    record["config"]["lifetime"]["chunk_steps"] = 100_000  # would change the trace, the totals
    (edited / "config.json").write_text(json.dumps(record))
    exits_with(
        ["two-colors", "resume", str(edited)],
        capsys,
        f"{edited / 'config.json'} was edited after the run started",
    )
    assert sorted(p.name for p in edited.iterdir()) == [".lock", "config.json"]
    # ... and so is one whose digest was removed with the edit: nothing shows it is the same run
    record.pop("config_digest")
    (edited / "config.json").write_text(json.dumps(record))
    exits_with(
        ["two-colors", "resume", str(edited)],
        capsys,
        f"{edited / 'config.json'} has no config_digest, so nothing shows that it still holds",
    )
    shapeless = tmp_path / "shapeless"
    shapeless.mkdir()
    (shapeless / "config.json").write_text("[]")
    exits_with(
        ["two-colors", "resume", str(shapeless)],
        capsys,
        f"{shapeless / 'config.json'} is not a run's config: its top level must be a JSON object",
    )


def no_compile(monkeypatch):
    """`two_colors.prepare` without the compile (it returns the config; `run` then builds the
    runner itself), for tests that stop before a lifetime runs."""
    prepared = []
    with_system(monkeypatch, tc, prepare=lambda config: prepared.append(config) or config)
    return prepared


def with_system(monkeypatch, module, **fields):
    """For one test, the system the command runs (``module.SYSTEM``, what the registry loads)
    with ``fields`` replaced."""
    monkeypatch.setattr(module, "SYSTEM", dataclasses.replace(module.SYSTEM, **fields))


def test_a_locked_run_directory_is_refused(tmp_path, monkeypatch, capsys):
    """Another run holds the directory's lock: a new run and a resume both refuse it."""
    no_compile(monkeypatch)
    out = tmp_path / "locked"
    out.mkdir()
    fd = os.open(out / rundir.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process's run would (flock is per open file)
    try:
        exits_with(["two-colors", "demo", "--out", str(out)], capsys, "is in use by another run")
        assert not (out / "config.json").exists()
        rundir.write_config(out, tc.TwoColorsConfig())
        exits_with(["two-colors", "resume", str(out)], capsys, "is in use by another run")
    finally:
        os.close(fd)


def test_a_locked_or_used_run_directory_is_refused_before_compiling(tmp_path, monkeypatch):
    prepared = no_compile(monkeypatch)
    used = started_run_dir(tmp_path / "used", tc.TwoColorsConfig())
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["two-colors", "demo", "--out", str(used)])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already holds files and no run .notes.txt."):
        main(["two-colors", "demo", "--out", str(tmp_path / "notes")])
    with pytest.raises(SystemExit, match=f"is inside the run directory {used}"):
        main(["two-colors", "demo", "--out", str(used / "sub")])
    assert prepared == [] and not (used / "sub").exists()  # nothing compiled, nothing made


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Interrupted after a checkpoint: the resume hint; before the first one: start again."""
    out = tmp_path / "run"

    def interrupted_after_a_checkpoint(self):
        (out / "checkpoints" / "1").mkdir(parents=True)
        raise KeyboardInterrupt

    no_compile(monkeypatch)
    monkeypatch.setattr(Anakin, "compile", interrupted_after_a_checkpoint)
    printed = exits_with(["two-colors", "demo", *SMALL_NETS, "--out", str(out)], capsys, "")
    assert "bmg two-colors: interrupted; every finished chunk" in printed
    assert f"continue with `bmg two-colors resume {out}`." in printed
    assert (out / "config.json").is_file()


def test_ctrl_c_before_the_first_checkpoint_says_start_again(tmp_path, monkeypatch, capsys):
    def interrupted(self):
        raise KeyboardInterrupt

    no_compile(monkeypatch)
    monkeypatch.setattr(Anakin, "compile", interrupted)  # in the run: after config.json
    out = tmp_path / "run"
    printed = exits_with(["two-colors", "demo", *SMALL_NETS, "--out", str(out)], capsys, "")
    assert "interrupted before the first checkpoint; there is nothing to resume" in printed
    assert "resume" not in printed.split("nothing to resume")[1]


def test_ctrl_c_while_compiling_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    def interrupted(config):
        raise KeyboardInterrupt

    with_system(monkeypatch, tc, prepare=interrupted)  # compiling, before the run directory
    out = tmp_path / "run"
    exits_with(
        ["two-colors", "demo", "--out", str(out)],
        capsys,
        "bmg two-colors: interrupted before the run started; nothing was written.",
    )
    assert not out.exists()


class Crash(Exception):
    pass


@pytest.mark.slow
def test_a_run_interrupted_while_plotting_resumes_and_finishes(tiny_run, tmp_path, monkeypatch):
    """Ctrl-C while the final plots are drawn: summary.json (what marks a run finished) is not
    written yet and the last checkpoint is kept, so `resume` finishes the run: summary.json,
    every plot, no checkpoints, the uninterrupted run's metrics.csv."""
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_run", interrupted)
    with pytest.raises(SystemExit, match=f"continue with `bmg two-colors resume {out}`"):
        main(["two-colors", "default", "--algo", "bmg", *TINY, "--out", str(out)])
    assert not (out / "summary.json").exists() and (out / "checkpoints").is_dir()
    monkeypatch.undo()
    main(["two-colors", "resume", str(out)])
    for name in ("summary.json", "trace.npz", "cumulative_reward.png", "window.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    assert (out / "metrics.csv").read_text() == (tiny_run / "metrics.csv").read_text()


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_files(tiny_run, tmp_path, monkeypatch, capsys):
    """Killed between writes after chunk 2 of 3 (its checkpoint saved, its metrics.csv rows not
    yet written), then `bmg two-colors resume DIR`: metrics.csv, trace.npz and the summary's
    totals are those of the uninterrupted run."""
    out = tmp_path / "run"
    save = Anakin.save

    def crash_after_saving_chunk_2(self, state):
        save(self, state)
        if state.chunks_done == 2:
            raise Crash

    monkeypatch.setattr(Anakin, "save", crash_after_saving_chunk_2)
    with pytest.raises(Crash):
        main(["two-colors", "default", "--algo", "bmg", *TINY, "--out", str(out)])
    monkeypatch.undo()
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2  # header, chunk 1 rows
    assert not (out / "trace.npz").exists() and not (out / "summary.json").exists()
    # Starting it again is refused, pointing at resume.
    exits_with(
        ["two-colors", "default", "--algo", "bmg", *TINY, "--out", str(out)],
        capsys,
        "already holds a run (config.json); choose a new directory so finished work is never "
        f"overwritten; to continue it, run `bmg two-colors resume {out}`.",
    )
    # A config.json edited to another configuration is refused by its digest.
    shutil.copytree(out, tmp_path / "edited")
    record = json.loads((out / "config.json").read_text())
    record["config"]["lifetime"]["seeds"] = 4
    (tmp_path / "edited" / "config.json").write_text(json.dumps(record))
    exits_with(["two-colors", "resume", str(tmp_path / "edited")], capsys, "was edited after")

    capsys.readouterr()
    started = time.perf_counter()
    main(["two-colors", "resume", str(out)])
    resume_seconds = time.perf_counter() - started
    assert "chunk 3/3" in " ".join(capsys.readouterr().out.split())
    (resumed_record,) = strict_json(out / "config.json")["resumed"]
    assert resumed_record["git_commit"] and resumed_record["time"]
    assert (out / "metrics.csv").read_text() == (tiny_run / "metrics.csv").read_text()
    resumed, uninterrupted = np.load(out / "trace.npz"), np.load(tiny_run / "trace.npz")
    assert sorted(resumed.files) == sorted(uninterrupted.files)
    for name in resumed.files:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    summary = strict_json(out / "summary.json")
    expected = strict_json(tiny_run / "summary.json")
    for name in ("total_reward", "reward_per_step_last_10pct", "entropy_after_flip"):
        assert summary[name] == expected[name], name
    assert not (out / tc.CHECKPOINTS).exists()
    exits_with(["two-colors", "resume", str(out)], capsys, "holds a finished run")
    print(f"resume took {resume_seconds:.1f} s")


@pytest.mark.slow
def test_a_run_shorter_than_one_colour_phase(tmp_path, capsys):
    """2,000 steps with flips every 100,000: exit 0, '-' for the statistics it has no data for,
    null (never NaN) in summary.json."""
    out = tmp_path / "short"
    argv = ["--algo", "fixed", "--steps", "2000", "--chunk-steps", "1000", "--seeds", "2"]
    main(["two-colors", "default", *argv, *SMALL_NETS[:4], "--out", str(out)])
    printed = capsys.readouterr().out
    header, _, row = (line for line in printed.splitlines() if line.startswith("|"))
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    cells = {k.strip(): v.strip() for k, v in cells.items()}
    assert cells["run"] == "ac entropy-cost=0.01"
    for column in (
        "schedule after flip",
        "schedule before flip",
        "object 0 pays, last 25%",
        "object 1 pays, last 25%",
    ):
        assert cells[column] == "-", column
    summary = strict_json(out / "summary.json")
    assert summary["entropy_after_flip"] == {"mean": None, "se": None, "per_seed": [None, None]}
    assert summary["total_reward"]["mean"] is not None


HELP = """
import json, sys, time
from bmg.experiments.cli import main

results = []
for argv in (["--help"], ["two-colors", "--help"], ["two-colors", "paper", "--help"]):
    started = time.perf_counter()
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    results.append({"code": code, "seconds": time.perf_counter() - started,
                    "jax": "jax" in sys.modules})
    print("<<END>>", flush=True)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def helps():
    """(stdout of `bmg --help`, `bmg two-colors --help`, `bmg two-colors paper --help`, and for
    each: exit code, seconds, whether jax was imported)."""
    process = subprocess.run(
        [sys.executable, "-c", HELP],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    *texts, results = process.stdout.split("<<END>>\n")
    return texts, json.loads(results)


def test_help_lists_the_presets_out_and_resume(helps):
    (top, two_colors, paper), results = helps
    assert [r["code"] for r in results] == [0, 0, 0]
    assert "two-colors" in top and "compare" in top
    for name in ("default", "demo", "paper", "exploration", "resume"):
        assert name in two_colors, name
    for flag in ("--out", "--steps", "--k", "--l", "--learner.entropy-cost", "--algo", "--agent"):
        assert flag in paper, flag
    assert "6400000" in paper  # the paper preset's defaults


def test_help_returns_quickly_without_importing_jax(helps):
    """Help needs the configs only (jax-free modules); measured 1.6-4 s on 2 shared cores, most
    of it tyro, so the bound below only catches an import of jax / orbax creeping back in."""
    _, results = helps
    assert [r["jax"] for r in results] == [False, False, False]
    assert all(r["seconds"] < 20 for r in results), results


def test_resume_of_another_experiments_run_names_its_command(tmp_path, capsys):
    """config.json records its experiment: `bmg two-colors resume` on a MinAtar run says which
    command continues it (it used to read as a version mismatch of the config)."""
    run = tmp_path / "run"
    run.mkdir()
    rundir.write_config(run, tc.TwoColorsConfig(), experiment="minatar")
    exits_with(
        ["two-colors", "resume", str(run)],
        capsys,
        f"holds a run of the experiment 'minatar', not of two-colors; continue it with "
        f"`bmg resume {run}`.",
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["two-colors", "related", "--algo", "mg", "--l", "8"],
            "meta.bootstrap_steps (L) = 8 is the BMG target's look-ahead, so with algo 'mg' "
            "leave it at 1.",
        ),
        (
            ["two-colors", "related", "--algo", "fixed", "--meta.learning-rate=1e-3"],
            "--meta.learning-rate has no effect with --algo fixed (nothing is meta-learned)",
        ),
        (
            ["two-colors", "related", "--agent", "q", "--algo", "decay", "--learner.epsilon=0.2"],
            "--learner.epsilon has no effect with --algo decay (epsilon follows --learner.decay-*)",
        ),
        (
            ["two-colors", "demo", "--learner.adam-b2", "0.99"],
            "--learner.adam-b2 has no effect with --learner.optimizer sgd (they are Adam's)",
        ),
        (
            ["two-colors", "demo", "--learner.context", "none", "--learner.meta-hidden-size", "8"],
            "--learner.meta-hidden-size has no effect with --learner.context none",
        ),
        (
            ["minatar", "demo", "--stacx.torso", "minatar", "--stacx.impala-blocks", "3"],
            "--stacx.impala-blocks has no effect with --stacx.torso minatar",
        ),
        (
            [
                "two-colors",
                "sweep",
                "related",
                "--algo",
                "mg",
                "--meta.target-step-size",
                "1",
                "--grid",
                "meta.learning-rate=1e-3",
            ],
            "--meta.target-step-size has no effect with --algo mg",
        ),
        (
            ["two-colors", "related", "--algo", "bmg", "--learner.matching-value-cost", "2"],
            "--learner.matching-value-cost has no effect with --learner.matching kl",
        ),
        (
            ["minatar", "demo", "--algo", "impala", "--stacx.matching", "kl_value"],
            "--stacx.matching has no effect with --algo impala (nothing is meta-learned)",
        ),
        (
            ["minatar", "demo", "--algo", "impala", "--meta.adam-eps", "1e-6"],
            "--meta.adam-eps has no effect with --algo impala (nothing is meta-learned)",
        ),
        (
            ["minatar", "demo", "--algo", "stacx", "--k", "1", "--l", "4"],
            "meta.bootstrap_steps (L) = 4 is the BMG target's look-ahead, so with algo 'mg' leave "
            "it at 1.",
        ),
        (
            ["minatar", "demo", "--algo", "bmg", "--meta.target-step-size", "0.5"],
            "--meta.target-step-size has no effect with the RMSProp target step",
        ),
        (
            ["atari", "demo", "--algo", "impala", "--meta.adam-eps", "1e-6"],
            "--meta.adam-eps has no effect with --algo impala",
        ),
        (
            ["minatar", "demo", "--algo", "impala", "--stacx.outer-discount", "0.9"],
            "--stacx.outer-discount has no effect with --algo impala (nothing is meta-learned)",
        ),
        (
            [
                "two-colors",
                "related",
                "--learner.target-step",
                "learner_update",
                "--learner.outer-entropy-cost",
                "0.1",
            ],
            "--learner.outer-entropy-cost has no effect with --learner.target-step learner_update",
        ),
        (
            ["atari", "demo", "--env.num-envs", "4"],
            "--env.num-envs has no effect (each actor thread steps sebulba.envs_per_thread = 16",
        ),
        (
            ["fewshot", "tiny", "--algo", "maml", "--matching", "params", "--data-dir", "x"],
            "--matching has no effect with --algo maml (only BMG bootstraps a target)",
        ),
        (
            ["fewshot", "tiny", "--meta.continue-from", "target", "--data-dir", "x"],
            "--meta.continue-from has no effect in few-shot (every task starts from the",
        ),
        (
            ["two-colors", "related", "--agent", "q", "--algo", "bmg", "--meta.target-step-size=1"],
            "--meta.target-step-size has no effect with --agent q (Q(lambda) brings its own",
        ),
        (
            ["two-colors", "related", "--algo", "fixed", "--learner.meta-hidden-size", "8"],
            "--learner.meta-hidden-size has no effect with --algo fixed (nothing is meta-learned)",
        ),
        (
            ["two-colors", "related", "--algo", "bmg", "--learner.entropy-cost", "0.2"],
            "--learner.entropy-cost has no effect with --algo bmg and learner.meta_initial set",
        ),
        (
            ["two-colors", "exploration", "--algo", "fixed", "--learner.decay-steps", "10"],
            "--learner.decay-steps has no effect with --algo fixed",
        ),
        (
            [
                "minatar",
                "demo",
                "--algo",
                "bmg",
                "--stacx.target-step",
                "sgd",
                "--stacx.target-learning-rate",
                "0.1",
            ],
            "--stacx.target-learning-rate has no effect with --stacx.target-step sgd",
        ),
    ],
)
def test_a_flag_without_effect_on_the_chosen_algorithm_is_refused(argv, message, capsys):
    """Nothing is silently ignored: a flag that sets a field the chosen algorithm or agent does
    not use stops the command with one sentence, before anything runs."""
    exits_with(argv, capsys, message)


@pytest.mark.parametrize(
    "argv",
    [
        ["two-colors", "related", "--agent", "q", "--algo", "fixed", "--learner.epsilon=0.2"],
        ["minatar", "demo", "--algo", "stacx", "--k", "2", "--meta.remat", "True"],
        ["fewshot", "tiny", "--algo", "fomaml", "--meta.learning-rate", "1e-2"],
        # K and L restated at the only values a method takes: not refused as without effect
        ["two-colors", "related", "--algo", "mg", "--k", "1", "--l", "1"],
        ["two-colors", "related", "--algo", "fixed", "--k", "1", "--l", "1"],
        ["minatar", "demo", "--algo", "impala", "--k", "1", "--l", "1"],
        ["fewshot", "tiny", "--algo", "maml", "--meta.bootstrap-steps", "1"],
    ],
)
def test_a_flag_with_effect_on_the_chosen_algorithm_is_accepted(argv):
    """The refusals above are not blanket ones: the same fields with a method that uses them
    parse and are kept."""
    from bmg.experiments import command, registry

    settings = registry.ENTRIES[argv[0]].settings()
    run = command.parse_run(argv[1:], settings, "bmg", "")
    command.refuse_unused_flags(argv[1:], run.config, settings.unused_fields, "bmg")
    assert run.config.algo == argv[argv.index("--algo") + 1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["two-colors", "related", "--algo", "fixed", "--learner.entropy-cost", "-1"],
            "error: learner.entropy_cost must be",
        ),
        (["two-colors", "related", "--env.grid-size", "1"], "error: env.grid_size must be an"),
        (["minatar", "demo", "--stacx.rmsprop-eps", "-1"], "error: stacx.rmsprop_eps must be"),
        (["atari", "demo", "--sebulba.queue-size", "0"], "error: sebulba.queue_size must be"),
    ],
)
def test_a_bad_nested_value_names_its_path(argv, message, capsys):
    """A nested config's check (ac, env, stacx, sebulba) names the field's path in one
    sentence, not the parser's internals."""
    printed = exits_with(argv, capsys, message)
    assert "tyro" not in printed and "Error parsing" not in printed


@pytest.mark.parametrize(
    "command, failure",
    [
        (["two-colors", "demo"], AssertionError()),  # JAX's own when no NVIDIA GPU is visible
        (["minatar", "demo"], RuntimeError("Unable to initialize backend 'cuda': no driver.")),
        (
            ["two-colors", "sweep", "demo", "--grid", "meta.learning-rate=1e-3,1e-4"],
            AssertionError(),
        ),
        (["atari", "demo"], AssertionError()),  # checked in `prepare`, after joining processes
    ],
)
def test_a_backend_that_cannot_start_is_one_sentence(
    command, failure, tmp_path, monkeypatch, capsys
):
    """JAX_PLATFORMS=cuda on a machine without a GPU: JAX's first computation fails (a bare
    AssertionError or a RuntimeError, depending on what is missing); the command says which
    platform was asked for and which this machine has, before its directory exists."""
    import jax

    from bmg.train import backend

    if command[0] == "atari":
        pytest.importorskip("ale_py")

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setattr(jax, "devices", fail)
    monkeypatch.setattr(backend, "available_platforms", lambda: ["cpu"])
    out = tmp_path / "run"
    reason = str(failure).rstrip(".") or "no NVIDIA GPU is visible"
    prog = "bmg " + " ".join(command[:2] if command[1] == "sweep" else command[:1])
    exits_with(
        [*command, "--out", str(out)],
        capsys,
        f"{prog}: error: JAX cannot start the platform(s) JAX_PLATFORMS='cuda' asks for "
        f"({reason}); this machine has: cpu, so set JAX_PLATFORMS to one of them or unset it.",
    )
    assert not out.exists()


CUDA_ON_CPU = """
from bmg.train.backend import check_backend
try:
    check_backend()
except ValueError as error:
    print(error)
"""


def test_jax_platforms_cuda_without_a_gpu_names_the_platforms_this_machine_has():
    """The real failure (JAX's AssertionError) in a fresh process, and the platforms listed in
    another: cpu is always among them."""
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA GPU: JAX_PLATFORMS=cuda starts")
    process = subprocess.run(
        [sys.executable, "-c", CUDA_ON_CPU],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cuda"},
    )
    assert process.returncode == 0, process.stderr[-2000:]
    text = process.stdout.strip()
    assert text.startswith("JAX cannot start the platform(s) JAX_PLATFORMS='cuda' asks for"), text
    assert "this machine has: cpu" in text and "Traceback" not in process.stderr, text


def test_fewshot_refuses_an_eval_every_longer_than_the_run(tmp_path, capsys):
    """--eval-every above --meta-steps would validate once, at the end: no model selection."""
    out = tmp_path / "run"
    exits_with(
        ["fewshot", "tiny", "--data-dir", str(tmp_path), "--meta-steps", "40", "--out", str(out)],
        capsys,
        "bmg fewshot: error: eval_every must be at most meta_steps = 40 (validation every "
        "eval_every meta-steps is what selects the initialisation), got 50.",
    )
    assert not out.exists()


def test_a_resume_without_a_checkpoint_is_refused_before_compiling(tmp_path, monkeypatch, capsys):
    """A run stopped before its first checkpoint (config.json only): `resume` says there is
    nothing to resume at once, without compiling the lifetime first."""
    run = started_run_dir(tmp_path / "run", tc.TwoColorsConfig())

    def compiled(config):
        raise AssertionError("compiled before refusing")

    with_system(monkeypatch, tc, prepare=compiled)
    exits_with(["two-colors", "resume", str(run)], capsys, "holds no checkpoint (it stopped")


def test_compare_never_writes_inside_a_run_nor_over_a_comparison(tmp_path, capsys):
    run = finished_run_dir(tmp_path / "run")
    exits_with(["compare", str(run), "--out", str(run / "sub")], capsys, "is inside the run")
    assert not (run / "sub").exists()
    main(["compare", str(run), "--out", str(tmp_path / "cmp")])
    before = (tmp_path / "cmp" / "comparison.md").read_text()
    exits_with(["compare", str(run), "--out", str(tmp_path / "cmp")], capsys, "already holds a")
    assert (tmp_path / "cmp" / "comparison.md").read_text() == before
