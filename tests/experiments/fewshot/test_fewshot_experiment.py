"""Few-shot end to end on synthetic data: run directory, model selection, resume, the NaN guard,
progress, the protocol's evaluation, and the faults of bad configs and data."""

import csv
import dataclasses
import functools
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rich.console import Console

from bmg import checks, memory
from bmg.core.config import MetaConfig
from bmg.experiments.fewshot import report
from bmg.experiments.fewshot import system as fs
from bmg.experiments.report.tables import markdown_table
from bmg.fewshot.data import DataError, load_splits
from bmg.fewshot.synthetic import make_synthetic
from bmg.train import host_loop
from bmg.train.rundir import write_config

SHORT = dict(
    queries=5, meta_steps=6, eval_every=3, val_tasks=12, test_tasks=30, eval_batch_size=12,
    meta_batch_size=2, inner_steps=1, bootstrap_steps=2, filters=8, eval_inner_steps=5,
    image_size=16,
)  # fmt: skip
SHORT_FLAGS = ["--k", "1", "--l", "2"] + [
    f"--{name.replace('_', '-')}={value}"
    for name, value in SHORT.items()
    if name not in ("inner_steps", "bootstrap_steps")
]


def config_of(algo="bmg", inner_steps=5, bootstrap_steps=5, **fields) -> fs.FewShotConfig:
    """A few-shot config as `--algo ALGO --k K --l L` and the other fields' flags make it."""
    config = fs.select(fs.FewShotConfig(**fields), {"algo": algo})
    meta = dataclasses.replace(config.meta, inner_steps=inner_steps)
    if algo == "bmg":
        meta = dataclasses.replace(meta, bootstrap_steps=bootstrap_steps)
    return dataclasses.replace(config, meta=meta)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "pkl"
    make_synthetic(out, format="pkl", classes=6, per_class=12, size=16, seed=0)
    return out


@pytest.fixture(scope="module")
def system(data_dir):
    """One compiled BMG system shared by the tests (compiling dominates their time)."""
    return fs.FewShotSystem(config_of(data_dir=data_dir, algo="bmg", **SHORT))


@pytest.fixture(scope="module")
def bmg_run(system, tmp_path_factory):
    """An uninterrupted short BMG run (validation scores at meta-steps 3 and 6) and its log."""
    out = tmp_path_factory.mktemp("bmg") / "run"
    out.mkdir()
    write_config(out, system.config)  # the CLI's part of a run directory
    log = io.StringIO()
    fs.run(system, out, console=Console(file=log, width=200))
    return out, log.getvalue()


