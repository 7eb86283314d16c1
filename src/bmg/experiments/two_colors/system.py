"""Two-colors: an actor-critic with a meta-learned entropy cost, or epsilon-greedy Q(lambda) with a
meta-learned epsilon, under a fixed, decaying, meta-gradient (`mg`) or BMG (`bmg`) schedule.

Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (the non-stationary Two-colors
experiment and the epsilon-greedy exploration experiment), with the protocol of Luketina et al.,
"Meta-Gradients in Non-Stationary Environments", CoLLAs 2022, appendix A.3.

This module only declares the system (importing it loads no JAX, so `--help` is fast): its
config and presets, the learner and the meta-learning config it builds, and how the runner's
trace becomes the report's columns. The lifetime runs on the Anakin runner
(`bmg.train.anakin`: compiled chunks, seeds vmapped and sharded, orbax
checkpoints, exact resume); `run` drives it into a run directory.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path

import numpy as np

from bmg.agents.configs import (
    PROBE_CONTEXTS,
    output_parameter,
)
from bmg.experiments.api import System
from bmg.experiments.two_colors.config import (  # noqa: F401  (the system's config, re-exported)
    AGENTS,
    CONFIG,
    MAX_STEPS,
    PORT,
    PORT_SOURCE,
    PRESET_VALUES,
    PRESETS,
    RELATED,
    RELATED_GRID,
    SETTINGS,
    SMALL_ENTROPY,
    EnvConfig,
    Preset,
    TwoColorsConfig,
    default_inner_steps,
    select,
    unused_fields,
)
from bmg.experiments.two_colors.report import REPORT, Trace
from bmg.train import driver
from bmg.train.driver import CHECKPOINTS


def make_learner(config: TwoColorsConfig, hyper: dict | None = None, env=None):
    """The `bmg.core.Learner` of `config.learner` on Two-colors; `hyper` (learner field ->
    float32 scalar, e.g. {"entropy_cost": x}) overrides numbers of `config.learner` as data
    (a sweep lane's values, see `make_sweep_runner`). `env`: (environment, its params), made
    here from `config.env` when None (a sweep makes them once, outside the traced function:
    arrays made while tracing become constants the compiled program takes as extra inputs)."""
    from bmg.agents.actor_critic import make_actor_critic
    from bmg.agents.q_lambda import make_q_lambda
    from bmg.envs import two_colors

    env, env_params = (two_colors.TwoColors(), config.env.params()) if env is None else env
    schedule = config.algo if config.algo in ("fixed", "decay") else "meta"
    make = make_actor_critic if config.agent == "ac" else make_q_lambda
    return make(config.learner, env, env_params, schedule=schedule, hyper=hyper)


SCHEDULE_PROBES = ("entropy_cost", "epsilon")  # the meta-learned quantity of ac / q
META_GRAD_NORM = "meta/grad_norm"
"""mg / bmg: the global norm of each meta-step's meta-gradient, recorded per meta-step
(trace.npz: meta_grad_norm) and summarised in summary.json. (Adam's update norm is not recorded:
computing it changed how XLA fused the meta-step, and a sweep's lanes were then no longer bit-
identical to single runs.)"""
META_GRAD_COORDINATES = {
    "meta/grad_abs_max": "meta_grad_abs_max",
    "meta/grad_abs_median": "meta_grad_abs_median",
}
"""mg / bmg: the max and median of |g_i| over the meta-gradient's coordinates per meta-step
(``bmg.core.gradient_statistics``), the quantities Adam's per-coordinate epsilon acts on; the
metric's name -> its trace.npz record."""
META_GRAD_OUTPUT = "meta_grad_output"
"""trace.npz: mg / bmg, the signed meta-gradient of the meta-network's output bias (or of the one
logit without context, ``bmg.agents.configs.output_parameter``) per meta-step; positive pushes
the meta-learned value down."""


def output_gradient_metric(config: TwoColorsConfig) -> str:
    """The meta-step metric of the output parameter's gradient (``META_GRAD_OUTPUT``)."""
    return f"meta/grad/{output_parameter(config.learner)}"


def recorded_metrics(config: TwoColorsConfig) -> tuple[str, ...]:
    """The meta-step metrics a run records per meta-step (none for fixed and decay): the
    meta-loss, the meta-gradient's global norm, its per-coordinate max and median |g_i|, and the
    output parameter's signed gradient."""
    if config.meta.algo == "fixed":
        return ()
    return (
        "meta/loss",
        META_GRAD_NORM,
        *META_GRAD_COORDINATES,
        output_gradient_metric(config),
    )


PROBE_CONTEXT_NAMES = tuple(f"context/{name}" for name in PROBE_CONTEXTS)


def recorded_probes(config: TwoColorsConfig) -> tuple[str, ...]:
    """The learner probes a run records per meta-step: the counters, the policy's entropy, the
    meta-learned quantity and, for an actor-critic whose entropy cost is a meta-learned function
    of the reward context (mg / bmg), its value on the five fixed probe contexts
    (``PROBE_CONTEXT_NAMES``; Luketina et al.'s Figure 2), and likewise epsilon for Q(lambda)
    with BMG (Figure 2b). Each record is 20 bytes per meta-step and seed: 13 MB per seed over 10M
    steps for Q(lambda)-BMG with L = 16 (15 environment steps per meta-step); Q(lambda)-MG, one
    meta-step per environment step, would need 200 MB and does not record them."""
    schedule = "entropy_cost" if config.agent == "ac" else "epsilon"
    probes = ("env_steps", "reward_sum", "policy_entropy", schedule)
    meta_algos = ("mg", "bmg") if config.agent == "ac" else ("bmg",)
    if config.learner.context == "reward" and config.algo in meta_algos:
        probes += PROBE_CONTEXT_NAMES
    return probes


def report_trace(initial: dict, trace: dict) -> tuple[Trace, np.ndarray]:
    """(Trace, first-rollout reward per seed) from the runner's probes and metrics.

    Rewards per meta-step are differences of the cumulative `reward_sum` probe, taken in float64.
    """
    cumulative = np.concatenate(
        [initial["reward_sum"][:, None], trace["reward_sum"]], axis=1
    ).astype(np.float64)
    schedule = next(name for name in SCHEDULE_PROBES if name in trace)
    meta_loss = trace.get("meta/loss", np.zeros_like(trace["reward_sum"]))
    report = Trace(
        env_steps=np.asarray(trace["env_steps"]),
        reward=np.diff(cumulative, axis=1),
        schedule=np.asarray(trace[schedule]),
        policy_entropy=np.asarray(trace["policy_entropy"]),
        meta_loss=np.asarray(meta_loss),
    )
    return report, cumulative[:, 0]


def make_runner(config: TwoColorsConfig, run_dir: Path | None = None):
    """The Anakin runner of `config`, checkpointing into `run_dir/checkpoints` when given."""
    from bmg.train.anakin import Anakin
    from bmg.train.checkpoint import Checkpointer

    return Anakin(
        make_learner(config),
        config.meta,
        num_seeds=config.lifetime.seeds,
        first_seed=config.lifetime.seed,
        meta_steps_per_chunk=config.meta_steps_per_chunk,
        num_chunks=config.num_chunks,
        metrics=recorded_metrics(config),
        probes=recorded_probes(config),
        checkpointer=None if run_dir is None else Checkpointer(run_dir / CHECKPOINTS),
        lane_group=config.lane_group,
    )


def chunk_rows(config: TwoColorsConfig, piece: driver.Piece) -> list[dict]:
    """One metrics.csv row per seed for a chunk of the runner's trace."""
    from bmg.experiments.two_colors import report

    trace, first = report_trace(piece.before, piece.values)
    steps_before = 0 if piece.index == 0 else piece.before["env_steps"]  # as the report counts
    return report.chunk_rows(trace, first, steps_before, piece.index, config.agent)


def _label(config: TwoColorsConfig) -> str:
    from bmg.experiments.two_colors import report

    return report.run_label({"config": dataclasses.asdict(config)})


def _csv_fields(config: TwoColorsConfig) -> list[str]:
    from bmg.experiments.two_colors import report

    return report.csv_fields(config.agent)


def _detail(config: TwoColorsConfig, rows: list[dict]) -> str:
    return f"reward/step {rows[0]['reward_per_step']:.3f} (seed {config.lifetime.seed})"


def prepare(config: TwoColorsConfig) -> driver.Prepared:
    """`bmg.train.driver.prepare`: compiled before any run directory exists (a lifetime that
    cannot fit in memory is refused with one sentence and leaves nothing behind); says how long
    compiling took."""
    from bmg.train.logging import make_console

    prepared = driver.prepare(config, make_runner)
    make_console().print(f"compiled in {prepared.runner.compile_seconds:.1f} s")
    return prepared


def run(config: TwoColorsConfig | driver.Prepared, run_dir: Path, *, resume: bool, console) -> dict:
    """Train (or continue) the lifetime of `config` (or of a `prepare`d one) in `run_dir`
    (`bmg.train.driver.drive`): metrics.csv, TensorBoard events, trace.npz, summary.json and plots;
    returns the summary.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError (ValueErrors with one sentence).
    """
    return driver.drive_anakin(
        REPORTING, make_runner, config, run_dir, resume=resume, console=console
    )


def write_results(
    config: TwoColorsConfig,
    run_dir: Path,
    initial: dict,
    trace: dict,
    *,
    seconds: float,
    compile_seconds: float,
    host_seconds: float,
) -> dict:
    """trace.npz, summary.json and the plots of a finished lifetime (the runner's `initial`
    probes [seeds] and `trace` [seeds, meta_steps]) in `run_dir`; returns the summary."""
    from bmg.experiments.two_colors import report
    from bmg.train.rundir import save_npz, write_json

    label = report.run_label({"config": dataclasses.asdict(config)})
    extra = {}  # trace.npz records beyond Trace's, when the run recorded them
    if META_GRAD_NORM in trace:
        extra["meta_grad_norm"] = np.asarray(trace[META_GRAD_NORM])
        for metric, record in META_GRAD_COORDINATES.items():
            extra[record] = np.asarray(trace[metric])
        extra[META_GRAD_OUTPUT] = np.asarray(trace[output_gradient_metric(config)])
    if PROBE_CONTEXT_NAMES[0] in trace:  # [seeds, meta_steps, 5]
        extra["probe_contexts"] = np.stack([trace[n] for n in PROBE_CONTEXT_NAMES], axis=-1)
    trace, first = report_trace(initial, trace)
    save_npz(run_dir / "trace.npz", first_rewards=first, **trace._asdict(), **extra)
    summary = report.summarize(
        trace,
        first,
        switch_every=config.env.switch_every,
        seconds=seconds,
        agent=config.agent,
    )
    if "meta_grad_norm" in extra:
        summary.update(
            report.meta_optimizer_statistics(
                extra["meta_grad_norm"],
                extra["meta_grad_abs_max"],
                extra["meta_grad_abs_median"],
                extra[META_GRAD_OUTPUT],
                adam_eps=config.meta.adam_eps,
            )
        )
    if "probe_contexts" in extra:
        summary.update(report.probe_context_statistics(extra["probe_contexts"], PROBE_CONTEXTS))
    summary["compile_seconds"] = compile_seconds
    summary["host_seconds"] = host_seconds
    report.plot_run(
        trace,
        first,
        switch_every=config.env.switch_every,
        out=run_dir,
        title=label,
        agent=config.agent,
    )
    if "probe_contexts" in extra:
        report.plot_probe_contexts(
            trace.env_steps,
            extra["probe_contexts"],
            PROBE_CONTEXTS,
            quantity="entropy cost" if config.agent == "ac" else "epsilon",
            switch_every=config.env.switch_every,
            out=run_dir,
            title=label,
        )
    # summary.json last: it marks the run finished, so a run interrupted while its plots are
    # drawn still resumes (from its last checkpoint) and finishes
    write_json(run_dir / "summary.json", summary)
    return summary


REPORTING = driver.Reporting(
    name="two-colors",
    unit="steps",
    x_field="env_steps",
    label=_label,
    csv_fields=_csv_fields,
    chunk_rows=chunk_rows,
    detail=_detail,
    write_results=write_results,
)


# Sweeps ---------------------------------------------------------------------------------------

SWEEPABLE: dict[str, tuple[str | None, str]] = {
    "learner.entropy_cost": (
        "ac",
        "the fixed baseline's entropy cost (and mg / bmg's start without learner.meta_initial)",
    ),
    "learner.meta_initial": (None, "mg / bmg: the meta-learned value at initialisation"),
    "learner.outer_entropy_cost": ("ac", "mg / bmg: the entropy cost inside the meta-objective"),
    "learner.learning_rate": (None, "the learner's inner learning rate"),
    "learner.epsilon": (
        "q",
        "the fixed baseline's epsilon (and mg / bmg's start without learner.meta_initial)",
    ),
    "meta.learning_rate": (None, "mg / bmg: the meta-optimiser's Adam learning rate"),
    "meta.adam_eps": (None, "mg / bmg: the meta-optimiser's Adam epsilon"),
}
"""Numbers a sweep runs as data in one compiled program (field -> (the agent it belongs to, or
None for both; meaning)). K, L and every other field change the program's shapes or structure:
one sweep per value."""

Grid = dict[str, tuple[float, ...]]
"""field -> candidate values, e.g. {"learner.entropy_cost": (0.0, 0.1)}; configurations are the
cartesian product, in the grid's order (the last field varies fastest)."""


def _hyper_name(field: str) -> str:
    """The lane's `hyper` key of a grid field: the learner's field name (entropy_cost), or the
    meta-optimiser's (meta_learning_rate, meta_adam_eps)."""
    group, name = field.split(".")
    return f"meta_{name}" if group == "meta" else name


def parse_grid(specs: list[str]) -> Grid:
    """`["learner.entropy-cost=0,0.1", "meta.learning-rate=1e-3,1e-4"]` -> a `Grid` (dashes read
    as underscores, as tyro spells flags).

    Raises:
      ValueError: a spec without `=`, a field that is not sweepable, a value that is not a
        number, a repeated field or value, two values equal in float32 (one sentence naming it
        and what is accepted).
    """
    grid: Grid = {}
    accepted = ", ".join(SWEEPABLE)
    for spec in specs:
        field, sep, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(
                f"--grid {spec!r} must read FIELD=V1,V2,... with FIELD one of: {accepted}."
            )
        if field not in SWEEPABLE:
            raise ValueError(
                f"--grid field {field!r} is not a sweepable number; sweepable fields: {accepted} "
                "(K, L and other fields change the program: run one sweep per value)."
            )
        if field in grid:
            raise ValueError(f"--grid field {field!r} is given twice; give its values once.")
        try:
            numbers = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(
                f"--grid {field} values must be numbers separated by commas, got {values!r}."
            ) from None
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"--grid {field} repeats a value in {values!r}; give each once.")
        lanes = np.float32(numbers).tolist()  # the precision a lane runs its numbers at
        for i, j in itertools.combinations(range(len(numbers)), 2):
            if lanes[i] == lanes[j]:
                raise ValueError(
                    f"--grid {field} values {numbers[i]!r} and {numbers[j]!r} are one number in "
                    "float32, the precision the sweep's lanes run at (two lanes of one "
                    "configuration); give each value once."
                )
        grid[field] = numbers
    if not grid:
        raise ValueError(f"a sweep needs at least one --grid FIELD=V1,V2,... ({accepted}).")
    return grid


