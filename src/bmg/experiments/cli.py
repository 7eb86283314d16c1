"""The `bmg` command line.

  bmg two-colors {default,demo,paper,exploration} [--out DIR] [flags]
  bmg two-colors resume RUN_DIR
  bmg two-colors sweep PRESET --grid FIELD=V1,V2,... [--grid ...] [--out DIR] [flags]
  bmg two-colors resume SWEEP_DIR
  bmg fewshot {default,tiny,paper} --data-dir DIR [--out DIR] [flags]
  bmg fewshot resume RUN_DIR
  bmg minatar {default,demo,paper} [--out DIR] [flags]
  bmg minatar resume RUN_DIR
  bmg atari {default,demo,paper} [--out DIR] [flags]
  bmg atari resume RUN_DIR
  bmg fewshot make-synthetic --out DIR --format {csv,pkl} --classes C --per-class N --size S
  bmg compare RUN_DIR [RUN_DIR ...] [--out DIR]

A preset is a tyro subcommand: it sets the defaults that the flags after it override; every flag
is a field of the experiment's config (`bmg two-colors paper --help` lists them with defaults
and sources). `resume` continues an interrupted run exactly where its last checkpoint ended.
Heavy modules (JAX, orbax, the agents) are imported only once a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Annotated, Generic, TypeVar, Union

from bmg.train.rundir import check_digest, config_digest

COMMANDS = {
    "two-colors": "train fixed / mg / bmg on Two-colors; writes a run directory",
    "fewshot": "meta-train maml / fomaml / bmg on MiniImagenet-format data; writes a run directory",
    "minatar": "train impala / stacx / bmg on a MinAtar game; writes a run directory",
    "atari": "train impala / stacx / bmg on an Atari game (ALE, Sebulba); writes a run directory",
    "compare": "table and plots comparing finished runs",
}

C = TypeVar("C")


def use_all_cpu_cores() -> None:
    """Expose each CPU core as a JAX device (call it before jax is imported) so seeds run in
    parallel; a device count already in ``XLA_FLAGS`` is kept. The CLI and the benchmarks use it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = os.cpu_count() or 1
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def print_table(console, rows) -> None:
    """A rich table on a terminal; the markdown table in logs (no wrapping at 80 columns)."""
    from bmg.experiments.tables import markdown_table, rich_table

    if console.is_terminal:
        console.print(rich_table(rows))
    else:
        print(markdown_table(rows))


@dataclasses.dataclass(frozen=True)
class Run(Generic[C]):
    """A new run of a preset, its fields overridden by flags."""

    config: C
    out: str | None = None
    """run directory (created; must not hold a run). Default: runs/<experiment>/<algo>-<time>."""
    preset: str | None = None
    """the preset the run started from (recorded in config.json; `bmg compare` shows it)."""


@dataclasses.dataclass(frozen=True)
class Resume:
    """Continue an interrupted run from its last checkpoint, with the config.json in RUN_DIR."""

    run_dir: Path
    """the directory of the interrupted run (positional: `resume RUN_DIR`)."""


def parse_run(
    argv: list[str], config_cls, presets: dict, prog: str, description: str, *, resume=True
):
    """A `Run` (a preset subcommand with flags) or, with `resume`, a `Resume` from `argv`,
    through tyro.

    `presets` maps a subcommand name to (description, field overrides). A bad value exits with
    one sentence (`ValueError` from a config's validation).
    """
    import tyro

    from bmg.checks import nested_checks_deferred

    def run_type(name: str):
        help_text, overrides = presets[name]
        flattened = Annotated[config_cls, tyro.conf.arg(name="")]
        typed = dataclasses.make_dataclass(
            "Run",
            [
                ("config", flattened),
                ("out", str | None, dataclasses.field(default=None)),
            ],
            frozen=True,
        )
        typed.__doc__ = Run.__doc__
        return Annotated[
            typed,
            tyro.conf.subcommand(
                name, default=typed(config=config_cls(**overrides)), description=help_text
            ),
        ]

    resume_type = dataclasses.make_dataclass(
        "Resume", [("run_dir", tyro.conf.Positional[Path])], frozen=True
    )
    resume_subcommand = Annotated[
        resume_type, tyro.conf.subcommand("resume", description=Resume.__doc__)
    ]
    resumes = (resume_subcommand,) if resume else ()
    choices = Union[tuple(run_type(name) for name in presets) + resumes]  # noqa: UP007
    try:
        # nested configs are checked by the top-level config, so that an error names the path
        with nested_checks_deferred():
            parsed = tyro.cli(
                choices,
                args=argv,
                prog=prog,
                description=description,
                config=(tyro.conf.AvoidSubcommands, tyro.conf.FlagConversionOff),
            )
    except ValueError as error:  # a config's validation: one sentence, no traceback
        sys.exit(f"{prog}: error: {error}")
    if isinstance(parsed, resume_type):
        return Resume(parsed.run_dir)
    preset = next((arg for arg in argv if arg in presets), None)  # the subcommand's name
    return Run(config=parsed.config, out=parsed.out, preset=preset)


