"""Two-colors results: per-chunk CSV rows, summary.json, plots, and tables comparing runs.

All statistics are over seeds: mean and standard error (sample std / sqrt(seeds)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bmg.experiments.api import Report
from bmg.experiments.report import plots
from bmg.experiments.report.plots import band, plt
from bmg.experiments.report.stats import format_mean_se, mean_se
from bmg.train import records
from bmg.train.records import INTEGER, NUMBER, STAT, STAT_PER_SEED, TEXT
from bmg.train.rundir import read_run


class Trace(NamedTuple):
    """Per meta-step records of every seed, host arrays [seeds, meta_steps] (the report's view)."""

    env_steps: np.ndarray  # total environment steps after the meta-step
    reward: np.ndarray  # sum of the rewards of the environment steps taken in the meta-step
    schedule: np.ndarray  # entropy cost (ac) or epsilon (q) after the meta-step
    policy_entropy: np.ndarray  # behaviour policy's entropy on the latest rollout's states
    meta_loss: np.ndarray  # 0 for fixed and decay


FLIP_WINDOW = 10_000  # steps before / after each flip for the entropy statistics
SCHEDULE = {  # agent -> (metrics.csv column, summary.json prefix, plot label)
    "ac": ("entropy_cost", "entropy", "entropy cost"),
    "q": ("epsilon", "epsilon", "epsilon"),
}


def csv_fields(agent: str) -> list[str]:
    """metrics.csv columns; the schedule column is `entropy_cost` (ac) or `epsilon` (q)."""
    column = SCHEDULE[agent][0]
    base = ["seed", "chunk", "env_steps", "reward_per_step", "cumulative_reward"]
    return [*base, column, "policy_entropy", "meta_loss"]


def cumulative_reward(trace, first_rewards: np.ndarray) -> np.ndarray:
    """[seeds, meta_steps] total reward after each meta-step, the first rollout included."""
    return first_rewards[:, None] + np.cumsum(np.asarray(trace.reward, np.float64), axis=1)


def chunk_rows(trace, first_rewards, steps_before, chunk: int, agent: str = "ac") -> list[dict]:
    """One metrics.csv row per seed for chunk `chunk`, from its piece of the trace (`trace`:
    [seeds, meta-steps of the chunk]), the total reward before it (`first_rewards` [seeds]) and
    the environment steps before it (`steps_before`: [seeds], or 0 for the first chunk)."""
    cumulative = cumulative_reward(trace, first_rewards)
    start, stop = 0, trace.reward.shape[1]
    steps_before = np.broadcast_to(steps_before, trace.reward.shape[:1])
    rows = []
    for seed in range(trace.reward.shape[0]):
        steps = trace.env_steps[seed, stop - 1] - steps_before[seed]
        rows.append(
            {
                "seed": seed,
                "chunk": chunk,
                "env_steps": int(trace.env_steps[seed, stop - 1]),
                "reward_per_step": float(trace.reward[seed, start:stop].sum() / steps),
                "cumulative_reward": float(cumulative[seed, stop - 1]),
                SCHEDULE[agent][0]: float(trace.schedule[seed, start:stop].mean()),
                "policy_entropy": float(trace.policy_entropy[seed, start:stop].mean()),
                "meta_loss": float(trace.meta_loss[seed, start:stop].mean()),
            }
        )
    return rows


def flip_statistics(env_steps: np.ndarray, schedule: np.ndarray, switch_every: int) -> tuple:
    """Mean schedule value in the FLIP_WINDOW steps after and before each flip, per seed.

    A meta-step counts for the window its last environment step falls in. Flips are at multiples
    of `switch_every` strictly inside the run. Returns (after, before), each [seeds]; NaN when the
    run holds no flip.
    """
    last = env_steps.max()
    flips = np.arange(switch_every, last, switch_every)
    after, before = [], []
    for seed in range(env_steps.shape[0]):
        steps, values = env_steps[seed], schedule[seed]
        a = [values[(steps > f) & (steps <= f + FLIP_WINDOW)] for f in flips]
        b = [values[(steps > f - FLIP_WINDOW) & (steps <= f)] for f in flips]
        after.append(np.mean(np.concatenate(a)) if flips.size else np.nan)
        before.append(np.mean(np.concatenate(b)) if flips.size else np.nan)
    return np.array(after), np.array(before)


def summarize(
    trace, first_rewards, *, switch_every: int, seconds: float, agent: str = "ac"
) -> dict[str, Any]:
    """summary.json: per-seed values and their mean and standard error."""
    schedule_name = SCHEDULE[agent][1]
    env_steps = np.asarray(trace.env_steps)
    total_steps = env_steps[:, -1]
    cumulative = cumulative_reward(trace, first_rewards)
    last_window = env_steps > 0.9 * total_steps[:, None]
    steps_before_window = np.array(
        [env_steps[s][~last_window[s]].max(initial=0) for s in range(env_steps.shape[0])]
    )
    last_rewards = np.where(last_window, trace.reward, 0.0).sum(axis=1)
    per_seed = {
        "total_reward": cumulative[:, -1],
        "reward_per_step_last_10pct": last_rewards / (total_steps - steps_before_window),
    }
    after, before = flip_statistics(env_steps, np.asarray(trace.schedule), switch_every)
    per_seed[f"{schedule_name}_after_flip"] = after
    per_seed[f"{schedule_name}_before_flip"] = before
    summary: dict[str, Any] = {
        name: {**mean_se(values), "per_seed": values.tolist()} for name, values in per_seed.items()
    }
    total = float(total_steps.sum())
    summary["env_steps_per_seed"] = int(total_steps[0])
    summary["seeds"] = int(env_steps.shape[0])
    summary["env_steps_per_second"] = {
        "all_seeds": total / seconds,
        "per_seed": total / seconds / env_steps.shape[0],
    }
    summary["seconds"] = seconds
    return summary


def meta_optimizer_statistics(
    meta_grad_norm: np.ndarray,
    meta_grad_abs_max: np.ndarray,
    meta_grad_abs_median: np.ndarray,
    meta_grad_output: np.ndarray,
    *,
    adam_eps: float,
) -> dict[str, Any]:
    """summary.json's view of the meta-optimiser from per-meta-step records ([seeds,
    meta_steps] each): the global norm of the meta-gradient, the max and median of |g_i| over
    its coordinates, and the signed gradient of the meta-network's output bias (or logit).

    Per seed: ``meta_grad_norm_median`` (the global norm's median over the lifetime);
    ``meta_grad_abs_max_median`` and ``meta_grad_abs_median_median`` (the lifetime medians of the
    per-coordinate max and median |g_i|); ``meta_grad_max_below_adam_eps`` and
    ``meta_grad_median_below_adam_eps``, the fraction of meta-steps where every coordinate
    (max) or half of them (median) has |g_i| below Adam's epsilon: there Adam's step on those
    coordinates is about learning_rate x |g_i| / epsilon, a fraction of the meta-learning rate
    (Adam's epsilon is per coordinate, so the global norm, up to sqrt(coordinates) times the
    largest |g_i|, cannot say this); ``meta_grad_output_mean`` and ``meta_grad_output_positive``
    (the mean and the fraction of meta-steps > 0 of the output parameter's gradient: positive
    pushes the meta-learned value down, negative up).
    """
    per_seed = {
        "meta_grad_norm_median": np.median(meta_grad_norm, axis=1),
        "meta_grad_abs_max_median": np.median(meta_grad_abs_max, axis=1),
        "meta_grad_abs_median_median": np.median(meta_grad_abs_median, axis=1),
        "meta_grad_max_below_adam_eps": np.mean(np.asarray(meta_grad_abs_max) < adam_eps, axis=1),
        "meta_grad_median_below_adam_eps": np.mean(
            np.asarray(meta_grad_abs_median) < adam_eps, axis=1
        ),
        "meta_grad_output_mean": np.mean(meta_grad_output, axis=1),
        "meta_grad_output_positive": np.mean(np.asarray(meta_grad_output) > 0, axis=1),
    }
    return {
        name: {**mean_se(values), "per_seed": values.tolist()} for name, values in per_seed.items()
    }


def probe_context_statistics(probe_contexts: np.ndarray, names: tuple[str, ...]) -> dict:
    """summary.json's view of the meta-network on the fixed probe contexts
    (``probe_contexts``: [seeds, meta_steps, len(names)], the entropy cost or epsilon on each
    context after
    every meta-step): per context, the mean over the lifetime's last 10% of meta-steps, per
    seed and as mean ± standard error over seeds."""
    values = np.asarray(probe_contexts)
    tail = values[:, -max(1, values.shape[1] // 10) :].mean(axis=1)
    return {
        f"probe_context_{name}_last_10pct": {**mean_se(tail[:, i]), "per_seed": tail[:, i].tolist()}
        for i, name in enumerate(names)
    }


def plot_probe_contexts(
    env_steps: np.ndarray,
    probe_contexts: np.ndarray,
    names: tuple[str, ...],
    *,
    switch_every: int,
    out: Path,
    title: str,
    quantity: str = "entropy cost",
) -> Path:
    """probe_contexts.png: the meta-learned ``quantity`` (entropy cost, or epsilon) on each fixed
    context over the lifetime, mean ± standard error over seeds (Luketina et al., CoLLAs 2022,
    Figure 2)."""
    x = np.asarray(env_steps)[0]
    values = np.asarray(probe_contexts)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, name in enumerate(names):
        band(ax, x, values[:, :, i], name)
    _flips(ax, x[-1], switch_every)
    ax.set(
        xlabel="environment steps",
        ylabel=f"{quantity} on the probe context",
        title=f"{title}: meta-network on fixed contexts",
    )
    ax.legend(fontsize=7)
    path = out / "probe_contexts.png"
    plots.save(fig, path)
    return path


def _flips(ax, last_step, switch_every):
    for flip in np.arange(switch_every, last_step, switch_every):
        ax.axvline(flip, color="grey", lw=0.5, ls=":")


def _steps_per_meta_step(env_steps: np.ndarray) -> int:
    return int(np.diff(env_steps[0, :2])[0]) if env_steps.shape[1] > 1 else 1


def phase_reward_per_step(env_steps: np.ndarray, reward: np.ndarray, switch_every: int):
    """[seeds, phases] reward per step in each complete phase between flips.

    Phase p holds the meta-steps that end in steps (p * switch_every, (p + 1) * switch_every];
    object 0 pays in even phases, object 1 in odd ones. A meta-step that straddles a flip counts
    in the phase it ends in.
    """
    env_steps, reward = np.asarray(env_steps), np.asarray(reward, np.float64)
    steps_per_meta_step = _steps_per_meta_step(env_steps)
    phase = (env_steps[0] - 1) // switch_every
    num_phases = int(env_steps[0, -1] // switch_every)
    rates = [
        reward[:, phase == p].sum(1) / ((phase == p).sum() * steps_per_meta_step)
        for p in range(num_phases)
    ]
    return np.stack(rates, axis=1) if rates else np.zeros((reward.shape[0], 0))


def late_colour_rates(env_steps, reward, switch_every: int) -> tuple[dict, dict]:
    """Reward per step in the phases where object 0 / object 1 pays, over the last 25% of the
    complete phases of each colour (mean and standard error over seeds; NaN without one)."""
    rates = phase_reward_per_step(env_steps, reward, switch_every)
    by_colour = []
    for colour in (0, 1):
        phases = rates[:, colour::2]
        if phases.shape[1] == 0:
            by_colour.append({"mean": float("nan"), "se": float("nan")})
        else:
            by_colour.append(mean_se(phases[:, int(0.75 * phases.shape[1]) :].mean(1)))
    return by_colour[0], by_colour[1]


def moving_reward_per_step(trace, window_steps: int = 20_000) -> np.ndarray:
    """[seeds, meta_steps] reward per step over the trailing `window_steps` environment steps."""
    steps_per_meta_step = _steps_per_meta_step(trace.env_steps)
    width = max(1, window_steps // steps_per_meta_step)
    kernel = np.ones(width)
    sums = np.stack([np.convolve(r, kernel)[: len(r)] for r in np.asarray(trace.reward, float)])
    counts = np.convolve(np.ones(trace.reward.shape[1]), kernel)[: trace.reward.shape[1]]
    return sums / (counts * steps_per_meta_step)


def folded(trace, switch_every: int, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Schedule folded over the flip cycle: position since the last flip -> mean over cycles
    (after the first flip) and seeds. Returns (bin centres, [seeds, bins] means)."""
    steps = np.asarray(trace.env_steps)
    values = np.asarray(trace.schedule)
    position = (steps - 1) % switch_every
    index = np.minimum(position * bins // switch_every, bins - 1)
    after_first_flip = steps > switch_every
    means = np.full((steps.shape[0], bins), np.nan)
    for seed in range(steps.shape[0]):
        for b in range(bins):
            selected = values[seed][(index[seed] == b) & after_first_flip[seed]]
            if selected.size:
                means[seed, b] = selected.mean()
    centres = (np.arange(bins) + 0.5) * switch_every / bins
    return centres, means


FIGURE_1_STOP = 5_000_000  # Luketina et al., CoLLAs 2022, Figure 1: steps 4.5M to 5M
FIGURE_1_FLIPS = 5


def figure_1_window(last_steps: list[int], switch_every: int) -> tuple[int, int]:
    """(start, stop) environment steps of the Figure-1 window: the `FIGURE_1_FLIPS` flip periods
    that end at 5M steps (Luketina et al., CoLLAs 2022, Figure 1: 4.5M to 5M at flips every 100k),
    or at the end of the shortest run when one stops earlier."""
    stop = min(FIGURE_1_STOP, *last_steps)
    return max(0, stop - FIGURE_1_FLIPS * switch_every), stop


def plot_window(
    runs: list[tuple[str, Any]], *, switch_every: int, out: Path, name: str, ylabel: str
) -> Path:
    """Luketina et al.'s Figure 1 for one or more runs: the meta-learned schedule (entropy cost or
    epsilon) after every meta-step and the mean reward per step of each meta-step's rollouts
    (smoothed over 5,000 steps), both inside `figure_1_window`; mean and standard error over
    seeds (the flips fall on the same steps in every seed). `runs`: (label, Trace) pairs;
    `ylabel` names the schedule."""
    start, stop = figure_1_window([int(t.env_steps[0, -1]) for _, t in runs], switch_every)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for label, trace in runs:
        x = np.asarray(trace.env_steps[0])
        inside = (x > start) & (x <= stop)
        band(top, x[inside], np.asarray(trace.schedule)[:, inside], label)
        reward = moving_reward_per_step(trace, window_steps=5_000)
        band(bottom, x[inside], reward[:, inside], label)
    for ax in (top, bottom):
        for flip in np.arange(start - start % switch_every + switch_every, stop, switch_every):
            ax.axvline(flip, color="grey", lw=0.8, ls=":")
    top.set(ylabel=ylabel, title=f"steps {start:,} to {stop:,}: flips dotted")
    top.legend(fontsize=8, loc="upper left")
    bottom.set(xlabel="environment steps", ylabel="reward per step (5k-step window)")
    path = out / name
    plots.save(fig, path)
    return path


def plot_run(
    trace,
    first_rewards,
    *,
    switch_every: int,
    out: Path,
    title: str,
    agent: str = "ac",
) -> list[Path]:
    """Cumulative reward, moving reward per step, schedule over time and folded over the cycle."""
    x = trace.env_steps[0]
    paths = []
    schedule_label = SCHEDULE[agent][2]

    def save(fig, name):
        paths.append(plots.save(fig, out / name))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    band(ax, x, cumulative_reward(trace, first_rewards), title)
    _flips(ax, x[-1], switch_every)
    ax.set(xlabel="environment steps", ylabel="cumulative reward", title=title)
    save(fig, "cumulative_reward.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    band(ax, x, moving_reward_per_step(trace), title)
    _flips(ax, x[-1], switch_every)
    ax.set(xlabel="environment steps", ylabel="reward per step (20k-step window)", title=title)
    save(fig, "reward_per_step.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    band(ax, x, np.asarray(trace.schedule), title)
    _flips(ax, x[-1], switch_every)
    ax.set(xlabel="environment steps", ylabel=schedule_label, title=f"{title}: flips dotted")
    save(fig, "schedule.png")

    centres, means = folded(trace, switch_every)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    valid = ~np.isnan(means).any(axis=0)
    if valid.any():
        band(ax, centres[valid], means[:, valid], title)
    ax.set(
        xlabel="steps since the last flip",
        ylabel=schedule_label,
        title=f"{title}: folded over the flip cycle",
    )
    save(fig, "schedule_folded.png")
    paths.append(
        plot_window(
            [(title, trace)],
            switch_every=switch_every,
            out=out,
            name="window.png",
            ylabel=schedule_label,
        )
    )
    return paths


def check_run(run_dir: Path) -> None:
    """Check that a finished run directory's config.json and summary.json hold what this
    report reads (`comparison_rows`, `protocol_rows`, `plot_comparison`).

    Raises:
      ValueError: one sentence naming the missing file, or the file and the entry that is
        missing or of another kind than expected.
    """
    run_dir = records.require_files(run_dir, ("config.json", "summary.json", "trace.npz"))
    path, what = run_dir / "config.json", "a Two-colors run's config"
    record = records.read(path, records.RUN_CONFIG, what)
    meta = {"algo": records.one_of("fixed", "mg", "bmg"), "inner_steps": INTEGER}
    meta["bootstrap_steps"] = INTEGER
    records.check(path, record, {"config": {"meta": meta, "learner": records.OBJECT}}, what)
    agent, algo = agent_of(record["config"]), algo_of(record["config"])
    if algo == "fixed":
        learner = {"entropy_cost" if agent == "ac" else "epsilon": NUMBER}
    else:
        learner = {"context": TEXT, "outer_entropy_cost": records.optional(NUMBER)}
        if algo == "decay":
            learner.update(decay_start=NUMBER, decay_final=NUMBER)
    if agent == "q":
        learner["trace"] = TEXT
    config = {"learner": learner, "env": {"switch_every": INTEGER}}
    schema = {"config": config, "preset": records.optional(records.nullable(TEXT))}
    records.check(path, record, schema, what)
    path, what = run_dir / "summary.json", "a Two-colors run's summary"
    summary = records.read(path, records.OBJECT, what)
    schema = {
        "seeds": INTEGER,
        "env_steps_per_seed": INTEGER,
        "total_reward": STAT_PER_SEED,
        "reward_per_step_last_10pct": STAT,
        "env_steps_per_second": {"all_seeds": NUMBER},
    }
    for when in ("after", "before"):  # the schedule's name: entropy (ac) or epsilon (q)
        suffix = f"_{when}_flip"
        names = [name for name in summary if name.endswith(suffix)]
        schema[names[0] if names else SCHEDULE[agent][1] + suffix] = STAT
    if "meta_grad_abs_max_median" in summary:  # mg and bmg runs (`_coordinates`)
        schema.update(meta_grad_abs_max_median=STAT, meta_grad_abs_median_median=STAT)
    records.check(path, summary, schema, what)


def load_run(run_dir: Path):
    """(config dict, summary dict, trace arrays) of a finished Two-colors run directory."""
    config, summary, arrays = read_run(run_dir)
    missing = [name for name in ("first_rewards", *Trace._fields) if name not in arrays]
    if missing:
        raise ValueError(f"{run_dir / 'trace.npz'} lacks {missing}: not a Two-colors trace.")
    return config, summary, arrays


def agent_of(config: dict) -> str:
    """ac or q: the agent of a run's config.json "config" (by its learner's fields)."""
    return "q" if "epsilon" in config["learner"] else "ac"


def algo_of(config: dict) -> str:
    """fixed, decay, mg or bmg: the method of a run's config.json "config"."""
    algo = config["meta"]["algo"]
    return "decay" if algo == "fixed" and config["learner"].get("epsilon_decay") else algo


def run_label(config: dict) -> str:
    """Short name: agent, algo, K, L, context, a non-zero outer entropy cost and a Q(lambda)
    trace other than Peng's (``config``: a run's config.json)."""
    c = config["config"]
    agent, algo, learner, meta = agent_of(c), algo_of(c), c["learner"], c["meta"]
    trace = learner["trace"] if agent == "q" else "peng"
    prefix = "" if agent == "ac" else "q " if trace == "peng" else f"q({trace}) "
    if algo == "fixed":
        if agent == "ac":
            return f"ac entropy-cost={learner['entropy_cost']}"
        return f"{prefix}eps={learner['epsilon']}"
    if algo == "decay":
        return f"{prefix}decay {learner['decay_start']}->{learner['decay_final']}"
    label = prefix + f"{algo} K={meta['inner_steps']}"
    label += f" L={meta['bootstrap_steps']}" if algo == "bmg" else ""
    label += "" if learner["context"] == "reward" else " no-context"
    outer_entropy_cost = learner.get("outer_entropy_cost", 0.0)  # ac learners only
    return label + (f" outer-entropy={outer_entropy_cost}" if outer_entropy_cost else "")


def comparison_rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    """One table row per run."""
    rows = []
    for run_dir in run_dirs:
        config, summary, trace = load_run(run_dir)
        colour_rates = late_colour_rates(
            trace["env_steps"], trace["reward"], config["config"]["env"]["switch_every"]
        )
        rows.append(
            {
                "run": run_label(config),
                "preset": config.get("preset") or "-",
                "seeds": str(summary["seeds"]),
                "steps/seed": f"{summary['env_steps_per_seed']:,}",
                "total reward": format_mean_se(summary["total_reward"], 0),
                "reward/step, last 10%": format_mean_se(summary["reward_per_step_last_10pct"]),
                "schedule after flip": format_mean_se(_flip_stat(summary, "after"), 4),
                "schedule before flip": format_mean_se(_flip_stat(summary, "before"), 4),
                "object 0 pays, last 25%": format_mean_se(colour_rates[0]),
                "object 1 pays, last 25%": format_mean_se(colour_rates[1]),
                "meta max / median abs(g_i)": _coordinates(summary),
                "steps/s (all seeds)": f"{summary['env_steps_per_second']['all_seeds']:,.0f}",
            }
        )
    return rows


def _coordinates(summary: dict) -> str:
    """ "max / median": the lifetime medians of the meta-gradient's per-coordinate max and median
    |g_i| (mean over seeds), "-" for runs without them (fixed, or recorded before they were)."""
    if "meta_grad_abs_max_median" not in summary:
        return "-"
    largest = summary["meta_grad_abs_max_median"]["mean"]
    return f"{largest:.1e} / {summary['meta_grad_abs_median_median']['mean']:.1e}"


PUBLISHED = {  # (agent, algo, context) -> (mean, std) total reward in millions after 10M steps
    ("ac", "fixed", None): (1.24, 0.09),
    ("ac", "mg", "none"): (1.29, 0.08),
    ("ac", "mg", "reward"): (1.58, 0.06),
    ("ac", "bmg", "none"): (1.32, 0.08),
    ("ac", "bmg", "reward"): (1.74, 0.03),
    ("q", "fixed", None): (0.58, 0.07),
    ("q", "bmg", "none"): (1.78, 0.03),
    ("q", "bmg", "reward"): (1.93, 0.03),
}
"""Luketina et al., "Meta-Gradients in Non-Stationary Environments", CoLLAs 2022, Table 1:
Two-colors, mean (std) over 10 seeds of the total reward after 10M steps, read as millions."""

PUBLISHED_NAMES = {
    ("ac", "fixed"): "AC",
    ("ac", "mg"): "AC-MG",
    ("ac", "bmg"): "AC-BMG",
    ("q", "fixed"): "Q(lambda)",
    ("q", "bmg"): "Q(lambda)-BMG",
}


PUBLISHED_WORLD = {"grid_size": 5, "switch_every": 100_000, "respawn": "all", "step_penalty": 0.0}
"""The world of Luketina et al.'s Table 1 (appendix A.3): a run in another world (e.g. the public
port's step penalty and object re-spawn) is not set beside its numbers."""


def published_key(config: dict) -> tuple | None:
    """The `PUBLISHED` key of a run's config dict (None for a method Table 1 does not have, a
    run in another world than ``PUBLISHED_WORLD``, or a Q(lambda) other than Peng's)."""
    c = config["config"]
    if any(c["env"].get(name) != value for name, value in PUBLISHED_WORLD.items()):
        return None
    agent, algo = agent_of(c), algo_of(c)
    if agent == "q" and c["learner"]["trace"] != "peng":
        return None  # Table 1's Q(lambda) is Peng & Williams'
    key = (agent, algo, None if algo == "fixed" else c["learner"]["context"])
    return key if key in PUBLISHED else None


def protocol_rows(run_dirs: list[Path]) -> tuple[list[dict[str, str]], list[str]]:
    """Each run beside Luketina et al.'s Table 1 (`PUBLISHED`): total reward in millions as
    mean (sample std over seeds), and one sentence per published order (AC < MG < BMG with and
    without context; Q(lambda) < Q(lambda)-BMG) saying whether our means keep it. Runs of a
    method Table 1 lacks are left out; an order whose methods are not all among the runs is not
    judged. Published values are after 10M steps: the steps column says what ours ran."""
    rows, means = [], {}
    for run_dir in run_dirs:
        config, summary, _ = load_run(run_dir)
        key = published_key(config)
        if key is None:
            continue
        totals = np.asarray(summary["total_reward"]["per_seed"], float) / 1e6
        spread = f"{totals.std(ddof=1):.3f}" if len(totals) > 1 else "-"  # one seed: no spread
        budget = (len(totals), int(summary["env_steps_per_seed"]))
        if totals.mean() > means.get(key, (-np.inf,))[0]:  # the best setting per method
            means[key] = (totals.mean(), budget)
        name = PUBLISHED_NAMES[key[:2]]
        context = {None: "", "none": ", no context", "reward": ", reward context"}[key[2]]
        published = PUBLISHED[key]
        rows.append(
            {
                "method": name + context,
                "setting": run_label(config),
                "preset": config.get("preset") or "-",
                "seeds": str(len(totals)),
                "steps/seed": f"{summary['env_steps_per_seed']:,}",
                "total reward, M (ours)": f"{totals.mean():.3f} ({spread})",
                "published (10 seeds x 10M)": f"{published[0]:.2f} ({published[1]:.2f})",
            }
        )
    orders = []
    for context in ("none", "reward"):
        chain = [("ac", "fixed", None), ("ac", "mg", context), ("ac", "bmg", context)]
        orders.append(_order_sentence(chain, means, f"AC < AC-MG < AC-BMG ({context} context)"))
    for context in ("none", "reward"):
        chain = [("q", "fixed", None), ("q", "bmg", context)]
        orders.append(
            _order_sentence(chain, means, f"Q(lambda) < Q(lambda)-BMG ({context} context)")
        )
    return rows, [o for o in orders if o]


PUBLISHED_SEEDS, PUBLISHED_STEPS = 10, 10_000_000
"""Table 1's budget: an order is judged only for runs of at least this many seeds and steps."""


def _order_sentence(chain: list[tuple], means: dict, name: str) -> str:
    """Whether our best run per method keeps a published order; "not judged" (with the budget
    ours ran) unless every run had Table 1's budget (``PUBLISHED_SEEDS`` x ``PUBLISHED_STEPS``)."""
    if any(key not in means for key in chain):
        return ""
    values = [means[key][0] for key in chain]
    holds = all(a < b for a, b in zip(values, values[1:], strict=False))
    ours = (" < ".join if holds else " vs ".join)(f"{v:.3f}" for v in values)
    budgets = [means[key][1] for key in chain]
    short = [b for b in budgets if b[0] < PUBLISHED_SEEDS or b[1] < PUBLISHED_STEPS]
    if short:
        seeds, steps = min(b[0] for b in budgets), min(b[1] for b in budgets)
        return (
            f"published order {name}: not judged (ours {ours}, from as few as {seeds} seeds x "
            f"{steps:,} steps against Table 1's {PUBLISHED_SEEDS} x {PUBLISHED_STEPS:,})."
        )
    return f"published order {name}: {'holds' if holds else 'does not hold'} (ours {ours})."


def _flip_stat(summary: dict, when: str) -> dict:
    """The `<schedule>_<when>_flip` entry of a summary (entropy weight or epsilon)."""
    return next(v for k, v in summary.items() if k.endswith(f"_{when}_flip"))


def plot_comparison(run_dirs: list[Path], out: Path) -> list[Path]:
    """Cumulative reward, reward per step and schedule of several runs on shared axes."""
    runs = [load_run(d) for d in run_dirs]
    paths = []
    for key, ylabel, name in (
        ("cumulative", "cumulative reward", "comparison_cumulative_reward.png"),
        ("moving", "reward per step (20k-step window)", "comparison_reward_per_step.png"),
        ("schedule", "entropy weight / epsilon", "comparison_schedule.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4))
        for config, _, arrays in runs:
            trace = Trace(*(arrays[name] for name in Trace._fields))
            if key == "cumulative":
                values = cumulative_reward(trace, arrays["first_rewards"])
            elif key == "moving":
                values = moving_reward_per_step(trace)
            else:
                values = np.asarray(trace.schedule)
            band(ax, trace.env_steps[0], values, run_label(config))
        switch_every = runs[0][0]["config"]["env"]["switch_every"]
        _flips(ax, max(a["env_steps"].max() for _, _, a in runs), switch_every)
        ax.set(xlabel="environment steps", ylabel=ylabel)
        ax.legend(fontsize=8, loc="upper left")
        plots.save(fig, out / name)
        paths.append(out / name)
    agents = {agent_of(config["config"]) for config, _, _ in runs}
    ylabel = SCHEDULE[agents.pop()][2] if len(agents) == 1 else "entropy cost / epsilon"
    paths.append(
        plot_window(
            [
                (run_label(config), Trace(*(arrays[name] for name in Trace._fields)))
                for config, _, arrays in runs
            ],
            switch_every=switch_every,
            out=out,
            name="comparison_window.png",
            ylabel=ylabel,
        )
    )
    return paths


def extra_tables(run_dirs: list[Path]) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Under the comparison: our numbers beside Luketina et al.'s Table 1 and the published
    orders of the methods (held or not), when the runs match a published row."""
    rows, orders = protocol_rows(run_dirs)
    return ([rows], orders) if rows else ([], [])


REPORT = Report(check_run, comparison_rows, plot_comparison, extra_tables)
"""The Two-colors report (`bmg compare`)."""
