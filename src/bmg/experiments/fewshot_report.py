"""Few-shot run directories: the metrics columns, the results row and the accuracy plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run_label(config: dict) -> str:
    """e.g. "bmg 5 inner steps L=5 5-way 1-shot seed 0" (in few-shot, K names the shots).

    Reads runs written before the rename too (their fields `k`, `l`)."""
    label = config["algo"]
    label += f" {config.get('inner_steps', config.get('k'))} inner steps"
    if config["algo"] == "bmg":
        label += f" L={config.get('bootstrap_steps', config.get('l'))}"
        if config.get("matching", "kl") != "kl":
            label += f" ({config['matching']})"
    return label + f" {config['ways']}-way {config['shots']}-shot seed {config['seed']}"


def is_fewshot_run(run_dir: Path) -> bool:
    config = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    return "shots" in config


def load_run(run_dir: Path) -> tuple[dict, dict, list[dict[str, float]]]:
    """(config, summary, metrics rows) of a finished run."""
    run_dir = Path(run_dir)
    for name in ("config.json", "summary.json", "metrics.csv"):
        if not (run_dir / name).exists():
            raise ValueError(f"{run_dir} is not a finished few-shot run: {name} is missing.")
    config = json.loads((run_dir / "config.json").read_text())["config"]
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "metrics.csv").open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return config, summary, rows


def result_row(config: dict, summary: dict) -> dict[str, str]:
    return {
        "run": run_label(config),
        "meta-steps": f"{config['meta_steps']:,}",
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
        fig.tight_layout()
        path = Path(out) / file_name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_comparison(run_dirs: list[Path], out: Path) -> list[Path]:
    runs = []
    for run_dir in run_dirs:
        config, _, rows = load_run(run_dir)
        runs.append((run_label(config), rows))
    return plot_accuracy(runs, out)
