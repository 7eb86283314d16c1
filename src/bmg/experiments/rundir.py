"""Run directories: `config.json`, append-as-you-go `metrics.csv`, atomic JSON and NumPy saves."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np


def git_commit() -> str:
    """The current git commit of the source tree (with "-dirty" if modified), or "unknown"."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def make_run_dir(out: str | None, experiment: str, name: str) -> Path:
    """`out` if given, else `runs/<experiment>/<name>-<timestamp>/`; created; must hold no run."""
    if out:
        path = Path(out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / experiment / f"{name}-{stamp}"
    if (path / "config.json").exists():
        raise ValueError(
            f"--out {path} already holds a run (config.json); choose a new directory so finished "
            "work is never overwritten."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_to_builtin) + "\n")
    os.replace(tmp, path)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays atomically."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write_config(path: Path, config: Any, **extra: Any) -> None:
    """config.json: the dataclass config, the git commit, versions and devices."""
    write_json(
        path / "config.json",
        {
            "config": dataclasses.asdict(config),
            "git_commit": git_commit(),
            "jax_version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            **extra,
        },
    )


class CsvAppender:
    """Append rows to a CSV file, flushing after each batch so nothing finished is lost."""

    def __init__(self, path: Path, fieldnames: list[str]):
        self.path = path
        self.fieldnames = fieldnames
        with path.open("w", newline="") as f:
            csv.DictWriter(f, fieldnames=fieldnames).writeheader()

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            writer.writerows(rows)
