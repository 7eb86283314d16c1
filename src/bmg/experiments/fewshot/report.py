"""Few-shot run directories: the metrics columns, the results row and the accuracy plots."""

from __future__ import annotations

import csv
from pathlib import Path

from bmg.experiments.api import Report
from bmg.experiments.fewshot.config import FewShotConfig
from bmg.experiments.report import plots
from bmg.experiments.report.plots import plt
from bmg.train import records, rundir
from bmg.train.records import INTEGER, NUMBER

SUMMARY = {
    "best_val_accuracy": NUMBER,
    "best_meta_step": INTEGER,
    "test_accuracy": NUMBER,
    "test_ci95": NUMBER,
    "test_tasks": INTEGER,
    "seconds_per_meta_step": NUMBER,
}
"""What the report reads of a few-shot run's summary.json."""
COLUMNS = ("meta_step", "train_seconds", "val_accuracy")
"""What the plots read of a few-shot run's metrics.csv."""


def run_label(config: FewShotConfig) -> str:
    """e.g. "bmg 5 inner steps L=5 5-way 1-shot seed 0" (in few-shot, K names the shots)."""
    label = f"{config.algo} {config.meta.inner_steps} inner steps"
    if config.algo == "bmg":
        label += f" L={config.meta.bootstrap_steps}"
        if config.matching != "kl":
            label += f" ({config.matching})"
    return label + f" {config.ways}-way {config.shots}-shot seed {config.seed}"


def _read_rows(path: Path) -> list[dict[str, float]]:
    """metrics.csv as numbers; ValueError naming the file, the line and the column when a cell
    is not a number or a column the plots read is missing."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [name for name in COLUMNS if name not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(
                    f"{path} is not a few-shot run's metrics: it lacks the column(s) "
                    f"{', '.join(missing)} (its header must name {', '.join(COLUMNS)})."
                )
            rows = []
            for row in reader:
                values = {}
                for name, cell in row.items():
                    try:
                        values[name] = float(cell)
                    except (TypeError, ValueError):
                        raise ValueError(
                            f"{path} is not a few-shot run's metrics: line {reader.line_num} "
                            f"column {name} must be a number, got {cell!r}."
                        ) from None
                rows.append(values)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ValueError(f"{path} cannot be read as a few-shot run's metrics ({reason}).") from None
    return rows


def check_run(run_dir: Path) -> None:
    """Check that a finished few-shot run directory's config.json, summary.json and metrics.csv
    hold what this report reads (`comparison_rows`, `plot_comparison`).

    Raises:
      ValueError: one sentence naming the missing file, or the file and the entry that is
        missing or of another kind than expected.
    """
    load_run(run_dir)


def load_run(run_dir: Path) -> tuple[FewShotConfig, dict, list[dict[str, float]]]:
    """(config, summary, metrics rows) of a finished run, each checked against what the report
    reads (ValueError: one sentence naming the file and the entry)."""
    run_dir = records.require_files(
        run_dir, ("config.json", "summary.json", "metrics.csv"), "few-shot"
    )
    config = rundir.read_config(run_dir, FewShotConfig)
    summary = records.read(run_dir / "summary.json", SUMMARY, "a few-shot run's summary")
    return config, summary, _read_rows(run_dir / "metrics.csv")


def result_row(config: FewShotConfig, summary: dict) -> dict[str, str]:
    return {
        "run": run_label(config),
        "meta-steps": f"{config.meta_steps:,}",
        "best val acc": f"{100 * summary['best_val_accuracy']:.2f}%",
        "at step": f"{summary['best_meta_step']:,}",
        # The same columns for every run, so runs with different --test-tasks compare.
        "test acc (95% CI)": (
            f"{100 * summary['test_accuracy']:.2f} ± {100 * summary['test_ci95']:.2f}%"
        ),
        "test tasks": f"{summary['test_tasks']:,}",
        "s / meta-step": f"{summary['seconds_per_meta_step']:.3f}",
    }


def comparison_rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    rows = []
    for run_dir in run_dirs:
        config, summary, _ = load_run(run_dir)
        rows.append(result_row(config, summary))
    return rows


def plot_accuracy(runs: list[tuple[str, list[dict[str, float]]]], out: Path) -> list[Path]:
    """Validation accuracy against meta-steps and against training wall-clock seconds."""
    paths = []
    for x_name, x_label, file_name in (
        ("meta_step", "meta-step", "accuracy_vs_meta_step.png"),
        ("train_seconds", "training wall-clock (s, compile and evaluation excluded)",
         "accuracy_vs_wall_clock.png"),
    ):  # fmt: skip
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, rows in runs:
            ax.plot([r[x_name] for r in rows], [100 * r["val_accuracy"] for r in rows], label=label)
        ax.set_xlabel(x_label)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        path = Path(out) / file_name
        plots.save(fig, path, dpi=120)
        paths.append(path)
    return paths


def plot_comparison(run_dirs: list[Path], out: Path) -> list[Path]:
    runs = []
    for run_dir in run_dirs:
        config, _, rows = load_run(run_dir)
        runs.append((run_label(config), rows))
    return plot_accuracy(runs, out)


REPORT = Report(check_run, comparison_rows, plot_comparison)
"""The few-shot report (`bmg compare`)."""
