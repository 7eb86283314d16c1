"""Run directories: `config.json`, append-as-you-go `metrics.csv`, atomic JSON and NumPy saves.

A run directory belongs to one run: `make_run_dir` checks it before any work (not a file, not
under a file, writable, no run in it yet) and locks it (`flock` on `.lock`) for the run's life, so
a second run into it refuses; commands that write elsewhere (`bmg compare --out`) use
`make_output_dir`, which refuses run directories. Every write is atomic (a temporary file, then
a rename), JSON is strict (NaN and inf written as null), and a failed write or a damaged file
read back is one sentence naming the file.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import subprocess
import typing
from pathlib import Path
from typing import Any

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


LOCK = ".lock"
"""The run directory's lock file: `flock`-ed (exclusively) for as long as a run writes there."""

_HELD: dict[Path, int] = {}  # run directories this process has locked -> the lock's descriptor


def _write_error(path: Path, error: OSError, what: str = "") -> ValueError:
    """One sentence for an OSError while writing `path`."""
    reason = error.strerror or str(error)
    if error.errno == errno.EROFS:
        reason = "the file system is read-only"
    return ValueError(f"cannot write {path} ({reason}){what}.")


def check_out(out: str | os.PathLike, flag: str = "--out") -> Path:
    """`out` as a directory path that can be created (checked before any work; nothing is made),
    or ValueError saying why not: empty, a file, or under a file."""
    if str(out).strip() == "":
        raise ValueError(f"{flag} must name a directory, got an empty string.")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a directory; choose a directory.")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{flag} {path} cannot be created: {parent} is a file, not a directory."
                )
            break
    return path


def _create(path: Path, flag: str) -> None:
    """mkdir -p `path` and check that files can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EROFS:
            reason = "the file system is read-only"
        raise ValueError(
            f"{flag} {path} cannot be written ({reason}); choose a writable directory."
        ) from None


def lock_run_dir(path: Path) -> None:
    """Hold an exclusive `flock` on `path/.lock` for the rest of this process's life.

    The operating system releases it when the process ends, normally or not (a crash, SIGKILL),
    so a directory is never left locked by a run that is gone. Locking a directory this process
    already holds is a no-op.

    Raises:
      ValueError: another process holds the lock (a run is writing into `path`), or the lock
        file cannot be created.
    """
    path = Path(path).absolute()
    if path in _HELD:
        return
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ValueError(
            f"{path} cannot be locked for the run ({error.strerror or error}); choose a "
            "writable directory."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(
            f"{path} is in use by another run (it holds the lock {path / LOCK}); wait for that "
            "run to finish or choose another directory."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[path] = fd


def release_run_dir(path: Path) -> None:
    """Release the lock `lock_run_dir` took (it is released at exit anyway)."""
    fd = _HELD.pop(Path(path).absolute(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run (its config.json)."""
    return (Path(path) / "config.json").is_file()


def enclosing_run(path: Path) -> Path | None:
    """The nearest folder above `path` that holds a run (config.json), or None."""
    return next((p for p in Path(path).absolute().parents if is_run_dir(p)), None)


def check_new_run_dir(out: str | os.PathLike, resume_hint: str = "", *, flag: str = "--out"):
    """`out` as a new run's directory, checked without creating anything (what `make_run_dir`
    checks; the command calls it before compiling, so a bad `--out` costs no compile).

    Raises:
      ValueError: one sentence: `out` is empty, a file, under a file, inside another run's
        directory, already holds a run (config.json; `resume_hint` added when unfinished) or
        other files.
    """
    path = check_out(out, flag)
    if is_run_dir(path):
        raise ValueError(
            f"{flag} {path} already holds a run (config.json); choose a new directory so "
            "finished work is never overwritten"
            + ("" if (path / "summary.json").exists() else resume_hint)
            + "."
        )
    run = enclosing_run(path)
    if run is not None:
        raise ValueError(
            f"{flag} {path} is inside the run directory {run} (it holds config.json); choose a "
            "directory outside it so that run's files stay its own."
        )
    others = sorted(p.name for p in path.iterdir() if p.name != LOCK) if path.is_dir() else []
    if others:
        raise ValueError(
            f"{flag} {path} already holds files and no run ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); choose a new or empty directory so nothing "
            "in it is overwritten."
        )
    return path


