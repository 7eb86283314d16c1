"""Run directories: `config.json`, append-as-you-go `metrics.csv`, atomic JSON and NumPy saves."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import subprocess
import typing
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


def make_run_dir(out: str | None, experiment: str, name: str, resume_hint: str = "") -> Path:
    """`out` if given, else `runs/<experiment>/<name>-<timestamp>/`; created; must hold no run.

    `resume_hint` is added to the error for a directory that holds an unfinished run.
    """
    if out:
        path = Path(out)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / experiment / f"{name}-{stamp}"
    if (path / "config.json").exists():
        raise ValueError(
            f"--out {path} already holds a run (config.json); choose a new directory so finished "
            "work is never overwritten"
            + ("" if (path / "summary.json").exists() else resume_hint)
            + "."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_to_builtin) + "\n")
    os.replace(tmp, path)


def save_npz(path: Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save arrays atomically."""
    tmp = path.with_name(path.name + ".tmp.npz")
    (np.savez_compressed if compress else np.savez)(tmp, **arrays)
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


def record_resume(path: Path, **where: Any) -> None:
    """Add a resume (when, the code's git commit, `where` it continued) to config.json's
    "resumed" list, so a run's record names every commit that produced part of it."""
    record = json.loads((path / "config.json").read_text())
    resume = {"time": datetime.datetime.now().isoformat(timespec="seconds"), **where}
    record["resumed"] = [*record.get("resumed", []), {**resume, "git_commit": git_commit()}]
    write_json(path / "config.json", record)


def config_from_dict(cls, data: dict):
    """Rebuild a frozen (nested) dataclass config from its `dataclasses.asdict` form.

    Lists become tuples. Raises ValueError when the fields differ from `cls`'s.
    """
    names = {field.name for field in dataclasses.fields(cls)}
    if set(data) != names:
        raise ValueError(
            f"the saved {cls.__name__} does not match this version's: missing "
            f"{sorted(names - set(data)) or 'none'}, unknown {sorted(set(data) - names) or 'none'}."
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            value = config_from_dict(hints[name], value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def read_config(run_dir: Path, cls):
    """The config of the run in `run_dir` (its config.json) as a `cls`; ValueError if unusable."""
    path = run_dir / "config.json"
    try:
        return config_from_dict(cls, json.loads(path.read_text())["config"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} cannot be read as a run's config ({error}).") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


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
