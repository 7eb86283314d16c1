"""The building blocks of a `bmg` system's command: parse a preset and its flags into a config
(tyro), refuse flags without effect, make or reopen the run directory, start JAX's backend, run
the system and print its results. `bmg.experiments.cli` puts them together for every system of
the registry; a system's extra commands (a sweep) use them too.

Heavy modules (JAX, orbax, the agents) are imported only once a command runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Generic, Literal, TypeVar, Union

from bmg.experiments.api import Settings, System
from bmg.train.rundir import check_digest, config_digest

C = TypeVar("C")

OUT_HELP = "run directory (created; must not hold a run). Default: runs/<experiment>/<algo>-<time>."


def use_all_cpu_cores() -> None:
    """Expose each CPU core as a JAX device (call it before jax is imported) so seeds run in
    parallel; a device count already in ``XLA_FLAGS`` is kept. The CLI and the benchmarks use it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = os.cpu_count() or 1
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def print_table(console, rows) -> None:
    """A rich table on a terminal; the markdown table in logs (no wrapping at 80 columns)."""
    from bmg.experiments.report.tables import markdown_table, rich_table

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


def selections(argv: list[str], settings: Settings, prog: str) -> dict[str, str]:
    """The selectors' choices in ``argv`` (``--algo mg`` or ``--algo=mg`` -> {"algo": "mg"});
    exits with one sentence naming the accepted choices when one is not."""
    chosen = {}
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name not in settings.selectors:
            continue
        if not eq:
            if i + 1 == len(argv):
                continue  # tyro says the value is missing
            value = argv[i + 1]
        choices = settings.selectors[name].choices
        if value not in choices:
            sys.exit(f"{prog}: error: {flag} must be one of {', '.join(choices)}; got {value!r}.")
        if name in chosen:
            sys.exit(
                f"{prog}: error: {flag} is given twice ({chosen[name]}, {value}); give it once."
            )
        chosen[name] = value
    return chosen


def parse_run(argv: list[str], settings: Settings, prog: str, description: str, *, resume=True):
    """A `Run` (a preset subcommand with flags) or, with `resume`, a `Resume` from `argv`,
    through tyro.

    ``settings.presets`` maps a subcommand name to (description, field overrides); the chosen
    preset's config takes the selectors' choices (``--algo mg``) first, then every other flag.
    A bad value exits with one sentence (`ValueError` from a config's validation).
    """
    import tyro

    from bmg.checks import nested_checks_deferred

    config_cls, presets = settings.config, settings.presets
    extra = argv[2:] if argv[:1] == ["resume"] else []
    if resume and extra and not {"-h", "--help"} & set(argv):
        sys.exit(
            f"{prog}: error: resume takes the run directory alone (`{prog} resume RUN_DIR`): a "
            f"run goes on with the configuration it started with, so {' '.join(extra)!r} cannot "
            "change it."
        )
    if argv[:1] and argv[0].startswith("-") and not {"-h", "--help"} & set(argv):
        names = ", ".join(presets) + (", resume" if resume else "")
        sys.exit(
            f"{prog}: error: the preset comes first, then its flags (`{prog} PRESET "
            f"{argv[0]} ...`); presets: {names}."
        )
    chosen_preset = argv[0] if argv[:1] and argv[0] in presets else None
    refuse_renamed_flags(argv, settings, prog)
    owners = {field: flag for flag, sel in settings.selectors.items() for field in sel.owns}
    for field in sorted(given_fields(argv, config_cls) & set(owners)):
        name = owners[field]
        sys.exit(
            f"{prog}: error: --{field.replace('_', '-')} is set by --{name} "
            f"({', '.join(settings.selectors[name].choices)}) with the fields that go with it: "
            f"use --{name} instead."
        )
    chosen, defaults = {}, {}  # the choices, the chosen preset's config with them made
    if chosen_preset is not None:
        chosen = selections(argv[1:], settings, prog)
        base = config_cls(**presets[chosen_preset][1])
        try:
            defaults[chosen_preset] = settings.select(base, chosen, chosen_preset)
        except ValueError as error:
            sys.exit(f"{prog}: error: {error}")
        choice = (base, chosen, chosen_preset)
        refuse_other_members(argv[1:], defaults[chosen_preset], choice, settings, prog)

    def run_type(name: str):
        help_text, overrides = presets[name]
        config = defaults[name] if name in defaults else config_cls(**overrides)
        flattened = Annotated[config_cls, tyro.conf.arg(name="")]
        selectors = [
            (
                flag,
                Annotated[Literal[selector.choices], tyro.conf.arg(help=selector.help)],
                selector.of(config),
            )
            for flag, selector in settings.selectors.items()
        ]
        typed = dataclasses.make_dataclass(
            "Run",
            [
                ("config", flattened),
                *selectors,
                ("out", Annotated[str | None, tyro.conf.arg(help=OUT_HELP)], None),
            ],
            frozen=True,
        )
        typed.__doc__ = Run.__doc__
        default = typed(**{flag: of for flag, _, of in selectors}, config=config)
        return Annotated[typed, tyro.conf.subcommand(name, default=default, description=help_text)]

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