FLAG_ALIASES = {"--k": "inner_steps", "--l": "bootstrap_steps"}


def given_fields(argv: list[str]) -> set[str]:
    """The config fields that flags in ``argv`` name: ``--bootstrap-steps 4``, ``--l=4`` ->
    ``bootstrap_steps``; ``--stacx.target-step sgd`` -> ``stacx.target_step``."""
    fields = set()
    for arg in argv:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            fields.add(FLAG_ALIASES.get(flag, flag[2:].replace("-", "_")))
    return fields


def refuse_unused_flags(argv: list[str], config, unused_fields, prog: str) -> None:
    """Exit with one sentence when a flag sets a field that has no effect on ``config``
    (``unused_fields(config)`` -> {field: "with --algo fixed ..."}), instead of ignoring it."""
    unused = unused_fields(config)
    flags = {FLAG_ALIASES.get(arg.split("=", 1)[0]): arg.split("=", 1)[0] for arg in argv}
    for field in sorted(given_fields(argv) & set(unused)):
        flag = flags.get(field, "--" + field.replace("_", "-"))  # as typed (--l)
        sys.exit(f"{prog}: error: {flag} has no effect {unused[field]}; drop it.")


def start_run_dir(args, experiment: str, config_cls, prog: str, prepare=None, check_new=None):
    """(config, prepared, run_dir, resumed) for a new run or a resume.

    `prepare(config)` (e.g. loading and checking a dataset) runs before a new run's directory is
    made, so bad input leaves nothing behind; `prepared` is its result (None without it);
    `check_new(config)` likewise, for a new run only (atari: a used shared checkpoint_dir). Exits
    with one sentence if the input is bad, the directory cannot be this run's, holds a finished
    run, or its config.json was edited after the start.
    """
    from bmg.train import records, rundir

    hint = f"; to continue it, run `{prog} resume DIR`"
    try:
        if isinstance(args, Run):
            config = args.config
            if args.out is not None:  # a bad, used or locked --out fails before any work
                out = rundir.check_out(args.out)
                if rundir.is_run_dir(out):
                    raise ValueError(
                        f"--out {out} already holds a run (config.json); choose a new directory "
                        "so finished work is never overwritten"
                        + ("" if (out / "summary.json").exists() else hint.replace("DIR", str(out)))
                        + "."
                    )
                if out.is_dir():
                    rundir.lock_run_dir(out)
            if check_new is not None:
                check_new(config)
            prepared = prepare(config) if prepare else None
            run_dir = rundir.make_run_dir(args.out, experiment, config.algo, resume_hint=hint)
            rundir.write_config(
                run_dir,
                config,
                experiment=experiment,
                config_digest=config_digest(rundir.to_json(config)),
                preset=args.preset,
            )
            return config, prepared, run_dir, False
        run_dir = args.run_dir
        if not rundir.is_run_dir(run_dir):
            raise ValueError(f"{run_dir} holds no run (config.json is missing); nothing to resume.")
        if (run_dir / "summary.json").exists():
            raise ValueError(f"{run_dir} holds a finished run (summary.json); nothing to resume.")
        rundir.lock_run_dir(run_dir)
        path = run_dir / "config.json"
        record = records.read(path, records.RUN_CONFIG, "a run's config")
        if record.get("experiment", experiment) != experiment:
            raise ValueError(
                f"{run_dir} holds a {record['experiment']} run, not a {experiment} run; continue "
                f"it with `bmg {record['experiment']} resume {run_dir}`."
            )
        check_digest(path, record.get("config_digest"), config_digest(record["config"]), "run")
        config = rundir.read_config(run_dir, config_cls)
        prepared = prepare(config) if prepare else None
        return config, prepared, run_dir, True
    except ValueError as error:
        kind = "data error" if type(error).__name__ == "DataError" else "error"
        sys.exit(f"{prog}: {kind}: {error}")


