"""The shapes of the JSON files a run directory holds, checked before a report reads them.

A report (``bmg compare``) reads keys of config.json and summary.json; a file of the wrong shape
(``{}``, a list, a number where an object belongs, a key missing) would otherwise surface as a
KeyError or TypeError deep inside the report. ``check`` compares a file's JSON with a schema and
raises one sentence naming the file, the entry and what was expected. Pure Python.

A schema is a `Kind` (``NUMBER``, ``INTEGER``, ``TEXT``, ``nullable(...)``, ``one_of(...)``), a
``list_of(schema)``, or a dict ``{key: schema}`` (a JSON object holding at least those keys;
``optional(schema)`` marks a key that may be absent; other keys are allowed).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Kind:
    """A JSON value that `accepts` says yes to, described for a person as `description`."""

    description: str
    accepts: Callable[[Any], bool]


@dataclasses.dataclass(frozen=True)
class ListOf:
    """A JSON list whose every item matches `item`."""

    item: Any


@dataclasses.dataclass(frozen=True)
class OptionalEntry:
    """A dict schema's key that may be absent (checked against `schema` when present)."""

    schema: Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


NUMBER = Kind("a number", _is_number)
INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Kind("a string", lambda v: isinstance(v, str))
OBJECT: dict = {}
"""Any JSON object."""


def nullable(kind: Kind) -> Kind:
    """`kind` or null (strict JSON writes NaN and infinities as null)."""
    return Kind(f"{kind.description} or null", lambda v: v is None or kind.accepts(v))


def one_of(*values: str) -> Kind:
    """One of the strings `values`."""
    return Kind(
        f"one of {', '.join(map(repr, values))}", lambda v: isinstance(v, str) and v in values
    )


def list_of(item: Any) -> ListOf:
    return ListOf(item)


def optional(schema: Any) -> OptionalEntry:
    return OptionalEntry(schema)


STAT = {"mean": nullable(NUMBER), "se": nullable(NUMBER)}
"""A statistic over seeds as summary.json writes it (null where there is no data)."""
STAT_PER_SEED = {**STAT, "per_seed": list_of(nullable(NUMBER))}


def describe(schema: Any) -> str:
    """`schema` in words, e.g. "an object with mean, se"."""
    if isinstance(schema, OptionalEntry):
        return describe(schema.schema)
    if isinstance(schema, Kind):
        return schema.description
    if isinstance(schema, ListOf):
        return f"a list of items each {describe(schema.item)}"
    keys = list(schema)
    if not keys:
        return "a JSON object"
    shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
    return f"a JSON object with {shown}"


def found(value: Any) -> str:
    """What a JSON value is, in words: "a list", "null", "the string 'x'"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value!r}" if math.isfinite(value) else f"{value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return "a list" if isinstance(value, list) else "a JSON object"


def check(path: Path, value: Any, schema: Any, what: str, where: str = "") -> None:
    """Raise ValueError (one sentence naming `path` and the entry) unless `value` matches
    `schema`; `what` says what the file should be, e.g. "a Two-colors run's summary"."""
    name = where or "its top level"
    if isinstance(schema, OptionalEntry):
        schema = schema.schema
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(
                f"{path} is not {what}: {name} must be {describe(schema)}, got {found(value)}."
            )
        for key, item in schema.items():
            entry = f"{where}.{key}" if where else key
            if key not in value:
                if isinstance(item, OptionalEntry):
                    continue
                raise ValueError(
                    f"{path} is not {what}: it lacks the key {entry} ({describe(item)})."
                )
            check(path, value[key], item, what, entry)
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise ValueError(
                f"{path} is not {what}: {name} must be {describe(schema)}, got {found(value)}."
            )
        for i, item in enumerate(value):
            check(path, item, schema.item, what, f"{where}[{i}]")
    elif not schema.accepts(value):
        raise ValueError(
            f"{path} is not {what}: {name} must be {describe(schema)}, got {found(value)}."
        )


def require_files(run_dir: Path, names: tuple[str, ...], kind: str = "") -> Path:
    """``run_dir`` as a Path, if it holds every file of ``names``.

    Raises:
      ValueError: "<run_dir> is not a finished <kind> run: <name> is missing."
    """
    run_dir = Path(run_dir)
    for name in names:
        if not (run_dir / name).exists():
            raise ValueError(
                f"{run_dir} is not a finished {kind + ' ' if kind else ''}run: {name} is missing."
            )
    return run_dir


def read(path: Path, schema: Any, what: str) -> Any:
    """The JSON in `path`, checked against `schema`: ValueError (one sentence naming the file)
    when it is missing, damaged or of another shape."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path} cannot be read as {what}: it does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ValueError(f"{path} cannot be read as {what} ({reason}).") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON as {what} ({error.msg} at line {error.lineno} column "
            f"{error.colno}); the file is damaged: restore it or re-run."
        ) from None
    check(path, value, schema, what)
    return value


RUN_CONFIG = {"config": OBJECT}
"""Every run's config.json: a JSON object whose "config" is the run's configuration."""
