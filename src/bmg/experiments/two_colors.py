"""Two-colors lifetimes: actor-critic (meta-learned entropy weight) or Q(lambda) (meta-learned
epsilon) with a fixed, decaying, meta-gradient (`mg`) or BMG (`bmg`) schedule.

The whole lifetime is compiled: `lax.scan` over meta-steps in chunks, `vmap` over seeds, and the
seed axis sharded over every visible device. Between chunks the host appends to `metrics.csv`,
saves `trace.npz` and a `Checkpoint` of every seed's state, so an interrupted run keeps all finished
chunks and `bmg two-colors --resume DIR` continues it exactly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bmg.agents.actor_critic import ActorCriticConfig, make_actor_critic
from bmg.agents.q_learning import QLearningConfig, make_q_learner
from bmg.core import (
    LearnerState,
    MetaLearner,
    MetaState,
    make_bmg,
    make_fixed,
    make_metagradient,
    make_target_bootstrap,
)
from bmg.core.unroll import check_integer
from bmg.envs import two_colors
from bmg.experiments.rundir import save_npz

CHECKPOINT = "checkpoint.npz"


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The Two-colors world (paper-notes section 2)."""

    switch_every: int = 100_000
    """steps between flips of the rewarding colour [paper]."""
    respawn: Literal["all", "object"] = "all"
    """after a pick-up re-spawn everything [related] or only the collected object."""
    step_penalty: float = 0.0
    """reward on steps without a pick-up is -step_penalty [default]."""
    grid_size: int = 5
    """grid side [paper]."""

    def __post_init__(self):
        self.params()  # validates every field

    def params(self) -> two_colors.EnvParams:
        return two_colors.make_params(
            grid_size=self.grid_size,
            switch_every=self.switch_every,
            respawn=self.respawn,
            step_penalty=self.step_penalty,
        )


