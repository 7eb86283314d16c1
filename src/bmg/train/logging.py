"""What a run shows and writes as it goes: metrics.csv rows, TensorBoard scalars, progress.

One `RunLogger` per run directory, shared by the runners' experiments: a live progress bar on a
terminal (steps, rate, elapsed, ETA) and one line per chunk or evaluation in logs.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

from bmg.train.rundir import CsvAppender

KEYS = ("seed", "chunk", "meta_step")  # metrics.csv columns that are not measurements


def make_console(file=None):
    """The console of the command line: log and progress lines are never wrapped, so each stays
    one line in a log file or pipe (where rich would wrap at 80 columns); tables still fit the
    console's width.

    Args:
      file: where it writes; None = stdout.
    """
    from rich.console import Console

    return Console(file=file, soft_wrap=True)


class RunLogger:
    """metrics.csv (`fields` columns, rewritten from the header), TensorBoard events under
    `run_dir/tensorboard` and a progress display towards `total_steps`.

    Args:
      run_dir: the run directory.
      fields: metrics.csv columns, in order; None: the first rows' keys (metrics.csv is then
        written at the first rows).
      total_steps: the progress bar's end (environment steps per seed, or meta-steps).
      console: a `rich.console.Console`.
    """

    def __init__(self, run_dir: Path, fields: list[str] | None, *, total_steps: int, console):
        from tensorboardX import SummaryWriter

        self.csv_path = Path(run_dir) / "metrics.csv"
        self.csv = None if fields is None else CsvAppender(self.csv_path, fields)
        self.events = Path(run_dir) / "tensorboard"
        with self._writing():
            self.writer = SummaryWriter(str(self.events))
        self.total_steps = total_steps
        self.console = console
        self._progress = None
        self._task = None
        self._subtask = None

    @contextlib.contextmanager
    def _writing(self):
        """TensorBoard's OSErrors (a full disk) as one sentence naming the directory."""
        try:
            yield
        except OSError as error:
            raise ValueError(
                f"{self.events} cannot be written ({error.strerror or error}); the checkpoints "
                "the run wrote before are intact: free space, then resume the run (or start it "
                "again if it wrote none)."
            ) from None

    @contextlib.contextmanager
    def progress(self, description: str):
        """Show a progress bar (terminal) while the block runs; it starts as `description`."""
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if not self.console.is_terminal:
            self.console.print(f"{description}...", soft_wrap=True)
            yield
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        with self._progress:
            self._task = self._progress.add_task(description, total=self.total_steps, rate="")
            yield
        self._progress = self._task = self._subtask = None

    def rows(self, rows: list[dict[str, Any]], *, step: int | None = None, tensorboard=True):
        """Append `rows` to metrics.csv; with `tensorboard`, log each measurement's mean over
        the rows (seeds) at `step`."""
        if not rows:
            return
        if self.csv is None:
            self.csv = CsvAppender(self.csv_path, list(rows[0]))
        self.csv.append(rows)
        if not tensorboard:
            return
        with self._writing():
            for name in self.csv.fieldnames:
                if name in KEYS:
                    continue
                values = [float(r[name]) for r in rows if r.get(name) is not None]
                values = [v for v in values if math.isfinite(v)]
                if values:
                    self.writer.add_scalar(name, sum(values) / len(values), step)
            self.writer.flush()

    def advance(self, completed: int, line: str, *, rate: str = "") -> None:
        """Move the bar to `completed` (terminal) or print `line` (logs; nothing when empty)."""
        if self._progress is not None:
            self._progress.update(self._task, description="running", completed=completed, rate=rate)
        elif line:
            self.console.print(line, soft_wrap=True)

    def message(self, text: str) -> None:
        """One line above the bar (terminal) or in the log."""
        self.console.print(text, soft_wrap=True)

    def task(self, description: str, done: int, total: int) -> None:
        """A second bar under the first (e.g. validation tasks) on a terminal, removed once
        ``done >= total``; nothing in logs (the event after it says what came of it)."""
        if self._progress is None:
            return
        if self._subtask is None:
            self._subtask = self._progress.add_task(description, total=total, rate="")
        self._progress.update(self._subtask, completed=done, total=total, description=description)
        if done >= total:
            self._progress.remove_task(self._subtask)
            self._subtask = None

    def close(self) -> None:
        with self._writing():
            self.writer.close()
