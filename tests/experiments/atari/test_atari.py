"""`bmg atari`: config and CLI errors, a tiny run on the real emulator through the CLI, its resume
(the learner state restored equals the saved one; counters continue), the same over two JAX
processes (jax.distributed over localhost) checkpointing together into one shared directory, the
missing-ale-py sentence, and human-normalised scores and their median / IQM.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bmg.envs import atari_scores
from bmg.experiments.atari import report as atari_report
from bmg.experiments.atari.system import SETTINGS, AtariExperimentConfig
from bmg.experiments.cli import main
from bmg.experiments.command import parse_run

TINY = [
    "--frames", "768", "--env.frame-size", "16", "--sebulba.envs-per-thread", "2",
    "--sebulba.rollout-length", "4", "--stacx.impala-channels", "2", "2",
    "--stacx.impala-blocks", "0", "--stacx.hidden-size", "8", "--stacx.meta-embedding-size", "2",
    "--log-interval", "2", "--checkpoint-interval", "4",
]  # fmt: skip
"""24 meta-steps of 2 games x 4 steps x 4 frames = 32 frames on 16 x 16 frames."""


def _one_sentence(text: str) -> None:
    assert text.endswith(".") and text.count(". ") == 0, text


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env.frame-size", "4"], "env.frame_size must be an integer >= 8, got 4."),
        (
            ["--env.sticky-action-prob", "1"],
            "env.sticky_action_prob must be a finite number in [0, 1)",
        ),
        (["--log-interval", "0"], "log_interval must be an integer >= 1, got 0."),
        (
            ["--frames", str(10**20)],
            "frames = 100,000,000,000,000,000,000 is 156,250,000,000,000,000 meta-steps of 640 "
            "frames (1 process(es)), more than the learner's int32 meta-step counter holds "
            "(2,147,483,647); run at most 1,374,389,534,080 frames.",
        ),
        (["--env.game", "Break out"], "env.game must be an ALE game name such as 'Breakout'"),
        (["--stacx.torso", "minatar"], "stacx.torso 'minatar' (no pooling) is for MinAtar"),
        (
            ["--algo", "bmg", "--l", "0"],
            "meta.bootstrap_steps (L) must be an integer >= 1, got 0.",
        ),
        (
            ["--checkpoint-dir", "shared/ckpt"],
            "checkpoint_dir must be an absolute path (or empty for RUN_DIR/checkpoints), got "
            "'shared/ckpt'.",
        ),
        (
            "--coordinator-address localhost:1 --num-processes 2 --process-id 0 "
            "--checkpoint-interval 5".split(),
            "checkpoint_dir must be set in a run of 2 processes with checkpoint_interval = 5: the "
            "same absolute path for every process, on a filesystem they all reach (or "
            "checkpoint_interval 0 for none).",
        ),
    ],
)
def test_bad_values_exit_with_one_sentence(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_run(["demo", *flags], SETTINGS, "bmg atari", "")
    text = str(exit_.value.code)
    assert text.startswith("bmg atari: error: ") and message in text, text
    _one_sentence(text)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--coordinator-address", "nonsense", "--num-processes", "2"],
            "coordinator_address must be host:port (process 0's host and a port in 1-65535, "
            "such as 10.0.0.1:8476) or empty for a single process, got 'nonsense'.",
        ),
        (["--coordinator-address", ":8476"], "coordinator_address must be host:port"),
        (["--coordinator-address", "host:0"], "coordinator_address must be host:port"),
        (["--coordinator-address", "host:port"], "coordinator_address must be host:port"),
        (
            ["--num-processes", "2"],
            "num_processes = 2 needs a coordinator: set coordinator_address (or "
            "$JAX_COORDINATOR_ADDRESS) to process 0's host:port, since without one the run is a "
            "single process.",
        ),
        (["--process-id", "1"], "process_id = 1 needs a coordinator: set coordinator_address"),
        (
            ["--coordinator-address", "[::1]:8476", "--num-processes", "2", "--process-id", "2"],
            "process_id must be in [0, num_processes = 2), got 2.",
        ),
    ],
)
def test_multi_process_flags_name_one_run(flags, message, capsys, monkeypatch):
    """A coordinator of another form than host:port (JAX would fail with an IndexError), or a
    process count or id without a coordinator (the run would be one process), stop at parsing."""
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        parse_run(["demo", *flags], SETTINGS, "bmg atari", "")
    text = str(exit_.value.code)
    assert text.startswith("bmg atari: error: ") and message in text, text
    _one_sentence(text)


@pytest.mark.parametrize("name, value", [("JAX_NUM_PROCESSES", "2"), ("JAX_PROCESS_ID", "1")])
def test_a_process_count_in_the_environment_without_a_coordinator_is_refused(
    name, value, monkeypatch
):
    """$JAX_NUM_PROCESSES = 2 (or a process id) without any coordinator would run one process
    silently: refused in one sentence, as the flags are."""
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as error:
        AtariExperimentConfig()
    assert str(error.value) == (
        f"${name} = {value} needs a coordinator: set $JAX_COORDINATOR_ADDRESS (or "
        "coordinator_address) to process 0's host:port, since without one the run is a single "
        "process."
    )
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:8476")
    AtariExperimentConfig()  # with one, the environment names a run of several processes


def test_multi_process_fields_from_the_environment(monkeypatch):
    """$JAX_COORDINATOR_ADDRESS is a coordinator too (so --num-processes is accepted with it), and
    its form is checked before JAX is asked to join it."""
    from bmg.experiments.atari.system import prepare

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:8476")
    config = AtariExperimentConfig(num_processes=2, process_id=1, checkpoint_interval=0)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "nonsense")
    pytest.importorskip("ale_py")
    with pytest.raises(ValueError, match=r"^\$JAX_COORDINATOR_ADDRESS must be host:port .* got"):
        prepare(config)


@pytest.mark.parametrize(
    "flag, message",
    [
        (
            ["--stacx.num-envs", "64"],
            "bmg atari: error: --stacx.num-envs has no effect (the Sebulba layout sets the "
            "learner's batch B = sebulba.rollouts_per_batch x sebulba.envs_per_thread = 16: set "
            "those instead); drop it.",
        ),
        (
            ["--stacx.rollout-length=3"],
            "bmg atari: error: --stacx.rollout-length has no effect (the Sebulba layout sets the "
            "learner's T = sebulba.rollout_length = 10: set that instead); drop it.",
        ),
    ],
)
def test_the_learner_batch_flags_the_layout_overrides_are_refused(flag, message, tmp_path):
    """The layout decides the learner's B and T: a --stacx.num-envs or --stacx.rollout-length
    would be overwritten without a word, so they are refused, pointing at the sebulba flags."""
    with pytest.raises(SystemExit) as exit_:
        main(["atari", "demo", *flag, "--out", str(tmp_path / "run")])
    assert str(exit_.value.code) == message
    assert not (tmp_path / "run").exists()


def test_checkpoint_dir_rule_after_joining_the_processes(tmp_path):
    """The rule `prepare` applies once the process count is known (e.g. from $JAX_NUM_PROCESSES):
    several processes that checkpoint need one absolute checkpoint_dir; one process, or no
    checkpoints, need none; where the checkpoints go."""
    from bmg.experiments.atari.system import check_checkpoint_dir, checkpoint_directory

    config = AtariExperimentConfig(checkpoint_interval=3)
    with pytest.raises(ValueError) as error:
        check_checkpoint_dir(config, 4)
    assert str(error.value).startswith(
        "checkpoint_dir must be set in a run of 4 processes with checkpoint_interval = 3:"
    )
    _one_sentence(str(error.value))
    check_checkpoint_dir(config, 1)
    check_checkpoint_dir(AtariExperimentConfig(checkpoint_interval=0), 4)
    shared = AtariExperimentConfig(checkpoint_interval=3, checkpoint_dir=str(tmp_path / "ckpt"))
    check_checkpoint_dir(shared, 4)
    assert checkpoint_directory(shared, tmp_path / "run") == tmp_path / "ckpt"
    assert checkpoint_directory(config, tmp_path / "run") == tmp_path / "run" / "checkpoints"
    assert checkpoint_directory(AtariExperimentConfig(checkpoint_interval=0), tmp_path) is None
    (tmp_path / "a-file").touch()
    with pytest.raises(ValueError, match="checkpoint_dir '.*a-file' is a file; name a directory."):
        AtariExperimentConfig(checkpoint_dir=str(tmp_path / "a-file"))


def test_a_new_run_refuses_a_checkpoint_dir_in_use(tmp_path):
    """A new run never writes into another run's checkpoints (its steps would clash and a later
    resume could restore the other run): a checkpoint_dir holding anything stops it before the
    learner is built."""
    from bmg.experiments.atari.system import Prepared, run

    used = tmp_path / "shared"
    (used / "4").mkdir(parents=True)
    config = AtariExperimentConfig(checkpoint_interval=4, checkpoint_dir=str(used))
    with pytest.raises(ValueError) as error:
        run(Prepared(config, 2), tmp_path / "run", resume=False, console=None)
    assert str(error.value) == (
        f"checkpoint_dir {used} already holds something (another run's checkpoints?); a new run "
        "needs an empty or missing directory: choose another or delete it."
    )


def test_the_cli_refuses_a_used_checkpoint_dir_before_writing_anything(tmp_path):
    used, out = tmp_path / "shared", tmp_path / "run"
    (used / "4").mkdir(parents=True)
    argv = ["atari", "demo", "--checkpoint-dir", str(used), "--out", str(out)]
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert str(error.value) == (
        f"bmg atari: error: checkpoint_dir {used} already holds something (another run's "
        "checkpoints?); a new run needs an empty or missing directory: choose another or delete it."
    )
    assert not (out / "config.json").exists()


def test_presets_parse_and_count_frames():
    run = parse_run(["paper", "--algo", "bmg", "--l", "2"], SETTINGS, "", "")
    config = run.config
    layout = config.sebulba
    assert (layout.actor_devices, layout.learner_devices) == (2, 6)
    assert layout.num_actor_threads * layout.envs_per_thread == 48 and config.frames == 200_000_000
    # the learner's batch is the layout's; BMG L = 2 learns from K + L - 1 = 2 batches
    assert (layout.batch_size, layout.rollout_length) == (24, 20)
    assert config.frames_per_meta_step() == 2 * 24 * 20 * 4
    assert config.num_meta_steps() == -(-200_000_000 // (2 * 24 * 20 * 4))
    assert config.algo == "bmg" and config.meta.continue_from == "target"
    demo = parse_run(["demo"], SETTINGS, "", "").config
    assert demo.algo == "impala" and demo.stacx.torso == "impala" and demo.frames == 200_000


def test_missing_ale_py_is_one_sentence_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py now raises ImportError
    monkeypatch.setitem(sys.modules, "ale_py.vector_env", None)
    with pytest.raises(SystemExit) as exit_:
        main(["atari", "demo", "--out", str(tmp_path / "run")])
    assert exit_.value.code == (
        "bmg atari: error: the Atari system needs ale-py: pip install 'bmg[atari]'"
    )
    assert not (tmp_path / "run").exists()  # checked before the run directory is made


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_tiny_run_through_the_cli_and_its_resume(tmp_path, monkeypatch, capsys):
    """Real Breakout, 24 meta-steps. Interrupted (Ctrl-C) right after its first checkpoint
    (meta-step 4), the run says how to continue; `resume` restores exactly the learner state
    that was saved (every leaf, PRNG key included), continues the counters from meta-step 4
    and finishes the run directory: metrics rows every 2 meta-steps up to 24, frames = meta-steps
    x 32, summary, trace, plots; the checkpoints are dropped at the end."""
    pytest.importorskip("ale_py")
    from bmg.train import checkpoint
    from bmg.train.sebulba import Sebulba, to_host

    out = tmp_path / "run"
    saved, started = {}, {}
    save = checkpoint.Checkpointer.save

    def save_then_interrupt(self, step, state, meta=None):
        save(self, step, state, meta)
        saved.update(step=step, state=copy.deepcopy(to_host(state)), meta=meta)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_interrupt)
    with pytest.raises(SystemExit) as exit_:
        main(["atari", "demo", *TINY, "--out", str(out)])
    assert f"continue with `bmg atari resume {out}`" in str(exit_.value.code)
    assert saved["step"] == 4 and saved["meta"]["meta_steps"] == 4
    assert saved["meta"]["frames"] == 4 * 32
    monkeypatch.setattr(checkpoint.Checkpointer, "save", save)

    run = Sebulba.run

    def recording_run(self, num_updates, *, state=None, **kwargs):
        started.update(state=to_host(state), updates=self.stats.updates, total=num_updates)
        return run(self, num_updates, state=state, **kwargs)

    monkeypatch.setattr(Sebulba, "run", recording_run)
    main(["atari", "resume", str(out)])
    assert (started["updates"], started["total"]) == (4, 24)
    flat_saved, flat_restored = (
        [np.asarray(x) for x in _leaves(tree)] for tree in (saved["state"], started["state"])
    )
    assert len(flat_saved) == len(flat_restored) > 10
    for a, b in zip(flat_saved, flat_restored, strict=True):
        np.testing.assert_array_equal(a, b)
    rows = _rows(out / "metrics.csv")
    assert [int(r["meta_steps"]) for r in rows] == list(range(2, 25, 2))
    assert [int(r["frames"]) for r in rows] == [32 * int(r["meta_steps"]) for r in rows]
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert 0.98 < float(rows[-1]["head0/gamma"]) < 1  # sigma(4.6), fixed hyper-parameters
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta_steps"] == 24 and summary["frames_per_seed"] == 24 * 32
    assert summary["protocol"]["sticky_action_prob"] == 0.25
    for name in ("trace.npz", "episode_return.png", "meta_parameters.png", "config.json"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").iterdir())
    assert not (out / "checkpoints").exists()
    record = json.loads((out / "config.json").read_text())
    assert record["experiment"] == "atari" and len(record["resumed"]) == 1
    trace = np.load(out / "trace.npz")  # its own layout: every metrics column over the rows
    assert set(trace.files) == set(rows[0]) and {trace[k].shape for k in trace.files} == {(12,)}
    assert np.all(np.diff(trace["episodes"]) >= 0)  # cumulative
    capsys.readouterr()
    main(["compare", str(out)])  # the Atari report, from the run directory alone
    text = capsys.readouterr().out
    assert "human-normalised, last 10%" in text and "policy lag" in text


def _leaves(tree):
    import jax

    return [
        jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        for x in jax.tree.leaves(tree)
    ]


PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, pickle, sys
    # The command joins the run itself (from $JAX_COORDINATOR_ADDRESS & co., in `prepare`): no
    # import below may start JAX's backend first.
    import jax
    import numpy as np
    record, phase, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    from bmg.train import checkpoint
    from bmg.experiments.cli import main
    from bmg.train.sebulba import Sebulba, to_host

    def leaves(tree):
        return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key) else x) for x in jax.tree.leaves(to_host(tree))]

    out = {}
    if phase == "first":  # Ctrl-C right after the first checkpoint, on both processes
        save = checkpoint.Checkpointer.save

        def save_then_interrupt(self, step, state, meta=None):
            save(self, step, state, meta)
            out.update(step=step, state=leaves(state), meta=meta,
                       global_arrays=not jax.tree.leaves(state)[0].is_fully_addressable)
            raise KeyboardInterrupt

        checkpoint.Checkpointer.save = save_then_interrupt
    else:
        run = Sebulba.run

        def recording_run(self, num_updates, *, state=None, **kwargs):
            out.update(state=leaves(state), updates=self.stats.updates, total=num_updates)
            return run(self, num_updates, state=state, **kwargs)

        Sebulba.run = recording_run
    try:
        main(argv)
    except SystemExit as error:
        out["exit"] = str(error.code)
    out["processes"] = jax.process_count()
    pickle.dump(out, open(record, "wb"))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path, phase: str, argvs: list[list[str]]) -> list[dict]:
    """Run `main(argv)` in two JAX processes joined over localhost (one CPU device each, through
    $JAX_COORDINATOR_ADDRESS as on a cluster); each returns what PROCESS_SCRIPT recorded."""
    import pickle

    address = f"localhost:{_free_port()}"
    children = []
    for process, argv in enumerate(argvs):
        env = {**os.environ, "JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2"}
        env["JAX_PROCESS_ID"] = str(process)
        env["XLA_FLAGS"] = " ".join(
            flag
            for flag in env.get("XLA_FLAGS", "").split()
            if "xla_force_host_platform_device_count" not in flag
        )
        record = str(tmp_path / f"{phase}{process}.pkl")
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", PROCESS_SCRIPT, record, phase, json.dumps(argv)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [child.communicate(timeout=900)[0] for child in children]
    for child, output in zip(children, outputs, strict=True):
        assert child.returncode == 0, output[-3000:]
    records = []
    for process in range(2):
        with open(tmp_path / f"{phase}{process}.pkl", "rb") as f:
            records.append(pickle.load(f))
    return records


@pytest.mark.slow
@pytest.mark.heavy  # several processes: in `make test-docs`
def test_two_processes_checkpoint_together_and_resume(tmp_path):
    """Two JAX processes (1 CPU device each: the learner's mesh spans both, the parameters are
    replicated over the two processes), each with its own run directory and games, one shared
    checkpoint_dir; 12 meta-steps of 2 x 32 frames. Both are interrupted right after the first
    checkpoint (meta-step 4), which orbax wrote from the global arrays together; each `resume`
    restores exactly the state that was saved (every leaf, PRNG key included, the same on both
    processes), continues from meta-step 4 with its OWN counters and rows (kept in the shared
    checkpoint's JSON by process: no row lost, repeated or taken from the other process) and
    finishes; the shared checkpoints are deleted at the end."""
    pytest.importorskip("ale_py")
    shared = tmp_path / "shared"
    runs = [tmp_path / "run0", tmp_path / "run1"]
    flags = [*TINY, "--checkpoint-dir", str(shared)]
    first = _two_processes(
        tmp_path, "first", [["atari", "demo", *flags, "--out", str(run)] for run in runs]
    )
    for record in first:
        assert record["processes"] == 2 and record["global_arrays"], record.get("exit")
        assert record["step"] == 4 and record["meta"]["meta_steps"] == 4
        assert record["meta"]["frames"] == 4 * 32  # this process's share of 4 x 64 frames
        assert [row["meta_steps"] for row in record["meta"]["rows"]] == [2, 4]
    assert (shared / "4").is_dir() and not (runs[0] / "checkpoints").exists()
    own_seconds = [[row["seconds"] for row in r["meta"]["rows"]] for r in first]
    assert own_seconds[0] != own_seconds[1]  # the rows tell the processes apart
    resumed = _two_processes(tmp_path, "resume", [["atari", "resume", str(run)] for run in runs])
    assert len(first[0]["state"]) > 10
    for saved, restored in zip(first, resumed, strict=True):
        assert "exit" not in restored, restored["exit"]
        assert (restored["updates"], restored["total"]) == (4, 12)
        for a, b, c in zip(first[0]["state"], saved["state"], restored["state"], strict=True):
            np.testing.assert_array_equal(a, b)  # replicated: the same on both processes
            np.testing.assert_array_equal(b, c)
    for run, seconds in zip(runs, own_seconds, strict=True):
        rows = _rows(run / "metrics.csv")
        assert [int(r["meta_steps"]) for r in rows] == list(range(2, 13, 2))
        assert [int(r["frames"]) for r in rows] == [64 * int(r["meta_steps"]) for r in rows]
        assert [float(r["seconds"]) for r in rows[:2]] == pytest.approx(seconds, rel=1e-9)
        assert float(rows[2]["seconds"]) > seconds[-1]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["processes"] == 2 and summary["meta_steps"] == 12
        assert summary["frames_per_seed"] == 12 * 64
    assert not shared.exists()


# --- human-normalised scores ---------------------------------------------------------------------


def test_reference_table_holds_the_published_scores():
    """57 games; entries as published (Mnih et al. 2015 random scores, the later human scores
    of van Hasselt et al. 2016 / Wang et al. 2016 used by Badia et al. 2020)."""
    table = atari_scores.REFERENCE
    assert len(table) == 57
    assert table["alien"] == (227.8, 7127.7)
    assert table["breakout"] == (1.7, 30.5)
    assert table["pong"] == (-20.7, 14.6)
    assert table["montezuma_revenge"] == (0.0, 4753.3)
    assert table["space_invaders"] == (148.0, 1668.7)
    assert atari_scores.reference("MsPacman") == (307.3, 6951.6)
    assert atari_scores.reference("UpNDown") == (533.4, 11693.2)
    assert all(human > random for random, human in table.values())
    ale = pytest.importorskip("ale_py")
    assert set(table) <= set(ale.roms.get_all_rom_ids())  # every key is an ALE ROM id


# Badia et al., "Agent57: Outperforming the Atari Human Benchmark", ICML 2020, the appendix's
# table of scores: its "average human" and "random" columns, in the paper's order (human first),
# typed in for this test. DeepMind's DQN Zoo (atari_data.py) differs in one entry: Video
# Pinball's random score there is 16,256.9.
AGENT57_HUMAN_RANDOM = """
alien 7127.70 227.80
amidar 1719.50 5.80
assault 742.00 222.40
asterix 8503.30 210.00
asteroids 47388.70 719.10
atlantis 29028.10 12850.00
bank_heist 753.10 14.20
battle_zone 37187.50 2360.00
beam_rider 16926.50 363.90
berzerk 2630.40 123.70
bowling 160.70 23.10
boxing 12.10 0.10
breakout 30.50 1.70
centipede 12017.00 2090.90
chopper_command 7387.80 811.00
crazy_climber 35829.40 10780.50
defender 18688.90 2874.50
demon_attack 1971.00 152.10
double_dunk -16.40 -18.60
enduro 860.50 0.00
fishing_derby -38.70 -91.70
freeway 29.60 0.00
frostbite 4334.70 65.20
gopher 2412.50 257.60
gravitar 3351.40 173.00
hero 30826.40 1027.00
ice_hockey 0.90 -11.20
jamesbond 302.80 29.00
kangaroo 3035.00 52.00
krull 2665.50 1598.00
kung_fu_master 22736.30 258.50
montezuma_revenge 4753.30 0.00
ms_pacman 6951.60 307.30
name_this_game 8049.00 2292.30
phoenix 7242.60 761.40
pitfall 6463.70 -229.40
pong 14.60 -20.70
private_eye 69571.30 24.90
qbert 13455.00 163.90
riverraid 17118.00 1338.50
road_runner 7845.00 11.50
robotank 11.90 2.20
seaquest 42054.70 68.40
skiing -4336.90 -17098.10
solaris 12326.70 1236.30
space_invaders 1668.70 148.00
star_gunner 10250.00 664.00
surround 6.50 -10.00
tennis -8.30 -23.80
time_pilot 5229.20 3568.00
tutankham 167.60 11.40
up_n_down 11693.20 533.40
venture 1187.50 0.00
video_pinball 17667.90 0.00
wizard_of_wor 4756.50 563.50
yars_revenge 54576.90 3092.90
zaxxon 9173.30 32.50
"""


def test_every_reference_score_is_agent57s_table():
    """Every game's (random, human) pair equals the Agent57 appendix table (typed in above,
    independently of the module), Video Pinball's random score 0 included; so do the human-
    normalised scores."""
    agent57 = {}
    for row in AGENT57_HUMAN_RANDOM.strip().splitlines():
        game, human, random = row.split()
        agent57[game] = (float(random), float(human))
    assert len(agent57) == 57
    table = atari_scores.REFERENCE
    assert set(table) == set(agent57)
    differ = {game: (table[game], paper) for game, paper in agent57.items() if table[game] != paper}
    assert not differ, differ  # game: (bmg's, the paper's)
    assert atari_scores.reference("VideoPinball") == (0.0, 17667.9)
    assert atari_scores.human_normalized("VideoPinball", 17667.9 / 2) == pytest.approx(0.5)
    assert atari_scores.human_normalized("VideoPinball", 0.0) == 0.0


def test_human_normalized_score():
    assert atari_scores.human_normalized("Breakout", 1.7) == 0
    assert atari_scores.human_normalized("Breakout", 30.5) == pytest.approx(1)
    assert atari_scores.human_normalized("Pong", 21) == pytest.approx((21 + 20.7) / 35.3)
    with pytest.raises(ValueError, match="one of the 57 games") as error:
        atari_scores.human_normalized("Tetris", 1)
    _one_sentence(str(error.value))


def test_median_and_iqm_over_games_by_hand():
    """Eight games, one run each, scores chosen to normalise to 0, 0.1, ..., 0.7 (and a second
    run). IQM = the mean of the middle half of the sorted normalised scores (25% trimmed at
    each end)."""
    pytest.importorskip("rliable")
    games = ["alien", "amidar", "assault", "asterix", "asteroids", "atlantis", "boxing", "pong"]
    targets = np.arange(8) / 10
    scores = {}
    for game, target in zip(games, targets, strict=True):
        random, human = atari_scores.REFERENCE[game]
        scores[game] = random + target * (human - random)
    result = atari_report.aggregate(scores)
    assert result["games"] == 8 and result["runs"] == 1
    assert result["median"] == pytest.approx(0.35)
    assert result["iqm"] == pytest.approx(np.mean([0.2, 0.3, 0.4, 0.5]))  # middle 4 of 8
    low, high = result["intervals"]["iqm"]  # one run per game: no run to resample
    assert low == high == pytest.approx(result["iqm"])
    # two runs per game: IQM over the 16 runs x games scores, median of the per-game means
    random, human = atari_scores.REFERENCE["pong"]
    two = {g: [s, s] for g, s in scores.items()}
    two["pong"] = [random + 0.7 * (human - random), random + 2.7 * (human - random)]
    result = atari_report.aggregate(two)
    middle = sorted([*targets, *targets[:7], 2.7])[4:12]
    assert result["iqm"] == pytest.approx(np.mean(middle))
    assert result["median"] == pytest.approx(np.median([*targets[:7], 1.7]))
    with pytest.raises(ValueError, match="same number of runs"):
        atari_report.aggregate({"pong": [1, 2], "alien": [3]})


def test_the_atari_report_names_a_run_file_of_the_wrong_shape(tmp_path):
    """`bmg compare` of an Atari run reads config.json, summary.json and its own trace layout
    (columns over the rows): a missing summary entry or a trace of MinAtar's [seeds, steps]
    layout is one sentence naming the file."""
    from bmg.train.rundir import save_npz, write_json

    run = tmp_path / "run"
    run.mkdir()
    config = {
        "env": {"game": "Pong"},
        "meta": {"algo": "bmg", "inner_steps": 1, "bootstrap_steps": 2},
    }
    write_json(run / "config.json", {"experiment": "atari", "config": {**config, "stacx": {}}})
    stat = {"mean": 1.0, "se": None}
    summary = {
        "game": "Pong",
        "frames_per_seed": 64,
        "return_first_10pct": stat,
        "return_last_10pct": stat,
        "human_normalized_last_10pct": 0.5,
        "head0/gamma": stat,
        "frames_per_second": 10.0,
        "lag_mean": 0.5,
    }
    write_json(run / "summary.json", summary)
    columns = {name: np.arange(3.0) for name in atari_report.TRACE}
    save_npz(run / "trace.npz", **columns)
    with pytest.raises(ValueError, match="config.json.*stacx.target_step"):
        atari_report.check_run(run)
    stacx = {"target_step": "rmsprop", "matching": "kl"}
    write_json(run / "config.json", {"experiment": "atari", "config": {**config, "stacx": stacx}})
    assert atari_report.run_label({**config, "stacx": stacx}) == "Pong bmg K=1 L=2 rmsprop kl"
    atari_report.check_run(run)
    assert atari_report.comparison_rows([run])[0]["human-normalised, last 10%"] == "0.500"
    save_npz(run / "trace.npz", **{name: v[None] for name, v in columns.items()})
    with pytest.raises(ValueError) as error:
        atari_report.check_run(run)
    assert str(error.value) == (
        f"{run / 'trace.npz'} is not an Atari run's trace: frames, episodes, episode_return, "
        "episode_return_sum must be arrays over the metrics rows."
    )
    write_json(run / "summary.json", {k: v for k, v in summary.items() if k != "lag_mean"})
    with pytest.raises(ValueError, match="summary.json.*lag_mean"):
        atari_report.check_run(run)
