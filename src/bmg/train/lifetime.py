"""A lifetime's arithmetic: environment steps in chunks of whole meta-steps (pure Python).

A lifetime of `steps` environment steps per seed runs in compiled chunks of
`meta_steps_per_chunk` meta-steps of `steps_per_meta_step` environment steps each (every
update's rollout, BMG's target updates included); a lifetime shorter than one chunk is one chunk
of its own length, not inflated to a whole chunk, and the last chunk is whole (the lifetime is
rounded up to whole chunks).
"""

from __future__ import annotations

import math


def meta_steps_per_chunk(steps: int, chunk_steps: int, steps_per_meta_step: int) -> int:
    """Meta-steps per chunk: `chunk_steps` (at most `steps`) rounded up to whole meta-steps."""
    return max(1, math.ceil(min(chunk_steps, steps) / steps_per_meta_step))


def num_chunks(steps: int, chunk_steps: int, steps_per_meta_step: int) -> int:
    """Chunks in the lifetime: `steps` rounded up to whole chunks."""
    per_chunk = meta_steps_per_chunk(steps, chunk_steps, steps_per_meta_step) * steps_per_meta_step
    return max(1, math.ceil(steps / per_chunk))


class Chunked:
    """A config's lifetime in chunks (a mixin for frozen dataclass configs): it needs `steps`,
    `chunk_steps` and `steps_per_meta_step`, and gives `meta_steps_per_chunk` and `num_chunks`."""

    @property
    def meta_steps_per_chunk(self) -> int:
        return meta_steps_per_chunk(self.steps, self.chunk_steps, self.steps_per_meta_step)

    @property
    def num_chunks(self) -> int:
        return num_chunks(self.steps, self.chunk_steps, self.steps_per_meta_step)
