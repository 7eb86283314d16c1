"""The contract between an experiment system and the `bmg` command: what a system declares, once.

A system is a command (``bmg two-colors``, ``bmg minatar``, ...): its settings (the config
class, the presets, which fields a choice leaves without effect), how a run of it is prepared and
driven into a run directory, and its report (tables and plots read from run directories alone).
The command line (`bmg.experiments.cli`) is built from the registry of systems
(`bmg.experiments.registry`) and never asks a module for names it may or may not have.

Pure Python: the settings load without JAX, so ``bmg NAME --help`` is fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SWEEP_CONFIG = "sweep_config.json"
"""The file that marks a sweep directory (its base config and grid): ``bmg NAME resume DIR`` of
such a directory continues the sweep."""

Rows = list[dict[str, str]]
"""A table: one dict per row, column name -> text."""


def no_unused_fields(config: Any) -> dict[str, str]:
    """For a system where every field acts on every run."""
    del config
    return {}


@dataclasses.dataclass(frozen=True)
class Selector:
    """A choice that sets several fields at once (``--algo mg``, ``--agent q``), made on the
    command line before the fields' own flags, which then override what it set.

    Attributes:
      help: one line of help.
      choices: the accepted names.
      of: ``config -> name``, the choice a config embodies (a preset's default, a run's label).
      owns: the (dotted) fields only this choice sets (``("meta.algo",)``): their own flags are
        refused, so that a run's label and its config always agree.
    """

    help: str
    choices: tuple[str, ...]
    of: Callable[[Any], str]
    owns: tuple[str, ...] = ()


def no_selection(config: Any, chosen: Mapping[str, str], preset: str) -> Any:
    """For a system without selectors."""
    del chosen, preset
    return config


META_RENAMED = {
    "--meta-learning-rate": "--meta.learning-rate",
    "--meta-adam-eps": "--meta.adam-eps",
    "--target-step-size": "--meta.target-step-size",
    "--continue-from": "--meta.continue-from",
    "--inner-steps": "--k (--meta.inner-steps)",
    "--bootstrap-steps": "--l (--meta.bootstrap-steps)",
}
"""The meta-learner's flags before the configs nested `MetaConfig` (old flag -> new)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a system's runs are configured (pure Python; what ``--help`` and parsing need).

    Attributes:
      config: the frozen dataclass of a run's configuration; its fields are the flags.
      presets: subcommand name -> (one line of help, field overrides of ``config()``).
      unused_fields: ``config -> {field: why}``, the fields that have no effect on that run
        (e.g. ``{"meta.target_step_size": "with --algo mg (only BMG bootstraps a target)"}``):
        the command refuses a flag that sets one instead of ignoring it.
      selectors: flag name -> `Selector` (``{"algo": Selector(...)}`` gives ``--algo``).
      select: ``(config, {name: choice}, preset) -> config``: the preset's config with the
        choices made on the command line applied (only those given); raises ValueError with one
        sentence when the preset cannot take a choice.
      renamed: flags of earlier versions -> their names now (a key ending in "." renames a
        prefix: ``{"--ac.": "--learner."}``): the command says so instead of "unrecognized".
    """

    config: type
    presets: Mapping[str, tuple[str, dict[str, Any]]]
    unused_fields: Callable[[Any], dict[str, str]] = no_unused_fields
    selectors: Mapping[str, Selector] = dataclasses.field(default_factory=dict)
    select: Callable[[Any, Mapping[str, str], str], Any] = no_selection
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``bmg compare`` and the end of a run read from finished run directories.

    Attributes:
      check_run: ``run_dir -> None``; raises ValueError (one sentence naming the file) when a
        file the report reads is missing or of the wrong shape, before any is read.
      comparison_rows: ``run_dirs -> Rows``, one row per run.
      plot_comparison: ``(run_dirs, out) -> None``, the comparison's plots into ``out``.
      extra: ``run_dirs -> (tables, sentences)``: further tables under the comparison and
        sentences after them (e.g. the published numbers beside ours, aggregates over games).
    """

    check_run: Callable[[Path], None]
    comparison_rows: Callable[[list[Path]], Rows]
    plot_comparison: Callable[[list[Path], Path], None]
    extra: Callable[[list[Path]], tuple[list[Rows], list[str]]] = lambda runs: ([], [])


@dataclasses.dataclass(frozen=True)
class System:
    """A system's run: how it is prepared and driven into a run directory, and its report.

    Attributes:
      settings: its `Settings`.
      run: ``(prepared, run_dir, *, resume, console) -> summary``: train (or continue) a run in
        ``run_dir`` (config.json is the command's); raises ValueError with one sentence
        (non-finite training, memory, a damaged checkpoint).
      report: its `Report`.
      prepare: ``config -> prepared``, the work done before the run directory exists (loading
        and checking data, compiling), so bad input leaves nothing behind; the identity when
        None (``run`` then receives the config).
      check_new_run: ``config -> None``, checks of a new run only (raises ValueError).
      checkpoint_directory: ``(config, run_dir) -> Path | None``, where its checkpoints go
        (None: it keeps none); ``run_dir / "checkpoints"`` when not given.
      starts_backend: whether the command starts JAX's backend once the flags are read; False
        leaves it to ``prepare`` (a multi-process run joins its processes first).
      results: ``run_dir -> Rows``, the table a finished run prints; the report's comparison
        row of the run when not given.
    """

    settings: Settings
    run: Callable[..., dict]
    report: Report
    prepare: Callable[[Any], Any] | None = None
    check_new_run: Callable[[Any], None] | None = None
    checkpoint_directory: Callable[[Any, Path], Path | None] | None = None
    starts_backend: bool = True
    results: Callable[[Path], Rows] | None = None

    def result_rows(self, run_dir: Path) -> Rows:
        """The results table of one finished run (what the command prints at its end)."""
        if self.results is not None:
            return self.results(run_dir)
        return self.report.comparison_rows([run_dir])
