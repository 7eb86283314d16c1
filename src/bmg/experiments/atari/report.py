"""Atari results: human-normalised scores, their median and IQM over games, and a run's files.

Human-normalised scores: ``bmg.envs.atari_scores`` (Mnih et al., Nature 2015; the Agent57 table).

Aggregates over games (Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021): the median and the interquartile mean (IQM: the mean of
the middle 50% of the runs x games scores, trimming 25% at each end) and the mean of the
human-normalised scores, all with the Agent57 table's random and human scores (Video Pinball's
random 0), with 95% stratified bootstrap confidence intervals, computed by rliable
(``bmg.experiments.report.aggregate``; ``pip install 'bmg[atari]'``).

The run directory (``bmg.experiments.atari.system``): metrics.csv has one row per ``log_interval``
meta-steps; ``trace.npz`` holds every metrics column over those rows (float64 [rows]; one run is
one seed), with ``episodes`` made cumulative (``episode_return_sum`` is the cumulative raw
return); summary.json the scores below. ``bmg compare`` of Atari runs reads these alone
(`REPORT`): one row per run, episode return against frames per game, and the human-normalised
IQM, median and mean over games per method when the runs make a [runs, games] grid.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bmg.envs.atari_scores import human_normalized
from bmg.experiments.api import Report
from bmg.experiments.minatar.config import METHODS, stacx_method_label
from bmg.experiments.report.aggregate import interval_estimates
from bmg.experiments.report.stats import format_mean_se
from bmg.train import records
from bmg.train.records import INTEGER, NUMBER, STAT, TEXT, nullable
from bmg.train.rundir import read_run


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

TRACE = ("frames", "episodes", "episode_return", "episode_return_sum")
"""trace.npz columns the report reads (besides the meta-parameters ``head{h}/{name}``)."""


def write_results(run_dir: Path, trace: dict[str, list[float]], summary: dict, title: str):
    """trace.npz (every column float64 [rows]), summary.json and the plots (episode return
    per row and the meta-parameters per head, against frames) of a finished run."""
    from bmg.train.rundir import save_npz, write_json

    arrays = {name: np.asarray(values, np.float64) for name, values in trace.items()}
    save_npz(run_dir / "trace.npz", **arrays)
    plot_run(arrays, run_dir, title)
    # summary.json last: it marks the run finished, so a run interrupted while its plots are
    # drawn still resumes (from its last checkpoint) and finishes
    write_json(run_dir / "summary.json", summary)


def plot_run(trace: dict[str, np.ndarray], out: Path, title: str) -> list[Path]:
    """episode_return.png (each row's mean return of the episodes that ended in it; gaps where
    none did) and meta_parameters.png, against frames learned."""
    from bmg.experiments.minatar import report as stacx_plots  # STACX's panels

    frames = trace["frames"]
    heads = {name: trace[name][None] for name in trace if name.startswith("head")}
    with warnings.catch_warnings():  # rows where no episode ended are NaN (gaps in the curve)
        warnings.simplefilter("ignore", RuntimeWarning)
        return [
            stacx_plots.plot_return(frames, trace["episode_return"][None], out=out, title=title),
            stacx_plots.plot_meta_parameters(frames, heads, out=out, title=title),
        ]


def fraction_return(trace: dict, fraction: float = 0.1, last=True) -> float:
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


# --- the comparison of finished runs ------------------------------------------------------------

SUMMARY = {
    "game": TEXT,
    "frames_per_seed": INTEGER,
    "return_first_10pct": STAT,
    "return_last_10pct": STAT,
    "human_normalized_last_10pct": nullable(NUMBER),
    "head0/gamma": STAT,
    "frames_per_second": nullable(NUMBER),
    "lag_mean": nullable(NUMBER),
}


def check_run(run_dir: Path) -> None:
    """Check that a finished Atari run directory holds what this report reads (config.json,
    summary.json, trace.npz with ``TRACE``'s columns).

    Raises:
      ValueError: one sentence naming the missing file, or the file and the entry that is
        missing or of another kind than expected.
    """
    run_dir = records.require_files(run_dir, ("config.json", "summary.json", "trace.npz"))
    path = run_dir / "config.json"
    record = records.read(path, records.RUN_CONFIG, "an Atari run's config")
    meta = {"algo": records.one_of(*METHODS), "inner_steps": INTEGER, "bootstrap_steps": INTEGER}
    config = {"env": {"game": TEXT}, "meta": meta, "stacx": {"target_step": TEXT, "matching": TEXT}}
    records.check(path, record, {"config": config}, "an Atari run's config")
    records.read(run_dir / "summary.json", SUMMARY, "an Atari run's summary")
    _trace(run_dir)


def _trace(run_dir: Path) -> dict[str, np.ndarray]:
    arrays = read_run(run_dir)[2]
    wrong = [name for name in TRACE if getattr(arrays.get(name), "ndim", 0) != 1]
    if wrong:
        raise ValueError(
            f"{Path(run_dir) / 'trace.npz'} is not an Atari run's trace: {', '.join(wrong)} "
            "must be arrays over the metrics rows."
        )
    return arrays


def run_label(config: dict) -> str:
    """Short name: game, algo, K, L and BMG's target step and matching (``config``:
    config.json's "config"), as MinAtar's report names a run."""
    stacx = config["stacx"]
    method = stacx_method_label(config["meta"], f"{stacx['target_step']} {stacx['matching']}")
    return f"{config['env']['game']} {method}"


def comparison_rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    """One row per run: frames, the raw return of the first and the last 10% of rows, the
    human-normalised last 10%, the main head's gamma, frames/s and the policy lag."""
    rows = []
    for run_dir in run_dirs:
        config, summary, _ = read_run(run_dir)
        rows.append(
            {
                "run": run_label(config["config"]),
                "frames": f"{summary['frames_per_seed']:,}",
                "return, first 10%": format_mean_se(summary["return_first_10pct"], 2),
                "return, last 10%": format_mean_se(summary["return_last_10pct"], 2),
                "human-normalised, last 10%": _number(summary["human_normalized_last_10pct"]),
                "head0 gamma": format_mean_se(summary["head0/gamma"], 4),
                "frames/s": _number(summary["frames_per_second"], ",.0f"),
                "policy lag": _number(summary["lag_mean"], ".2f"),
            }
        )
    return rows


def _number(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted; "-" where summary.json has none (null, NaN)."""
    return "-" if value is None or math.isnan(value) else format(value, spec)


def plot_comparison(run_dirs: list[Path], out: Path) -> list[Path]:
    """episode_return.png in ``out``: one panel per game, each run's return per row against
    frames."""
    from bmg.experiments.report.plots import plt, save

    by_game: dict[str, list] = {}
    for run_dir in run_dirs:
        config = read_run(run_dir)[0]["config"]
        by_game.setdefault(config["env"]["game"], []).append((config, _trace(run_dir)))
    fig, axes = plt.subplots(1, len(by_game), figsize=(6 * len(by_game), 4), squeeze=False)
    for ax, (game, runs) in zip(axes[0], by_game.items(), strict=True):
        for config, trace in runs:
            label = run_label(config).split(" ", 1)[1]
            ax.plot(trace["frames"], trace["episode_return"], marker=".", label=label)
        ax.set(xlabel="frames", ylabel="episode return", title=game)
        ax.legend(fontsize=8)
    return [save(fig, Path(out) / "episode_return.png")]


def extra_tables(run_dirs: list[Path]) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Under the comparison: per method (the run's label without its game), the IQM, median
    and mean over games of the human-normalised last-10% returns with 95% stratified bootstrap
    intervals (`aggregate`), when every method ran the same games with as many runs each; else
    a sentence saying why there is no aggregate."""
    from bmg.experiments.report.aggregate import format_interval

    runs: dict[str, dict[str, list[float]]] = {}
    for run_dir in run_dirs:
        config = read_run(run_dir)[0]["config"]
        method = run_label(config).split(" ", 1)[1]
        final = fraction_return(_trace(run_dir))
        runs.setdefault(method, {}).setdefault(config["env"]["game"], []).append(final)
    games = {method: sorted(by_game) for method, by_game in runs.items()}
    if len({tuple(g) for g in games.values()}) != 1:
        return [], [f"no aggregate: the methods ran different games ({games})."]
    rows = []
    for method, by_game in runs.items():
        if not all(math.isfinite(r) for returns in by_game.values() for r in returns):
            return [], [f"no aggregate: a run of {method} finished no episode in its last 10%."]
        try:
            result = aggregate(by_game)
        except ValueError as error:
            return [], [f"no aggregate: {str(error).rstrip('.')}."]
        except ImportError as error:  # rliable is an extra
            return [], [f"no aggregate: {error}."]
        rows.append(
            {
                "method": method,
                "games": str(result["games"]),
                "runs": str(result["runs"]),
                **{
                    f"{stat} [95% CI]": format_interval(
                        (result[stat], *result["intervals"][stat]), 3
                    )
                    for stat in ("iqm", "median", "mean")
                },
            }
        )
    return [rows], [
        "human-normalised return over the last 10% of rows ((return - random) / (human - "
        "random)); IQM, median and mean over runs x games with 95% stratified bootstrap "
        "intervals (rliable)."
    ]


REPORT = Report(check_run, comparison_rows, plot_comparison, extra_tables)
"""The Atari report (`bmg compare`), from run directories alone."""
