"""The config tables of the docs are what `scripts/config_tables.py` renders from the config
dataclasses' field docstrings, and name the flags that `bmg NAME PRESET --help` shows.

A change to a config (a field, its default, its docstring, a nested config) fails here until the
tables are regenerated, from the repository root:

    python scripts/config_tables.py            # rewrites the tables in README.md and docs/
    python scripts/config_tables.py --check    # what this test runs

Fast and pure Python: the systems' settings load without JAX.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest

from bmg.experiments.registry import ENTRIES

ROOT = Path(__file__).resolve().parents[1]
FLAG = r"-{1,2}[a-z][\w.-]*"


def _script():
    spec = importlib.util.spec_from_file_location(
        "config_tables", ROOT / "scripts" / "config_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


config_tables = _script()


def test_the_tables_are_current(capsys):
    """Every table between `<!-- config-table: NAME -->` markers equals what the script would
    write, and every flag of every system is in one."""
    code = config_tables.main(["--check"])
    assert code == 0, capsys.readouterr().err


def _help_flags(name: str, monkeypatch) -> set[str]:
    """The flags `bmg NAME PRESET --help` lists (its first preset), as tyro spells them."""
    from bmg.experiments import command
    from bmg.experiments.registry import ENTRIES

    settings = ENTRIES[name].settings()
    preset = next(iter(settings.presets))
    monkeypatch.setenv("COLUMNS", "80")  # one column: each flag starts a line, indented by 2
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        command.parse_run([preset, "--help"], settings, "bmg", "")
    flags = set()
    for line in out.getvalue().splitlines():
        match = re.match(rf"[│ ]? {{1,3}}((?:{FLAG}(?: \S+)?, )*{FLAG})", line)
        if match:
            flags.update(re.findall(rf"(?:^|, )({FLAG})", match.group(1)))
    return flags - {"-h", "--help", "--out"}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_flags_are_those_of_help(name, monkeypatch):
    """The generator spells each flag (dotted prefixes of nested configs, hyphens for
    underscores, aliases) as `--help` does."""
    rows = config_tables.system_rows(name)
    generated = {flag for row in rows if not row.group for flag in row.flags}
    assert generated == _help_flags(name, monkeypatch)


@dataclasses.dataclass(frozen=True)
class Inner:
    step_size: float = 0.1
    """alpha | the step."""


@dataclasses.dataclass(frozen=True)
class Base:
    seeds: int = 3
    """independent seeds."""


@dataclasses.dataclass(frozen=True)
class Middle:
    """The middle <layer>."""

    inner: Inner = Inner(step_size=0.5)
    sizes: tuple[int, ...] = (16, 32)
    """channels."""


@dataclasses.dataclass(frozen=True)
class Top(Base):
    meta_config: Middle = Middle()
    """the meta-learner."""


def test_nested_configs_at_any_depth():
    """A nested dataclass field gives a `--a.*` row (its docstring, else its class's) and its
    fields under the prefix `--a.`, recursively; a field's docstring comes from the class that
    documents it, bases included; defaults are those of the default instance."""
    rows = config_tables.config_rows(Top, Top())
    assert [row.markdown() for row in rows] == [
        "| `--seeds` | `3` | independent seeds. |",
        "| **`--meta-config.*`** | | the meta-learner. |",
        "| **`--meta-config.inner.*`** | | |",
        "| `--meta-config.inner.step-size` | `0.5` | alpha \\| the step. |",
        "| `--meta-config.sizes` | `16 32` | channels. |",
    ]
    assert config_tables.one_line("The middle <layer>.") == "The middle &lt;layer>."
    assert config_tables.one_line("data of `bmg fewshot make-synthetic`") == (
        "data of <code>bmg fewshot make-synthetic</code>"
    )
