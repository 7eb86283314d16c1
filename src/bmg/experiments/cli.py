"""The `bmg` command line.

  bmg two-colors [--preset {demo,paper,exploration}] [--out DIR] [--algo {ac,mg,bmg}] [--k K] ...
  bmg two-colors --resume DIR
  bmg fewshot [--preset {tiny,paper}] --data-dir DIR [--out DIR] [--algo {maml,fomaml,bmg}] ...
  bmg fewshot --resume DIR
  bmg fewshot make-synthetic --out DIR --format {csv,pkl} --classes C --per-class N --size S
  bmg compare RUN_DIR [RUN_DIR ...] [--out DIR]

Every flag of `bmg two-colors` is a field of `TwoColorsConfig` (`--help` lists them with their
defaults and sources); a preset sets the defaults that explicit flags then override.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

COMMANDS = {
    "two-colors": "train ac / mg / bmg on Two-colors; writes a run directory",
    "fewshot": "meta-train maml / fomaml / bmg on MiniImagenet-format data; writes a run directory",
    "compare": "table and plots comparing finished runs",
}


def _use_all_cpu_cores() -> None:
    """Expose each CPU core as a JAX device (before jax is imported) so seeds run in parallel."""
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


def parse_config(argv: list[str], config_cls, presets: dict, prog: str, description: str):
    """(config, preset, out) from `--preset P --out DIR` plus tyro flags for `config_cls`.

    A preset sets the defaults that explicit flags then override. A bad value raises ValueError.
    """
    import tyro

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(presets), default=None)
    pre.add_argument("--out", default=None)
    known, rest = pre.parse_known_args(argv)
    default = config_cls(**presets[known.preset]) if known.preset else config_cls()
    config = tyro.cli(config_cls, default=default, args=rest, prog=prog, description=description)
    return config, known.preset, known.out


def parse_resume(argv: list[str]) -> tuple[Path | None, list[str]]:
    """(the run directory of `--resume DIR` or None, the other arguments).

    `--resume DIR` must come alone, and DIR must not hold a finished run; else ValueError.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--resume", type=Path, default=None)
    known, rest = pre.parse_known_args(argv)
    if known.resume is not None:
        if rest:
            raise ValueError(
                f"--resume DIR continues the run in DIR with the config.json there; drop "
                f"the other arguments ({' '.join(rest)})."
            )
        if (known.resume / "summary.json").exists():
            raise ValueError(
                f"{known.resume} holds a finished run (summary.json); there is nothing to resume."
            )
    return known.resume, rest


