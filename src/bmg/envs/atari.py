"""Atari 2600 games on the Arcade Learning Environment, batched in C++, with the protocol stated.

The emulator is ``ale-py`` (Bellemare et al., "The Arcade Learning Environment: An Evaluation
Platform for General Agents", JAIR 2013; ``pip install 'bmg[atari]'``), whose
``ale_py.vector_env.AtariVectorEnv`` steps a batch of games in C++ threads and does the
preprocessing. ``make_vector_env`` returns it wrapped as an ``AtariEnvs``, the host vector
environment that ``bmg.train.sebulba``'s actors step.

The protocol, each choice with its source (``AtariConfig`` holds them; every number reported
with this system states them):

* frame skip 4: each agent action is repeated for 4 emulator frames, and the observation is the
  pixel-wise maximum of the last two of them (removes the sprites' flicker) [Mnih et al.,
  "Human-level control through deep reinforcement learning", Nature 2015];
* frames converted to grayscale and resized to 84 x 84 [Mnih et al. 2015];
* the last 4 observations stacked as channels, uint8 [84, 84, 4] (the network divides by 255)
  [Mnih et al. 2015];
* stochasticity by sticky actions: with probability 0.25 the emulator repeats the previous
  action instead of the agent's, at every emulator frame [Machado et al., "Revisiting the Arcade
  Learning Environment: Evaluation Protocols and Open Problems for General Agents", JAIR 2018,
  the recommended protocol], or, as an option, by up to ``noop_max`` = 30 no-op actions at the
  start of each episode [Mnih et al. 2015; the IMPALA and STACX papers' protocol]; both may be
  combined, neither is allowed only for debugging;
* the minimal action set of each game by default, the full 18 actions as an option
  (``full_action_space``) [Machado et al. 2018 recommend the full set];
* no life-loss signal and no FIRE press at reset by default (game-specific knowledge
  [Machado et al. 2018]); both are options (``episodic_life``, ``fire_reset``);
* episodes cut at 108,000 emulator frames (30 minutes of play at 60 Hz) as a truncation, not a
  termination: the learner bootstraps there [Machado et al. 2018; Pardo et al., "Time Limits in
  Reinforcement Learning", ICML 2018];
* rewards are the game's raw score changes: the learner clips them to [-1, 1] for its losses
  (``StacxConfig.reward_clip``) [Mnih et al. 2015], and episode returns are reported raw
  (unclipped) [Machado et al. 2018];
* frames are counted as emulator frames: one agent step is ``frame_skip`` frames, so 200M frames
  are 50M agent steps [Machado et al. 2018; the BMG paper's 200M-frame budget].

The episode boundaries follow gymnax's semantics (as ``bmg.rl.collect``): a step that ends an
episode returns the first observation of the next one, and the observation the step reached
before the reset as ``final_obs`` (ale-py's ``autoreset_mode="SameStep"``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, NamedTuple

import numpy as np

from bmg.checks import check_integer, check_real, checks_deferred

MISSING_ALE = "the Atari system needs ale-py: pip install 'bmg[atari]'"
"""The one sentence raised when ale-py is not installed."""

STICKY_ACTION_PROB = 0.25
"""Machado et al. (JAIR 2018)'s recommended sticky-action probability."""
MAX_EPISODE_FRAMES = 108_000
"""30 minutes at 60 frames per second [Machado et al. 2018]."""


def require_ale() -> Any:
    """Import ``ale_py``; raise ``ImportError(MISSING_ALE)`` without it."""
    try:
        import ale_py
        import ale_py.vector_env  # noqa: F401
    except ImportError:
        raise ImportError(MISSING_ALE) from None
    return ale_py