def start_backend(prog: str) -> None:
    """Start JAX's backend, or exit with one sentence naming the platforms JAX_PLATFORMS asked
    for and those this machine has (`bmg.train.backend.check_backend`)."""
    from bmg.train.backend import check_backend

    try:
        check_backend()
    except ValueError as error:
        sys.exit(f"{prog}: error: {error}")


def run_experiment(
    argv: list[str],
    *,
    module: str,
    experiment: str,
    prog: str,
    description: str,
    backend_check: bool = True,
):
    """Parse, make or reopen the run directory, run the experiment module, print its table.

    `module` declares `CONFIG` (the config class), `PRESETS`, `run(config, run_dir, *, resume,
    console) -> summary`, `result_rows(run_dir) -> table rows` and optionally `prepare(config)`
    (checks done before the run directory exists; its result is passed to `run` instead of the
    config) and `check_new_run(config)` (checks of a new run only, before its directory exists).
    Ctrl-C and errors end with one sentence; an interrupted run says how to continue. JAX's
    backend is started once the command line is read (`start_backend`); `backend_check=False`
    leaves that to the module's `prepare` (Atari: after joining a multi-process run).
    """
    import importlib

    experiment_module = importlib.import_module(module)
    config_cls = experiment_module.CONFIG
    args = parse_run(argv, config_cls, experiment_module.PRESETS, prog, description)
    unused_fields = getattr(experiment_module, "unused_fields", None)
    if isinstance(args, Run) and unused_fields is not None:
        refuse_unused_flags(argv, args.config, unused_fields, prog)
    if backend_check:
        start_backend(prog)
    prepare = getattr(experiment_module, "prepare", None)
    try:
        check_new = getattr(experiment_module, "check_new_run", None)
        start = start_run_dir(args, experiment, config_cls, prog, prepare, check_new)
    except KeyboardInterrupt:  # while preparing (e.g. compiling): no run has started
        where = f"; {args.run_dir} is as it was" if isinstance(args, Resume) else ""
        sys.exit(f"\n{prog}: interrupted before the run started; nothing was written{where}.")
    config, prepared, run_dir, resumed = start
    from bmg.train import rundir
    from bmg.train.logging import make_console

    console = make_console()  # log lines are never wrapped (one line each in a log file)
    try:
        if resumed:
            rundir.record_resume(run_dir)
        target = config if prepared is None else prepared
        experiment_module.run(target, run_dir, resume=resumed, console=console)
    except KeyboardInterrupt:
        where = getattr(experiment_module, "checkpoint_directory", None)  # atari: shared dirs
        checkpoints = run_dir / "checkpoints" if where is None else where(config, run_dir)
        if checkpoints is None or not any(Path(checkpoints).glob("[0-9]*")):
            sys.exit(
                f"\n{prog}: interrupted before the first checkpoint; there is nothing to resume: "
                f"start again (delete {run_dir} or choose another --out)."
            )
        sys.exit(
            f"\n{prog}: interrupted; every finished chunk or score is checkpointed in "
            f"{checkpoints}: "
            f"continue with `{prog} resume {run_dir}`."
        )
    except ValueError as error:  # non-finite training, memory, damaged checkpoints, data
        sys.exit(f"{prog}: error: {error}")
    print_table(console, experiment_module.result_rows(run_dir))
    console.print(f"wrote {run_dir}")


SWEEP_PROG = "bmg two-colors sweep"


