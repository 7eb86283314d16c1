"""The Atari environment (`bmg.envs.atari`, ale-py): its configuration, the protocol's defaults
and names, the missing ale-py sentence, and a real Breakout batch when ale-py is installed. The
Sebulba runner that steps it is tested in tests/train/test_sebulba.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bmg.envs import atari


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("game", "Break out", "game must be an ALE game name such as 'Breakout'"),
        ("num_envs", 0, "num_envs must be an integer >= 1, got 0."),
        ("frame_skip", 0, "frame_skip must be an integer >= 1, got 0."),
        ("sticky_action_prob", 1.0, "sticky_action_prob must be a finite number in [0, 1)"),
        ("noop_max", -1, "noop_max must be an integer >= 0, got -1."),
        ("max_episode_frames", 2, "max_episode_frames must be at least frame_skip = 4"),
        ("full_action_space", 1, "full_action_space must be True or False, got 1."),
    ],
)
def test_atari_config_rejects_bad_values_in_one_sentence(field, value, message):
    with pytest.raises(ValueError) as error:
        atari.AtariConfig(**{field: value})
    text = str(error.value)
    assert text.startswith(message), text
    assert text.count(". ") == 0 and text.endswith("."), text


def test_atari_protocol_defaults_and_names():
    config = atari.AtariConfig()
    assert (config.frame_skip, config.max_pool, config.frame_size, config.frame_stack) == (
        4,
        True,
        84,
        4,
    )
    assert config.sticky_action_prob == 0.25 and config.noop_max == 0
    assert config.max_episode_frames == 108_000 and not config.full_action_space
    assert config.observation_shape == (84, 84, 4)
    assert [atari.rom_id(g) for g in ("Breakout", "MsPacman", "ms_pacman", "pong", "UpNDown")] == [
        "breakout",
        "ms_pacman",
        "ms_pacman",
        "pong",
        "up_n_down",
    ]


def test_missing_ale_py_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py now raises ImportError
    monkeypatch.setitem(sys.modules, "ale_py.vector_env", None)
    with pytest.raises(ImportError) as error:
        atari.make_vector_env(atari.AtariConfig())
    assert str(error.value) == "the Atari system needs ale-py: pip install 'bmg[atari]'"


def test_real_breakout_batch_truncates_at_max_episode_frames():
    """ale-py's Breakout: channels-last uint8 frames; with a 40-frame cap the 10th agent step
    (40 emulator frames) truncates every game, reports the pre-reset final_obs and restarts."""
    pytest.importorskip("ale_py")
    config = atari.AtariConfig(num_envs=2, max_episode_frames=40, sticky_action_prob=0.0)
    with pytest.raises(ValueError, match="game must be one of ale-py's games"):
        atari.make_vector_env(atari.AtariConfig(game="NoSuchGame"))
    with atari.make_vector_env(config, seed=1) as envs:
        obs = envs.reset()
        assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
        assert envs.num_actions == 4 and envs.frames_per_step == 4
        for step in range(1, 11):
            out = envs.step(np.zeros(2, np.int32))
            assert out.truncated.all() == (step == 10) and not out.terminated.any()
        assert (out.final_obs != out.obs).any()