@dataclasses.dataclass(frozen=True)
class TwoColorsConfig:
    """One Two-colors run: learner, algorithm, lifetime, seeds and world."""

    agent: Literal["ac", "q"] = "ac"
    """ac: actor-critic, meta-learned entropy weight; q: epsilon-greedy Q(lambda), meta-learned
    epsilon."""
    algo: Literal["ac", "mg", "bmg", "fixed", "decay"] = "bmg"
    """ac (agent ac) / fixed (agent q): fixed entropy weight / epsilon; decay (agent q): linearly
    decaying epsilon; mg: K-step meta-gradient; bmg: bootstrapped meta-gradient."""
    k: int = 1
    """K, inner updates differentiated per meta-step (mg >= 1, bmg >= 0; BMG on epsilon: 0)."""
    l: int = 8
    """L, the BMG target's look-ahead in learner updates."""
    steps: int = 6_400_000
    """environment steps per seed (rounded up to whole chunks; targets' steps count)."""
    seeds: int = 10
    """independent seeds, run in parallel (vmap, sharded over devices)."""
    seed: int = 0
    """first seed; seeds are seed, seed + 1, ..."""
    meta_learning_rate: float = 1e-4
    """Adam learning rate of the meta-parameters [related]."""
    meta_adam_eps: float = 1e-4
    """Adam epsilon of the meta-optimiser [related]."""
    target_step_size: float = 0.1
    """alpha, the BMG target's final SGD step on f [default: the learner's learning rate]."""
    continue_from: Literal["target", "inner"] = "target"
    """bmg: the learner goes on from x_{K+L-1} ("target", every rollout trains the learner) or
    from x_K with the stream of the target ("inner")."""
    chunk_steps: int = 200_000
    """environment steps per compiled chunk (progress, metrics.csv rows and saves per chunk)."""
    ac: ActorCriticConfig = ActorCriticConfig()
    q: QLearningConfig = QLearningConfig()
    env: EnvConfig = EnvConfig()

    def __post_init__(self):
        if self.agent not in ALGOS:
            raise ValueError(f"agent must be one of {', '.join(ALGOS)}; got {self.agent!r}.")
        if self.algo not in ALGOS[self.agent]:
            raise ValueError(
                f"algo for agent {self.agent} must be one of {', '.join(ALGOS[self.agent])}; "
                f"got {self.algo!r}."
            )
        min_k = 0 if self.algo == "bmg" else 1
        integers = (
            ("k", min_k),
            ("l", 1),
            ("steps", 1),
            ("seeds", 1),
            ("seed", 0),
            ("chunk_steps", 1),
        )
        for name, minimum in integers:
            check_integer(name, getattr(self, name), minimum)
        if self.algo == "bmg" and self.k + self.l - 1 < 1:
            raise ValueError(
                f"k + l - 1 must be >= 1 for bmg (each meta-step takes K + L - 1 learner "
                f"updates); got k={self.k}, l={self.l}: use l >= 2 with k = 0."
            )
        for name in ("meta_learning_rate", "meta_adam_eps", "target_step_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if self.continue_from not in ("target", "inner"):
            raise ValueError(
                f"continue_from must be 'target' or 'inner', got {self.continue_from!r}."
            )

    @property
    def updates_per_meta_step(self) -> int:
        """Learner updates (= rollouts) per meta-step, target updates included."""
        if self.algo == "bmg":
            return self.k + self.l - 1
        return self.k if self.algo == "mg" else 1

    @property
    def learner(self) -> ActorCriticConfig | QLearningConfig:
        """The configuration of the chosen agent."""
        return self.ac if self.agent == "ac" else self.q

    @property
    def steps_per_meta_step(self) -> int:
        return self.updates_per_meta_step * self.learner.rollout_length

    @property
    def meta_steps_per_chunk(self) -> int:
        return max(1, math.ceil(self.chunk_steps / self.steps_per_meta_step))

    @property
    def total_env_steps(self) -> int:
        """Environment steps per seed actually taken: whole chunks plus the first rollout."""
        meta_steps = self.num_chunks * self.meta_steps_per_chunk
        return meta_steps * self.steps_per_meta_step + self.learner.rollout_length

    @property
    def num_chunks(self) -> int:
        steps_per_chunk = self.meta_steps_per_chunk * self.steps_per_meta_step
        return max(1, math.ceil(self.steps / steps_per_chunk))


ALGOS = {"ac": ("ac", "mg", "bmg"), "q": ("fixed", "decay", "mg", "bmg")}

PRESETS: dict[str, dict] = {
    # Minutes on a 2-core laptop: the paper world (flips every 100k steps) for 1M steps, 4 seeds,
    # and a 10x meta-learning rate so the entropy weight can move within the short lifetime.
    "demo": dict(steps=1_000_000, seeds=4, chunk_steps=100_000, meta_learning_rate=1e-3),
    # paper-notes section 2: 10 seeds, 6.4M steps, flips every 100k steps.
    "paper": dict(steps=6_400_000, seeds=10, chunk_steps=200_000),
    # paper-notes section 3: epsilon-greedy Q(lambda), BMG with K = 0 and L = 16 on epsilon.
    # Half the paper lifetime (32 flips) and a 10x meta-learning rate: with L = 128 a lifetime
    # holds only 1,560 meta-steps, too few for Adam(1e-4) to move epsilon (docs/exploration.md).
    "exploration": dict(
        agent="q",
        algo="bmg",
        k=0,
        l=16,
        steps=3_200_000,
        seeds=10,
        chunk_steps=200_000,
        meta_learning_rate=1e-3,
    ),
}


class Carry(NamedTuple):
    """Everything that runs on between chunks, for one seed."""

    meta_state: MetaState
    learner_state: LearnerState
    key: jax.Array


class Trace(NamedTuple):
    """Per meta-step records of one seed (host side: numpy arrays with a leading time axis)."""

    env_steps: jax.Array  # int, total environment steps after the meta-step
    reward: jax.Array  # sum of rewards of the environment steps taken in the meta-step
    schedule: jax.Array  # entropy weight (ac) or epsilon (q) of the meta-step's updates
    policy_entropy: jax.Array
    meta_loss: jax.Array


def make_agent(config: TwoColorsConfig):
    """The learner of `config.agent` (its update rule, objectives and initialisers)."""
    env_params = config.env.params()
    if config.agent == "ac":
        return make_actor_critic(config.ac, env_params)
    schedule = {"fixed": "fixed", "decay": "decay"}.get(config.algo, "meta")
    return make_q_learner(config.q, env_params, schedule=schedule)


def make_algorithm(config: TwoColorsConfig, agent) -> MetaLearner:
    """The meta-learner of `config.algo`, built from `bmg.core`.

    BMG targets: actor-critic, L-1 updates then one SGD step (alpha) on the policy-gradient
    objective; Q-learning, L-1 updates then one Q(lambda) step on the latest rollout (L learning
    steps, no extra environment steps), matched through its greedy policy.
    """
    meta_optimizer = optax.adam(config.meta_learning_rate, eps=config.meta_adam_eps)
    if config.algo in ("ac", "fixed", "decay"):
        return make_fixed(agent.update_fn, num_inner_steps=1)
    if config.algo == "mg":
        return make_metagradient(
            agent.update_fn, agent.meta_objective, meta_optimizer, num_inner_steps=config.k
        )
    if config.agent == "ac":
        bootstrap = make_target_bootstrap(
            agent.update_fn,
            config.l,
            meta_objective=agent.meta_objective,
            step_size=config.target_step_size,
        )
    else:
        bootstrap = make_target_bootstrap(agent.update_fn, config.l, final_update_fn=agent.learn_fn)
    if config.continue_from == "target":
        continue_from = "target"
    else:  # x_K's learner, the stream (env, latest rollout, context, counters) of x_{K+L-1}
        continue_from = lambda inner, boot: inner._replace(extras=boot.extras)
    return make_bmg(
        agent.update_fn,
        bootstrap,
        agent.matching_fn,
        meta_optimizer,
        num_inner_steps=config.k,
        continue_from=continue_from,
    )


def inner_or_target(metrics: dict, name: str) -> jax.Array:
    """A learner metric of the K inner updates, or of the target's updates when K = 0."""
    return metrics[name] if name in metrics else metrics[f"target/{name}"]


def make_train(config: TwoColorsConfig):
    """Return `(init, run_chunk)` for one seed; both pure and jittable, `vmap` them for seeds.

    init(key) -> Carry; run_chunk(carry) -> (carry, Trace over `meta_steps_per_chunk` steps).
    """
    agent = make_agent(config)
    algorithm = make_algorithm(config, agent)
    schedule_metric = "learner/entropy_weight" if config.agent == "ac" else "learner/epsilon"

    def init(key: jax.Array) -> Carry:
        learner_key, meta_key, run_key = jax.random.split(key, 3)
        learner_state = agent.init_state(learner_key)
        return Carry(algorithm.init(agent.init_meta_params(meta_key)), learner_state, run_key)

    def meta_step(carry: Carry, _):
        key, step_key = jax.random.split(carry.key)
        reward_before = carry.learner_state.extras.reward_sum
        meta_state, learner_state, metrics = algorithm.step(
            carry.meta_state, carry.learner_state, step_key
        )
        extras = learner_state.extras
        trace = Trace(
            env_steps=extras.env_steps,
            reward=extras.reward_sum - reward_before,
            schedule=inner_or_target(metrics, schedule_metric),
            policy_entropy=inner_or_target(metrics, "learner/entropy"),
            meta_loss=metrics.get("meta/loss", jnp.zeros(())),
        )
        # Reset the reward accumulator so float32 never sums a whole lifetime.
        learner_state = learner_state._replace(extras=extras._replace(reward_sum=jnp.zeros(())))
        return Carry(meta_state, learner_state, key), trace

    def run_chunk(carry: Carry):
        return jax.lax.scan(meta_step, carry, None, length=config.meta_steps_per_chunk)

    return init, run_chunk


def seed_sharding(num_seeds: int) -> NamedSharding:
    """Shard the seed axis over the largest number of visible devices that divides it."""
    devices = jax.devices()
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return NamedSharding(Mesh(np.array(devices[:count]), ("seed",)), PartitionSpec("seed"))


def initial_reward(carry: Carry) -> jax.Array:
    """Rewards of the first rollout (collected at initialisation), per seed."""
    return carry.learner_state.extras.reward_sum


class Checkpoint(NamedTuple):
    """A lifetime after `chunks_done` chunks: enough to continue it exactly where it stopped."""

    carry: Carry  # every seed's learner, meta-learner and key (on device)
    trace: Trace  # host arrays [seeds, chunks_done * meta_steps_per_chunk]
    first_rewards: np.ndarray  # [seeds]
    chunks_done: int
    seconds: float  # spent running chunks so far, compilation excluded


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


class Lifetime:
    """A compiled, chunked, seed-parallel Two-colors lifetime.

    `start()` initialises every seed and compiles the chunk ahead of time (`compile_seconds`);
    `run_chunk(carry)` then advances all seeds by one chunk and returns the host-side `Trace`
    ([seeds, meta_steps_per_chunk] arrays). `carry_arrays` / `restore` turn a carry into host
    arrays and back, for checkpoints.
    """

    def __init__(self, config: TwoColorsConfig):
        self.config = config
        init, run_chunk = make_train(config)
        self.sharding = seed_sharding(config.seeds)
        self._init = jax.jit(jax.vmap(init), out_shardings=self.sharding)
        self._run_chunk = jax.jit(jax.vmap(run_chunk), donate_argnums=0)
        self.compile_seconds = float("nan")

    def _keys(self) -> jax.Array:
        seeds = self.config.seed + jnp.arange(self.config.seeds)
        return jax.device_put(jax.vmap(jax.random.key)(seeds), self.sharding)

    def _compile(self, carry: Carry) -> None:
        start = time.perf_counter()
        self._compiled = self._run_chunk.lower(carry).compile()
        self.compile_seconds = time.perf_counter() - start

    def start(self) -> tuple[Carry, np.ndarray]:
        """Initial carry (sharded over seeds) and the rewards of each seed's first rollout."""
        carry = self._init(self._keys())
        self._compile(carry)
        return carry, np.asarray(initial_reward(carry), np.float64)

    def run_chunk(self, carry: Carry) -> tuple[Carry, Trace]:
        carry, trace = self._compiled(carry)
        return carry, Trace(*(np.asarray(x) for x in trace))

    @staticmethod
    def carry_arrays(carry: Carry) -> list[np.ndarray]:
        """The carry's leaves as host arrays (PRNG keys as their raw key data)."""
        return [
            np.asarray(jax.random.key_data(x) if _is_key(x) else x) for x in jax.tree.leaves(carry)
        ]

    def restore(self, arrays: list[np.ndarray]) -> Carry:
        """The carry that `carry_arrays` saved, sharded over seeds; compiles the chunk for it.

        Raises ValueError when the arrays do not fit this configuration.
        """
        template = jax.eval_shape(self._init, self._keys())
        leaves, treedef = jax.tree.flatten(template)
        if len(arrays) != len(leaves):
            raise ValueError(
                f"the checkpoint holds {len(arrays)} arrays, this configuration's state has "
                f"{len(leaves)}."
            )
        restored = []
        for index, (array, leaf) in enumerate(zip(arrays, leaves, strict=True)):
            shape = leaf.shape + ((2,) if _is_key(leaf) else ())
            dtype = np.uint32 if _is_key(leaf) else leaf.dtype
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"checkpoint array {index} is {array.dtype}{list(array.shape)}, this "
                    f"configuration needs {np.dtype(dtype)}{list(shape)}."
                )
            value = jax.device_put(array, self.sharding)
            restored.append(jax.random.wrap_key_data(value) if _is_key(leaf) else value)
        carry = jax.tree.unflatten(treedef, restored)
        self._compile(carry)
        return carry


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint) -> None:
    """Write `trace.npz` (the trace so far), then `checkpoint.npz` (every seed's state)."""
    save_npz(
        run_dir / "trace.npz", first_rewards=checkpoint.first_rewards, **checkpoint.trace._asdict()
    )
    carry = Lifetime.carry_arrays(checkpoint.carry)
    save_npz(
        run_dir / CHECKPOINT,
        compress=False,
        chunks_done=np.asarray(checkpoint.chunks_done),
        seconds=np.asarray(checkpoint.seconds),
        **{f"carry_{index}": array for index, array in enumerate(carry)},
    )


