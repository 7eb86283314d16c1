"""Atari (ale-py) on the Sebulba actor-learner runner: its config, system and report."""