def make_run_dir(
    out: str | os.PathLike | None,
    experiment: str,
    name: str,
    resume_hint: str = "",
    *,
    flag: str = "--out",
) -> Path:
    """`out` if given, else `runs/<experiment>/<name>-<timestamp>/`: created, locked, empty of runs.

    Checked before any work, each with one sentence: `out` empty, a file, under a file, not
    writable (read-only file system, permissions), locked by a run in progress, already holding
    a run (config.json; `resume_hint` is added when that run is unfinished), or holding other
    files (a run would overwrite its metrics.csv, plots, ...). The lock
    (`lock_run_dir`) is held until the process ends.

    Raises:
      ValueError: the directory cannot be this run's.
    """
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / experiment / f"{name}-{stamp}"
    path = check_new_run_dir(out, resume_hint, flag=flag)
    _create(path, flag)
    lock_run_dir(path)
    if is_run_dir(path):  # written by a run that started between the check and the lock
        release_run_dir(path)
        raise ValueError(
            f"{flag} {path} already holds a run (config.json); choose a new directory."
        )
    return path


def make_output_dir(out: str | os.PathLike, *, flag: str = "--out") -> Path:
    """A directory for a command's outputs (e.g. `bmg compare --out`) that is not a run's.

    Created if needed. Raises ValueError (one sentence) when `out` is empty, a file, under a
    file, not writable, or the directory of a run or inside one (it or a folder above it holds
    config.json): a command never writes into a run directory that is not its own.
    """
    path = check_out(out, flag)
    run = path if is_run_dir(path) else enclosing_run(path)
    if run is not None:
        where = "is a run's directory" if run == path else f"is inside the run directory {run}"
        raise ValueError(
            f"{flag} {path} {where} (it holds config.json); choose another directory so that "
            "run's files stay its own."
        )
    _create(path, flag)
    return path


def to_json(value: Any) -> Any:
    """`value` as strict JSON values: NaN and +-inf become None (null), NumPy scalars and arrays
    Python numbers and lists, tuples lists, Paths strings, dataclasses dicts.

    Raises TypeError for anything else.
    """
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_atomic(path: Path, data: bytes | str, what: str = "") -> None:
    """Write `path` atomically: a temporary file beside it, flushed to disk, then renamed.

    A reader sees the old file or the new one, never half of one. On an OSError (a full disk,
    a read-only file system) the temporary file is removed, the previous `path` stays as it was,
    and ValueError says so in one sentence naming `path`.
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise _write_error(path, error, kept + what) from None


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (NaN and inf as null) atomically; ValueError naming `path` on failure."""
    text = json.dumps(to_json(obj), indent=2, allow_nan=False) + "\n"
    write_atomic(path, text)


def read_json(path: Path, what: str = "") -> Any:
    """The JSON in `path`; ValueError naming the file when it is missing, unreadable or not
    valid JSON. `what` (e.g. "a run's summary") is added to the message."""
    path = Path(path)
    kind = f" as {what}" if what else ""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path} cannot be read{kind}: it does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read{kind} ({_reason(error)}).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON{kind} ({error.msg} at line {error.lineno} column "
            f"{error.colno}); the file is damaged: restore it or re-run."
        ) from None


