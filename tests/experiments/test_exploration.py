"""Q(lambda) lifetimes on Two-colors: step accounting, fixed and meta-learned epsilon."""

import numpy as np
import pytest

from bmg.agents.q_learning import QLearningConfig
from bmg.experiments.two_colors import EnvConfig, Lifetime, TwoColorsConfig

Q = QLearningConfig(hidden_size=16, rollout_length=4, context_length=3, meta_hidden_size=8)
ENV = EnvConfig(grid_size=3, switch_every=40)


def run(**overrides):
    config = TwoColorsConfig(
        agent="q",
        seeds=2,
        steps=96,
        chunk_steps=96,
        q=Q,
        env=ENV,
        meta_learning_rate=0.05,
        **overrides,
    )
    lifetime = Lifetime(config)
    carry, _ = lifetime.start()
    return config, lifetime.run_chunk(carry)[1]


@pytest.mark.parametrize("algo, k, l", [("bmg", 0, 3), ("fixed", 1, 1), ("mg", 1, 1)])
def test_q_lifetime_accounting_and_epsilon(algo, k, l):
    config, trace = run(algo=algo, k=k, l=l)
    # BMG K = 0: L - 1 = 2 rollouts per meta-step (the target's last step collects nothing).
    assert config.steps_per_meta_step == (2 * 4 if algo == "bmg" else 4)
    steps = np.diff(trace.env_steps, axis=1)
    assert np.all(steps == config.steps_per_meta_step)
    if algo == "bmg":
        assert np.abs(trace.schedule[:, -1] - Q.epsilon).max() > 1e-3  # epsilon is learned
        assert np.all(trace.meta_loss > 0)
    else:  # fixed: never moves; mg: its meta-gradient for epsilon is exactly zero
        np.testing.assert_allclose(trace.schedule, Q.epsilon, rtol=1e-6)
