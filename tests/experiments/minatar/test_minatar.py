"""`bmg minatar`: the configuration's validation (one sentence) and sizes, a tiny CLI run that
is interrupted and resumed to the same files, and one seed's batch split over 4 forced host
devices giving the numbers of 1 device.

Lifetimes compile programs (tens of seconds on 2 shared cores): those tests are slow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bmg.agents.stacx import StacxConfig
from bmg.checks import nested_checks_deferred
from bmg.core.config import MetaConfig
from bmg.experiments.cli import main
from bmg.experiments.minatar import system as mn
from bmg.train.anakin import Anakin
from bmg.train.lifetime import LifetimeConfig

TINY_STACX = StacxConfig(
    num_envs=4, rollout_length=5, minatar_channels=2, hidden_size=8, meta_embedding_size=2
)
TINY = [
    "--steps", "120", "--seeds", "2", "--chunk-steps", "40", "--algo", "bmg", "--l", "2",
    "--stacx.num-envs", "4", "--stacx.rollout-length", "5", "--stacx.minatar-channels", "2",
    "--stacx.hidden-size", "8", "--stacx.meta-embedding-size", "2",
]  # fmt: skip


# --- Configuration ----------------------------------------------------------------------------

DEFAULT = mn.MinAtarConfig()


def config_with(path: str, value) -> mn.MinAtarConfig:
    """The default config with one field set; a nested config's field (``meta.learning_rate``) is
    set with the nested config's checks deferred, as the command line builds it, so that the
    system's config checks it and names its path."""
    name, _, field = path.partition(".")
    if field:
        with nested_checks_deferred():
            value = dataclasses.replace(getattr(DEFAULT, name), **{field: value})
    return mn.MinAtarConfig(**{name: value})


def selected(algo: str, meta: dict | None = None, **fields) -> mn.MinAtarConfig:
    """The default preset's config as `--algo ALGO` makes it, then the ``meta`` fields and the
    other fields set (as flags after ``--algo`` set them)."""
    config = mn.stacx_select(mn.MinAtarConfig(), {"algo": algo})
    if meta:
        fields["meta"] = dataclasses.replace(config.meta, **meta)
    return dataclasses.replace(config, **fields)


def lifetime(**fields) -> LifetimeConfig:
    """The default lifetime (3 seeds, chunks of 250k frames) with ``fields`` set."""
    return dataclasses.replace(DEFAULT.lifetime, **fields)


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("env", "Pong-MinAtar", "env must be one of Asterix-MinAtar, "),
        ("meta.algo", "stacx", "meta.algo must be one of fixed, mg, bmg, got 'stacx'."),
        ("sticky_action_prob", 1.5, "sticky_action_prob must be a number in [0, 1], got 1.5."),
        ("sticky_action_prob", 1.0, "sticky_action_prob must be below 1 for a run"),
        ("lifetime.steps", 0, "lifetime.steps must be"),
        ("lifetime.seeds", 0, "lifetime.seeds must be"),
        (
            "lifetime.steps",
            3 * 10**9,
            "more than a seed's int32 frame counter holds (2,147,483,647).",
        ),
        ("batch_devices", 3, "batch_devices must divide stacx.num_envs = 32, got 3."),
        ("meta.learning_rate", -1.0, "meta.learning_rate must be"),
        ("meta.inner_steps", 0, "meta.inner_steps (K) must be"),
        ("meta.continue_from", "somewhere", "meta.continue_from must be"),
        (
            "meta",
            MetaConfig(algo="fixed", inner_steps=2),
            "meta.inner_steps must be 1 with meta.algo fixed (impala takes one learner update",
        ),
    ],
)
def test_bad_configuration_is_one_sentence_naming_the_field(path, value, message):
    with pytest.raises(ValueError) as error:
        config_with(path, value)
    text = str(error.value)
    assert text.startswith(message) or message in text, text
    assert text.count(". ") == 0 and text.endswith("."), text  # one sentence


def test_a_bad_algo_is_one_sentence_naming_the_choices(tmp_path):
    with pytest.raises(SystemExit) as error:
        main(["minatar", "demo", "--algo", "mg", "--out", str(tmp_path / "run")])
    text = str(error.value.code)
    assert text == "bmg minatar: error: --algo must be one of impala, stacx, bmg; got 'mg'.", text
    assert not (tmp_path / "run").exists()