def read_rows(path, drop=("train_seconds",)):
    with path.open() as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_run_directory_model_selection_and_confidence_interval(bmg_run, system):
    out, log = bmg_run
    for name in (
        "metrics.csv",
        "summary.json",
        "best.msgpack",
        "latest.msgpack",
        "test_accuracies.npz",
        "accuracy_vs_meta_step.png",
        "accuracy_vs_wall_clock.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / fs.CHECKPOINTS).exists()  # finished runs keep best.msgpack, not the state
    rows = read_rows(out / "metrics.csv", drop=())
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
    template = system.init()["meta_state"].meta_params
    best = fs.load_params(out / "best.msgpack", template)
    val_again = system.evaluate(best, "val", SHORT["val_tasks"], fs.VAL_SEED)
    np.testing.assert_allclose(val_again.mean(), summary["best_val_accuracy"], rtol=1e-6)
    # Progress: compilation is announced and every score printed.
    assert "compiling the meta-step" in log
    assert "meta-step 3/6: val accuracy" in log and "meta-step 6/6: val accuracy" in log
    table = markdown_table(report.comparison_rows([out]))
    assert "bmg 1 inner steps L=2 5-way 1-shot seed 0" in table
    assert f"{100 * summary['test_accuracy']:.2f} ± {100 * summary['test_ci95']:.2f}%" in table


class Crash(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_results(bmg_run, system, tmp_path, monkeypatch):
    """Killed while checkpointing the second validation score, then resumed: the rows, the
    selected initialisation and the test score are those of the uninterrupted run."""
    reference, _ = bmg_run
    out = tmp_path / "run"
    out.mkdir()
    save = host_loop.save

    def crash_at_meta_step_6(checkpointer, state):
        if state.step == 6:
            raise Crash
        save(checkpointer, state)

    monkeypatch.setattr(host_loop, "save", crash_at_meta_step_6)
    with pytest.raises(Crash):
        fs.run(system, out)
    monkeypatch.undo()
    assert len(read_rows(out / "metrics.csv")) == 1
    # the data directory regenerated with other images: the resume refuses, leaving the run as is
    other = make_synthetic(
        tmp_path / "other", format="pkl", classes=6, per_class=12, size=16, seed=1
    )
    changed = fs.FewShotSystem(system.config, load_splits(other, image_size=16))
    with pytest.raises(
        ValueError, match="holds other images or labels than the run was trained on"
    ):
        fs.run(changed, out, resume=True)
    log = io.StringIO()
    fs.run(system, out, resume=True, console=Console(file=log, width=200))
    assert "resumed after meta-step 3" in log.getvalue()
    assert read_rows(out / "metrics.csv") == read_rows(reference / "metrics.csv")
    assert (out / "best.msgpack").read_bytes() == (reference / "best.msgpack").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    for name in ("best_val_accuracy", "best_meta_step", "test_accuracy", "test_ci95"):
        assert summary[name] == expected[name], name
    assert not (out / fs.CHECKPOINTS).exists()


def test_resume_needs_a_checkpoint(system, tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint.*start it again"):
        fs.run(system, tmp_path, resume=True)
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.slow
def test_a_non_finite_initialisation_stops_the_run_and_keeps_the_last_checkpoint(
    system, tmp_path, monkeypatch
):
    """The guard names the quantity and the meta-step; nothing of that step is
    written and the checkpoint of the last score stays restorable."""
    from bmg.train.checkpoint import Checkpointer

    real_step = system.step

    def poisoned(train, rng):
        train, metrics = real_step(train, rng)
        if int(train["meta_state"].step) == 4:
            meta_state = train["meta_state"]
            params = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(np.nan), meta_state.meta_params)
            train = {**train, "meta_state": meta_state._replace(meta_params=params)}
        return train, metrics

    monkeypatch.setattr(system, "step", poisoned)
    with pytest.raises(
        host_loop.NonFiniteError,
        match=r"^the initialisation \(meta-parameters\) became non-finite \(NaN or infinite\) "
        r"at meta-step 4, so training stopped \(the checkpoint of meta-step 3 is kept\); lower "
        r"--meta.learning-rate",
    ):
        fs.run(system, tmp_path)
    assert len(read_rows(tmp_path / "metrics.csv")) == 1
    assert not (tmp_path / "summary.json").exists()
    with Checkpointer(tmp_path / fs.CHECKPOINTS) as checkpointer:
        assert checkpointer.latest_step() == 3
        state = host_loop.restore(checkpointer, system.host_loop())
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.train["meta_state"]))


class Recorder(fs.RunProgress):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_compile(self, step):
        self.events.append(("compile", step))

    def on_validate(self, step, done, total):
        self.events.append(("validate", step, done, total))

    def on_test(self, done, total):
        self.events.append(("test", done, total))


@pytest.mark.slow
def test_training_is_deterministic_the_seed_matters_and_progress_is_reported(bmg_run, system):
    """Two trainings of the compiled system give the same numbers; another seed changes the
    initialisation and the task stream; the callbacks see compile, scores and test batches."""
    recorder = Recorder()
    first = fs.train(system, callbacks=recorder)
    again = fs.train(system)
    assert first["summary"]["test_accuracy"] == again["summary"]["test_accuracy"]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    assert drop(first["rows"]) == drop(again["rows"])
    assert recorder.events == [
        ("compile", 1),
        ("validate", 3, 12, 12),
        ("validate", 6, 12, 12),
        ("test", 12, 30),
        ("test", 24, 30),
        ("test", 30, 30),
    ]
    other = fs.FewShotSystem(dataclasses.replace(system.config, seed=1), system.splits)
    w0, w1 = (s.init()["meta_state"].meta_params for s in (system, other))
    assert not all(map(np.array_equal, jax.tree.leaves(w0), jax.tree.leaves(w1)))
    tasks0, tasks1 = (s.sample("train", s.host_loop().init_rng(), 2) for s in (system, other))
    assert not np.array_equal(tasks0.support_images, tasks1.support_images)


