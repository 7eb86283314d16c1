"""Meta-learn per-coordinate learning rates of an ill-conditioned regression learner: MG vs BMG.

The learner runs SGD with learning rates exp(w) on minibatches; w (one log learning rate per
parameter coordinate, a diagonal preconditioner) is meta-learned online while the learner trains:

  MG : w <- w - beta grad_w f(x_K(w))                      (K-step meta-gradient)
  BMG: w <- w - beta grad_w 1/2 ||x~ - x_K(w)||^2,  x~ = L-1 more updates + one gradient step

Run: `python examples/meta_lr_regression.py` (seconds on 2 CPU cores; `--help` for flags).
Prints the full-dataset loss of each learner against learner updates.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import tyro
from rich.console import Console
from rich.table import Table

from bmg.agents.regression import make_ill_conditioned_task, make_regression_learner
from bmg.core import MetaConfig, make_meta_learner

# Column label -> MetaConfig.algo: the fixed learning rate, the K-step meta-gradient and BMG.
ALGOS = {"fixed lr": "fixed", "MG": "mg", "BMG": "bmg"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Meta-learned learning rates on ill-conditioned least squares."""

    meta_steps: int = 400
    """meta-updates; the learner takes K updates per meta-update."""
    inner_steps: int = 1
    """K, inner updates per meta-update (both MG and BMG)."""
    bootstrap_steps: int = 8
    """L, the BMG target's look-ahead."""
    target_step_size: float = 0.01
    """alpha, the BMG target's final gradient step."""
    meta_learning_rate: float = 0.03
    """Adam learning rate on the log learning rates."""
    init_learning_rate: float = 0.002
    """initial (and the fixed baseline's) learning rate."""
    condition_number: float = 100.0
    seed: int = 0
    rows: int = 9
    """rows in the printed table."""


def run(config: Config) -> dict[str, jax.Array]:
    """Return the full-dataset loss after each meta-step for fixed-lr SGD, MG and BMG."""
    task = make_ill_conditioned_task(
        jax.random.key(config.seed), condition_number=config.condition_number
    )
    learner = make_regression_learner(
        task, meta_lr="diagonal", init_learning_rate=config.init_learning_rate
    )

    def meta_config(algo: str) -> MetaConfig:
        return MetaConfig(
            algo=algo,
            inner_steps=config.inner_steps,
            bootstrap_steps=config.bootstrap_steps if algo == "bmg" else 1,  # BMG's alone
            learning_rate=config.meta_learning_rate,
            target_step_size=config.target_step_size,
        )

    # BMG matches with the learner's matching_fn: 1/2 squared parameter distance.
    algorithms = {
        name: make_meta_learner(learner, meta_config(algo)) for name, algo in ALGOS.items()
    }
    init_key, run_key = jax.random.split(jax.random.key(config.seed + 1))
    state = learner.init_state(init_key)
    meta_params = learner.init_meta_params(jax.random.key(3))

    curves = {}
    for name, algorithm in algorithms.items():

        @jax.jit
        def lifetime(meta_state, state, key, algorithm=algorithm):
            def body(carry, key):
                meta_state, state = carry
                meta_state, state, _ = algorithm.step(meta_state, state, key)
                loss = learner.meta_objective(state, key)[0]
                mean_lr = jnp.mean(
                    jnp.concatenate(
                        [jnp.exp(w).ravel() for w in jax.tree.leaves(meta_state.meta_params)]
                    )
                )
                return (meta_state, state), (loss, mean_lr)

            keys = jax.random.split(key, config.meta_steps)
            return jax.lax.scan(body, (meta_state, state), keys)[1]

        start = time.perf_counter()
        curves[name] = jax.block_until_ready(lifetime(algorithm.init(meta_params), state, run_key))
        curves[name + " seconds"] = time.perf_counter() - start
    return curves


def main(config: Config) -> None:
    curves = run(config)
    names = list(ALGOS)
    table = Table(
        title=f"Full-dataset loss (mean learning rate) vs learner updates; K={config.inner_steps}, "
        f"BMG L={config.bootstrap_steps}"
    )
    table.add_column("learner updates", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    rows = jnp.linspace(0, config.meta_steps - 1, config.rows).astype(int)
    for i in rows.tolist():
        cells = [f"{curves[n][0][i]:.4f} ({curves[n][1][i]:.4f})" for n in names]
        table.add_row(str((i + 1) * config.inner_steps), *cells)
    console = Console()
    console.print(table)
    seconds = ", ".join(f"{n} {curves[n + ' seconds']:.1f} s" for n in names)
    console.print(f"wall-clock (compile included): {seconds}")


if __name__ == "__main__":
    main(tyro.cli(Config))
