"""A lifetime: seeds x environment steps, run in chunks of whole meta-steps (pure Python).

A lifetime of `steps` environment steps per seed runs in compiled chunks of
`meta_steps_per_chunk` meta-steps of `steps_per_meta_step` environment steps each (every
update's rollout, BMG's target updates included); a lifetime shorter than one chunk is one chunk
of its own length, not inflated to a whole chunk, and the last chunk is whole (the lifetime is
rounded up to whole chunks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import tyro

from bmg.checks import check_integer, checks_deferred

MAX_SEED = 2**31
"""seed + seeds must be at most this (seeds are int32 PRNG seeds)."""


@dataclasses.dataclass(frozen=True)
class LifetimeConfig:
    """How long a run is and how many seeds run it, in parallel (vmap, sharded over devices).

    The command line reads each field without its ``lifetime.`` prefix too (``--steps``).
    """

    steps: Annotated[int, tyro.conf.arg(aliases=("--steps",))] = 1_000_000
    """environment steps (frames) per seed, rounded up to whole chunks."""
    seeds: Annotated[int, tyro.conf.arg(aliases=("--seeds",))] = 1
    """independent seeds, run in parallel (vmap, sharded over devices)."""
    seed: Annotated[int, tyro.conf.arg(aliases=("--seed",))] = 0
    """first seed; seeds are seed, seed + 1, ..."""
    chunk_steps: Annotated[int, tyro.conf.arg(aliases=("--chunk-steps",))] = 200_000
    """environment steps per seed per compiled chunk (progress, metrics.csv rows and checkpoints
    per chunk); a lifetime shorter than this is one chunk of its own length."""

    def __post_init__(self):
        if checks_deferred():  # nested in a system's config: checked by it, naming the path
            return
        for name, minimum in (("steps", 1), ("seeds", 1), ("seed", 0), ("chunk_steps", 1)):
            check_integer(name, getattr(self, name), minimum)
        if self.seed + self.seeds > MAX_SEED:
            raise ValueError(f"seed + seeds must be at most 2**31, got {self.seed + self.seeds:,}.")

    def meta_steps_per_chunk(self, steps_per_meta_step: int) -> int:
        """Meta-steps per chunk: `chunk_steps` (at most `steps`) rounded up to whole meta-steps."""
        return max(1, math.ceil(min(self.chunk_steps, self.steps) / steps_per_meta_step))

    def num_chunks(self, steps_per_meta_step: int) -> int:
        """Chunks in the lifetime: `steps` rounded up to whole chunks."""
        per_chunk = self.meta_steps_per_chunk(steps_per_meta_step) * steps_per_meta_step
        return max(1, math.ceil(self.steps / per_chunk))


class Chunked:
    """A config's lifetime in chunks (a mixin for frozen dataclass configs): it needs a
    `lifetime: LifetimeConfig` field and a `steps_per_meta_step` property, and gives
    `meta_steps_per_chunk` and `num_chunks`."""

    @property
    def meta_steps_per_chunk(self) -> int:
        return self.lifetime.meta_steps_per_chunk(self.steps_per_meta_step)

    @property
    def num_chunks(self) -> int:
        return self.lifetime.num_chunks(self.steps_per_meta_step)