def two_colors_command(argv: list[str]) -> None:
    _use_all_cpu_cores()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bmg.experiments import two_colors as tc
    from bmg.experiments import two_colors_report as report
    from bmg.experiments.rundir import (
        CsvAppender,
        make_run_dir,
        read_config,
        record_resume,
        write_config,
        write_json,
    )

    try:
        resume_dir, rest = parse_resume(argv)
        if resume_dir is None:
            config, preset, out = parse_config(
                rest,
                tc.TwoColorsConfig,
                tc.PRESETS,
                "bmg two-colors",
                "Two-colors: an actor-critic (--agent ac) with a fixed (ac), meta-gradient (mg) "
                "or BMG (bmg) entropy weight, or epsilon-greedy Q(lambda) (--agent q) with a "
                "fixed, decaying, mg or bmg epsilon. Also: --preset {demo,paper,exploration} "
                "sets the defaults below; --out DIR is the run directory (default "
                "runs/two-colors/<algo>-<time>); --resume DIR (alone) continues an interrupted "
                "run from its last finished chunk.",
            )
            run_dir = make_run_dir(
                out,
                "two-colors",
                config.algo,
                resume_hint="; to continue it, run `bmg two-colors --resume DIR`",
            )
        else:
            run_dir = resume_dir
            config = read_config(run_dir, tc.TwoColorsConfig)
    except ValueError as error:  # a bad value: one sentence, no traceback
        sys.exit(f"bmg two-colors: error: {error}")
    console = Console()
    import jax

    lifetime = tc.Lifetime(config)
    fields = report.csv_fields(config.agent)
    if resume_dir is None:
        write_config(run_dir, config, preset=preset)
        resume = None
    else:
        try:
            resume = tc.load_checkpoint(run_dir, lifetime)
        except ValueError as error:
            sys.exit(f"bmg two-colors: error: {error}")
        record_resume(run_dir, after_chunk=resume.chunks_done)
    csv = CsvAppender(run_dir / "metrics.csv", fields)
    if resume is not None:  # metrics.csv again from the checkpoint's trace, nothing after it
        for chunk in range(resume.chunks_done):
            csv.append(
                report.chunk_rows(
                    resume.trace, resume.first_rewards, chunk, config.meta_steps_per_chunk,
                    config.agent,
                )
            )  # fmt: skip
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    total = config.total_env_steps
    console.print(
        f"[bold]two-colors[/bold] {report.run_label({'config': dataclasses.asdict(config)})}: "
        f"{config.seeds} seeds x {total:,} steps on "
        f"{len(jax.devices())} device(s) -> {run_dir}"
        + ("" if resume is None else f", resumed after chunk {resume.chunks_done}")
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )

    def on_chunk(checkpoint):
        chunk, trace = checkpoint.chunks_done - 1, checkpoint.trace
        rows = report.chunk_rows(
            trace, checkpoint.first_rewards, chunk, config.meta_steps_per_chunk, config.agent
        )
        csv.append(rows)
        tc.save_checkpoint(run_dir, checkpoint)
        steps = int(trace.env_steps[0, -1])
        for name in fields[3:]:
            writer.add_scalar(name, sum(r[name] for r in rows) / len(rows), steps)
        writer.flush()
        rate = steps * config.seeds / checkpoint.seconds
        progress.update(task, description="running", completed=steps, rate=f"{rate:,.0f} steps/s")
        if not console.is_terminal:  # logs get one line per chunk instead of a live bar
            eta = (total - steps) * config.seeds / rate
            console.print(
                f"chunk {chunk + 1}/{config.num_chunks}: {steps:,}/{total:,} steps per seed, "
                f"{rate:,.0f} steps/s, reward/step {rows[0]['reward_per_step']:.3f} (seed 0), "
                f"ETA {eta:,.0f} s"
            )

    with progress:
        # A new run compiles its chunk before the first one runs (a resumed one already has).
        task = progress.add_task("compiling" if resume is None else "running", total=total, rate="")
        trace, first_rewards, seconds = tc.run_lifetime(
            config, on_chunk, lifetime=lifetime, resume=resume
        )
    writer.close()
    summary = report.summarize(
        trace,
        first_rewards,
        switch_every=config.env.switch_every,
        seconds=seconds,
        agent=config.agent,
    )
    summary["compile_seconds"] = lifetime.compile_seconds
    write_json(run_dir / "summary.json", summary)
    (run_dir / tc.CHECKPOINT).unlink(missing_ok=True)  # finished: the state is no longer needed
    report.plot_run(
        trace,
        first_rewards,
        switch_every=config.env.switch_every,
        out=run_dir,
        title=report.run_label({"config": dataclasses.asdict(config)}),
        agent=config.agent,
    )
    print_table(console, report.comparison_rows([run_dir]))
    console.print(f"wrote {run_dir}")