def test_a_meta_step_longer_than_the_lifetime_and_sgd_targets_across_devices_are_refused():
    with pytest.raises(ValueError, match=r"^one meta-step takes 2,560 frames \(4 batches of 32 x"):
        selected("bmg", meta=dict(bootstrap_steps=4), lifetime=lifetime(steps=1000))
    with pytest.raises(ValueError, match="target_step must be 'rmsprop' when batch_devices > 1"):
        mn.MinAtarConfig(batch_devices=2, stacx=StacxConfig(target_step="sgd"))


def test_frames_per_meta_step_and_meta_configs():
    """impala and stacx: one batch (B x T frames) per meta-step; bmg: K + L - 1 batches, the
    target's included (continue_from="target": every batch trains the learner)."""
    impala = selected("impala", lifetime=lifetime(steps=10_000, chunk_steps=1_000))
    assert impala.algo == "impala" and impala.meta.algo == "fixed"
    assert impala.steps_per_meta_step == 640
    assert impala.meta_steps_per_chunk == 2 and impala.num_chunks == 8
    assert impala.total_env_steps == 10_240
    stacx = selected("stacx")
    assert stacx.algo == "stacx" and stacx.meta.algo == "mg" and stacx.meta.inner_steps == 1
    assert mn.MinAtarConfig().algo == "stacx"  # the presets' method
    bmg = selected("bmg", meta=dict(bootstrap_steps=4))
    meta = bmg.meta
    assert (bmg.algo, meta.algo, meta.inner_steps, meta.bootstrap_steps) == ("bmg", "bmg", 1, 4)
    assert meta.continue_from == "target" and bmg.steps_per_meta_step == 4 * 640
    for name, (_, overrides) in mn.PRESETS.items():
        assert mn.MinAtarConfig(**overrides).lifetime.steps >= 1, name
    assert mn.MinAtarConfig(**mn.PRESETS["paper"][1]).lifetime.steps == 10_000_000


def test_protocol_defaults_are_minatars():
    config = mn.MinAtarConfig()
    assert config.sticky_action_prob == 0.1 and config.full_action_set
    env, params = mn.make_env(config)
    assert env.action_space(params).n == 6


# --- A run and its resume ---------------------------------------------------------------------


@pytest.mark.parametrize("drop_digest", [False, True])
def test_a_resume_refuses_an_edited_config(drop_digest, tmp_path, capsys):
    """A run directory's config.json records its config's digest when the run starts: edited
    afterwards, with or without the digest removed, it is not the run that started, and the
    resume refuses it with one sentence (nothing runs)."""
    from bmg.train import rundir
    from bmg.train.rundir import config_digest

    run = tmp_path / "run"
    run.mkdir()
    config = selected("impala", stacx=TINY_STACX)
    digest = config_digest(rundir.to_json(config))
    rundir.write_config(run, config, experiment="minatar", config_digest=digest)
    record = json.loads((run / "config.json").read_text())
    record["config"]["stacx"]["learning_rate"] *= 10
    if drop_digest:
        del record["config_digest"]
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as error:
        main(["minatar", "resume", str(run)])
    expected = "has no config_digest, so nothing shows" if drop_digest else "was edited after"
    assert str(error.value.code).startswith(f"bmg minatar: error: {run / 'config.json'} ")
    assert expected in str(error.value.code)
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.json"]


