"""The repository speaks to users: its README, docs, source (docstrings and `--help` texts), tests,
benchmarks and examples never name the project's internal issues ("issue 14", "the issue's
budget"), which users cannot see."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = re.compile(r"\bissues? #?\d+|\bissue's\b", re.IGNORECASE)
PUBLIC = re.compile(r"\b(JAX|jax|rlax|optax|flax|tyro|gymnax|orbax) issue", re.IGNORECASE)
"""A public project's issue tracker may be cited (e.g. "JAX issue #12868")."""


def test_no_internal_issue_references():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for folder in ("src", "tests", "benchmarks", "examples", "scripts"):
        files += sorted((ROOT / folder).rglob("*.py"))
    files.remove(Path(__file__).resolve())  # its own examples
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL.search(line) and not PUBLIC.search(line)
    ]
    assert not found, "internal issue references:\n" + "\n".join(found)
