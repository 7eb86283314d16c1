"""The `bmg` command line, built from the registry of systems (`bmg.experiments.registry`).

  bmg SYSTEM PRESET [--out DIR] [flags]      a new run (SYSTEM: two-colors, fewshot, minatar, atari)
  bmg SYSTEM resume RUN_DIR                  continue an interrupted run (or Two-colors sweep)
  bmg resume RUN_DIR                         the same, whatever the run's system
  bmg two-colors sweep PRESET --grid FIELD=V1,V2,... [--grid ...] [--out DIR] [flags]
  bmg fewshot make-synthetic --out DIR --format {csv,pkl} --classes C --per-class N --size S
  bmg compare RUN_DIR [RUN_DIR ...] [--out DIR]

A preset is a tyro subcommand: it sets the defaults that the flags after it override; every flag
is a field of the system's config (`bmg two-colors paper --help` lists them with defaults and
sources). `resume` continues an interrupted run exactly where its last checkpoint ended; which
system a run directory belongs to is its config.json's "experiment". Heavy modules (JAX, orbax,
the agents) are imported only once a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bmg.experiments.api import SWEEP_CONFIG
from bmg.experiments.command import print_table, run_command, use_all_cpu_cores
from bmg.experiments.registry import ENTRIES, Entry, entry_of_run

COMMANDS = {
    **{name: entry.summary for name, entry in ENTRIES.items()},
    "resume": "continue an interrupted run or sweep, whatever its system",
    "compare": "table and plots comparing finished runs",
}


def system_command(entry: Entry, argv: list[str]) -> None:
    """``bmg NAME ...``: a run, a resume, the system's sweep or one of its extra commands."""
    if argv and argv[0] in entry.commands:
        return entry.commands[argv[0]](argv[1:])
    if entry.all_cpu_cores:
        use_all_cpu_cores()
    if entry.sweep is not None:
        if argv and argv[0] == "sweep":
            return entry.sweep(argv[1:], None)
        if len(argv) == 2 and argv[0] == "resume" and (Path(argv[1]) / SWEEP_CONFIG).is_file():
            return entry.sweep([], Path(argv[1]))
    run_command(
        entry.name,
        entry.settings(),
        entry.system,
        argv,
        description=entry.description,
        prog=entry.prog,
    )


def resume_command(argv: list[str]) -> None:
    """``bmg resume RUN_DIR``: ``bmg NAME resume RUN_DIR`` of the run's own system."""
    parser = argparse.ArgumentParser(prog="bmg resume", description=COMMANDS["resume"])
    parser.add_argument("run_dir", type=Path, help="the directory of the interrupted run")
    args = parser.parse_args(argv)
    run_dir = args.run_dir
    if (run_dir / SWEEP_CONFIG).is_file():
        return system_command(ENTRIES["two-colors"], ["resume", str(run_dir)])
    if not (run_dir / "config.json").is_file():
        sys.exit(f"bmg resume: error: {run_dir} holds no run (config.json is missing).")
    try:
        entry = entry_of_run(run_dir)
    except ValueError as error:
        sys.exit(f"bmg resume: error: {error}")
    system_command(entry, ["resume", str(run_dir)])


def label_repeats(rows: list[dict[str, str]], runs: list[Path]) -> list[dict[str, str]]:
    """Rows whose first column (the run's label) repeats another's get their directory's name
    after it, so two runs of one configuration (other seeds, say) are told apart."""
    if not rows:
        return rows
    key = next(iter(rows[0]))
    labels = [row[key] for row in rows]
    return [
        {**row, key: f"{row[key]} ({run.name})"} if labels.count(row[key]) > 1 else row
        for row, run in zip(rows, runs, strict=True)
    ]


def compare_command(argv: list[str]) -> None:
    """``bmg compare RUN_DIR ...``: the report of the runs' system (one system per table)."""
    from rich.console import Console

    from bmg.experiments.report.tables import markdown_table
    from bmg.train import rundir

    parser = argparse.ArgumentParser(prog="bmg compare", description=COMMANDS["compare"])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument(
        "--out",
        default=None,
        help="a new directory for comparison.md and the plots (without it: the table only)",
    )
    args = parser.parse_args(argv)
    try:
        missing = [str(run) for run in args.runs if not rundir.is_run_dir(run)]
        if len(missing) == 1:
            raise ValueError(f"{missing[0]} is not a finished run: config.json is missing.")
        if missing:
            raise ValueError(f"{', '.join(missing)} are not finished runs: config.json is missing.")
        seen: dict[Path, Path] = {}
        for run in args.runs:  # one run named twice would count its seeds twice
            first = seen.setdefault(run.resolve(), run)
            if first is not run:
                same = "given twice" if str(first) == str(run) else f"the same run as {first}"
                raise ValueError(f"{run} is {same}; name each run once.")
        names = {entry_of_run(run).name for run in args.runs}  # damaged config.json named here
        if len(names) > 1:
            raise ValueError(
                f"cannot compare {' with '.join(sorted(names))} runs; pass runs of one system."
            )
        report = ENTRIES[names.pop()].system().report
        for run in args.runs:  # every file the report reads, before it reads any
            report.check_run(run)
        rows = label_repeats(report.comparison_rows(args.runs), args.runs)
        tables, sentences = report.extra(args.runs)
        out = None if args.out is None else rundir.make_output_dir(args.out)  # the runs are good
        if out is not None and (out / "comparison.md").exists():
            raise ValueError(
                f"--out {out} already holds a comparison (comparison.md); choose a new directory "
                "so that an earlier comparison is never overwritten."
            )
    except ValueError as error:
        sys.exit(f"bmg compare: error: {error}")
    console = Console()
    print_table(console, rows)
    text = markdown_table(rows)
    for table in tables:
        print_table(console, table)
        text += "\n\n" + markdown_table(table)
    for sentence in sentences:
        console.print(sentence)
    if sentences:
        text += "\n\n" + "\n".join(sentences)
    if out is not None:
        try:
            rundir.write_atomic(out / "comparison.md", text + "\n")
            report.plot_comparison(args.runs, out)
        except ValueError as error:
            sys.exit(f"bmg compare: error: {error}")
        console.print(f"wrote {out / 'comparison.md'} and plots")


def main(argv: list[str] | None = None) -> None:
    try:
        _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # output piped into a reader that stopped (`bmg ... --help | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)


def _main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            sys.exit(f"bmg: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}.")
        lines = [f"  {name:<12} {text}" for name, text in COMMANDS.items()]
        usage = "usage: bmg COMMAND [flags]   (bmg COMMAND --help for its flags)\n"
        if not argv:  # a command is required: the usage, and a failing exit status
            sys.exit(usage + "\n".join(lines))
        print(usage + "\n".join(lines))
        return
    if argv[0] == "compare":
        return compare_command(argv[1:])
    if argv[0] == "resume":
        return resume_command(argv[1:])
    system_command(ENTRIES[argv[0]], argv[1:])


if __name__ == "__main__":
    main()