def test_a_short_last_evaluation_batch_is_padded_not_compiled_again(bmg_run, system, monkeypatch):
    """30 test tasks in batches of 12: the last 6 are padded to 12 (one compiled shape), and
    their scores do not depend on what pads them."""
    params = system.init()["meta_state"].meta_params
    compiled, batch_sizes = system.evaluate_batch, []

    def evaluate_batch(params, tasks):
        batch_sizes.append(len(tasks.query_labels))
        return compiled(params, tasks)

    monkeypatch.setattr(system, "evaluate_batch", evaluate_batch)
    scores = system.evaluate(params, "test", 30, seed=5)
    assert scores.shape == (30,) and batch_sizes == [12, 12, 12]
    monkeypatch.undo()
    rng = np.random.default_rng(5)
    first, _, last = (system.sample("test", rng, n) for n in (12, 12, 6))
    padded = jax.tree.map(lambda a, b: np.concatenate([a, b[6:]]), last, first)
    _, accuracy = system.evaluate_batch(params, padded)
    np.testing.assert_array_equal(np.asarray(accuracy)[:6], scores[24:])
    np.testing.assert_array_equal(np.asarray(accuracy)[6:], scores[6:12])


def test_evaluation_takes_eval_inner_steps_hand_written_sgd_steps(data_dir):
    """A mutation survivor: validation and test adapt with `eval_inner_steps` support
    steps, not the training `inner_steps`: against three hand-written SGD steps."""
    splits = load_splits(data_dir, image_size=16, min_per_class=6)
    config = config_of(
        data_dir=data_dir, algo="maml", queries=5, inner_steps=1, eval_inner_steps=3,
        inner_learning_rate=0.5, filters=4, image_size=16, task_batching="vmap",
    )  # fmt: skip
    system = fs.FewShotSystem(config, splits)
    params = system.init()["meta_state"].meta_params
    tasks = system.sample("val", np.random.default_rng(3), 4)
    losses, accuracies = system.evaluate_batch(params, tasks)

    @functools.partial(jax.jit, static_argnums=0)
    def query_after(steps, task):
        """`steps` hand-written SGD steps (size 0.5) on the support loss, then the query set."""
        x = params
        for _ in range(steps):
            grads = jax.grad(
                lambda p: optax.softmax_cross_entropy_with_integer_labels(
                    system.model.apply(p, task.support_images), task.support_labels
                ).mean()
            )(x)
            x = jax.tree.map(lambda p, g: p - 0.5 * g, x, grads)
        logits = system.model.apply(x, task.query_images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, task.query_labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == task.query_labels)

    for i in range(4):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        loss, accuracy = query_after(3, task)
        np.testing.assert_allclose(losses[i], loss, rtol=2e-5)
        assert accuracies[i] == accuracy
        assert abs(query_after(1, task)[0] - loss) > 1e-3  # one step would give another number


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("meta.learning_rate", math.inf, r"meta.learning_rate must be a finite number"),
        ("meta.learning_rate", math.nan, "meta.learning_rate must be a finite number"),
        ("meta.learning_rate", 1e30, r"meta.learning_rate .* got 1e\+30"),
        ("meta.learning_rate", 0.0, "learning_rate"),
        ("inner_learning_rate", math.inf, r"inner_learning_rate must be .* in \(0, 10\]"),
        ("inner_learning_rate", 1e30, "inner_learning_rate"),
        ("inner_learning_rate", -0.01, "inner_learning_rate"),
        ("meta.target_step_size", math.nan, "target_step_size"),
        ("meta.target_step_size", True, "target_step_size"),
        ("meta.target_step_size", 11.0, r"meta.target_step_size must be .* in \(0, 10\]"),
        ("meta.inner_steps", 0, r"meta.inner_steps \(K\) must be an integer >= 1, got 0"),
        ("meta.bootstrap_steps", 0, r"meta.bootstrap_steps \(L\) must be an integer >= 1"),
        ("first_order", True, "first_order is first-order MAML's .* with meta.algo bmg"),
        ("image_size", 8, "image_size must be an integer >= 16, got 8"),
        ("matching", "cosine", "cosine"),
        ("meta_steps", 2**31, "meta_steps must be at most 2,147,483,647 .*int32 step counter"),
    ],
)  # fmt: skip
def test_bad_hyper_parameters_are_refused_at_start(field, value, message):
    """A bad value, directly or in the meta-learner's config (checked with the few-shot bounds
    and named by its path), fails with one sentence."""
    with pytest.raises(ValueError, match=message):
        if field.startswith("meta."):
            with checks.nested_checks_deferred():  # as the command line builds it
                meta = dataclasses.replace(fs.META, **{field[5:]: value})
            fs.FewShotConfig(meta=meta)
        else:
            fs.FewShotConfig(**{field: value})