def read_run(run_dir: str | os.PathLike) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(config.json, summary.json, trace.npz arrays) of a finished run directory (Two-colors,
    MinAtar, Atari).

    Raises:
      ValueError: one sentence naming the missing or damaged file.
    """
    import zipfile

    run_dir = Path(run_dir)
    for name in ("config.json", "summary.json", "trace.npz"):
        if not (run_dir / name).exists():
            raise ValueError(f"{run_dir} is not a finished run: {name} is missing.")
    config = read_json(run_dir / "config.json", "a run's config")
    summary = read_json(run_dir / "summary.json", "a run's summary")
    try:
        with np.load(run_dir / "trace.npz") as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{run_dir / 'trace.npz'} cannot be read ({type(error).__name__}: {error}); the run's "
            "trace is damaged: run it again."
        ) from None
    return config, summary, arrays


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def save_npz(path: Path, compress: bool = True, **arrays: np.ndarray) -> None:
    """Save arrays atomically; ValueError naming `path` when they cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        (np.savez_compressed if compress else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        raise _write_error(path, error, kept) from None


def write_config(path: Path, config: Any, **extra: Any) -> None:
    """config.json: the dataclass config, the git commit, versions and devices."""
    import jax  # here: the rest of this module serves `--help` and reports without JAX

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
    record = read_json(path / "config.json", "a run's config")
    resume = {"time": datetime.datetime.now().isoformat(timespec="seconds"), **where}
    record["resumed"] = [*record.get("resumed", []), {**resume, "git_commit": git_commit()}]
    write_json(path / "config.json", record)


def _is_config(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def config_from_dict(cls, data: dict):
    """Rebuild a frozen (nested) dataclass config from its `dataclasses.asdict` form; a field
    typed as a union of configs (``ActorCriticConfig | QLambdaConfig``) takes the member whose
    fields the saved dict has.

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
        nested = [t for t in typing.get_args(hints[name]) or (hints[name],) if _is_config(t)]
        if nested and isinstance(value, dict):  # a config, or a union of configs (by fields)
            fits = [t for t in nested if {f.name for f in dataclasses.fields(t)} == set(value)]
            value = config_from_dict(fits[0] if len(fits) == 1 else nested[0], value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)


def read_config(run_dir: Path, cls):
    """The config of the run in `run_dir` (its config.json) as a `cls`; ValueError if unusable."""
    from bmg.train import records

    path = Path(run_dir) / "config.json"
    record = records.read(path, records.RUN_CONFIG, "a run's config")
    try:
        return config_from_dict(cls, record["config"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} cannot be read as a run's config ({error!r}).") from None
    except ValueError as error:
        raise ValueError(f"{path} holds a config this version cannot run: {error}") from None


class CsvAppender:
    """Append rows to a CSV file, flushing after each batch so nothing finished is lost.

    A batch is all or nothing: when a write fails (e.g. a full disk) the file is cut back to its
    previous rows and ValueError names it in one sentence.
    """

    def __init__(self, path: Path, fieldnames: list[str]):
        self.path = Path(path)
        self.fieldnames = fieldnames
        header = io.StringIO()
        csv.DictWriter(header, fieldnames=fieldnames).writeheader()
        write_atomic(self.path, header.getvalue())

    def append(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO()
        csv.DictWriter(text, fieldnames=self.fieldnames).writerows(rows)
        data = text.getvalue().encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                try:
                    written = 0
                    while written < len(data):
                        written += os.write(fd, data[written:])
                except OSError:
                    os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as error:
            raise _write_error(self.path, error, "; its earlier rows are intact") from None


def config_digest(config: dict) -> str:
    """SHA-256 of a config's canonical JSON: resume refuses a config.json edited after the start."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def check_digest(path: Path, recorded, digest: str, what: str) -> None:
    """A resume continues the configuration that started (`what`: "run", "sweep"): the
    config_digest recorded in `path` at the start must be there and equal `digest`, the digest
    of what `path` holds now.

    Raises:
      ValueError: one sentence naming `path`: no digest, or one that no longer matches.
    """
    if recorded is None:
        raise ValueError(
            f"{path} has no config_digest, so nothing shows that it still holds the configuration "
            f"the {what} started with; a resume continues that configuration only: start a new "
            f"{what}."
        )
    if recorded != digest:
        raise ValueError(
            f"{path} was edited after the {what} started (its configuration no longer matches "
            "config_digest); a resume continues the same configuration: restore the original "
            f"values or start a new {what}."
        )
