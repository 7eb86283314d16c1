"""Statistics over seeds shared by every system's report: the mean and its standard error
(sample standard deviation / sqrt(seeds)), and their text in tables. Interval estimates over
games (IQM, stratified bootstrap) are `bmg.experiments.report.aggregate`'s."""

from __future__ import annotations

import math

import numpy as np


def mean_se(values: np.ndarray) -> dict[str, float]:
    """Mean and standard error over the first axis; NaN for an empty or all-NaN statistic (e.g.
    the entropy around flips of a run shorter than one phase)."""
    values = np.asarray(values, np.float64)
    if values.size == 0 or np.isnan(values).all():
        return {"mean": float("nan"), "se": float("nan")}
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "se": se}


def _missing(value) -> bool:
    return value is None or math.isnan(value)  # summary.json writes NaN as null


def format_mean_se(stat: dict, digits: int = 3) -> str:
    """ "mean ± se", "mean" for one seed, "-" for a statistic the run has no data for."""
    if _missing(stat["mean"]):
        return "-"
    if _missing(stat["se"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['se']:.{digits}f}"