def test_a_fixed_initialisation_is_refused():
    fixed = MetaConfig(algo="fixed", inner_steps=5, learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"^meta.algo must be mg \(MAML\) or bmg .*got 'fixed'"):
        fs.FewShotConfig(meta=fixed)


def test_images_smaller_than_the_network_needs_are_a_data_error(tmp_path):
    """8x8 images (`make-synthetic --size 8`) fail with one sentence when the
    system is built, before any run directory exists; with --image-size 16 they work."""
    data_dir = make_synthetic(tmp_path / "d", format="pkl", classes=5, per_class=6, size=8)
    config = fs.FewShotConfig(data_dir=data_dir, queries=1, filters=2)
    with pytest.raises(
        DataError, match=r"images are 8x8 px but .* needs at least 16x16; pass --image-size 16"
    ):
        fs.FewShotSystem(config)
    fs.FewShotSystem(dataclasses.replace(config, image_size=16))


def fake_run(path, *, test_tasks, inner_steps=5):
    path.mkdir()
    config = dataclasses.asdict(config_of(inner_steps=inner_steps, test_tasks=test_tasks))
    (path / "config.json").write_text(json.dumps({"config": config}, default=str))
    summary = dict(
        best_val_accuracy=0.5, best_meta_step=10, test_accuracy=0.6, test_ci95=0.01,
        test_tasks=test_tasks, seconds_per_meta_step=0.1,
    )  # fmt: skip
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.csv").write_text("meta_step,train_seconds,val_accuracy\n10,1.0,0.5\n")
    return path


def test_compare_runs_with_different_test_task_counts(tmp_path):
    """The test-task count is its own column, so the table has one header."""
    runs = [fake_run(tmp_path / "a", test_tasks=600), fake_run(tmp_path / "b", test_tasks=100)]
    table = markdown_table(report.comparison_rows(runs))
    lines = table.splitlines()
    assert "| test acc (95% CI) | test tasks |" in lines[0]
    assert lines[2].endswith("| 60.00 ± 1.00% | 600 | 0.100 |")
    assert lines[3].endswith("| 60.00 ± 1.00% | 100 | 0.100 |")


def test_run_label_names_inner_steps_not_k():
    config = config_of(algo="bmg", inner_steps=3, bootstrap_steps=4)
    assert report.run_label(config) == "bmg 3 inner steps L=4 5-way 1-shot seed 0"
    maml = config_of(algo="fomaml", seed=2)
    assert report.run_label(maml) == "fomaml 5 inner steps 5-way 1-shot seed 2"


@pytest.mark.slow
def test_the_fewshot_command_end_to_end(data_dir, system, tmp_path, monkeypatch):
    """`bmg fewshot tiny ...` writes a run directory through this module's `run`, and `bmg
    compare` reads it back. The flags give the config of the compiled `system` fixture, so the
    CLI is handed that system (its config checked equal) instead of compiling it again."""
    from bmg.experiments.cli import main

    def prepare(config):
        assert config == system.config
        return system

    monkeypatch.setattr(fs, "SYSTEM", dataclasses.replace(fs.SYSTEM, prepare=prepare))
    out = tmp_path / "run"
    main(["fewshot", "tiny", "--data-dir", str(data_dir), "--out", str(out), *SHORT_FLAGS])
    meta = json.loads((out / "config.json").read_text())["config"]["meta"]
    assert (meta["algo"], meta["inner_steps"], meta["bootstrap_steps"]) == ("bmg", 1, 2)
    assert (out / "summary.json").is_file()
    with pytest.raises(SystemExit, match="finished run"):
        main(["fewshot", "resume", str(out)])
    main(["compare", str(out), "--out", str(tmp_path / "compare")])
    assert "bmg 1 inner steps L=2" in (tmp_path / "compare" / "comparison.md").read_text()


