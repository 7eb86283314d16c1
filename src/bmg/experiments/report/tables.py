"""Result tables: markdown for files and logs, rich for a terminal."""

from __future__ import annotations


def markdown_table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(rows: list[dict[str, str]]):
    """The same rows as a rich Table for the console."""
    from rich.table import Table

    table = Table()
    for name in rows[0]:
        table.add_column(name, justify="left" if name == "run" else "right")
    for row in rows:
        table.add_row(*row.values())
    return table
