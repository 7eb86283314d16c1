"""`MetaConfig`: how meta-parameters learn (fixed, MG or BMG), as a frozen, validated dataclass.

Pure Python (no JAX), so experiment configs and `bmg ... --help` import fast;
`bmg.core.make_meta_learner(learner, config)` builds the meta-learner it describes.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from bmg.checks import check_integer

ALGOS = ("fixed", "mg", "bmg")


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """How the meta-parameters learn: fixed, MG or BMG (Flennerhag et al., ICLR 2022, section 3).

    Only the meta-learning maths lives here; the learner's own hyper-parameters are in its config.
    """

    algo: Literal["fixed", "mg", "bmg"] = "bmg"
    """fixed: w held (K learner updates per step); mg: K-step meta-gradient; bmg: bootstrapped."""
    inner_steps: int = 1
    """K, learner updates differentiated per meta-step (fixed and mg >= 1, bmg >= 0)."""
    bootstrap_steps: int = 1
    """L, the BMG target's look-ahead: L-1 updates of phi, then the target's final step."""
    learning_rate: float = 1e-4
    """beta, Adam's learning rate on w."""
    adam_eps: float = 1e-8
    """Adam's epsilon on w."""
    target_step_size: float = 0.1
    """alpha, the BMG target's plain gradient step (when the learner brings no `target_step`)."""
    continue_from: Literal["inner", "target", "inner_params"] = "inner"
    """bmg: where the learner goes on after a meta-step (see `make_bmg`)."""
    remat: bool = False
    """rematerialise each inner update on the backward pass (memory for compute)."""
    unroll_loop: bool = False
    """compile the K inner and L-1 target updates as straight-line code (see `unroll`)."""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}.")
        check_integer("inner_steps (K)", self.inner_steps, 0 if self.algo == "bmg" else 1)
        check_integer("bootstrap_steps (L)", self.bootstrap_steps, 1)
        if self.algo == "bmg" and self.inner_steps + self.bootstrap_steps - 1 < 1:
            raise ValueError(
                "inner_steps + bootstrap_steps - 1 must be >= 1 for bmg (each meta-step takes "
                f"K + L - 1 learner updates); got K={self.inner_steps}, L={self.bootstrap_steps}: "
                "use L >= 2 with K = 0."
            )
        for name in ("learning_rate", "adam_eps", "target_step_size"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if self.continue_from not in ("inner", "target", "inner_params"):
            raise ValueError(
                "continue_from must be 'inner', 'target' or 'inner_params', "
                f"got {self.continue_from!r}."
            )

    @property
    def updates_per_step(self) -> int:
        """Learner updates per meta-step, the target's L-1 included (its final step is not an
        update of phi)."""
        if self.algo == "bmg":
            return self.inner_steps + self.bootstrap_steps - 1
        return self.inner_steps