def load_checkpoint(run_dir: Path, lifetime: Lifetime) -> Checkpoint:
    """The Checkpoint `save_checkpoint` left in `run_dir`, its carry restored onto the devices.

    Raises ValueError naming the file when it is missing, unreadable or not of this configuration.
    """
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist: the run stopped before its first chunk finished; start it "
            "again in a new directory."
        )
    try:
        with np.load(path) as saved:
            chunks_done, seconds = int(saved["chunks_done"]), float(saved["seconds"])
            carry = [saved[f"carry_{index}"] for index in range(len(saved.files) - 2)]
        with np.load(run_dir / "trace.npz") as saved:
            first_rewards = saved["first_rewards"]
            trace = Trace(*(saved[name] for name in Trace._fields))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{path} or trace.npz beside it cannot be read ({error}).") from None
    # trace.npz is written first, so it may hold one chunk more than the checkpoint.
    meta_steps = chunks_done * lifetime.config.meta_steps_per_chunk
    if trace.env_steps.shape[1] < meta_steps:
        raise ValueError(
            f"{run_dir / 'trace.npz'} holds {trace.env_steps.shape[1]} meta-steps, fewer than "
            f"the {meta_steps} of the checkpoint's {chunks_done} chunks."
        )
    try:
        restored = lifetime.restore(carry)
    except ValueError as error:
        raise ValueError(f"{path} does not fit config.json: {error}") from None
    trace = Trace(*(x[:, :meta_steps] for x in trace))
    return Checkpoint(restored, trace, first_rewards, chunks_done, seconds)


