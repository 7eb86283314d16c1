"""Q(lambda) lifetimes on Two-colors (the exploration experiment): step accounting and the
fixed, decaying, MG and BMG epsilon; the `exploration` preset. Lifetimes compile: slow tier."""

import dataclasses

import numpy as np
import pytest

from bmg.agents.q_lambda import QLambdaConfig
from bmg.experiments.two_colors.system import (
    PRESET_VALUES,
    PRESETS,
    EnvConfig,
    TwoColorsConfig,
    make_runner,
    report_trace,
)
from bmg.train.lifetime import LifetimeConfig

Q = QLambdaConfig(
    hidden_size=16, rollout_length=4, context_length=3, meta_hidden_size=8, decay_steps=40
)
ENV = EnvConfig(grid_size=3, switch_every=40)


def run(algo, inner_steps, bootstrap_steps):
    """A Q(lambda) lifetime of `algo` (as --algo chooses it: decay sets epsilon_decay)."""
    meta = dataclasses.replace(
        TwoColorsConfig.meta, learning_rate=0.05, bootstrap_steps=bootstrap_steps
    )
    preset = dataclasses.replace(
        PRESET_VALUES["default"],
        q=Q,
        meta=meta,
        inner_steps=inner_steps,
        lifetime=LifetimeConfig(steps=96, seeds=2, chunk_steps=96),
        env=ENV,
    )
    config = preset.config("q", algo)
    result = make_runner(config).run()
    trace, _ = report_trace(result.state.initial, result.state.trace)
    return config, trace


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo, inner_steps, bootstrap_steps",
    [("bmg", 0, 3), ("fixed", 1, 1), ("mg", 1, 1), ("decay", 1, 1)],
)
def test_q_lifetime_accounting_and_epsilon(algo, inner_steps, bootstrap_steps):
    config, trace = run(algo, inner_steps, bootstrap_steps)
    assert (config.agent, config.algo, config.meta.inner_steps) == ("q", algo, inner_steps)
    # BMG K = 0: L - 1 = 2 rollouts per meta-step (the target's last step collects nothing).
    assert config.steps_per_meta_step == (2 * 4 if algo == "bmg" else 4)
    steps = np.diff(trace.env_steps, axis=1)
    assert np.all(steps == config.steps_per_meta_step)
    np.testing.assert_array_equal(trace.env_steps[:, -1], config.total_env_steps)
    if algo == "bmg":
        assert np.abs(trace.schedule[:, -1] - Q.epsilon).max() > 1e-3  # epsilon is learned
        assert np.all(trace.meta_loss > 0)
    elif algo == "decay":  # linear in environment steps from 1.0 to 0.01 over 40 steps
        progress = np.minimum(trace.env_steps / Q.decay_steps, 1.0)
        expected = Q.decay_start + (Q.decay_final - Q.decay_start) * progress
        np.testing.assert_allclose(trace.schedule, expected, rtol=1e-6)
        np.testing.assert_array_equal(trace.meta_loss, 0.0)
    else:  # fixed: never moves; mg: its meta-gradient for epsilon is exactly zero
        np.testing.assert_allclose(trace.schedule, Q.epsilon, rtol=1e-6)
    # The behaviour's entropy is that of epsilon-greedy over 4 actions at the recorded epsilon.
    eps = trace.schedule.astype(np.float64)
    greedy, other = 1 - eps + eps / 4, eps / 4
    entropy = -(greedy * np.log(greedy) + 3 * other * np.log(other))
    np.testing.assert_allclose(trace.policy_entropy, entropy, rtol=1e-4)


def test_exploration_preset_gives_every_algorithm_a_valid_k():
    """BMG on epsilon with K = 0 by default; `--algo mg` (K >= 1) from the same preset is valid
    too (a regression: `bmg two-colors exploration --agent q --algo mg` was refused for K = 0)."""
    preset = PRESET_VALUES["exploration"]
    config = preset.config()
    assert TwoColorsConfig(**PRESETS["exploration"][1]) == config  # bmg two-colors exploration
    meta = config.meta
    assert (config.agent, config.algo, meta.inner_steps, meta.bootstrap_steps) == (
        "q",
        "bmg",
        0,
        16,
    )
    assert (config.lifetime.steps, config.lifetime.seeds, meta.learning_rate) == (
        3_200_000,
        10,
        1e-3,
    )
    # K = 0, L = 16: 15 rollouts of 16 steps per meta-step.
    assert config.steps_per_meta_step == 15 * 16
    assert "Q(lambda)" in preset.help
    # Every algorithm the preset accepts: fixed and decay take one update per step, MG K = 1.
    for algo, k in (("fixed", 1), ("decay", 1), ("mg", 1), ("bmg", 0)):
        other = preset.config(algo=algo)
        assert (other.algo, other.meta.inner_steps) == (algo, k), algo
        assert other.steps_per_meta_step == (15 * 16 if algo == "bmg" else 16), algo
    # A preset's explicit K is kept, and an invalid one still refused.
    explicit = dataclasses.replace(preset, inner_steps=2)
    assert explicit.config().meta.inner_steps == explicit.config(algo="mg").meta.inner_steps == 2
    with pytest.raises(ValueError, match=r"inner_steps \(K\) must be an integer >= 1, got 0"):
        dataclasses.replace(preset, inner_steps=0).config(algo="mg")
    # The actor-critic's default K is 1 for both meta-learning algorithms.
    assert PRESET_VALUES["default"].config(algo="bmg").meta.inner_steps == 1
    assert PRESET_VALUES["default"].config(algo="mg").meta.inner_steps == 1
