"""Atari results: human-normalised scores, their median and IQM over games, and a run's files.

Human-normalised scores: ``bmg.envs.atari_scores`` (Mnih et al., Nature 2015; the Agent57 table).

Aggregates over games (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021): the median and the interquartile mean (IQM: the mean of
the middle 50% of the runs x games scores, trimming 25% at each end) and the mean of the
human-normalised scores, all with the Agent57 table's random and human scores (Video Pinball's
random 0), with 95% stratified bootstrap confidence intervals, computed by rliable
(``bmg.experiments.report.aggregate``; ``pip install 'bmg[atari]'``).

The run directory (``bmg.experiments.atari.system``): metrics.csv has one row per ``log_interval``
meta-steps; ``trace.npz`` holds every column as [1, rows] (one seed) plus the cumulative counters
MinAtar's report reads (``env_steps`` = frames learned, ``episodes``, ``episode_return_sum`` raw),
so ``bmg compare`` and ``bmg.experiments.minatar.report`` read Atari runs too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bmg.envs.atari_scores import human_normalized
from bmg.experiments.report.aggregate import interval_estimates


def aggregate(scores: Mapping[str, float | list[float]], *, seed: int = 0) -> dict:
    """Median, IQM and mean over games of human-normalised scores, with 95% stratified bootstrap
    confidence intervals (``bmg.experiments.report.aggregate.interval_estimates``, rliable).

    Args:
      scores: game -> its raw score, or a list of raw scores (one per run; every game the same
        number of runs).
      seed: the bootstrap's seed.

    Returns:
      ``{"games", "runs", "median", "iqm", "mean", "intervals"}``: the median over games of the
      per-game mean over runs, the IQM over all runs x games scores, the mean, and
      ``intervals[statistic] = (low, high)``.

    Raises:
      ValueError: no scores, unequal numbers of runs, or an unknown game. ImportError without
        rliable (``bmg.experiments.report.aggregate.MISSING_RLIABLE``).
    """
    if not scores:
        raise ValueError("scores must name at least one game, got none.")
    runs = {game: np.atleast_1d(np.asarray(value, np.float64)) for game, value in scores.items()}
    counts = {len(v) for v in runs.values()}
    if len(counts) != 1:
        raise ValueError(
            f"every game needs the same number of runs, got {sorted(counts)} runs per game."
        )
    games = sorted(runs)
    normalized = np.stack(  # [runs, games], rliable's layout
        [[human_normalized(g, s) for s in runs[g]] for g in games], axis=1
    )
    estimates = interval_estimates({"scores": normalized}, seed=seed)["scores"]
    return {
        "games": len(games),
        "runs": int(normalized.shape[0]),
        **{stat: estimate[0] for stat, estimate in estimates.items()},
        "intervals": {stat: estimate[1:] for stat, estimate in estimates.items()},
    }


# --- a run's files ------------------------------------------------------------------------------

COUNTERS = ("env_steps", "episodes", "episode_return_sum")
"""Cumulative trace columns MinAtar's report reads (frames learned, episodes, raw return sum)."""


def write_results(run_dir: Path, trace: dict[str, list[float]], summary: dict, title: str):
    """trace.npz ([1, rows] per column, initial counters 0), summary.json and the plots
    (``minatar_report.plot_run``: episode return vs frames, meta-parameters per head) of a
    finished run in ``run_dir``."""
    from bmg.experiments.minatar import report as minatar_report
    from bmg.train.rundir import save_npz, write_json

    arrays = {name: np.asarray(values, np.float64)[None] for name, values in trace.items()}
    initial = {name: np.zeros(1) for name in COUNTERS}
    save_npz(run_dir / "trace.npz", **{f"initial/{k}": v for k, v in initial.items()}, **arrays)
    write_json(run_dir / "summary.json", summary)
    with warnings.catch_warnings():  # rows where no episode ended are NaN (gaps in the curve)
        warnings.simplefilter("ignore", RuntimeWarning)
        minatar_report.plot_run(initial, arrays, 1, out=run_dir, title=title)


def fraction_return(trace: dict[str, list[float]], fraction: float = 0.1, last=True) -> float:
    """Mean raw return of the episodes that ended in the last (``last``) or first ``fraction``
    of the rows, at least one row (NaN: none ended there). ``trace``'s ``episodes`` and
    ``episode_return_sum`` are cumulative."""
    rows = len(trace["episodes"])
    if rows == 0:
        return math.nan
    count = max(1, int(round(fraction * rows)))
    episodes = np.concatenate([[0.0], trace["episodes"]])
    returns = np.concatenate([[0.0], trace["episode_return_sum"]])
    stop = rows if last else count
    start = stop - count
    done = episodes[stop] - episodes[start]
    return float((returns[stop] - returns[start]) / done) if done > 0 else math.nan
