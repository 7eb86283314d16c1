"""`MetaConfig`: how meta-parameters learn (fixed, MG or BMG), as a frozen, validated dataclass.

Pure Python (no JAX), so experiment configs and `bmg ... --help` import fast (the command line
reads K and L as `--k` and `--l` too, through tyro's annotations);
`bmg.core.make_meta_learner(learner, config)` builds the meta-learner it describes.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import tyro

from bmg.checks import check_bool, check_integer, check_real, checks_deferred

ALGOS = ("fixed", "mg", "bmg")
CONTINUE_FROM = ("inner", "target", "inner_params")


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """How the meta-parameters learn: fixed, MG or BMG (Flennerhag et al., ICLR 2022, section 3).

    Only the meta-learning maths lives here; the learner's own hyper-parameters are in its config.
    """

    algo: Literal["fixed", "mg", "bmg"] = "bmg"
    """fixed: w held (K learner updates per step); mg: K-step meta-gradient; bmg: bootstrapped.
    (A system with an --algo choice sets it, and the fields that go with it, through that.)"""
    inner_steps: Annotated[int, tyro.conf.arg(aliases=("--k",))] = 1
    """K, learner updates differentiated per meta-step (fixed and mg >= 1, bmg >= 0)."""
    bootstrap_steps: Annotated[int, tyro.conf.arg(aliases=("--l",))] = 1
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
        if checks_deferred():  # nested in a system's config: checked by it, naming the path
            return
        if not isinstance(self.algo, str) or self.algo not in ALGOS:
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
            check_real(name, getattr(self, name), low=0, low_open=True)
        if not isinstance(self.continue_from, str) or self.continue_from not in CONTINUE_FROM:
            raise ValueError(
                "continue_from must be 'inner', 'target' or 'inner_params', "
                f"got {self.continue_from!r}."
            )
        for name in ("remat", "unroll_loop"):
            check_bool(name, getattr(self, name))
        if self.algo != "bmg" and self.continue_from != "inner":
            raise ValueError(
                f"continue_from = {self.continue_from!r} is a bmg option (where the learner goes "
                f"on after the target), so with algo {self.algo!r} leave it at 'inner'."
            )
        if self.algo != "bmg" and self.bootstrap_steps != 1:
            raise ValueError(
                f"bootstrap_steps (L) = {self.bootstrap_steps} is the BMG target's look-ahead, so "
                f"with algo {self.algo!r} leave it at 1."
            )
        if self.algo == "fixed":
            for name in ("remat", "unroll_loop"):
                if getattr(self, name):
                    raise ValueError(
                        f"{name} applies to the differentiated unroll of mg and bmg, so with "
                        "algo 'fixed' leave it False."
                    )

    @property
    def updates_per_step(self) -> int:
        """Learner updates per meta-step, the target's L-1 included (its final step is not an
        update of phi)."""
        if self.algo == "bmg":
            return self.inner_steps + self.bootstrap_steps - 1
        return self.inner_steps


BATCHINGS = ("vmap", "map", "unroll")
"""How a batch of learners is mapped (`bmg.core.batch_map`): vmap, lax.map or a Python unroll."""
