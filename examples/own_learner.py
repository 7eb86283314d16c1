"""Your own learner, meta-learned with MG and BMG: an online weight decay for ridge regression.

A learner is three pure functions over a ``LearnerState`` (docs/own-learner.md walks through them):

  update_fn(w, x, key) -> (x', metrics)     phi: one SGD step on a training minibatch with the
                                            weight decay exp(w) (differentiable in w);
  meta_objective(x, key) -> (f, metrics)    f: the validation loss, what MG descends;
  matching_fn(target, x, w) -> mu           mu: BMG's distance to the target, here the mean squared
                                            difference of the two learners' validation predictions.

The task has more features than training examples (64 features, 48 noisy examples), so plain SGD
fits the noise and the validation loss climbs; a weight decay helps, and the right one is not
known in advance. MG follows the K-step gradient of the validation loss with respect to the log
weight decay; BMG moves it so that the K-step learner's predictions match those of a target that
took L - 1 more updates and one gradient step on the validation loss.

Run: `python examples/own_learner.py` (seconds on 2 CPU cores; `--help` for flags). Prints the
validation loss and the weight decay against learner updates for no decay, MG and BMG.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import tyro
from rich.console import Console
from rich.table import Table

from bmg.core import Learner, LearnerState, MetaConfig, make_meta_learner


class Task(NamedTuple):
    """Training and validation sets of one linear regression problem."""

    train_x: jax.Array  # float32[48, 64]
    train_y: jax.Array  # float32[48]
    valid_x: jax.Array  # float32[256, 64]
    valid_y: jax.Array  # float32[256]


def make_task(key: jax.Array, features: int = 64, train: int = 48, noise: float = 0.5) -> Task:
    """y = x . a + noise, with fewer training examples than features."""
    a_key, train_key, valid_key, noise_key = jax.random.split(key, 4)
    weights = jax.random.normal(a_key, (features,)) / jnp.sqrt(features)
    train_x = jax.random.normal(train_key, (train, features))
    valid_x = jax.random.normal(valid_key, (256, features))
    train_y = train_x @ weights + noise * jax.random.normal(noise_key, (train,))
    return Task(train_x, train_y, valid_x, valid_x @ weights)


def make_learner(task: Task, learning_rate: float, batch: int, initial_decay: float) -> Learner:
    """Ridge regression by minibatch SGD with a meta-learned weight decay exp(w)."""

    def update_fn(meta_params, state: LearnerState, key):
        rows = jax.random.choice(key, task.train_x.shape[0], (batch,), replace=False)
        x, y = task.train_x[rows], task.train_y[rows]

        def loss(params):
            fit = 0.5 * jnp.mean((x @ params - y) ** 2)
            return fit + 0.5 * jnp.exp(meta_params["log_decay"]) * jnp.sum(params**2)

        value, grad = jax.value_and_grad(loss)(state.params)
        return state._replace(params=state.params - learning_rate * grad), {"train_loss": value}

    def meta_objective(state: LearnerState, key):
        del key
        loss = 0.5 * jnp.mean((task.valid_x @ state.params - task.valid_y) ** 2)
        return loss, {"valid_loss": loss}

    def matching_fn(target: LearnerState, state: LearnerState, meta_params):
        del meta_params  # the weight decay reaches mu through the K-step learner's parameters
        return jnp.mean((task.valid_x @ target.params - task.valid_x @ state.params) ** 2)

    return Learner(
        init_state=lambda key: LearnerState(params=jnp.zeros(task.train_x.shape[1])),
        init_meta_params=lambda key: {"log_decay": jnp.log(jnp.float32(initial_decay))},
        update_fn=update_fn,
        meta_objective=meta_objective,
        matching_fn=matching_fn,
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """An online weight decay for ridge regression, meta-learned by MG and BMG."""

    meta_steps: int = 1000
    """meta-updates; the learner takes K updates per meta-update (BMG's target L - 1 more)."""
    inner_steps: int = 1
    """K, inner updates per meta-update (MG and BMG)."""
    bootstrap_steps: int = 4
    """L, the BMG target's look-ahead."""
    target_step_size: float = 0.1
    """alpha, the BMG target's final gradient step on the validation loss."""
    meta_learning_rate: float = 0.05
    """Adam learning rate on the log weight decay."""
    learning_rate: float = 0.05
    """the learner's SGD learning rate."""
    initial_decay: float = 1e-4
    """the weight decay at the start (and of the fixed baseline)."""
    batch: int = 8
    seed: int = 0
    rows: int = 7
    """rows in the printed table."""


def run(config: Config) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Validation loss and weight decay after each meta-step, per method."""
    task = make_task(jax.random.key(config.seed))
    learner = make_learner(task, config.learning_rate, config.batch, config.initial_decay)
    curves = {}
    for name, algo in (("no meta-learning", "fixed"), ("MG", "mg"), ("BMG", "bmg")):
        meta = make_meta_learner(
            learner,
            MetaConfig(
                algo=algo,
                inner_steps=config.inner_steps,
                bootstrap_steps=config.bootstrap_steps if algo == "bmg" else 1,  # BMG's alone
                learning_rate=config.meta_learning_rate,
                target_step_size=config.target_step_size,
            ),
        )

        @jax.jit
        def lifetime(key, meta=meta):
            def body(carry, key):
                meta_state, state = carry
                meta_state, state, _ = meta.step(meta_state, state, key)
                loss = learner.meta_objective(state, key)[0]
                decay = jnp.exp(meta_state.meta_params["log_decay"])
                return (meta_state, state), (loss, decay)

            init_key, run_key = jax.random.split(key)
            carry = (meta.init(learner.init_meta_params(init_key)), learner.init_state(init_key))
            return jax.lax.scan(body, carry, jax.random.split(run_key, config.meta_steps))[1]

        curves[name] = lifetime(jax.random.key(config.seed + 1))
    return curves


def main(config: Config) -> None:
    curves = run(config)
    table = Table(title="Validation loss (weight decay) vs learner updates")
    table.add_column("learner updates", justify="right")
    for name in curves:
        table.add_column(name, justify="right")
    for i in jnp.linspace(0, config.meta_steps - 1, config.rows).astype(int).tolist():
        cells = [f"{loss[i]:.4f} ({decay[i]:.2g})" for loss, decay in curves.values()]
        table.add_row(str((i + 1) * config.inner_steps), *cells)
    Console(width=120).print(table)


if __name__ == "__main__":
    main(tyro.cli(Config))
