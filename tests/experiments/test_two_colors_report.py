"""Summary statistics of a Two-colors run against hand-worked traces."""

import dataclasses

import numpy as np

from bmg.experiments import two_colors_report as report
from bmg.experiments.two_colors import Trace, TwoColorsConfig


def hand_trace():
    """2 seeds, meta-steps of 5,000 steps, 40,000 steps, flips every 20,000 (one flip inside)."""
    steps = np.tile(np.arange(1, 9) * 5_000, (2, 1))
    reward = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 10]], float)
    # entropy weight: 0.1 just before the flip, 0.5 right after it, 0.2 elsewhere.
    schedule = np.full((2, 8), 0.2)
    schedule[:, 2:4] = 0.1  # meta-steps ending at 15k, 20k: the 10k steps before the flip at 20k
    schedule[:, 4:6] = 0.5  # ending at 25k, 30k: the 10k steps after it
    zeros = np.zeros((2, 8))
    return Trace(steps, reward, schedule, zeros, zeros)


def test_summary_by_hand():
    trace = hand_trace()
    first = np.array([1.0, -1.0])
    summary = report.summarize(trace, first, switch_every=20_000, seconds=2.0)
    assert summary["total_reward"]["per_seed"] == [37.0, 9.0]
    np.testing.assert_allclose(summary["total_reward"]["mean"], 23.0)
    np.testing.assert_allclose(summary["total_reward"]["se"], np.std([37, 9], ddof=1) / np.sqrt(2))
    # Last 10% of 40,000 steps: the meta-step ending at 40,000 (steps 35,001..40,000).
    np.testing.assert_allclose(
        summary["reward_per_step_last_10pct"]["per_seed"], [8 / 5_000, 10 / 5_000]
    )
    np.testing.assert_allclose(summary["entropy_after_flip"]["per_seed"], [0.5, 0.5])
    np.testing.assert_allclose(summary["entropy_before_flip"]["per_seed"], [0.1, 0.1])
    np.testing.assert_allclose(summary["env_steps_per_second"]["all_seeds"], 80_000 / 2.0)


def test_chunk_rows_and_moving_average():
    trace = hand_trace()
    rows = report.chunk_rows(trace, np.array([1.0, -1.0]), chunk=1, meta_steps_per_chunk=4)
    assert rows[0]["env_steps"] == 40_000
    np.testing.assert_allclose(rows[0]["reward_per_step"], (5 + 6 + 7 + 8) / 20_000)
    np.testing.assert_allclose(rows[0]["cumulative_reward"], 37.0)
    np.testing.assert_allclose(rows[1]["entropy_weight"], np.mean([0.5, 0.5, 0.2, 0.2]))
    moving = report.moving_reward_per_step(trace, window_steps=10_000)
    np.testing.assert_allclose(moving[0, 3], (3 + 4) / 10_000)
    np.testing.assert_allclose(moving[0, 0], 1 / 5_000)  # a partial window at the start


def test_folded_schedule_averages_cycles_after_the_first_flip():
    trace = hand_trace()
    centres, means = report.folded(trace, switch_every=20_000, bins=4)
    np.testing.assert_allclose(centres, [2_500, 7_500, 12_500, 17_500])
    # After the flip at 20k: positions 0-5k -> 0.5 (25k), 5-10k -> 0.5 (30k), 10-15k -> 0.2,
    # 15-20k -> 0.2.
    np.testing.assert_allclose(means[0], [0.5, 0.5, 0.2, 0.2])


def test_run_labels_name_what_differs_between_runs():
    def label(**fields):
        config = TwoColorsConfig(**fields)
        return report.run_label({"config": dataclasses.asdict(config)})

    assert label(algo="ac") == "ac eps=0.01"
    assert label(algo="bmg", k=3, l=16) == "bmg K=3 L=16"
    mg = TwoColorsConfig(algo="mg").ac
    assert label(algo="mg", ac=dataclasses.replace(mg, context="none")) == "mg K=1 no-context"
    outer = dataclasses.replace(mg, outer_entropy_weight=0.1)
    assert label(algo="mg", ac=outer) == "mg K=1 outer-eps=0.1"


def test_reward_per_step_by_phase_and_paying_colour():
    trace = hand_trace()  # phase 0: meta-steps ending at 5k-20k; phase 1: 25k-40k
    rates = report.phase_reward_per_step(trace.env_steps, trace.reward, switch_every=20_000)
    np.testing.assert_allclose(rates, [[10 / 20_000, 26 / 20_000], [0, 10 / 20_000]])
    colour_0, colour_1 = report.late_colour_rates(trace.env_steps, trace.reward, 20_000)
    np.testing.assert_allclose([colour_0["mean"], colour_0["se"]], [0.00025, 0.00025])
    np.testing.assert_allclose(colour_1["mean"], 0.0009)
    # Only complete phases count: at 30k steps (flips every 20k) object 1 has none yet.
    _, none_yet = report.late_colour_rates(trace.env_steps[:, :6], trace.reward[:, :6], 20_000)
    assert np.isnan(none_yet["mean"])
