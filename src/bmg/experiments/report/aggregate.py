"""Scores aggregated over games with ``rliable``: IQM, median and mean with stratified bootstrap
confidence intervals (Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical
Precipice", NeurIPS 2021).

A method's scores are a [runs, games] matrix of normalised scores (Atari: human-normalised;
MinAtar: divided by a reference return). The interquartile mean (IQM) is the mean of the middle
50% of all runs x games scores (25% trimmed at each end); the median is the median over games of
the per-game mean over runs. The confidence intervals resample runs with replacement within each
game (stratified bootstrap, ``rliable.library.get_interval_estimates``, percentile method) from a
seeded generator: the same scores and seed give the same intervals. (rliable 1.2 draws its
resamples from numpy's global generator whatever ``random_state`` it is given, so the global
generator is seeded here and restored afterwards.)

rliable's ``library`` imports ``arch``, whose releases before 8 do not import with pandas 3 and
whose release 8 rliable does not accept; the ``atari`` extra therefore asks for ``pandas<3``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

MISSING_RLIABLE = "aggregating scores over games needs rliable: pip install 'bmg[atari]'"
STATISTICS = ("iqm", "median", "mean")


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """IQM, median and mean of each method's [runs, games] normalised scores, with confidence
    intervals.

    Args:
      scores: method name -> array [runs, games] of finite normalised scores; every method the
        same number of games (in the same order); runs may differ between methods.
      reps: bootstrap replications (rliable's paper uses 2,000 or more).
      confidence: coverage of the intervals, in (0, 1).
      seed: seed of the bootstrap (each method's stream is seeded by ``seed`` and its name, so
        its intervals do not depend on the other methods or their order).

    Returns:
      method -> {"iqm" | "median" | "mean": (point, low, high)}.

    Raises:
      ValueError: no methods, a matrix that is not 2-D, empty or not finite, methods with
        different numbers of games, ``reps`` < 1 or ``confidence`` outside (0, 1).
      ImportError: without rliable (``MISSING_RLIABLE``).
    """
    try:
        from rliable import library, metrics
    except ImportError:
        raise ImportError(MISSING_RLIABLE) from None
    if not scores:
        raise ValueError("scores must name at least one method, got none.")
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    matrices = {name: np.asarray(value, np.float64) for name, value in scores.items()}
    for name, matrix in matrices.items():
        if matrix.ndim != 2 or matrix.size == 0 or not np.all(np.isfinite(matrix)):
            raise ValueError(
                f"the scores of {name!r} must be a non-empty [runs, games] matrix of finite "
                f"numbers, got shape {matrix.shape}"
                + ("" if matrix.size == 0 or np.all(np.isfinite(matrix)) else " with NaN or inf")
                + "."
            )
    games = {name: matrix.shape[1] for name, matrix in matrices.items()}
    if len(set(games.values())) != 1:
        raise ValueError(f"every method needs the same games, got these numbers of games: {games}.")

    def statistics(matrix):
        return np.array(
            [
                metrics.aggregate_iqm(matrix),
                metrics.aggregate_median(matrix),
                metrics.aggregate_mean(matrix),
            ]
        )

    result = {}
    saved = np.random.get_state()  # noqa: NPY002 (rliable resamples with the global generator)
    try:
        for name, matrix in matrices.items():
            np.random.seed((seed + zlib.crc32(name.encode())) % 2**32)  # noqa: NPY002
            points, intervals = library.get_interval_estimates(
                {name: matrix}, statistics, reps=reps, confidence_interval_size=confidence
            )
            result[name] = {
                stat: (
                    float(points[name][k]),
                    float(intervals[name][0, k]),
                    float(intervals[name][1, k]),
                )
                for k, stat in enumerate(STATISTICS)
            }
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    return result


def format_interval(estimate: tuple[float, float, float], digits: int = 2) -> str:
    """``"0.52 [0.41, 0.60]"``: a point estimate and its interval."""
    point, low, high = estimate
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