def _with_field(config: TwoColorsConfig, field: str, value: float) -> TwoColorsConfig:
    group, name = field.split(".")
    inner = dataclasses.replace(getattr(config, group), **{name: value})
    return dataclasses.replace(config, **{group: inner})


def sweep_configs(base: TwoColorsConfig, grid: Grid) -> list[TwoColorsConfig]:
    """One validated config per grid point (the cartesian product; `dataclasses.replace` runs
    every config check, so a bad value fails here, before anything compiles).

    Raises:
      ValueError: a field that is not sweepable, that belongs to the other agent, or that has no
        effect on `base` (`unused_fields`); a grid value the config refuses (one sentence
        naming both).
    """
    unused = unused_fields(base)  # e.g. the meta-optimiser's numbers with --algo fixed
    for field in grid:
        if field not in SWEEPABLE:
            raise ValueError(
                f"--grid field {field!r} is not sweepable; sweepable: {', '.join(SWEEPABLE)}."
            )
        agent = SWEEPABLE[field][0]
        if agent not in (None, base.agent):
            raise ValueError(
                f"--grid {field} belongs to agent {agent}, this sweep runs agent {base.agent}; "
                "sweep that agent's fields or meta.learning_rate."
            )
        if field in unused:
            raise ValueError(f"--grid {field} has no effect {unused[field]}; drop it")
    configs = []
    for values in itertools.product(*grid.values()):
        config = base
        for field, value in zip(grid, values, strict=True):
            try:
                config = _with_field(config, field, value)
            except ValueError as error:
                raise ValueError(f"--grid {field}={value:g}: {error}") from None
        configs.append(config)
    return configs