@pytest.mark.docs  # an end-to-end run (a minute on a busy CPU): in the docs tier
def test_compiling_is_announced_and_timed(data_dir):
    """A log says what compiles before it does (the meta-step, the evaluation: minutes at 84x84)
    and how long it took; a second evaluation of the same batch compiles nothing."""
    tiny = dict(
        fs.PRESETS["tiny"][1], meta_steps=2, eval_every=2, val_tasks=4, test_tasks=4,
        eval_batch_size=4, filters=2, inner_steps=1, eval_inner_steps=1,
    )  # fmt: skip
    system = fs.FewShotSystem(config_of(data_dir=data_dir, algo="fomaml", **tiny))
    log = io.StringIO()
    with fs.RunProgress(system.config, Console(file=log, width=80)) as callbacks:
        fs.train(system, callbacks=callbacks)
    lines = log.getvalue().splitlines()
    assert lines[0] == (
        "compiling the meta-step (4 tasks, fomaml; once per process, can take minutes) ..."
    ), lines
    assert lines[2] == (
        "compiling the evaluation (4 tasks x 1 support step; once per process, can take "
        "minutes) ..."
    ), lines  # one line although wider than the console
    for i in (1, 3):
        assert lines[i].startswith("compiled in ") and lines[i].endswith(" s"), lines
    assert sum(line.startswith("compiling") for line in lines) == 2, lines  # test: no recompile


def _exits(argv, capsys) -> str:
    from bmg.experiments.cli import main

    with pytest.raises(SystemExit) as error:
        main(argv)
    text = " ".join((str(error.value.code) + capsys.readouterr().err).split())
    assert "Traceback" not in text
    return text


def test_a_run_the_memory_cannot_hold_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    """--image-size 4096 was killed by the out-of-memory killer without a word: the estimate
    (one task's activations and a batch of tasks) is compared with the memory available first,
    before any data is read or run directory made."""
    monkeypatch.setattr(memory, "available_memory", lambda: 16 * 2**30)
    out = tmp_path / "run"
    text = _exits(
        ["fewshot", "tiny", "--data-dir", str(tmp_path / "unread"), "--image-size", "4096",
         "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert text.startswith(
        "bmg fewshot: error: a few-shot run (one task's first-block activations kept for the "
        "meta-gradient at 4096x4096 px, 100.0 GiB, and a batch of sampled tasks' images in "
        "float32, 281.2 GiB) needs at least 381.2 GiB of memory, more than the 16.0 GiB "
        "available; lower --image-size (MiniImagenet is 84)"
    ), text
    assert text.endswith(".") and text.count(". ") == 0, text
    assert not out.exists()
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)  # the tiny config: 1.3 MiB
    with pytest.raises(ValueError, match="needs at least 1.3 MiB .* than the 1.0 MiB available"):
        fs.FewShotSystem(config_of(data_dir=tmp_path / "unread", algo="bmg", **SHORT))


def test_on_an_accelerator_the_activations_are_checked_against_its_free_memory(monkeypatch):
    """The activations live in the accelerator's memory (its pool's limit less what is in use),
    the sampled tasks in the host's."""

    class Device:
        platform, device_kind = "gpu", "NVIDIA H100"

        def memory_stats(self):
            return {"bytes_limit": 80 * 2**30, "bytes_in_use": 70 * 2**30}

    monkeypatch.setattr(fs.jax, "devices", lambda: [Device()])
    monkeypatch.setattr(memory, "available_memory", lambda: 2**40)  # the host: 1 TiB
    config = config_of(**dict(SHORT, filters=32))
    fs.check_memory(config, 256)  # 5 x (5 + 1) maps x 256^2 x 32 x 4 B = 240 MiB fit in 10 GiB
    with pytest.raises(ValueError, match=r"at 2048x2048 px, 15.0 GiB\) on NVIDIA H100 needs at "):
        fs.check_memory(config, 2048)
    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match=r"float32, 4.2 GiB\) needs at least 4.2 GiB .* 1.0 GiB"):
        fs.check_memory(config, 1024)  # 12 tasks x 30 images x 1024^2 x 3 x 4 B on the host


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--classes", "0"], "classes must be an integer >= 2, got 0."),
        (["--size", "100000"], "of 100000 x 100000 needs at least"),  # TiB: refused, no crash
    ],
)
def test_make_synthetic_refuses_bad_arguments_before_making_its_directory(
    flags, message, tmp_path, capsys
):
    from bmg.experiments.cli import main

    out = tmp_path / "data"
    with pytest.raises(SystemExit) as error:
        main(["fewshot", "make-synthetic", "--out", str(out), "--format", "pkl", *flags])
    assert message in str(error.value.code) and "Traceback" not in capsys.readouterr().err
    assert not out.exists()