def concatenate(pieces: list[Trace]) -> Trace:
    """Join chunk traces along the time axis."""
    return Trace(*(np.concatenate(x, axis=1) for x in zip(*pieces, strict=True)))


def run_lifetime(
    config: TwoColorsConfig,
    on_chunk=None,
    lifetime: Lifetime | None = None,
    resume: Checkpoint | None = None,
) -> tuple[Trace, np.ndarray, float]:
    """Run every chunk of every seed, or every chunk after `resume.chunks_done`.

    `resume` is a Checkpoint whose carry `lifetime.restore` built (the chunk is compiled there).
    Returns the Trace ([seeds, meta_steps]), the first rollout's reward per seed and the seconds
    spent running chunks (compilation excluded). `on_chunk(checkpoint)` is called after each
    chunk, e.g. to save and report progress; its carry is valid only during the call.
    """
    lifetime = Lifetime(config) if lifetime is None else lifetime
    if resume is None:
        carry, first_rewards = lifetime.start()
        trace, seconds, first_chunk = None, 0.0, 0
    else:
        carry, first_rewards = resume.carry, resume.first_rewards
        trace, seconds, first_chunk = resume.trace, resume.seconds, resume.chunks_done
    for chunk in range(first_chunk, config.num_chunks):
        start = time.perf_counter()
        carry, piece = lifetime.run_chunk(carry)
        seconds += time.perf_counter() - start
        trace = piece if trace is None else concatenate([trace, piece])
        if on_chunk is not None:
            on_chunk(Checkpoint(carry, trace, first_rewards, chunk + 1, seconds))
    return trace, first_rewards, seconds