def sweep_lanes(base: TwoColorsConfig, grid: Grid) -> tuple[dict[str, np.ndarray], list[int]]:
    """(hyper, lane_seeds) of a sweep: lane c * seeds + s runs configuration c (the
    `sweep_configs` order) with seed `base.seed + s`; hyper maps the lane's `hyper` names to
    float32 [configurations * seeds]."""
    points = list(itertools.product(*grid.values()))
    hyper = {
        _hyper_name(field): np.repeat(
            np.asarray([p[i] for p in points], np.float32), base.lifetime.seeds
        )
        for i, field in enumerate(grid)
    }
    lifetime = base.lifetime
    seeds = [lifetime.seed + s for _ in points for s in range(lifetime.seeds)]
    return hyper, seeds


def make_sweep_runner(base: TwoColorsConfig, grid: Grid, checkpoint_dir: Path | None = None):
    """The Anakin runner of a whole sweep: one compiled program whose lanes are the grid's
    configurations x `base.seeds` seeds, vmapped and sharded over devices; lane i reproduces the
    single run (`make_runner`) of its configuration and seed. Each lane's learner and
    meta-optimiser (`optax.adam(meta_learning_rate, eps=meta_adam_eps)`, as `make_meta_learner`
    builds it) are made from the lane's numbers inside the traced function.

    Raises:
      ValueError: see `sweep_configs`.
    """
    import optax

    from bmg.core import make_meta_learner
    from bmg.train.anakin import Anakin
    from bmg.train.checkpoint import Checkpointer

    sweep_configs(base, grid)  # validates every grid point
    hyper, seeds = sweep_lanes(base, grid)
    from bmg.envs import two_colors

    env = (two_colors.TwoColors(), base.env.params())

    meta_fields = ("meta_learning_rate", "meta_adam_eps")

    def build(lane_hyper):
        agent_hyper = {k: v for k, v in lane_hyper.items() if k not in meta_fields}
        learner = make_learner(base, hyper=agent_hyper, env=env)
        optimizer = None
        if any(name in lane_hyper for name in meta_fields):
            optimizer = optax.adam(
                lane_hyper.get("meta_learning_rate", base.meta.learning_rate),
                eps=lane_hyper.get("meta_adam_eps", base.meta.adam_eps),
            )
        return learner, make_meta_learner(learner, base.meta, meta_optimizer=optimizer)

    return Anakin(
        build,
        None,
        num_seeds=len(seeds),
        first_seed=base.lifetime.seed,
        meta_steps_per_chunk=base.meta_steps_per_chunk,
        num_chunks=base.num_chunks,
        metrics=recorded_metrics(base),
        probes=recorded_probes(base),
        checkpointer=None if checkpoint_dir is None else Checkpointer(checkpoint_dir),
        hyper=hyper,
        lane_seeds=seeds,
        lane_group=base.lane_group,
    )


