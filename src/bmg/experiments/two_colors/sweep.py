"""`bmg two-colors sweep PRESET --grid FIELD=V1,V2,...` and `bmg two-colors resume SWEEP_DIR`: a
grid of numbers x seeds of Two-colors as one compiled program (`bmg.experiments.two_colors.system`'s
`run_sweep`), one run directory per configuration and a table ranking them.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from bmg.experiments.api import SWEEP_CONFIG
from bmg.experiments.command import (
    given_fields,
    parse_run,
    print_table,
    refuse_unused_flags,
    start_backend,
)
from bmg.train.rundir import check_digest, config_digest

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
    from bmg.experiments.two_colors import system as tc
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


def command(argv: list[str], resume_dir: Path | None = None) -> None:
    """`bmg two-colors sweep PRESET --grid ...` (or the resume of a sweep directory): the grid's
    configurations x seeds as one compiled program
    (`bmg.experiments.two_colors.system.run_sweep`)."""
    from bmg.experiments.two_colors import system as tc
    from bmg.train import rundir

    try:
        if resume_dir is None:
            specs, rest = split_grid_flags(argv)
            args = parse_run(
                rest,
                tc.SETTINGS,
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
                field = next(iter(given_fields([flag], tc.TwoColorsConfig) & set(grid)), None)
                if field is not None:
                    raise ValueError(
                        f"{field} is set twice, by --grid {field}=... and by {flag}; give it "
                        "once: its values in --grid, or one value as a flag"
                    )
            tc.sweep_configs(base, grid)  # every grid point checked before any work
            start_backend(SWEEP_PROG)
            sweep_dir = rundir.make_run_dir(args.out, "two-colors", f"sweep-{base.algo}")
            if (sweep_dir / SWEEP_CONFIG).exists():
                raise ValueError(f"--out {sweep_dir} already holds a sweep; choose a new one")
            started = rundir.to_json(
                {"config": dataclasses.asdict(base), "grid": {k: list(v) for k, v in grid.items()}}
            )
            rundir.write_json(
                sweep_dir / SWEEP_CONFIG,
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
            base, grid = read_sweep_config(sweep_dir / SWEEP_CONFIG)
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