def refuse_renamed_flags(argv: list[str], settings: Settings, prog: str) -> None:
    """Exit with one sentence naming the new flag when ``argv`` uses one of an earlier version
    (``settings.renamed``), instead of tyro's "unrecognized options"."""
    for arg in argv:
        flag = arg.split("=", 1)[0]
        for old, new in settings.renamed.items():
            now = new if flag == old else None
            if old.endswith(".") and flag.startswith(old):
                now = new.replace(new.split(" ")[0], new.split(" ")[0] + flag[len(old) :], 1)
            if now is not None:
                sys.exit(
                    f"{prog}: error: {flag} is now {now} (`{prog} PRESET --help` lists every flag)."
                )


def _field_names(config) -> set[str]:
    return {field.name for field in dataclasses.fields(config)}


def refuse_other_members(argv: list[str], config, choice: tuple, settings: Settings, prog: str):
    """Exit with one sentence when a flag sets a field of another member of a union-typed field
    than ``config`` holds (``--learner.epsilon``, a Q(lambda) field, on an actor-critic run),
    naming the selector's choice that has it (``--agent q``): tyro would only call it
    unrecognized. ``choice``: (the preset's config, the choices made, the preset's name)."""
    base, chosen, preset = choice
    hints = typing.get_type_hints(type(config))
    for arg in argv:
        flag = arg.split("=", 1)[0]
        group, dot, name = flag[2:].replace("-", "_").partition(".")
        if not flag.startswith("--") or not dot or group not in hints:
            continue
        members = [t for t in typing.get_args(hints[group]) if dataclasses.is_dataclass(t)]
        if len(members) < 2 or name in _field_names(getattr(config, group)):
            continue
        for selector, spec in settings.selectors.items():
            for option in spec.choices:
                try:
                    other = settings.select(base, {**chosen, selector: option}, preset)
                except ValueError:  # a choice this preset cannot take with the others
                    continue
                if name in _field_names(getattr(other, group)):
                    sys.exit(
                        f"{prog}: error: {flag} is not a field of this run's {group} "
                        f"(--{selector} {spec.of(config)}); it is one with --{selector} "
                        f"{option}: add that, or drop the flag."
                    )


def flag_aliases(config_cls) -> dict[str, str]:
    """The short flags of ``config_cls``'s (nested) fields, as tyro reads them: ``{"--k":
    "meta.inner_steps", "--steps": "lifetime.steps", ...}``."""
    aliases = {}

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls, include_extras=True)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            for meta in getattr(hint, "__metadata__", ()):
                if getattr(meta, "aliases", None):  # tyro.conf.arg(aliases=...)
                    aliases.update({alias: prefix + field.name for alias in meta.aliases})
            inner = typing.get_args(hint)[0] if hasattr(hint, "__metadata__") else hint
            for member in typing.get_args(inner) or (inner,):
                if dataclasses.is_dataclass(member):
                    walk(member, f"{prefix}{field.name}.")

    walk(config_cls, "")
    return aliases


def given_fields(argv: list[str], config_cls) -> set[str]:
    """The (dotted) config fields that flags in ``argv`` name: ``--meta.bootstrap-steps 4``,
    ``--l=4`` -> ``meta.bootstrap_steps``; ``--stacx.target-step sgd`` -> ``stacx.target_step``."""
    aliases = flag_aliases(config_cls)
    fields = set()
    for arg in argv:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            fields.add(aliases.get(flag, flag[2:].replace("-", "_")))
    return fields