@pytest.mark.slow
def test_an_interrupted_tiny_run_resumes_to_the_same_files(tmp_path, monkeypatch, capsys):
    """A tiny BMG (L = 2) run of 3 chunks; a copy of its run directory taken just after chunk 2
    was saved (what a process killed at that moment leaves) resumed with `bmg minatar resume
    DIR`: metrics.csv and trace.npz are bit-identical to the uninterrupted run's."""
    import shutil

    straight, out = tmp_path / "straight", tmp_path / "run"
    save = Anakin.save

    def copy_after_saving_chunk_2(self, state):
        save(self, state)
        if state.chunks_done == 2:
            shutil.copytree(straight, out)

    monkeypatch.setattr(Anakin, "save", copy_after_saving_chunk_2)
    main(["minatar", "demo", *TINY, "--out", str(straight)])
    monkeypatch.undo()
    for name in ("config.json", "summary.json", "trace.npz", "metrics.csv"):
        assert (straight / name).exists(), name
    assert not (out / "summary.json").exists()  # a run cut short
    assert (straight / "episode_return.png").exists()
    assert (straight / "meta_parameters.png").exists()
    header = (straight / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "episode_return" in header and "head2/alpha" in header and "head0/gamma" in header
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["frames_per_seed"] == 120 and summary["seeds"] == 2
    main(["compare", str(straight), "--out", str(tmp_path / "compare")])  # MinAtar's own report
    table = (tmp_path / "compare" / "comparison.md").read_text()
    assert "Breakout bmg K=1 L=2" in table and "return, last 10%" in table
    assert (tmp_path / "compare" / "episode_return.png").exists()

    capsys.readouterr()
    main(["minatar", "resume", str(out)])
    assert "chunk 3/3" in " ".join(capsys.readouterr().out.split())
    assert (out / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    resumed, uninterrupted = np.load(out / "trace.npz"), np.load(straight / "trace.npz")
    assert sorted(resumed.files) == sorted(uninterrupted.files)
    for name in resumed.files:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)


# --- One seed's batch over devices ------------------------------------------------------------

DEVICES_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    import jax, numpy as np
    from bmg.agents.stacx import StacxConfig
    from bmg.experiments.minatar import system as mn
    from bmg.train.lifetime import LifetimeConfig

    assert jax.device_count() == 4, jax.devices()
    stacx = StacxConfig(num_envs=8, rollout_length=5, minatar_channels=2, hidden_size=8,
                        meta_embedding_size=2, matching="kl_value")
    base = mn.stacx_select(mn.MinAtarConfig(stacx=stacx), {"algo": "bmg"})
    base = dataclasses.replace(
        base, meta=dataclasses.replace(base.meta, bootstrap_steps=2, learning_rate=1e-2),
        lifetime=LifetimeConfig(steps=400, chunk_steps=200, seeds=1))
    out = {}
    for devices in (1, 4):
        config = dataclasses.replace(base, batch_devices=devices)
        runner = mn.make_runner(config)
        result = runner.run()
        shardings = {str(x.sharding.spec) for x in
                     jax.tree.leaves(result.state.carry.learner_state.extras.streams)}
        params = jax.tree.leaves(result.state.carry.learner_state.params)
        out[devices] = dict(
            trace={k: np.asarray(v).tolist() for k, v in result.state.trace.items()},
            params=np.concatenate([np.asarray(p).ravel() for p in params]).tolist(),
            mesh=dict(runner.sharding.mesh.shape), shardings=sorted(shardings),
        )
    json.dump(out, open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
@pytest.mark.heavy  # several processes: in `make test-docs`
def test_one_seeds_batch_over_4_devices_gives_the_numbers_of_1_device(tmp_path):
    """STACX + BMG (L = 2, RMSProp target, KL & V matching) on Breakout with 8 environments:
    split 2 per device over 4 forced host devices (shard_map, gradients all-reduced in the
    optimiser, meta-gradients averaged) and on one device: the same trace (probes, meta-loss,
    18 meta-parameters) and parameters to float reassociation."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    result = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-c", DEVICES_SCRIPT, str(result)],
        env={**os.environ, "XLA_FLAGS": flags.strip()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(result.read_text())
    one, four = out["1"], out["4"]
    assert four["mesh"] == {"seed": 1, "batch": 4}
    assert any("batch" in spec for spec in four["shardings"]), four["shardings"]
    assert sorted(one["trace"]) == sorted(four["trace"])
    for name in one["trace"]:
        a, b = np.asarray(one["trace"][name]), np.asarray(four["trace"][name])
        if name in ("env_steps", "episodes") or name.startswith("finite/"):
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
    gamma = np.asarray(one["trace"]["head0/gamma"])  # the meta-parameters moved
    assert np.abs(np.diff(gamma, axis=1)).min() > 0, gamma
    np.testing.assert_allclose(one["params"], four["params"], rtol=1e-4, atol=1e-6)
