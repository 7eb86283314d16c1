"""Atari reference scores: the random and human scores of the 57 games and the human-normalised
score.

Human-normalised score of a game (Mnih et al., "Human-level control through deep reinforcement
learning", Nature 2015): ``(score - random) / (human - random)``, 0 for the uniformly random
policy and 1 for the professional human tester. ``REFERENCE`` holds the random and human scores
of all 57 games, the table of Badia et al., "Agent57: Outperforming the Atari Human Benchmark",
ICML 2020 (appendix, "random" and "human" columns), which takes Mnih et al. 2015 (Extended Data
Table 2) for 49 games and Wang et al., "Dueling Network Architectures for Deep Reinforcement
Learning", ICML 2016 for the others. Its human scores are the later ones of van Hasselt et al.
(AAAI 2016) and Wang et al. 2016 for games where they differ from the Nature paper's (e.g.
Breakout 30.5, not 31.8; Pong 14.6, not 9.3); both were measured with up to 30 no-op starts and
episodes of at most 108,000 frames, so scores under sticky actions (Machado et al., JAIR 2018) are
comparable only approximately. Every entry is the Agent57 table's (tested against it, typed in
independently), Video Pinball's random score included: 0.0 there and here. DeepMind's DQN Zoo
(Quan & Ostrovski, 2020, ``atari_data.py``) ships the same values but for that one, 16,256.9,
with a note that the random policy's score on Video Pinball can exceed the human's under other
evaluation methods; scores normalised with the DQN Zoo's table differ on that game only.
"""

from __future__ import annotations

from bmg.envs.atari import rom_id

REFERENCE: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7),
    "amidar": (5.8, 1719.5),
    "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3),
    "asteroids": (719.1, 47388.7),
    "atlantis": (12850.0, 29028.1),
    "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5),
    "beam_rider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4),
    "bowling": (23.1, 160.7),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "centipede": (2090.9, 12017.0),
    "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4),
    "defender": (2874.5, 18688.9),
    "demon_attack": (152.1, 1971.0),
    "double_dunk": (-18.6, -16.4),
    "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7),
    "freeway": (0.0, 29.6),
    "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5),
    "gravitar": (173.0, 3351.4),
    "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3),
    "montezuma_revenge": (0.0, 4753.3),
    "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0),
    "phoenix": (761.4, 7242.6),
    "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6),
    "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0),
    "road_runner": (11.5, 7845.0),
    "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7),
    "skiing": (-17098.1, -4336.9),
    "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7),
    "star_gunner": (664.0, 10250.0),
    "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3),
    "time_pilot": (3568.0, 5229.2),
    "tutankham": (11.4, 167.6),
    "up_n_down": (533.4, 11693.2),
    "venture": (0.0, 1187.5),
    "video_pinball": (0.0, 17667.9),  # Agent57's table; DQN Zoo's random is 16,256.9
    "wizard_of_wor": (563.5, 4756.5),
    "yars_revenge": (3092.9, 54576.9),
    "zaxxon": (32.5, 9173.3),
}
"""(random, human) episode score of each of the 57 games, by ALE ROM id: the Agent57 table
(Badia et al., ICML 2020, appendix; module docstring)."""


def reference(game: str) -> tuple[float, float]:
    """(random, human) scores of ``game`` (ROM id or CamelCase name: "Breakout", "ms_pacman").

    Raises:
      ValueError: a game outside the 57.
    """
    key = rom_id(game)
    if key not in REFERENCE:
        raise ValueError(
            f"game must be one of the 57 games with human and random reference scores (such as "
            f"'Breakout', 'MsPacman'), got {game!r}."
        )
    return REFERENCE[key]


def human_normalized(game: str, score: float) -> float:
    """``(score - random) / (human - random)`` of ``game`` with the Agent57 table's scores
    (``REFERENCE``; 0 = random, 1 = human; NaN stays NaN). Raises ValueError for a game outside
    the 57."""
    random, human = reference(game)
    return (float(score) - random) / (human - random)