def config_dir_name(index: int, grid: Grid, config: TwoColorsConfig) -> str:
    """`03-learner.entropy_cost=0.2-meta.learning_rate=0.001`: a configuration's run
    directory."""
    values = [f"{field}={_get_field(config, field):g}" for field in grid]
    return "-".join([f"{index:02d}", *values])


def _get_field(config: TwoColorsConfig, field: str) -> float:
    group, name = field.split(".")
    return getattr(getattr(config, group), name)


def method_label(config: TwoColorsConfig) -> str:
    """The method a sweep ranks settings of: agent, algo, K, L (bmg) and the context."""
    label = f"{config.agent} {config.algo}"
    if config.algo in ("mg", "bmg"):
        label += f" K={config.meta.inner_steps}"
        label += f" L={config.meta.bootstrap_steps}" if config.algo == "bmg" else ""
        label += "" if config.learner.context == "reward" else " no-context"
    return label


def sweep_rows(base: TwoColorsConfig, grid: Grid, summaries: list[dict]) -> list[dict]:
    """One row per configuration, best total reward first (the published protocol picks the
    best setting per method by total reward: Luketina et al., CoLLAs 2022, appendix A.3)."""
    from bmg.experiments.report.stats import format_mean_se

    rows = []
    configs = sweep_configs(base, grid)
    for index, (config, summary) in enumerate(zip(configs, summaries, strict=True)):
        total = summary["total_reward"]
        rows.append(
            {
                "run": config_dir_name(index, grid, config),
                "method": method_label(base),
                **{field: f"{_get_field(config, field):g}" for field in grid},
                "seeds": str(summary["seeds"]),
                "total reward": format_mean_se(total, 0),
                "total_reward_mean": total["mean"],
                "reward/step, last 10%": format_mean_se(summary["reward_per_step_last_10pct"]),
            }
        )
    rows.sort(key=lambda row: -row["total_reward_mean"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = str(rank)
    return rows


def run_sweep(base: TwoColorsConfig, grid: Grid, sweep_dir: Path, *, resume: bool, console):
    """Run (or continue) a sweep in `sweep_dir`: sweep_config.json, checkpoints/ while it runs,
    then one ordinary run directory per configuration (config.json, trace.npz, summary.json,
    plots: `bmg compare` reads them) and sweep.md / sweep.json ranking them by total reward.
    Returns the rows of sweep.json.

    Raises:
      NonFiniteError / OutOfMemoryError / CheckpointError / ValueError (one sentence).
    """
    from bmg.experiments.report.tables import markdown_table
    from bmg.train import rundir

    configs = sweep_configs(base, grid)
    runner = make_sweep_runner(base, grid, sweep_dir / CHECKPOINTS)
    lanes = runner.num_seeds
    console.print(
        f"[bold]two-colors sweep[/bold]: {len(configs)} configurations x {base.lifetime.seeds} "
        "seeds = "
        f"{lanes} lanes x {base.total_env_steps:,} steps in {base.num_chunks} chunks -> "
        f"{sweep_dir}"
    )
    runner.compile()
    console.print(f"compiled in {runner.compile_seconds:.1f} s")
    # A sweep stopped before its first save has no finished work: its recorded grid starts over
    # (the same numbers as an uninterrupted sweep: the lifetime is deterministic).
    started = resume and runner.checkpointer.latest_step() is not None
    if resume and not started:
        console.print("no checkpoint yet (stopped during the first chunk): starting over")
    state = runner.restore() if started else runner.start()

    def on_chunk(info):
        rate = info.meta_steps_per_second * base.steps_per_meta_step
        console.print(
            f"chunk {info.state.chunks_done}/{info.num_chunks}: {rate:,.0f} steps/s (all "
            f"lanes), host {info.chunk_host_seconds:.2f} s / device {info.chunk_seconds:.2f} s"
        )

    result = runner.run(state, on_chunk=on_chunk)
    final = result.state
    summaries = []
    for index, config in enumerate(configs):
        seeds = base.lifetime.seeds
        lanes_of = slice(index * seeds, (index + 1) * seeds)
        run_dir = sweep_dir / config_dir_name(index, grid, config)
        run_dir.mkdir(parents=True, exist_ok=True)
        as_json = rundir.to_json(config)
        from bmg.train.rundir import config_digest

        rundir.write_config(
            run_dir,
            config,
            experiment="two-colors",
            config_digest=config_digest(as_json),
            sweep=index,
        )
        summaries.append(
            write_results(
                config,
                run_dir,
                {k: v[lanes_of] for k, v in final.initial.items()},
                {k: v[lanes_of] for k, v in final.trace.items()},
                seconds=final.seconds,  # the whole sweep's device time (shared by its lanes)
                compile_seconds=result.compile_seconds,
                host_seconds=final.host_seconds,
            )
        )
    rows = sweep_rows(base, grid, summaries)
    rundir.write_json(
        sweep_dir / "sweep.json",
        {
            "grid": {k: list(v) for k, v in grid.items()},
            "lanes": lanes,
            "seconds": final.seconds,
            "host_seconds": final.host_seconds,
            "compile_seconds": result.compile_seconds,
            "env_steps_per_second": lanes * base.total_env_steps / final.seconds,
            "rows": rows,
        },
    )
    table = [{k: v for k, v in row.items() if k != "total_reward_mean"} for row in rows]
    rundir.write_atomic(sweep_dir / "sweep.md", markdown_table(table) + "\n")
    shutil.rmtree(sweep_dir / CHECKPOINTS, ignore_errors=True)
    return rows


SYSTEM = System(SETTINGS, run, REPORT, prepare=prepare)
"""`bmg two-colors`: the lifetime on the Anakin runner (`run`), compiled first (`prepare`)."""