def rom_id(game: str) -> str:
    """ALE's ROM id of a game name: ``"Breakout"`` or ``"breakout"`` -> ``"breakout"``,
    ``"MsPacman"`` -> ``"ms_pacman"``, ``"UpNDown"`` -> ``"up_n_down"``."""
    if "_" in game or game.islower():
        return game.lower()
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", game).lower()


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """One batch of Atari games and its protocol (sources in the module docstring:
    [dqn] Mnih et al. 2015, [machado] Machado et al. 2018)."""

    game: str = "Breakout"
    """the game, ALE's ROM id or its CamelCase name: "breakout", "Breakout", "MsPacman"."""
    num_envs: int = 8
    """games stepped together (one C++ vector environment)."""
    frame_skip: int = 4
    """emulator frames per agent action [dqn]."""
    max_pool: bool = True
    """observe the pixel-wise max of the last two skipped frames [dqn]."""
    frame_size: int = 84
    """observation height and width after resizing [dqn]."""
    grayscale: bool = True
    """grayscale frames [dqn]; False gives RGB, which the STACX torsos do not take."""
    frame_stack: int = 4
    """observations stacked as channels [dqn]."""
    sticky_action_prob: float = STICKY_ACTION_PROB
    """probability of repeating the previous action at each emulator frame [machado]."""
    noop_max: int = 0
    """up to this many no-ops at each episode's start (30 in [dqn] and IMPALA); 0 = none, the
    [machado] protocol with sticky actions."""
    full_action_space: bool = False
    """all 18 actions instead of the game's minimal set ([machado] recommends the full set)."""
    max_episode_frames: int = MAX_EPISODE_FRAMES
    """emulator frames after which an episode is truncated [machado]."""
    episodic_life: bool = False
    """end an episode at every life lost (DQN's trick; off in [machado])."""
    fire_reset: bool = False
    """press FIRE after a reset in games that need it (off in [machado])."""
    num_threads: int = 1
    """C++ threads stepping this batch (0 = ale-py's choice: one per core, at most num_envs)."""

    def __post_init__(self):
        if checks_deferred():  # nested in a system's config: checked by it, naming the path
            return
        if not (isinstance(self.game, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.game)):
            raise ValueError(
                f"game must be an ALE game name such as 'Breakout' or 'ms_pacman', got "
                f"{self.game!r}."
            )
        for name, minimum in (
            ("num_envs", 1),
            ("frame_skip", 1),
            ("frame_size", 8),
            ("frame_stack", 1),
            ("noop_max", 0),
            ("max_episode_frames", 1),
            ("num_threads", 0),
        ):
            check_integer(name, getattr(self, name), minimum)
        check_real("sticky_action_prob", self.sticky_action_prob, low=0, high=1, high_open=True)
        for name in ("max_pool", "grayscale", "full_action_space", "episodic_life", "fire_reset"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.max_episode_frames < self.frame_skip:
            raise ValueError(
                f"max_episode_frames must be at least frame_skip = {self.frame_skip} (one agent "
                f"step), got {self.max_episode_frames}."
            )

    @property
    def rom(self) -> str:
        """ALE's ROM id of ``game``."""
        return rom_id(self.game)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """[H, W, C] of one observation: [84, 84, 4] by default (RGB: C = 3 x stack)."""
        channels = self.frame_stack * (1 if self.grayscale else 3)
        return (self.frame_size, self.frame_size, channels)


class Step(NamedTuple):
    """What one step of N games returns (host numpy arrays).

    Attributes:
      obs: uint8[N, H, W, C], where the next action is taken (a new episode's first observation
        where the step ended one).
      reward: float32[N], the raw (unclipped) reward.
      terminated: bool[N], the game ended (game over; a life with ``episodic_life``).
      truncated: bool[N], the episode hit ``max_episode_frames`` without terminating.
      final_obs: uint8[N, H, W, C], the observation the step reached, before any reset (equal
        to ``obs`` where the episode goes on).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray


class AtariEnvs:
    """N Atari games in one ``ale_py.vector_env.AtariVectorEnv`` (C++ threads), the host vector
    environment interface of ``bmg.train.sebulba`` (``VectorEnv``): channels-last
    uint8 observations, raw rewards, truncations at ``max_episode_frames`` with the pre-reset
    ``final_obs``, ``frames_per_step`` emulator frames per agent step.

    Use ``make_vector_env``; ``close()`` when done (or use it as a context manager).
    """

    def __init__(self, config: AtariConfig, env: Any, seed: int = 0):
        self.config = config
        self.seed = int(seed)
        self._env = env
        self.num_envs = config.num_envs
        self.num_actions = int(env.single_action_space.n)
        self.observation_shape = config.observation_shape
        self.observation_dtype = np.dtype(np.uint8)
        self.frames_per_step = config.frame_skip

    def _layout(self, obs: np.ndarray) -> np.ndarray:
        """ale-py's [N, stack, H, W(, 3)] -> [N, H, W, C] (contiguous)."""
        if obs.ndim == 5:  # RGB: [N, stack, H, W, 3] -> [N, H, W, stack * 3]
            obs = np.moveaxis(obs, 1, 3).reshape(*obs.shape[:1], *obs.shape[2:4], -1)
            return np.ascontiguousarray(obs)
        return np.ascontiguousarray(np.moveaxis(obs, 1, -1))

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all N games, game i seeded with ``seed + i`` (None: ``self.seed``); the first
        observations uint8[N, H, W, C]."""
        obs, _ = self._env.reset(seed=self.seed if seed is None else int(seed))
        return self._layout(obs)

    def step(self, actions: np.ndarray) -> Step:
        """One agent step (``frame_skip`` emulator frames) of every game; ``actions`` int[N]."""
        obs, reward, terminated, truncated, info = self._env.step(np.asarray(actions, np.int32))
        obs = self._layout(obs)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool) & ~terminated
        done = terminated | truncated
        final_obs = obs
        if done.any():
            final_obs = obs.copy()
            final_obs[done] = self._layout(info["final_obs"])[done]
        return Step(obs, np.asarray(reward, np.float32), terminated, truncated, final_obs)

    def close(self) -> None:
        self._env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def make_vector_env(config: AtariConfig, seed: int = 0) -> AtariEnvs:
    """``config.num_envs`` games of ``config.game`` with the protocol of ``config`` (see the
    module docstring), reset with seeds ``seed .. seed + N - 1`` on the first ``reset``.

    Raises:
      ImportError: ale-py is missing (``MISSING_ALE``).
      ValueError: ale-py has no ROM named ``config.game``.
    """
    require_ale()
    from ale_py import roms
    from ale_py.vector_env import AtariVectorEnv

    if config.rom not in roms.get_all_rom_ids():
        raise ValueError(
            f"game must be one of ale-py's games (e.g. 'Breakout', 'Pong', 'ms_pacman'), got "
            f"{config.game!r}."
        )
    env = AtariVectorEnv(
        config.rom,
        config.num_envs,
        num_threads=config.num_threads,
        max_num_frames_per_episode=config.max_episode_frames,
        repeat_action_probability=config.sticky_action_prob,
        full_action_space=config.full_action_space,
        autoreset_mode="SameStep",
        img_height=config.frame_size,
        img_width=config.frame_size,
        grayscale=config.grayscale,
        stack_num=config.frame_stack,
        frameskip=config.frame_skip,
        maxpool=config.max_pool,
        noop_max=config.noop_max,
        episodic_life=config.episodic_life,
        reward_clipping=False,
        use_fire_reset=config.fire_reset,
    )
    return AtariEnvs(config, env, seed)