def make_synthetic_command(argv: list[str]) -> None:
    from bmg.fewshot.synthetic import make_synthetic

    parser = argparse.ArgumentParser(
        prog="bmg fewshot make-synthetic",
        description="Write procedurally generated, class-structured images in a MiniImagenet "
        "layout (csv + images/, or the pkl caches), for tests and demos.",
    )
    parser.add_argument("--out", required=True, type=Path, help="new dataset directory")
    parser.add_argument("--format", required=True, choices=("csv", "pkl"))
    parser.add_argument("--classes", type=int, default=10, help="classes per split")
    parser.add_argument("--per-class", type=int, default=40, help="images per class")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        out = make_synthetic(
            args.out,
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
    from rich.console import Console

    from bmg.experiments import fewshot as fs
    from bmg.experiments import fewshot_report as report
    from bmg.experiments.rundir import (
        CsvAppender,
        make_run_dir,
        read_config,
        record_resume,
        save_npz,
        write_config,
        write_json,
    )
    from bmg.fewshot.data import DataError

    console = Console()
    try:
        resume_dir, rest = parse_resume(argv)
        if resume_dir is None:
            config, preset, out = parse_config(
                rest,
                fs.FewShotConfig,
                fs.PRESETS,
                "bmg fewshot",
                "Few-shot classification: meta-learn a conv-4 initialisation with MAML, "
                "first-order MAML or BMG. Also: --preset {tiny,paper} sets the defaults below; "
                "--out DIR is the run directory (default runs/fewshot/<algo>-<time>); "
                "--resume DIR (alone) continues an interrupted run from its last validation "
                "score; `bmg fewshot make-synthetic --help` writes synthetic data.",
            )
        else:
            config = read_config(resume_dir, fs.FewShotConfig)
        system = fs.FewShotSystem(config)  # loads and validates the data before anything else
        if resume_dir is None:
            run_dir = make_run_dir(
                out,
                "fewshot",
                config.algo,
                resume_hint="; to continue it, run `bmg fewshot --resume DIR`",
            )
            resume = None
        else:
            run_dir, resume = resume_dir, fs.load_checkpoint(resume_dir, system)
    except ValueError as error:  # bad flags, values or data (DataError): one sentence
        kind = "data error" if isinstance(error, DataError) else "error"
        sys.exit(f"bmg fewshot: {kind}: {error}")
    if resume is None:
        write_config(run_dir, config, preset=preset)
    else:
        record_resume(run_dir, after_meta_step=resume.meta_step)
    title = report.run_label(dataclasses.asdict(config))
    console.print(
        f"[bold]fewshot[/bold] {title}: {config.meta_steps:,} meta-steps of "
        f"{config.meta_batch_size} tasks -> {run_dir}"
        + ("" if resume is None else f", resumed after meta-step {resume.meta_step:,}")
    )
    from flax import serialization
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    csv = None

    def save_params(name: str, params) -> None:
        tmp = run_dir / f"{name}.msgpack.tmp"
        tmp.write_bytes(serialization.msgpack_serialize(serialization.to_state_dict(params)))
        os.replace(tmp, run_dir / f"{name}.msgpack")

    if resume is not None:  # metrics.csv and best.msgpack again from the checkpoint
        csv = CsvAppender(run_dir / "metrics.csv", list(resume.rows[0]))
        csv.append(resume.rows)
        save_params("best", resume.best_params)

    def on_eval(state, is_best: bool):
        nonlocal csv
        row = state.rows[-1]
        if csv is None:
            csv = CsvAppender(run_dir / "metrics.csv", list(row))
        csv.append([row])
        for name, value in row.items():
            if name != "meta_step":
                writer.add_scalar(name, value, row["meta_step"])
        writer.flush()
        save_params("latest", state.meta_params)
        if is_best:
            save_params("best", state.meta_params)
        fs.save_checkpoint(run_dir, state)
        console.print(
            f"meta-step {row['meta_step']:,}/{config.meta_steps:,}: val accuracy "
            f"{100 * row['val_accuracy']:.2f}%, train query accuracy "
            f"{100 * row['train/query_accuracy']:.2f}%, "
            f"{row['train_seconds']:.0f} s training"
        )

    result = fs.train(system, on_eval=on_eval, resume=resume)
    writer.close()
    write_json(run_dir / "summary.json", result["summary"])
    save_npz(run_dir / "test_accuracies.npz", test_accuracy=result["test"])
    (run_dir / fs.CHECKPOINT).unlink(missing_ok=True)  # finished: best.msgpack is what is kept
    report.plot_accuracy([(title, result["rows"])], run_dir)
    print_table(console, [report.result_row(dataclasses.asdict(config), result["summary"])])
    console.print(f"wrote {run_dir}")


def compare_command(argv: list[str]) -> None:
    from rich.console import Console

    from bmg.experiments import fewshot_report
    from bmg.experiments import two_colors_report as report
    from bmg.experiments.tables import markdown_table

    parser = argparse.ArgumentParser(prog="bmg compare", description=COMMANDS["compare"])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the table and plots")
    args = parser.parse_args(argv)
    try:
        missing = [str(run) for run in args.runs if not (run / "config.json").is_file()]
        if missing:
            raise ValueError(f"{', '.join(missing)} is not a finished run: config.json is missing.")
        kinds = {fewshot_report.is_fewshot_run(run) for run in args.runs}
        if len(kinds) > 1:
            raise ValueError("cannot compare few-shot runs with Two-colors runs; pass one kind.")
        if kinds == {True}:
            report = fewshot_report
        rows = report.comparison_rows(args.runs)
    except ValueError as error:
        sys.exit(f"bmg compare: error: {error}")
    table = markdown_table(rows)
    print_table(Console(), rows)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.md").write_text(table + "\n")
        report.plot_comparison(args.runs, args.out)
        Console().print(f"wrote {args.out / 'comparison.md'} and plots")


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
        "compare": compare_command,
    }[argv[0]]
    command(argv[1:])


if __name__ == "__main__":
    main()
