"""The config tables of the docs, rendered from the config dataclasses' field docstrings.

Every system of the `bmg` command (`bmg.experiments.registry.ENTRIES`) has a config dataclass
(`entry.settings().config`) whose fields are the flags of `bmg NAME PRESET`. For a system, this
script renders a markdown table, one row per flag: the flag as tyro spells it (`--a.b-c` for
the field `b_c` of a nested dataclass field `a`, aliases first), its default (the `default`
preset's, as `--help` shows it) and its meaning (the field's docstring: the string literal right
after the field in the class body, read with `ast`; the first class of the MRO that documents
the field wins). A nested dataclass field (`learner: ActorCriticConfig`, `meta: MetaConfig`, ...)
gives a row `--learner.*` with its docstring (or its class's) followed by its own fields, at any
depth.

A page holds a table between two markers, which this script rewrites:

    <!-- config-table: NAME -->
    (the table)
    <!-- /config-table -->

`NAME` is the system's command name; `NAME only=a,b` keeps the rows under the nested fields
`a` and `b`, `NAME skip=a,b` leaves them out (so one system's flags can be split over two pages);
`NAME agent=q` renders the config with a selector's choice made (`--agent q`: the learner's rows
are Q(lambda)'s). Every flag of every system, under every choice, must be in some table of
README.md or docs/.

Usage (from the repository root; pure Python: it loads each system's settings, never JAX):

    python scripts/config_tables.py           # rewrite every table
    python scripts/config_tables.py --check   # exit 1, naming the page, if a table is stale
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(
    r"(?P<open><!-- config-table: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /config-table -->)",
    re.S,
)
HEADER = "| flag | default | meaning |\n|---|---|---|\n"


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: a flag (or a nested group's `--a.*`) of a system's config."""

    path: tuple[str, ...]  # field names from the top-level config
    flags: tuple[str, ...]  # as tyro spells them, aliases first
    default: str  # "" for a group
    meaning: str
    group: bool = False

    def markdown(self) -> str:
        flags = ", ".join(f"`{flag}`" for flag in self.flags)
        cells = (
            [f"**{flags}**", "", self.meaning]
            if self.group
            else [flags, f"`{self.default}`", self.meaning]
        )
        return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def pages() -> list[Path]:
    """The pages that may hold tables: README.md and every docs page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def field_docs(cls: type) -> dict[str, str]:
    """{field name: docstring} of a dataclass: the string right after each field in the class
    body, from the class and its bases (the class nearest in the MRO wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # a class without source (built-in, generated)
            continue
        body = next(node.body for node in ast.parse(source).body if isinstance(node, ast.ClassDef))
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def class_doc(cls: type) -> str:
    """A class's own docstring ("" for the signature that `dataclasses` writes for a class
    without one)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return "" if doc.startswith(f"{cls.__name__}(") else doc


def one_line(text: str) -> str:
    """A docstring as one table cell: whitespace collapsed, `|` and tag-like `<` escaped, and a
    code span naming a `bmg` command (`bmg fewshot make-synthetic`) written as <code>: it names
    the command, it is not an example for tests/test_documented_commands.py to run."""
    text = " ".join(text.split())
    text = re.sub(r"<(?=[A-Za-z/!])", "&lt;", text.replace("|", "\\|"))
    return re.sub(r"`(bmg [^`]*)`", r"<code>\1</code>", text)


def format_default(value) -> str:
    """A default as `--help` prints it (tuples as their items separated by spaces)."""
    if isinstance(value, tuple | list):
        return " ".join(format_default(item) for item in value)
    return str(value)


def _unwrap(hint) -> tuple[object, tuple]:
    """(type, tyro markers) of a field's type hint: `Annotated[T, ...]` -> (T, (...))."""
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__origin__, hint.__metadata__
    return hint, ()


def _hyphens(name: str) -> str:
    return name.replace("_", "-")


def config_rows(cls: type, default, prefix: tuple[str, ...] = ()) -> list[Row]:
    """The rows of a config dataclass whose default value is `default`, nested fields expanded
    under their dotted prefix."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    hidden = _suppress()
    rows = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        kind, markers = _unwrap(hints[field.name])
        if any(marker in hidden for marker in markers):
            continue
        arg = next((m for m in markers if hasattr(m, "aliases") and hasattr(m, "name")), None)
        name = arg.name if arg is not None and arg.name else field.name
        path = (*prefix, name)
        value = getattr(default, field.name, dataclasses.MISSING)
        if value is dataclasses.MISSING:
            value = field.default
            if field.default_factory is not dataclasses.MISSING:
                value = field.default_factory()
        members = [t for t in typing.get_args(kind) if dataclasses.is_dataclass(t)]
        if members and dataclasses.is_dataclass(value):  # a union of configs: the default's
            kind = type(value)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            meaning = docs.get(field.name) or class_doc(kind)
            flag = "--" + ".".join(_hyphens(part) for part in path) + ".*"
            rows.append(Row(path, (flag,), "", one_line(meaning), group=True))
            rows += config_rows(kind, value, path)
            continue
        flag = "--" + ".".join(_hyphens(part) for part in path)
        aliases = tuple(arg.aliases or ()) if arg is not None else ()
        if value is dataclasses.MISSING:
            shown = "required"
        else:
            shown = format_default(value)
        meaning = docs.get(field.name, "")
        rows.append(Row(path, (*aliases, flag), shown, one_line(meaning)))
    return rows


def _suppress() -> tuple:
    """tyro's markers that hide a field from the command line."""
    import tyro

    return tuple(
        getattr(tyro.conf, name)
        for name in ("Suppress", "SuppressFixed")
        if hasattr(tyro.conf, name)
    )


def system_rows(name: str, chosen: dict[str, str] | None = None) -> list[Row]:
    """Every row of the system `name` (a key of the registry): its config at the `default`
    preset's values (the dataclass's own defaults where it has no `default` preset), with the
    selectors' `chosen` values made (``{"agent": "q"}``: Q(lambda)'s learner fields)."""
    from bmg.experiments.registry import ENTRIES

    settings = ENTRIES[name].settings()
    overrides = settings.presets.get("default", ("", {}))[1]
    try:
        default = settings.config(**overrides)
    except TypeError:  # a required field: each field's own default
        default = None
    if chosen and default is not None:
        default = settings.select(default, chosen, "default")
    selectors = [
        Row((flag,), (f"--{_hyphens(flag)}",), selector.of(default), one_line(selector.help))
        for flag, selector in settings.selectors.items()
        if default is not None
    ]
    return selectors + config_rows(settings.config, default)


def select(rows: list[Row], spec: str) -> list[Row]:
    """The rows a marker's `only=` / `skip=` options keep."""
    options = _options(spec)
    only = set(options.get("only", "").split(",")) - {""}
    skip = set(options.get("skip", "").split(",")) - {""}
    kept = []
    for row in rows:
        nested = row.path[0] if len(row.path) > 1 or row.group else None
        if only and nested not in only:
            continue
        if nested in skip:
            continue
        kept.append(row)
    return kept


def every_row(name: str) -> list[Row]:
    """The rows of the system `name` under each choice of each of its selectors (a union-typed
    field shows another member's fields under another choice: Q(lambda)'s with ``agent=q``)."""
    from bmg.experiments.registry import ENTRIES

    rows = system_rows(name)
    for selector, spec in ENTRIES[name].settings().selectors.items():
        for choice in spec.choices:
            try:
                rows += system_rows(name, {selector: choice})
            except ValueError:  # a choice the default preset cannot take (decay on ac)
                continue
    return rows


def _options(spec: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in spec.split()[1:])


def _key(spec: str) -> str:
    """The cache key of a spec's rows: the system and its selectors' choices."""
    options = _options(spec)
    choices = sorted((k, v) for k, v in options.items() if k not in ("only", "skip"))
    return " ".join([spec.split()[0], *(f"{k}={v}" for k, v in choices)])


def render(spec: str, cache: dict[str, list[Row]]) -> str:
    """The table of a marker's spec (`NAME [SELECTOR=CHOICE ...] [only=...] [skip=...]`)."""
    key = _key(spec)
    if key not in cache:
        chosen = {k: v for k, v in _options(spec).items() if k not in ("only", "skip")}
        cache[key] = system_rows(spec.split()[0], chosen)
    rows = select(cache[key], spec)
    return HEADER + "".join(row.markdown() + "\n" for row in rows)


def _describe(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def update(check: bool) -> list[str]:
    """Rewrite (or, with `check`, compare) every table; the problems, one sentence each."""
    from bmg.experiments.registry import ENTRIES

    problems, cache = [], {}
    shown: dict[str, set[tuple[str, ...]]] = {name: set() for name in ENTRIES}
    for page in pages():
        text = page.read_text()
        if "config-table" not in text:
            continue

        def replace(match, page=page):
            spec = match.group("spec").strip()
            name = spec.split()[0] if spec else ""
            if name not in ENTRIES:
                problems.append(
                    f"{_describe(page)} has a config table of {name!r}, which is not a bmg "
                    f"system (known: {', '.join(ENTRIES)})."
                )
                return match.group(0)
            table = render(spec, cache)
            shown[name].update(row.path for row in select(cache[_key(spec)], spec))
            return match.group("open") + "\n" + table + "\n" + match.group("close")

        new = MARKER.sub(replace, text)
        if new != text:
            if check:
                problems.append(
                    f"{_describe(page)} has a stale config table: run `python "
                    "scripts/config_tables.py` to regenerate it."
                )
            else:
                page.write_text(new)
                print(f"wrote {_describe(page)}")
    for name, paths in shown.items():
        rows = {row.path: row for row in every_row(name)}
        missing = [row.flags[-1] for path, row in rows.items() if path not in paths]
        if missing:
            problems.append(
                f"no config table in README.md or docs/ shows {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} of `bmg {name}`: add a "
                f"`<!-- config-table: {name} -->` marker pair to its page and run `python "
                "scripts/config_tables.py`."
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a table is stale"
    )
    args = parser.parse_args(argv)
    problems = update(check=args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