def split_grid_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the `--grid` specs, the other arguments) of `argv`: `--grid X` and `--grid=X` both."""
    specs, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--grid":
            if i + 1 >= len(argv):
                sys.exit(f"{SWEEP_PROG}: error: --grid needs FIELD=V1,V2,...")
            specs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--grid="):
            specs.append(argv[i].removeprefix("--grid="))
        else:
            rest.append(argv[i])
        i += 1
    return specs, rest


def read_sweep_config(path: Path):
    """(base config, grid) of the sweep_config.json at `path`, checked: a JSON object with the
    base "config" and the "grid" (field -> list of numbers), unchanged since the sweep started
    (its config_digest).

    Raises:
      ValueError: one sentence naming the file and what is wrong.
    """
    from bmg.experiments import two_colors as tc
    from bmg.train import records, rundir

    what = "a sweep's config"
    schema = {"config": records.OBJECT, "grid": records.OBJECT}
    record = records.read(path, schema, what)
    for field in record["grid"]:
        values = record["grid"][field]
        records.check(path, values, records.list_of(records.NUMBER), what, f"grid.{field}")
    started = {"config": record["config"], "grid": record["grid"]}
    check_digest(path, record.get("config_digest"), config_digest(started), "sweep")
    try:
        base = rundir.config_from_dict(tc.TwoColorsConfig, record["config"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} cannot be read as {what} ({error!r}).") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return base, {field: tuple(values) for field, values in record["grid"].items()}


def two_colors_sweep_command(argv: list[str], resume_dir: Path | None = None) -> None:
    """`bmg two-colors sweep PRESET --grid ...` (or the resume of a sweep directory): the grid's
    configurations x seeds as one compiled program (`bmg.experiments.two_colors.run_sweep`)."""
    from bmg.experiments import two_colors as tc
    from bmg.train import rundir

    try:
        if resume_dir is None:
            specs, rest = split_grid_flags(argv)
            args = parse_run(
                rest,
                tc.TwoColorsConfig,
                tc.PRESETS,
                SWEEP_PROG,
                "Run a grid of numbers (--grid FIELD=V1,V2,..., repeatable; the configurations "
                "are the product) x seeds as ONE compiled program: lanes vmapped and sharded "
                f"over devices. Sweepable fields: {', '.join(tc.SWEEPABLE)}. Writes one run "
                "directory per configuration and sweep.md / sweep.json ranking them by total "
                "reward; `bmg two-colors resume SWEEP_DIR` continues an interrupted sweep.",
                resume=False,
            )
            refuse_unused_flags(rest, args.config, tc.unused_fields, SWEEP_PROG)
            base, grid = args.config, tc.parse_grid(specs)
            for flag in (arg.split("=", 1)[0] for arg in rest):  # a field set twice
                field = next(iter(given_fields([flag]) & set(grid)), None)
                if field is not None:
                    raise ValueError(
                        f"{field} is set twice, by --grid {field}=... and by {flag}; give it "
                        "once: its values in --grid, or one value as a flag"
                    )
            tc.sweep_configs(base, grid)  # every grid point checked before any work
            start_backend(SWEEP_PROG)
            sweep_dir = rundir.make_run_dir(args.out, "two-colors", f"sweep-{base.algo}")
            if (sweep_dir / tc.SWEEP_CONFIG).exists():
                raise ValueError(f"--out {sweep_dir} already holds a sweep; choose a new one")
            started = rundir.to_json(
                {"config": dataclasses.asdict(base), "grid": {k: list(v) for k, v in grid.items()}}
            )
            rundir.write_json(
                sweep_dir / tc.SWEEP_CONFIG,
                {
                    **started,
                    "config_digest": config_digest(started),
                    "git_commit": rundir.git_commit(),
                },
            )
        else:
            sweep_dir = resume_dir
            if (sweep_dir / "sweep.json").exists():
                raise ValueError(f"{sweep_dir} holds a finished sweep (sweep.json); nothing to do")
            rundir.lock_run_dir(sweep_dir)
            base, grid = read_sweep_config(sweep_dir / tc.SWEEP_CONFIG)
            start_backend(SWEEP_PROG)
    except ValueError as error:
        sys.exit(f"{SWEEP_PROG}: error: {str(error).rstrip('.')}.")
    from bmg.train.logging import make_console

    console = make_console()  # log lines are never wrapped (one line each in a log file)
    try:
        rows = tc.run_sweep(base, grid, sweep_dir, resume=resume_dir is not None, console=console)
    except KeyboardInterrupt:  # before its first save too: a resume starts the grid over
        sys.exit(f"\n{SWEEP_PROG}: interrupted; continue with `bmg two-colors resume {sweep_dir}`.")
    except ValueError as error:
        sys.exit(f"{SWEEP_PROG}: error: {error}")
    print_table(console, [{k: v for k, v in r.items() if k != "total_reward_mean"} for r in rows])
    console.print(f"wrote {sweep_dir} (sweep.md, sweep.json, one run directory per configuration)")


def two_colors_command(argv: list[str]) -> None:
    use_all_cpu_cores()
    if argv and argv[0] == "sweep":
        return two_colors_sweep_command(argv[1:])
    if len(argv) == 2 and argv[0] == "resume":
        from bmg.experiments.two_colors import SWEEP_CONFIG

        if (Path(argv[1]) / SWEEP_CONFIG).is_file():
            return two_colors_sweep_command([], resume_dir=Path(argv[1]))
    run_experiment(
        argv,
        module="bmg.experiments.two_colors",
        experiment="two-colors",
        prog="bmg two-colors",
        description="Two-colors: an actor-critic (--agent ac) with a fixed, meta-gradient (mg) "
        "or BMG (bmg) entropy cost, or epsilon-greedy Q(lambda) (--agent q) with a fixed, "
        "decaying, mg or bmg epsilon. Choose a preset (it sets the defaults its flags then "
        "override), or `resume RUN_DIR` to continue an interrupted run (or sweep); `bmg "
        "two-colors sweep --help`: a grid of numbers x seeds as one compiled program.",
    )


def minatar_command(argv: list[str]) -> None:
    use_all_cpu_cores()
    run_experiment(
        argv,
        module="bmg.experiments.minatar",
        experiment="minatar",
        prog="bmg minatar",
        description="MinAtar (gymnax): IMPALA (--algo impala), STACX with a one-step "
        "meta-gradient (stacx) or STACX + BMG (bmg, --k K --l L) on one game (--env). Choose a "
        "preset (it sets the defaults its flags then override), or `resume RUN_DIR` to continue "
        "an interrupted run.",
    )


def atari_command(argv: list[str]) -> None:
    run_experiment(
        argv,
        module="bmg.experiments.atari",
        experiment="atari",
        prog="bmg atari",
        backend_check=False,  # `atari.prepare` starts it after joining the processes
        description="Atari (ale-py) on the Sebulba actor-learner runner: IMPALA (--algo impala), "
        "STACX with a one-step meta-gradient (stacx) or STACX + BMG (bmg, --k K --l L) on one "
        "game (--env). Choose a preset (it sets the defaults its flags then override), or "
        "`resume RUN_DIR` to continue an interrupted run (the learner state is exact; the "
        "actors restart from fresh games).",
    )


def make_synthetic_command(argv: list[str]) -> None:
    from bmg.fewshot.synthetic import make_synthetic
    from bmg.train import rundir

    parser = argparse.ArgumentParser(
        prog="bmg fewshot make-synthetic",
        description="Write procedurally generated, class-structured images in a MiniImagenet "
        "layout (csv + images/, or the pkl caches), for tests and demos.",
    )
    parser.add_argument("--out", required=True, help="new dataset directory")
    parser.add_argument("--format", required=True, choices=("csv", "pkl"))
    parser.add_argument("--classes", type=int, default=10, help="classes per split")
    parser.add_argument("--per-class", type=int, default=40, help="images per class")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        out = rundir.make_output_dir(args.out)
        out = make_synthetic(
            out,
            format=args.format,
            classes=args.classes,
            per_class=args.per_class,
            size=args.size,
            seed=args.seed,
        )
    except ValueError as error:
        sys.exit(f"bmg fewshot make-synthetic: error: {error}")
    print(f"wrote {out}")


def fewshot_command(argv: list[str]) -> None:
    if argv and argv[0] == "make-synthetic":
        return make_synthetic_command(argv[1:])
    run_experiment(
        argv,
        module="bmg.experiments.fewshot",
        experiment="fewshot",
        prog="bmg fewshot",
        description="Few-shot classification: meta-learn a conv-4 initialisation with MAML, "
        "first-order MAML or BMG. Choose a preset (it sets the defaults its flags then "
        "override), or `resume RUN_DIR` to continue an interrupted run; "
        "`bmg fewshot make-synthetic --help` writes synthetic data.",
    )


def compare_command(argv: list[str]) -> None:
    from rich.console import Console

    from bmg.experiments import fewshot_report, minatar_report
    from bmg.experiments import two_colors_report as report
    from bmg.experiments.tables import markdown_table
    from bmg.train import records, rundir

    parser = argparse.ArgumentParser(prog="bmg compare", description=COMMANDS["compare"])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--out", default=None, help="where to write the table and plots")
    args = parser.parse_args(argv)
    try:
        out = None if args.out is None else rundir.make_output_dir(args.out)
        missing = [str(run) for run in args.runs if not rundir.is_run_dir(run)]
        if missing:
            raise ValueError(f"{', '.join(missing)} is not a finished run: config.json is missing.")
        seen: dict[Path, Path] = {}
        for run in args.runs:  # one run named twice would count its seeds twice
            first = seen.setdefault(run.resolve(), run)
            if first is not run:
                same = "given twice" if str(first) == str(run) else f"the same run as {first}"
                raise ValueError(f"{run} is {same}; name each run once.")
        for run in args.runs:  # a damaged config.json is named before its kind is read
            records.read(run / "config.json", records.RUN_CONFIG, "a run's config")

        def kind(run):
            if fewshot_report.is_fewshot_run(run):
                return "few-shot"
            if not minatar_report.is_minatar_run(run):
                return "Two-colors"
            experiment = rundir.read_json(run / "config.json", "a run's config").get("experiment")
            return "Atari" if experiment == "atari" else "MinAtar"

        kinds = {kind(run) for run in args.runs}
        if len(kinds) > 1:
            raise ValueError(
                f"cannot compare {' with '.join(sorted(kinds))} runs; pass runs of one kind."
            )
        reports = {"few-shot": fewshot_report, "MinAtar": minatar_report, "Atari": minatar_report}
        report = reports.get(kinds.pop(), report)  # Atari runs keep MinAtar's trace layout
        for run in args.runs:  # every file the report reads, before it reads any
            report.check_run(run)
        rows = report.comparison_rows(args.runs)
        aggregate, note, published, orders = [], "", [], []
        if report is minatar_report:  # scores over games, when the runs make a [seeds, games] grid
            aggregate, note = minatar_report.aggregate_rows(args.runs)
        elif report is not fewshot_report:  # Two-colors: beside Luketina et al.'s Table 1
            published, orders = report.protocol_rows(args.runs)
    except ValueError as error:
        sys.exit(f"bmg compare: error: {error}")
    table = markdown_table(rows)
    print_table(Console(), rows)
    if report is minatar_report:
        if aggregate:
            print_table(Console(), aggregate)
            table += "\n\n" + markdown_table(aggregate)
        Console().print(note)
        table += "\n\n" + note
    elif published:
        print_table(Console(), published)
        table += "\n\n" + markdown_table(published) + "\n\n" + "\n".join(orders)
        for sentence in orders:
            Console().print(sentence)
    if out is not None:
        try:
            rundir.write_atomic(out / "comparison.md", table + "\n")
            report.plot_comparison(args.runs, out)
        except ValueError as error:
            sys.exit(f"bmg compare: error: {error}")
        Console().print(f"wrote {out / 'comparison.md'} and plots")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<12} {text}" for name, text in COMMANDS.items()]
        message = "usage: bmg COMMAND [flags]   (bmg COMMAND --help for its flags)\n" + "\n".join(
            lines
        )
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"bmg: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}.")
        print(message)
        return
    command = {
        "two-colors": two_colors_command,
        "fewshot": fewshot_command,
        "minatar": minatar_command,
        "atari": atari_command,
        "compare": compare_command,
    }[argv[0]]
    command(argv[1:])


if __name__ == "__main__":
    main()
