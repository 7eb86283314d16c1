"""What a run prints: log and progress lines stay one line each in a log file (never wrapped at
rich's 80 columns), while tables still fit the console."""

import importlib
import io

import pytest
from rich.console import Console

from bmg.experiments.report.tables import rich_table
from bmg.train.logging import RunLogger, make_console

LINE = "chunk 3/10: 150,000 steps per seed, 50,305 steps/s (all seeds), reward/step 0.003 (seed 0)"


def test_progress_lines_are_one_line_in_a_log_file(tmp_path):
    assert len(LINE) > 80
    consoles = {"cli": make_console(io.StringIO()), "plain": Console(file=io.StringIO())}
    for name, console in consoles.items():  # the command line's, and one a caller made
        (tmp_path / name).mkdir()
        logger = RunLogger(tmp_path / name, ["seed"], total_steps=10, console=console)
        with logger.progress("compiling"):
            logger.advance(5, LINE)
        logger.close()
        assert console.file.getvalue() == f"compiling...\n{LINE}\n", name
    console = make_console(io.StringIO())
    console.print(f"[bold]two-colors[/bold] {LINE}")  # any line the command line prints
    assert console.file.getvalue() == f"two-colors {LINE}\n"


def test_tables_still_fit_the_console():
    console = make_console(io.StringIO())
    rows = [{"run": "bmg " * 20, "total reward": "1,234 ± 5", "reward/step": "0.003 ± 0.001"}]
    console.print(rich_table(rows))
    lines = console.file.getvalue().splitlines()
    assert lines[0].startswith("┏") and len(lines) > 5, lines  # the long cell wraps inside
    assert all(len(line) <= console.width for line in lines), lines


@pytest.mark.parametrize("system", ["two_colors", "minatar"])
def test_prepare_says_how_long_compiling_took(system, monkeypatch, capsys):
    """`bmg two-colors` and `bmg minatar` compile before the run directory exists: the log says
    "compiling ..." and then how long it took."""
    module = importlib.import_module(f"bmg.experiments.{system}.system")

    class Runner:  # the compile itself is the runner's (tests/train/test_anakin.py)
        compile_seconds = 12.34

        def compile(self):
            return self.compile_seconds

    monkeypatch.setattr(module, "make_runner", lambda config: Runner())
    prepared = module.prepare(module.SETTINGS.config())
    assert isinstance(prepared.runner, Runner)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("compiling ") and lines[1] == "compiled in 12.3 s", lines
