"""The systems the `bmg` command knows, by command name.

Each entry names its settings (pure Python: parsing a command line and ``--help`` load no JAX
where the system's config module is JAX-free) and its system (loaded once a run starts). A new
system adds one entry here: a config, a learner, a `System` and a report; the command line, the
resume of a run and ``bmg compare`` find it through its name, which every run directory records
as ``config.json["experiment"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from bmg.experiments.api import Settings, System


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ``bmg NAME`` command.

    Attributes:
      name: the command name, also ``config.json["experiment"]`` of its runs.
      summary: one line for ``bmg --help``.
      description: ``bmg NAME --help``'s text.
      settings: loads its `Settings`.
      system: loads its `System`.
      commands: further subcommands, ``bmg NAME SUB ...`` -> ``command(argv after SUB)``.
      sweep: ``(argv, resume_dir) -> None``, the sweep command where the system has one
        (``bmg NAME sweep ...``; ``bmg NAME resume SWEEP_DIR`` calls it with the directory).
      all_cpu_cores: expose every CPU core as a JAX device before JAX starts (seeds of a
        compiled lifetime run in parallel; `bmg.experiments.command.use_all_cpu_cores`).
      prog: the command as a user types it, in help and hints; None: ``bmg NAME``.
    """

    name: str
    summary: str
    description: str
    settings: Callable[[], Settings]
    system: Callable[[], System]
    commands: Mapping[str, Callable[[list[str]], None]] = dataclasses.field(default_factory=dict)
    sweep: Callable[[list[str], Path | None], None] | None = None
    all_cpu_cores: bool = False
    prog: str | None = None


# The loaders import on call: only the chosen system's modules are loaded.
def _two_colors_settings() -> Settings:
    from bmg.experiments.two_colors.config import SETTINGS

    return SETTINGS


def _two_colors() -> System:
    from bmg.experiments.two_colors.system import SYSTEM

    return SYSTEM


def _two_colors_sweep(argv: list[str], resume_dir: Path | None) -> None:
    from bmg.experiments.two_colors.sweep import command

    command(argv, resume_dir)


def _minatar_settings() -> Settings:
    from bmg.experiments.minatar.config import SETTINGS

    return SETTINGS


def _minatar() -> System:
    from bmg.experiments.minatar.system import SYSTEM

    return SYSTEM


def _atari_settings() -> Settings:
    from bmg.experiments.atari.config import SETTINGS

    return SETTINGS


def _atari() -> System:
    from bmg.experiments.atari.system import SYSTEM

    return SYSTEM


def _fewshot_settings() -> Settings:
    from bmg.experiments.fewshot.config import SETTINGS

    return SETTINGS


def _fewshot() -> System:
    from bmg.experiments.fewshot.system import SYSTEM

    return SYSTEM


def _make_synthetic(argv: list[str]) -> None:
    from bmg.experiments.fewshot.make_synthetic import command

    command(argv)


ENTRIES: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry(
            "two-colors",
            "train fixed / mg / bmg on Two-colors; writes a run directory",
            "Two-colors: an actor-critic (--agent ac) with a fixed, meta-gradient (mg) or BMG "
            "(bmg) entropy cost, or epsilon-greedy Q(lambda) (--agent q) with a fixed, decaying, "
            "mg or bmg epsilon. Choose a preset (it sets the defaults its flags then override), "
            "or `resume RUN_DIR` to continue an interrupted run (or sweep); `bmg two-colors "
            "sweep --help`: a grid of numbers x seeds as one compiled program.",
            _two_colors_settings,
            _two_colors,
            sweep=_two_colors_sweep,
            all_cpu_cores=True,
        ),
        Entry(
            "fewshot",
            "meta-train maml / fomaml / bmg on MiniImagenet-format data; writes a run directory",
            "Few-shot classification: meta-learn a conv-4 initialisation with MAML, first-order "
            "MAML or BMG. Choose a preset (it sets the defaults its flags then override), or "
            "`resume RUN_DIR` to continue an interrupted run; `bmg fewshot make-synthetic "
            "--help` writes synthetic data.",
            _fewshot_settings,
            _fewshot,
            commands={"make-synthetic": _make_synthetic},
        ),
        Entry(
            "minatar",
            "train impala / stacx / bmg on a MinAtar game; writes a run directory",
            "MinAtar (gymnax): IMPALA (--algo impala), STACX with a one-step meta-gradient "
            "(stacx) or STACX + BMG (bmg, --k K --l L) on one game (--env). Choose a preset (it "
            "sets the defaults its flags then override), or `resume RUN_DIR` to continue an "
            "interrupted run.",
            _minatar_settings,
            _minatar,
            all_cpu_cores=True,
        ),
        Entry(
            "atari",
            "train impala / stacx / bmg on an Atari game (ALE, Sebulba); writes a run directory",
            "Atari (ale-py) on the Sebulba actor-learner runner: IMPALA (--algo impala), STACX "
            "with a one-step meta-gradient (stacx) or STACX + BMG (bmg, --k K --l L) on one game "
            "(--env.game). Choose a preset (it sets the defaults its flags then override), or "
            "`resume RUN_DIR` to continue an interrupted run (the learner state is exact; the "
            "actors restart from fresh games).",
            _atari_settings,
            _atari,
        ),
    )
}
"""Every system, by command name."""


def entry_of_run(run_dir: Path) -> Entry:
    """The registry entry of the run in ``run_dir``, by ``config.json["experiment"]``.

    Raises:
      ValueError: one sentence: config.json is missing or damaged, or names no known system.
    """
    from bmg.train import records

    record = records.read(Path(run_dir) / "config.json", records.RUN_CONFIG, "a run's config")
    name = record.get("experiment", LEGACY_EXPERIMENT)
    if not isinstance(name, str) or name not in ENTRIES:
        raise ValueError(
            f"{Path(run_dir) / 'config.json'} names the experiment {name!r}, which this bmg does "
            f"not know; known: {', '.join(ENTRIES)}."
        )
    return ENTRIES[name]


LEGACY_EXPERIMENT = "two-colors"
"""The experiment of a run directory whose config.json has no "experiment" key: the run
directories of Two-colors sweeps written before every run recorded its experiment."""
