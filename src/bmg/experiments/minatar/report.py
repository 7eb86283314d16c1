"""MinAtar results: per-chunk CSV rows, summary.json, plots and a comparison table.

Episode returns come from the learner's cumulative probes: the mean return of the episodes that
ended in a window is the increase of ``episode_return_sum`` over the increase of ``episodes``
(all B streams of a seed; NaN when none ended). Statistics over seeds: mean and standard error
(sample std / sqrt(seeds)); the Two-colors report's helpers are reused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bmg.agents.configs import META_NAMES
from bmg.experiments.api import Report
from bmg.experiments.minatar.config import METHODS, stacx_method_label
from bmg.experiments.report import plots
from bmg.experiments.report.plots import band, plt
from bmg.experiments.report.stats import format_mean_se, mean_se
from bmg.train import records
from bmg.train.records import INTEGER, NUMBER, STAT, TEXT
from bmg.train.rundir import read_run

LAST_FRACTION = 0.1  # the "final" return: episodes that ended in the last 10% of meta-steps

REFERENCE = {
    "Asterix-MinAtar": 19.0,
    "Breakout-MinAtar": 17.5,
    "Freeway-MinAtar": 47.0,
    "Seaquest-MinAtar": 15.0,
    "SpaceInvaders-MinAtar": 185.0,
}
"""Reference return per game for normalised scores: the final episode returns of the actor-critic
of Young & Tian ("MinAtar", 2019) at 5M frames (sticky actions 0.1, full action set), read
approximately from their learning curves. A normalised score is return / reference (MinAtar's
random policies score close to 0)."""


def meta_names(num_heads: int) -> list[str]:
    """The probes of the 18 (num_heads x 6) meta-parameters, ``head{h}/{name}``."""
    return [f"head{h}/{name}" for h in range(num_heads) for name in META_NAMES]


def csv_fields(num_heads: int) -> list[str]:
    """metrics.csv columns."""
    base = ["seed", "chunk", "frames", "episodes", "episode_return", "reward_per_frame"]
    return [*base, "meta_loss", *meta_names(num_heads)]


def _cumulative(initial: dict, trace: dict, name: str) -> np.ndarray:
    """[seeds, 1 + meta_steps] of a cumulative probe, the initial value first (float64)."""
    return np.concatenate([initial[name][:, None], trace[name]], axis=1).astype(np.float64)


def window_return(initial: dict, trace: dict, start: int, stop: int) -> np.ndarray:
    """[seeds] mean return of the episodes that ended in meta-steps [start, stop) (NaN: none)."""
    returns = _cumulative(initial, trace, "episode_return_sum")
    episodes = _cumulative(initial, trace, "episodes")
    done = episodes[:, stop] - episodes[:, start]
    total = returns[:, stop] - returns[:, start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(done > 0, total / np.maximum(done, 1), np.nan)


def chunk_rows(before: dict, trace: dict, chunk: int, first_seed: int = 0) -> list[dict]:
    """One metrics.csv row per seed for chunk ``chunk``, from its piece of the trace (``trace``:
    name -> [seeds, meta-steps of the chunk]) and the cumulative probes just before it
    (``before``: name -> [seeds])."""
    start, stop = 0, trace["env_steps"].shape[1]
    initial = before
    frames = _cumulative(initial, trace, "env_steps")
    rewards = _cumulative(initial, trace, "reward_sum")
    episodes = _cumulative(initial, trace, "episodes")
    returns = window_return(initial, trace, start, stop)
    names = [k for k in trace if k.startswith("head")]
    rows = []
    for seed in range(frames.shape[0]):
        taken = frames[seed, stop] - frames[seed, start]
        row = {
            "seed": first_seed + seed,
            "chunk": chunk,
            "frames": int(frames[seed, stop]),
            "episodes": int(episodes[seed, stop] - episodes[seed, start]),
            "episode_return": float(returns[seed]),
            "reward_per_frame": float((rewards[seed, stop] - rewards[seed, start]) / taken),
            "meta_loss": float(np.mean(trace["meta/loss"][seed, start:stop]))
            if "meta/loss" in trace
            else 0.0,
        }
        row.update({name: float(trace[name][seed, stop - 1]) for name in names})
        rows.append(row)
    return rows


def return_curve(initial: dict, trace: dict, meta_steps_per_chunk: int):
    """(frames [chunks], returns [seeds, chunks]): the mean episode return per chunk."""
    chunks = trace["env_steps"].shape[1] // meta_steps_per_chunk
    frames = np.asarray(
        [trace["env_steps"][0, (c + 1) * meta_steps_per_chunk - 1] for c in range(chunks)]
    )
    returns = np.stack(
        [
            window_return(initial, trace, c * meta_steps_per_chunk, (c + 1) * meta_steps_per_chunk)
            for c in range(chunks)
        ],
        axis=1,
    )
    return frames, returns


def summarize(initial: dict, trace: dict, meta_steps_per_chunk: int) -> dict:
    """summary.json: frames, episodes, first-chunk and final returns, final meta-parameters."""
    steps = trace["env_steps"].shape[1]
    last = max(1, int(round(LAST_FRACTION * steps)))
    summary = {
        "seeds": int(trace["env_steps"].shape[0]),
        "frames_per_seed": int(trace["env_steps"][0, -1]),
        "episodes": mean_se(trace["episodes"][:, -1]),
        "return_first_chunk": mean_se(window_return(initial, trace, 0, meta_steps_per_chunk)),
        "return_last_10pct": mean_se(window_return(initial, trace, steps - last, steps)),
    }
    for name in (k for k in trace if k.startswith("head")):
        summary[name] = mean_se(trace[name][:, -1])
    return summary


def plot_run(
    initial: dict, trace: dict, meta_steps_per_chunk: int, *, out: Path, title: str
) -> list[Path]:
    """episode_return.png (mean return per chunk vs frames, mean ± se over seeds) and
    meta_parameters.png (every meta-parameter's trajectory per head vs frames)."""
    frames, returns = return_curve(initial, trace, meta_steps_per_chunk)
    heads = {k: v for k, v in trace.items() if k.startswith("head")}
    return [
        plot_return(frames, returns, out=out, title=title),
        plot_meta_parameters(trace["env_steps"][0], heads, out=out, title=title),
    ]


def plot_return(frames, returns, *, out: Path, title: str) -> Path:
    """episode_return.png in ``out``: ``returns`` [seeds, points] (mean ± se over seeds; NaN
    where no episode ended) against ``frames`` [points]."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    band(ax, frames, returns, title, marker=".")
    ax.set(xlabel="frames per seed", ylabel="episode return", title=title)
    return plots.save(fig, Path(out) / "episode_return.png")


def plot_meta_parameters(frames, columns: dict, *, out: Path, title: str) -> Path:
    """meta_parameters.png in ``out``: one panel per STACX meta-parameter (``META_NAMES``), a
    line per head; ``columns`` maps ``head{h}/{name}`` to [seeds, points] over ``frames``."""
    heads = sorted({k.split("/")[0] for k in columns})
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for ax, name in zip(axes.flat, META_NAMES, strict=True):
        for head in heads:
            band(ax, frames, columns[f"{head}/{name}"], head)
        ax.set(title=name, xlabel="frames per seed")
        ax.set_ylabel("sigma (fraction of the outer weight)" if name.startswith("g_") else "")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{title}: meta-parameters per head (head0 acts)")
    return plots.save(fig, Path(out) / "meta_parameters.png")


def run_label(config: dict) -> str:
    """Short name: game, algo, K, L and the BMG options (``config``: config.json's "config")."""
    stacx = config["stacx"]
    method = stacx_method_label(config["meta"], f"{stacx['target_step']} {stacx['matching']}")
    return f"{config['env'].removesuffix('-MinAtar')} {method}"


META_SCHEMA = {"algo": records.one_of(*METHODS), "inner_steps": INTEGER, "bootstrap_steps": INTEGER}
"""What the report reads of a run's config.json "meta"."""


def check_run(run_dir: Path) -> None:
    """Check that a finished MinAtar run directory's config.json and summary.json hold
    what this report reads (`comparison_rows`, `aggregate_rows`, `plot_comparison`).

    Raises:
      ValueError: one sentence naming the missing file, or the file and the entry that is
        missing or of another kind than expected.
    """
    run_dir = records.require_files(run_dir, ("config.json", "summary.json", "trace.npz"))
    path = run_dir / "config.json"
    record = records.read(path, records.RUN_CONFIG, "a run's config")
    what = "a MinAtar run's config"
    config = {"env": TEXT, "meta": META_SCHEMA, "stacx": {"target_step": TEXT, "matching": TEXT}}
    records.check(path, record, {"config": config}, what)
    schema = {
        "seeds": INTEGER,
        "frames_per_seed": INTEGER,
        "return_first_chunk": STAT,
        "return_last_10pct": STAT,
        "head0/gamma": records.optional(STAT),
        "frames_per_second": records.nullable(NUMBER),
        "meta_steps_per_chunk": INTEGER,
    }
    records.read(run_dir / "summary.json", schema, "a MinAtar run's summary")


TRACE = ("env_steps", "episodes", "episode_return_sum")
"""The trace.npz arrays the report reads ([seeds, meta-steps]; with their `initial/` values,
[seeds], for the episode counters)."""


def load_run(run_dir: Path):
    """(config dict, summary dict, trace arrays) of a finished MinAtar run directory.

    Raises:
      ValueError: one sentence naming a missing or damaged file, or trace.npz without the
        arrays the report reads (`TRACE`).
    """
    config, summary, arrays = read_run(run_dir)
    shapes = {name: 2 for name in TRACE} | {f"initial/{name}": 1 for name in TRACE[1:]}
    wrong = [name for name, ndim in shapes.items() if getattr(arrays.get(name), "ndim", 0) != ndim]
    if wrong:
        raise ValueError(
            f"{Path(run_dir) / 'trace.npz'} is not a MinAtar run's trace: "
            f"{', '.join(wrong)} must be arrays of [seeds, meta-steps] (initial/ ones of [seeds])."
        )
    return config, summary, arrays


def method_label(config: dict) -> str:
    """``run_label`` without the game: the method a run belongs to across games."""
    return run_label(config).split(" ", 1)[1]


def final_returns(run_dir: Path) -> np.ndarray:
    """[seeds] mean episode return of each seed over the last 10% of a finished run's
    meta-steps (NaN for a seed with no episode ending there)."""
    _, _, arrays = load_run(run_dir)
    initial = {k[len("initial/") :]: v for k, v in arrays.items() if k.startswith("initial/")}
    trace = {k: v for k, v in arrays.items() if not k.startswith("initial/")}
    steps = trace["env_steps"].shape[1]
    last = max(1, int(round(LAST_FRACTION * steps)))
    return window_return(initial, trace, steps - last, steps)


def aggregate_rows(run_dirs: list[Path], *, seed: int = 0) -> tuple[list[dict[str, str]], str]:
    """Scores over games per method, with 95% stratified bootstrap intervals (rliable).

    Each run's final returns (last 10%, one per seed) are divided by the game's ``REFERENCE``;
    a method's runs form its [seeds, games] matrix (``bmg.experiments.report.aggregate``).

    Returns:
      (rows, note): one row per method (IQM, median, mean with their intervals, games, seeds),
      or no rows and a sentence saying why the runs cannot be aggregated (a game without a
      reference, two runs of one method on one game, methods on different games or with
      different seeds per game, a seed with no finished episode, rliable not installed).
    """
    from bmg.experiments.report.aggregate import format_interval, interval_estimates

    runs: dict[str, dict[str, np.ndarray]] = {}
    for run_dir in run_dirs:
        config = load_run(run_dir)[0]["config"]
        game, method = config["env"], method_label(config)
        if game not in REFERENCE:
            known = ", ".join(REFERENCE)
            return [], f"no aggregate: {game} has no reference score (known: {known})."
        if game in runs.setdefault(method, {}):
            return [], f"no aggregate: {method} has two runs on {game}."
        runs[method][game] = final_returns(run_dir) / REFERENCE[game]
    games = {method: sorted(by_game) for method, by_game in runs.items()}
    if len({tuple(g) for g in games.values()}) != 1:
        return [], f"no aggregate: the methods ran different games ({games})."
    scores = {}
    for method, by_game in runs.items():
        seeds = {len(returns) for returns in by_game.values()}
        if len(seeds) != 1:
            return [], f"no aggregate: {method} has different numbers of seeds per game."
        matrix = np.stack([by_game[g] for g in sorted(by_game)], axis=1)
        if not np.all(np.isfinite(matrix)):
            return [], f"no aggregate: a seed of {method} finished no episode in its last 10%."
        scores[method] = matrix
    try:
        estimates = interval_estimates(scores, seed=seed)
    except ImportError as error:  # rliable is an extra
        return [], f"no aggregate: {error}."
    rows = [
        {
            "method": method,
            "games": str(scores[method].shape[1]),
            "seeds": str(scores[method].shape[0]),
            **{
                f"{stat} [95% CI]": format_interval(estimates[method][stat], 3)
                for stat in ("iqm", "median", "mean")
            },
        }
        for method in scores
    ]
    normalised = (
        "normalised score = return over the last 10% / reference return (MinAtar paper's "
        "actor-critic at 5M frames)"
    )
    return rows, (
        f"{normalised}; IQM, median and mean over seeds x games with 95% stratified bootstrap "
        "intervals (rliable)."
    )


def comparison_rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    """One table row per run: frames, returns (first chunk, last 10%), main head's gamma."""
    rows = []
    for run_dir in run_dirs:
        config, summary, _ = load_run(run_dir)
        rows.append(
            {
                "run": run_label(config["config"]),
                "seeds": str(summary["seeds"]),
                "frames/seed": f"{summary['frames_per_seed']:,}",
                "return, first chunk": format_mean_se(summary["return_first_chunk"], 2),
                "return, last 10%": format_mean_se(summary["return_last_10pct"], 2),
                "head0 gamma": format_mean_se(summary.get("head0/gamma", _nan()), 4),
                "frames/s (all seeds)": _rate(summary["frames_per_second"]),
            }
        )
    return rows


def plot_comparison(run_dirs: list[Path], out: Path) -> list[Path]:
    """episode_return.png in `out`: one panel per game, every run's mean episode return per chunk
    vs frames (mean ± standard error over its seeds)."""
    by_game: dict[str, list] = {}
    for run_dir in run_dirs:
        config, summary, arrays = load_run(run_dir)
        by_game.setdefault(config["config"]["env"], []).append((config, summary, arrays))
    fig, axes = plt.subplots(1, len(by_game), figsize=(6 * len(by_game), 4), squeeze=False)
    for ax, (game, runs) in zip(axes[0], by_game.items(), strict=True):
        for config, summary, arrays in runs:
            initial = {
                k[len("initial/") :]: v for k, v in arrays.items() if k.startswith("initial/")
            }
            trace = {k: v for k, v in arrays.items() if not k.startswith("initial/")}
            frames, returns = return_curve(initial, trace, summary["meta_steps_per_chunk"])
            band(ax, frames, returns, method_label(config["config"]), marker=".")
        ax.set(xlabel="frames per seed", ylabel="episode return", title=game)
        ax.legend(fontsize=8)
    path = Path(out) / "episode_return.png"
    plots.save(fig, path)
    return [path]


def _rate(value: float | None) -> str:
    """frames/s, "-" where summary.json has none (null: a run that took no measurable time)."""
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def _nan() -> dict:
    return {"mean": math.nan, "se": math.nan}


def extra_tables(run_dirs: list[Path]) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Under the comparison: scores aggregated over games when the runs make a [seeds, games]
    grid (`aggregate_rows`), and the sentence saying what was aggregated (or why not)."""
    rows, note = aggregate_rows(run_dirs)
    return ([rows] if rows else []), [note]


REPORT = Report(check_run, comparison_rows, plot_comparison, extra_tables)
"""The MinAtar report (`bmg compare`)."""