def refuse_unused_flags(argv: list[str], config, unused_fields, prog: str) -> None:
    """Exit with one sentence when a flag sets a field that has no effect on ``config``
    (``unused_fields(config)`` -> {field: "with --algo fixed ..."}), instead of ignoring it."""
    unused = unused_fields(config)
    aliases = flag_aliases(type(config))
    flags = {aliases.get(arg.split("=", 1)[0]): arg.split("=", 1)[0] for arg in argv}
    for field in sorted(given_fields(argv, type(config)) & set(unused)):
        flag = flags.get(field, "--" + field.replace("_", "-"))  # as typed (--l)
        sys.exit(f"{prog}: error: {flag} has no effect {unused[field]}; drop it.")


def start_run_dir(
    args,
    experiment: str,
    config_cls,
    prog: str,
    prepare=None,
    check_new=None,
    checkpoints=None,
):
    """(config, prepared, run_dir, resumed) for a new run or a resume.

    `prepare(config)` (e.g. loading and checking a dataset) runs before a new run's directory is
    made, so bad input leaves nothing behind; `prepared` is its result (None without it);
    `check_new(config)` likewise, for a new run only (atari: a used shared checkpoint_dir);
    `checkpoints(config, run_dir)`: where a run keeps its checkpoints (None: nowhere), so a
    resume without any is refused before anything is compiled. Exits
    with one sentence if the input is bad, the directory cannot be this run's, holds a finished
    run, or its config.json was edited after the start.
    """
    from bmg.train import records, rundir

    hint = f"; to continue it, run `{prog} resume DIR`"
    try:
        if isinstance(args, Run):
            config = args.config
            if args.out is not None:  # a bad, used or locked --out fails before any work
                out = rundir.check_new_run_dir(args.out, hint.replace("DIR", str(args.out)))
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
        other = record.get("experiment", experiment)
        if other != experiment:  # `bmg resume` finds its system (or says none has it)
            raise ValueError(
                f"{run_dir} holds a run of the experiment {other!r}, not of {experiment}; "
                f"continue it with `bmg resume {run_dir}`."
            )
        check_digest(path, record.get("config_digest"), config_digest(record["config"]), "run")
        config = rundir.read_config(run_dir, config_cls)
        where = None if checkpoints is None else checkpoints(config, run_dir)
        if checkpoints is not None and (where is None or not any(Path(where).glob("[0-9]*"))):
            raise ValueError(
                f"{run_dir} holds no checkpoint (it stopped before its first one), so there is "
                "nothing to resume: start the run again in a new directory."
            )
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


def checkpoint_directory(system: System, config, run_dir: Path) -> Path | None:
    """Where `system` keeps a run's checkpoints (None: it keeps none)."""
    from bmg.train.driver import CHECKPOINTS

    where = system.checkpoint_directory
    return run_dir / CHECKPOINTS if where is None else where(config, run_dir)


def run_command(
    name: str,
    settings: Settings,
    load: Callable[[], System],
    argv: list[str],
    *,
    description: str,
    prog: str | None = None,
) -> None:
    """``bmg NAME ...``: parse, make or reopen the run directory, run the system, print its table.

    `settings` parse the command line (without loading the system); `load()` gives the `System`
    once the flags are known to be good; `prog` is the command as typed (help, hints; default
    ``bmg NAME``), `name` the experiment its runs record. Ctrl-C and errors end with one
    sentence; an interrupted run says how to continue.
    """
    prog = f"bmg {name}" if prog is None else prog
    args = parse_run(argv, settings, prog, description)
    if isinstance(args, Run):
        refuse_unused_flags(argv, args.config, settings.unused_fields, prog)
    system = load()
    if system.starts_backend:
        start_backend(prog)
    try:
        start = start_run_dir(
            args,
            name,
            settings.config,
            prog,
            system.prepare,
            system.check_new_run,
            checkpoints=lambda config, run_dir: checkpoint_directory(system, config, run_dir),
        )
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
        system.run(target, run_dir, resume=resumed, console=console)
    except KeyboardInterrupt:
        checkpoints = checkpoint_directory(system, config, run_dir)
        if checkpoints is None or not any(Path(checkpoints).glob("[0-9]*")):
            sys.exit(
                f"\n{prog}: interrupted before the first checkpoint; there is nothing to resume: "
                f"start again (delete {run_dir} or choose another --out)."
            )
        sys.exit(
            f"\n{prog}: interrupted; every finished chunk or score is checkpointed in "
            f"{checkpoints}: continue with `{prog} resume {run_dir}`."
        )
    except ValueError as error:  # non-finite training, memory, damaged checkpoints, data
        sys.exit(f"{prog}: error: {error}")
    print_table(console, system.result_rows(run_dir))
    console.print(f"wrote {run_dir}")
