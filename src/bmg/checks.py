"""Validation of configuration values: one sentence naming the field, the value and what is
accepted. Pure Python (no JAX), so configs and the command line's `--help` stay fast to import."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import numbers
from typing import Any

_NESTED_DEFERRED = contextvars.ContextVar("bmg_nested_checks_deferred", default=False)


@contextlib.contextmanager
def nested_checks_deferred():
    """While the command line builds a config, nested configs (``ac``, ``stacx``, ...) skip
    their checks (``checks_deferred``); ``check_nested`` runs them afterwards, so that a bad value
    is one sentence naming the field's path (the parser would name its own internals)."""
    token = _NESTED_DEFERRED.set(True)
    try:
        yield
    finally:
        _NESTED_DEFERRED.reset(token)


@contextlib.contextmanager
def checks_now():
    """Configs built inside the block check themselves even while the command line defers
    nested checks: for a config a system derives from its own fields (its ``MetaConfig``), which
    no ``check_nested`` would reach."""
    token = _NESTED_DEFERRED.set(False)
    try:
        yield
    finally:
        _NESTED_DEFERRED.reset(token)


def checks_deferred() -> bool:
    """Whether a nested config's ``__post_init__`` should skip its checks (see above)."""
    return _NESTED_DEFERRED.get()


def check_nested(config: Any, path: str = "") -> None:
    """Run the checks of every nested dataclass config of ``config`` (depth first); a
    ``ValueError`` names the field's path: "ac.entropy_cost must be ...".

    Raises:
      ValueError: a nested config's check failed.
    """
    with checks_now():  # the checks run here, deferred or not
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                where = f"{path}{field.name}"
                try:
                    dataclasses.replace(value)  # re-runs its __post_init__
                except ValueError as error:
                    raise ValueError(f"{where}.{error}") from None
                check_nested(value, where + ".")


def check_integer(name: str, value: int, minimum: int) -> int:
    """Return `value` if it is an int >= `minimum`, else raise a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (a ``bool``, not a number or a string),
    else raise ``ValueError`` with one sentence naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` if it is a finite real number in the interval, else raise ``ValueError``
    with one sentence naming ``name``, the value and the accepted range."""
    left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    if low is not None and high is not None:
        accepted = f"a finite number in {left}, {right}"
    elif low is not None:
        accepted = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        accepted = "a finite number"
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or (value < high if high_open else value <= high))
    )
    if not ok:
        raise ValueError(f"{name} must be {accepted}, got {value!r}.")
    return value
