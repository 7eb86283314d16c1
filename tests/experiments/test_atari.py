"""`bmg atari`: config and CLI errors, a tiny run on the real emulator through the CLI, its resume
(the learner state restored equals the saved one; counters continue), the missing-ale-py
sentence, human-normalised scores and their median / IQM, and the learner step over two JAX
processes (jax.distributed over localhost).
"""

from __future__ import annotations

import copy
import csv
import json
import sys

import numpy as np
import pytest

from bmg.experiments import atari_report
from bmg.experiments.atari import PRESETS, AtariExperimentConfig
from bmg.experiments.cli import main, parse_run

TINY = [
    "--frames", "768", "--frame-size", "16", "--sebulba.envs-per-thread", "2",
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
        (["--frame-size", "4"], "frame_size must be an integer >= 8, got 4."),
        (["--sticky-action-prob", "1"], "sticky_action_prob must be a finite number in [0, 1)"),
        (["--log-interval", "0"], "log_interval must be an integer >= 1, got 0."),
        (["--env", "Break out"], "game must be an ALE game name such as 'Breakout'"),
        (["--stacx.torso", "minatar"], "stacx.torso 'minatar' (no pooling) is for MinAtar"),
        (["--algo", "bmg", "--l", "0"], "bootstrap_steps (L) must be an integer >= 1, got 0."),
    ],
)
def test_bad_values_exit_with_one_sentence(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_run(["demo", *flags], AtariExperimentConfig, PRESETS, "bmg atari", "")
    text = str(exit_.value.code)
    assert text.startswith("bmg atari: error: ") and message in text, text
    _one_sentence(text)


def test_presets_parse_and_count_frames():
    run = parse_run(["paper", "--algo", "bmg", "--l", "2"], AtariExperimentConfig, PRESETS, "", "")
    config = run.config
    layout = config.sebulba
    assert (layout.actor_devices, layout.learner_devices) == (2, 6)
    assert layout.num_actor_threads * layout.envs_per_thread == 48 and config.frames == 200_000_000
    # the learner's batch is the layout's; BMG L = 2 learns from K + L - 1 = 2 batches
    assert (config.stacx.num_envs, config.stacx.rollout_length) == (24, 20)
    assert config.frames_per_meta_step() == 2 * 24 * 20 * 4
    assert config.num_meta_steps() == -(-200_000_000 // (2 * 24 * 20 * 4))
    assert config.meta_config().continue_from == "target"
    demo = parse_run(["demo"], AtariExperimentConfig, PRESETS, "", "").config
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
def test_a_tiny_run_through_the_cli_and_its_resume(tmp_path, monkeypatch):
    """Real Breakout, 24 meta-steps. Interrupted (Ctrl-C) right after its first checkpoint
    (meta-step 4), the run says how to continue; `resume` restores exactly the learner state
    that was saved (every leaf, PRNG key included), continues the counters from meta-step 4
    and finishes the run directory: metrics rows every 2 meta-steps up to 24, frames = meta-steps
    x 32, summary, trace, plots; the checkpoints are dropped at the end."""
    pytest.importorskip("ale_py")
    from bmg.experiments import checkpoint
    from bmg.experiments.runners.sebulba import Sebulba, to_host

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
    main(["compare", str(out)])  # MinAtar's report reads Atari runs


def _leaves(tree):
    import jax

    return [
        jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        for x in jax.tree.leaves(tree)
    ]


# --- human-normalised scores ---------------------------------------------------------------------


def test_reference_table_holds_the_published_scores():
    """57 games; entries as published (Mnih et al. 2015 random scores, the later human scores
    of van Hasselt et al. 2016 / Wang et al. 2016 used by Badia et al. 2020)."""
    table = atari_report.REFERENCE
    assert len(table) == 57
    assert table["alien"] == (227.8, 7127.7)
    assert table["breakout"] == (1.7, 30.5)
    assert table["pong"] == (-20.7, 14.6)
    assert table["montezuma_revenge"] == (0.0, 4753.3)
    assert table["space_invaders"] == (148.0, 1668.7)
    assert atari_report.reference("MsPacman") == (307.3, 6951.6)
    assert atari_report.reference("UpNDown") == (533.4, 11693.2)
    assert all(human > random for random, human in table.values())
    ale = pytest.importorskip("ale_py")
    assert set(table) <= set(ale.roms.get_all_rom_ids())  # every key is an ALE ROM id


def test_human_normalized_score():
    assert atari_report.human_normalized("Breakout", 1.7) == 0
    assert atari_report.human_normalized("Breakout", 30.5) == pytest.approx(1)
    assert atari_report.human_normalized("Pong", 21) == pytest.approx((21 + 20.7) / 35.3)
    with pytest.raises(ValueError, match="one of the 57 games") as error:
        atari_report.human_normalized("Tetris", 1)
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
        random, human = atari_report.REFERENCE[game]
        scores[game] = random + target * (human - random)
    result = atari_report.aggregate(scores)
    assert result["games"] == 8 and result["runs"] == 1
    assert result["median"] == pytest.approx(0.35)
    assert result["iqm"] == pytest.approx(np.mean([0.2, 0.3, 0.4, 0.5]))  # middle 4 of 8
    low, high = result["intervals"]["iqm"]  # one run per game: no run to resample
    assert low == high == pytest.approx(result["iqm"])
    # two runs per game: IQM over the 16 runs x games scores, median of the per-game means
    random, human = atari_report.REFERENCE["pong"]
    two = {g: [s, s] for g, s in scores.items()}
    two["pong"] = [random + 0.7 * (human - random), random + 2.7 * (human - random)]
    result = atari_report.aggregate(two)
    middle = sorted([*targets, *targets[:7], 2.7])[4:12]
    assert result["iqm"] == pytest.approx(np.mean(middle))
    assert result["median"] == pytest.approx(np.median([*targets[:7], 1.7]))
    with pytest.raises(ValueError, match="same number of runs"):
        atari_report.aggregate({"pong": [1, 2], "alien": [3]})
