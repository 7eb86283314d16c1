"""Plotting shared by every system's report: matplotlib without a display, curves with their
standard-error band over seeds, and figures saved and closed in one call."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed (or opened) on a headless machine
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["band", "plt", "save"]


def band(ax, x, values, label: str, **kwargs) -> None:
    """Plot the mean over seeds of ``values`` [seeds, points] against ``x`` [points], with a
    shaded band of one standard error (sample standard deviation / sqrt(seeds)); NaN entries
    (e.g. a window where no episode ended) are left out of both, point by point; one seed has no
    band. ``kwargs`` go to ``ax.plot``."""
    values = np.asarray(values, np.float64)
    mean = np.nanmean(values, axis=0) if values.size else values
    count = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.nanstd(values, axis=0, ddof=1) / np.sqrt(count) if len(values) > 1 else 0 * mean
    se = np.nan_to_num(se)
    (line,) = ax.plot(x, mean, label=label, **kwargs)
    ax.fill_between(x, mean - se, mean + se, alpha=0.25, color=line.get_color())


def save(fig, path: Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (laid out tight) and close it, so a long report does not keep
    every figure in memory; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
