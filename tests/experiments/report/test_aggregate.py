"""Scores over games with rliable: point estimates by hand, stratified bootstrap intervals, the
MinAtar comparison's aggregate rows."""

import numpy as np
import pytest
from scipy import stats

from bmg.experiments.minatar import report as minatar_report
from bmg.experiments.report.aggregate import format_interval, interval_estimates

pytest.importorskip("rliable")


def test_point_estimates_by_hand_and_intervals_around_them():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 4))  # [runs, games]
    estimate = interval_estimates({"m": scores}, reps=500)["m"]
    assert estimate["iqm"][0] == pytest.approx(stats.trim_mean(scores.reshape(-1), 0.25))
    assert estimate["median"][0] == pytest.approx(np.median(scores.mean(axis=0)))
    assert estimate["mean"][0] == pytest.approx(scores.mean())
    for point, low, high in estimate.values():
        assert low <= point <= high and low < high
    # the same seed gives the same intervals; another seed other intervals
    assert interval_estimates({"m": scores}, reps=500)["m"] == estimate
    assert interval_estimates({"m": scores}, reps=500, seed=1)["m"] != estimate
    # a method's intervals do not depend on which other methods come with it, or their order
    both = interval_estimates({"other": scores + 1, "m": scores}, reps=500)
    assert both["m"] == estimate


def test_the_bootstrap_resamples_runs_within_each_game():
    """Every run of game 0 scores 1 and every run of game 1 scores 3: resampling runs within a
    game (stratified) never changes the mean, so its interval is the point; resampling all
    cells together would mix the games and give a wide interval."""
    scores = np.array([[1.0, 3.0]] * 6)
    point, low, high = interval_estimates({"m": scores}, reps=300)["m"]["mean"]
    assert point == low == high == 2.0


def test_bad_scores_are_one_sentence():
    with pytest.raises(ValueError, match="at least one method"):
        interval_estimates({})
    with pytest.raises(ValueError, match=r"\[runs, games\] matrix of finite numbers.*NaN"):
        interval_estimates({"m": np.array([[1.0, np.nan]])})
    with pytest.raises(ValueError, match=r"\[runs, games\] matrix.*shape \(3,\)"):
        interval_estimates({"m": np.ones(3)})
    with pytest.raises(ValueError, match="same games"):
        interval_estimates({"a": np.ones((2, 2)), "b": np.ones((2, 3))})
    with pytest.raises(ValueError, match="confidence must be in"):
        interval_estimates({"a": np.ones((2, 2))}, confidence=95)
    assert format_interval((0.5, 0.25, 0.75)) == "0.50 [0.25, 0.75]"


def test_minatar_aggregate_rows_normalise_by_the_reference(monkeypatch):
    """Two methods x two games, returns per seed chosen so that the normalised scores are known;
    and each reason the runs cannot form a [seeds, games] grid is named."""
    runs = {  # game, meta.algo (impala: fixed, stacx: mg), final returns per seed
        "a": ("Breakout-MinAtar", "fixed", [17.5, 35.0]),  # normalised 1, 2
        "b": ("Asterix-MinAtar", "fixed", [19.0, 19.0]),  # 1, 1
        "c": ("Breakout-MinAtar", "mg", [0.0, 17.5]),  # 0, 1
        "d": ("Asterix-MinAtar", "mg", [38.0, 38.0]),  # 2, 2
    }
    config = lambda name: {  # noqa: E731
        "config": {
            "env": runs[name][0],
            "meta": {"algo": runs[name][1], "inner_steps": 1, "bootstrap_steps": 1},
            "stacx": {"target_step": "rmsprop", "matching": "kl"},
        }
    }
    monkeypatch.setattr(minatar_report, "load_run", lambda run: (config(run), {}, {}))
    monkeypatch.setattr(minatar_report, "final_returns", lambda run: np.array(runs[run][2]))
    rows, note = minatar_report.aggregate_rows(["a", "b", "c", "d"])
    assert [row["method"] for row in rows] == ["impala", "stacx K=1"]
    assert rows[0]["mean [95% CI]"].startswith("1.250 [") and rows[0]["games"] == "2"
    assert rows[1]["mean [95% CI]"].startswith("1.250 [") and rows[1]["seeds"] == "2"
    assert rows[1]["median [95% CI]"].startswith("1.250 [")  # per-game means 0.5 and 2
    assert "reference" in note

    assert minatar_report.aggregate_rows(["a", "b", "c"])[1].endswith(
        "ran different games "
        "({'impala': ['Asterix-MinAtar', 'Breakout-MinAtar'], 'stacx K=1': ['Breakout-MinAtar']})."
    )
    assert "two runs on Breakout" in minatar_report.aggregate_rows(["a", "a"])[1]
    runs["e"] = ("Pong", "fixed", [1.0])
    assert "Pong has no reference" in minatar_report.aggregate_rows(["e"])[1]
    # Atari runs (their own report) are human-normalised: Pong's random -20.7 and human 14.6
    from bmg.experiments.atari import report as atari_report

    meta = {"algo": "fixed", "inner_steps": 1, "bootstrap_steps": 1}  # impala
    game = {
        "env": {"game": "Pong"},
        "meta": meta,
        "stacx": {"target_step": "rmsprop", "matching": "kl"},
    }
    monkeypatch.setattr(atari_report, "read_run", lambda run: ({"config": game}, {}, {}))
    monkeypatch.setattr(atari_report, "_trace", lambda run: run)
    monkeypatch.setattr(atari_report, "fraction_return", {"p": -20.7, "q": 14.6}.get)
    tables, notes = atari_report.extra_tables(["p", "q"])
    assert tables[0][0]["mean [95% CI]"].startswith("0.500 [") and tables[0][0]["runs"] == "2"
    assert "human-normalised" in notes[0]
    game["env"] = {"game": "Tetris"}
    assert "must be one of the 57 games" in atari_report.extra_tables(["p", "q"])[1][0]
    monkeypatch.setattr(minatar_report, "load_run", lambda run: (config(run), {}, {}))
    monkeypatch.setattr(minatar_report, "final_returns", lambda run: np.array(runs[run][2]))
    runs["a"] = ("Breakout-MinAtar", "fixed", [np.nan, 1.0])
    assert "finished no episode" in minatar_report.aggregate_rows(["a", "b"])[1]
    # without rliable (an extra) the comparison still prints, with a note saying why no aggregate
    import builtins

    real_import = builtins.__import__

    def no_rliable(name, *args, **kwargs):
        if name.startswith("rliable"):
            raise ImportError("no rliable")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rliable)
    runs["a"] = ("Breakout-MinAtar", "fixed", [17.5, 35.0])
    assert "needs rliable: pip install 'bmg[atari]'" in minatar_report.aggregate_rows(["a"])[1]
