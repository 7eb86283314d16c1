"""The compiled, chunked, seed-parallel lifetime for any `bmg.core.Learner` (the Anakin pattern).

Hessel, Kroiss, Clark, Kemaev, Quan, Keck, Viola, van Hasselt, "Podracer architectures for
scalable reinforcement learning", 2021: when the environment is written in JAX, acting and
learning compile into one program, vmapped over independent copies and sharded over devices.

Here one chunk is `lax.scan` over `meta_steps_per_chunk` meta-steps of
`MetaLearner.step(meta_state, learner_state, key)`, `vmap`-ed over seeds, with the seed axis
sharded over the local devices (`NamedSharding`). After every meta-step it records, per seed,
the learner's probes (`Learner.probes(meta_params, state)`), chosen metrics of the meta-step
(e.g. `meta/loss`) and whether the learner parameters, the meta-parameters and the meta-loss are
all finite. The host, between chunks: appends the chunk to the trace (`name -> [seeds,
meta_steps]` arrays), stops with one sentence at the first non-finite value (keeping the last
good checkpoint), saves a checkpoint through a `Checkpointer` (carry, initial probes, chunks
done, seconds; the trace as one file per chunk beside it, so a save does not grow with the
lifetime), and calls `on_chunk`. A run restored from a checkpoint continues bit-identically.

One seed's learner batch can also be split over devices (`batch_devices` > 1): the devices form
a mesh ("seed", "batch"); each chunk runs inside `jax.shard_map` with the leaves of the learner
state's `extras` (the environment streams and the batch, leading axis B after the seed axis)
split over "batch" and everything else replicated over it. The learner must then reduce its
losses, metrics and probes over the "batch" axis itself (e.g. `make_stacx(...,
axis_name="batch")`): its replicated parameters, meta-parameters and keys stay identical on
every device, so N batch devices give the numbers of one (to float reassociation).

Lanes run in groups (`lane_group`): each device runs its lanes `lane_group` at a time (a
`lax.map` over groups of vmapped lanes, inside `jax.shard_map` over the seed axis), so the
working set of a group (its parameters, optimiser states, environments) can stay in the caches
when all of a device's lanes would not: past about 16 lanes of Two-colors on a 2-core CPU, more
lanes in one vmap were slower in aggregate (docs/benchmarks.md). A lane's numbers depend on its
group's width only to float reassociation (vmap's width may vectorise a reduction differently;
tested to 1e-5 on 1 and 2 devices).

A sweep runs lanes (configurations x seeds) instead of seeds: `Anakin(build, None, hyper=...,
lane_seeds=...)` with `build(hyper) -> (Learner, MetaLearner)` called inside the traced per-lane
function, so the numbers in `hyper` (name -> float32 [lanes]: learning rates, entropy costs,
epsilons) are data, one compiled program serves every grid point, and the lanes are vmapped and
sharded like seeds. Each lane's `hyper` travels in its `Carry`, so checkpoints hold it and a
resumed sweep continues bit-identically. Lane i starts from `jax.random.key(lane_seeds[i])`, so
it reproduces the single run of its configuration and seed.

Before anything runs, the init and the chunk are compiled from abstract shapes and XLA's memory
analysis of them is checked against the memory of the devices: a lifetime that cannot fit is
refused with one sentence saying how many seeds would.

Usage:
  runner = Anakin(learner, MetaConfig(algo="bmg", inner_steps=1, bootstrap_steps=4),
                  num_seeds=10, meta_steps_per_chunk=100, num_chunks=20,
                  metrics=("meta/loss",), checkpointer=Checkpointer(run_dir / "checkpoints"))
  state = runner.restore() if resuming else runner.start()
  result = runner.run(state, on_chunk=print_progress)
  result.trace["meta/loss"]  # [seeds, 2000]
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bmg.checks import check_integer
from bmg.core import (
    Learner,
    LearnerState,
    MetaConfig,
    MetaLearner,
    MetaState,
    make_meta_learner,
    over_batch_shards,
)
from bmg.train.api import NonFiniteError  # noqa: F401  (raised here)

Trace = dict[str, np.ndarray]
"""name -> host array [seeds, meta_steps] (probes, metrics and `finite/...` flags)."""

FINITE = ("params", "meta_params", "meta_loss")
"""Quantities the NaN guard checks after every meta-step, recorded as `finite/<name>`."""

_QUANTITY = {
    "params": "the learner parameters",
    "meta_params": "the meta-parameters",
    "meta_loss": "the meta-loss",
}


class Carry(NamedTuple):
    """Everything that runs on between meta-steps, for one seed (vmapped: a leading seed axis)."""

    meta_state: MetaState
    learner_state: LearnerState
    key: jax.Array
    hyper: dict[str, jax.Array] | None = None  # a sweep lane's numbers (None: not a sweep)


class State(NamedTuple):
    """A lifetime after `chunks_done` chunks: enough to continue it exactly.

    Attributes:
      carry: every seed's `Carry`, on the devices (sharded over seeds).
      initial: the probes at initialisation, name -> [seeds] host arrays.
      pieces: the trace as the chunks recorded it: an empty piece (name -> [seeds, 0]), then
        one piece per chunk finished (name -> [seeds, meta_steps_per_chunk] host arrays).
        Appending a chunk's piece costs the same at the end of a long lifetime as at its start;
        `trace` concatenates them when a whole trace is wanted (the end of a run).
      chunks_done: chunks finished.
      seconds: wall-clock seconds spent running chunks on the devices (compilation and host work
        between chunks excluded).
      host_seconds: seconds of host work between chunks (trace transfer, checkpoint, callback).
    """

    carry: Carry
    initial: Trace
    pieces: tuple[Trace, ...]
    chunks_done: int
    seconds: float
    host_seconds: float

    @property
    def trace(self) -> Trace:
        """name -> [seeds, chunks_done * meta_steps_per_chunk]: the pieces concatenated."""
        return {k: np.concatenate([p[k] for p in self.pieces], axis=1) for k in self.pieces[0]}

    def before(self, chunk: int) -> Trace:
        """name -> [seeds]: each record's value just before chunk `chunk` (0-based): the last
        meta-step of the chunk before it, or for the first chunk the probes at initialisation
        (records that have none there, such as the meta-loss, are left out)."""
        if chunk == 0:
            return {k: v for k, v in self.initial.items() if k in self.pieces[0]}
        return {k: v[:, -1] for k, v in self.pieces[chunk].items()}


class OutOfMemoryError(ValueError):
    """The compiled program needs more memory than the devices have."""


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_lifetime(
    learner: Learner,
    meta_learner: MetaLearner,
    *,
    meta_steps_per_chunk: int,
    metrics: Sequence[str] = (),
    probes: Sequence[str] | None = None,
):
    """`(init, probe, run_chunk)` for one seed: pure, jittable; `vmap` them over seeds.

    init(key) -> Carry: x_0 from `learner.init_state`, w_0 from `learner.init_meta_params`, the
      meta-optimiser state, and the key the meta-steps draw from.
    probe(carry) -> {name: scalar}: the selected probes of the carry's learner.
    run_chunk(carry) -> (carry, {name: [meta_steps_per_chunk]}): the meta-steps of one chunk,
      recording after each the selected probes, the metrics named in `metrics` and the
      `finite/params`, `finite/meta_params` and `finite/meta_loss` flags (the last True where the
      algorithm has no `meta/loss`, e.g. fixed).

    Raises (when traced): ValueError naming a metric or probe the learner does not produce.
    """

    def select_probes(meta_params, learner_state) -> dict[str, jax.Array]:
        values = learner.probes(meta_params, learner_state) if learner.probes else {}
        names = list(values) if probes is None else list(probes)
        missing = [name for name in names if name not in values]
        if missing:
            raise ValueError(
                f"probes {missing} are not among the learner's probes {sorted(values)}."
            )
        return {name: jnp.asarray(values[name]) for name in names}

    def init(key: jax.Array) -> Carry:
        learner_key, meta_key, run_key = jax.random.split(key, 3)
        learner_state = learner.init_state(learner_key)
        meta_state = meta_learner.init(learner.init_meta_params(meta_key))
        return Carry(meta_state, learner_state, run_key)

    def probe(carry: Carry) -> dict[str, jax.Array]:
        return select_probes(carry.meta_state.meta_params, carry.learner_state)

    def meta_step(carry: Carry, _) -> tuple[Carry, dict[str, jax.Array]]:
        key, step_key = jax.random.split(carry.key)
        meta_state, learner_state, step_metrics = meta_learner.step(
            carry.meta_state, carry.learner_state, step_key
        )
        missing = [name for name in metrics if name not in step_metrics]
        if missing:
            raise ValueError(
                f"metrics {missing} are not among the meta-step's metrics {sorted(step_metrics)}."
            )
        record = select_probes(meta_state.meta_params, learner_state)
        record.update({name: jnp.asarray(step_metrics[name]) for name in metrics})
        meta_loss = step_metrics.get("meta/loss", jnp.zeros(()))
        record["finite/params"] = _all_finite(learner_state.params)
        record["finite/meta_params"] = _all_finite(meta_state.meta_params)
        record["finite/meta_loss"] = _all_finite(meta_loss)
        return carry._replace(meta_state=meta_state, learner_state=learner_state, key=key), record

    def run_chunk(carry: Carry):
        return jax.lax.scan(meta_step, carry, None, length=meta_steps_per_chunk)

    return init, probe, run_chunk


Build = Callable[[dict[str, jax.Array]], tuple[Learner, MetaLearner]]
"""`build(hyper) -> (learner, meta_learner)` of one sweep lane (`hyper`: name -> float32 scalar,
traced)."""


def make_swept_lifetime(
    build: Build,
    *,
    meta_steps_per_chunk: int,
    metrics: Sequence[str] = (),
    probes: Sequence[str] | None = None,
):
    """`make_lifetime` for one sweep lane whose learner and meta-learner are built from the
    numbers `hyper` inside the traced function: `(init(key, hyper), probe, run_chunk)`; the
    carry keeps `hyper`, so every chunk (and a restored checkpoint) rebuilds the same lane."""

    def parts(hyper):
        learner, meta_learner = build(hyper)
        return make_lifetime(
            learner,
            meta_learner,
            meta_steps_per_chunk=meta_steps_per_chunk,
            metrics=metrics,
            probes=probes,
        )

    def init(key: jax.Array, hyper: dict[str, jax.Array]) -> Carry:
        return parts(hyper)[0](key)._replace(hyper=hyper)

    def probe(carry: Carry) -> dict[str, jax.Array]:
        return parts(carry.hyper)[1](carry)

    def run_chunk(carry: Carry):
        return parts(carry.hyper)[2](carry)

    return init, probe, run_chunk


def _piece_crc(piece: Trace, crc32) -> int:
    """One CRC-32 of a trace piece: of its names' leaves' CRCs, in name order."""
    return crc32(np.asarray([crc32(np.asarray(piece[k])) for k in sorted(piece)], np.int64))


def seed_sharding(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> NamedSharding:
    """Shard a leading seed axis over the most local devices that divide `num_seeds`."""
    devices = list(devices or jax.local_devices())
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return NamedSharding(Mesh(np.array(devices[:count]), ("seed",)), PartitionSpec("seed"))


BATCH_AXIS = "batch"
"""The mesh axis over which `batch_devices` > 1 splits one seed's learner batch."""


def seed_batch_mesh(
    num_seeds: int, batch_devices: int, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A ("seed", "batch") mesh: `batch_devices` devices per seed group, and the most seed
    groups that divide `num_seeds` and fit in the devices.

    Raises:
      ValueError: fewer devices than `batch_devices`.
    """
    devices = list(devices or jax.local_devices())
    if batch_devices > len(devices):
        raise ValueError(
            f"batch_devices must be at most the {len(devices)} devices available, got "
            f"{batch_devices}."
        )
    groups = len(devices) // batch_devices
    count = max(d for d in range(1, groups + 1) if num_seeds % d == 0)
    grid = np.array(devices[: count * batch_devices]).reshape(count, batch_devices)
    return Mesh(grid, ("seed", BATCH_AXIS))


def carry_specs(carry: Carry) -> Carry:
    """PartitionSpecs of a seed-batched carry on a ("seed", "batch") mesh: the learner state's
    `extras` leaves split over "batch" on their axis 1 (the batch after the seed axis),
    everything else over "seed" only."""
    seed, batch = PartitionSpec("seed"), PartitionSpec("seed", BATCH_AXIS)
    state = carry.learner_state
    return Carry(
        meta_state=jax.tree.map(lambda _: seed, carry.meta_state),
        learner_state=LearnerState(
            params=jax.tree.map(lambda _: seed, state.params),
            opt_state=jax.tree.map(lambda _: seed, state.opt_state),
            extras=jax.tree.map(lambda _: batch, state.extras),
        ),
        key=seed,
        hyper=jax.tree.map(lambda _: seed, carry.hyper),
    )


def available_memory(device: jax.Device) -> int | None:
    """Bytes free on `device`: its allocator's limit minus use (accelerators), or the host's
    available memory (CPU). None when unknown."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def program_bytes(compiled) -> int | None:
    """Peak bytes per device of a compiled program from XLA's memory analysis (arguments +
    outputs + temporaries - donated arguments reused as outputs), or None if unavailable."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


class Result(NamedTuple):
    """A finished (or stopped) lifetime.

    Attributes:
      state: the final `State` (carry on device, trace on host).
      compile_seconds: seconds compiling the init and the chunk.
      meta_steps_per_second: meta-steps of all seeds together per second of device time.
      memory_bytes: XLA's estimate of the chunk's peak memory per device (None if unknown).
    """

    state: State
    compile_seconds: float
    meta_steps_per_second: float
    memory_bytes: int | None


class ChunkInfo(NamedTuple):
    """What `on_chunk` receives after each chunk (and its checkpoint)."""

    state: State  # its carry is valid only during the call (the next chunk donates it)
    num_chunks: int
    chunk_seconds: float  # device seconds of this chunk
    chunk_host_seconds: float  # host seconds of this chunk's trace transfer and checkpoint
    compile_seconds: float
    meta_steps_per_second: float  # all seeds, over all chunks so far


class Anakin:
    """A compiled, chunked, seed-parallel lifetime of `learner` under `meta_learner`.

    Args:
      learner: a `bmg.core.Learner`.
      meta_learner: a `MetaLearner`, or a `MetaConfig` (then `make_meta_learner(learner, it)`).
      num_seeds: independent seeds run in parallel (vmap), sharded over local devices.
      first_seed: seeds are first_seed, first_seed + 1, ...; seed s starts from
        `jax.random.key(s)`.
      meta_steps_per_chunk: meta-steps compiled into one chunk (one `lax.scan`).
      num_chunks: chunks in the lifetime.
      metrics: names of meta-step metrics to record (e.g. "meta/loss").
      probes: names of the learner's probes to record; None = all it has.
      checkpointer: a `Checkpointer`; a checkpoint is saved after every chunk. None = none.
      memory_limit: bytes per device the compiled programs may use; None = what the device
        reports free (host memory on CPU).
      devices: the devices to shard seeds over; None = all local devices.
      batch_devices: devices splitting each seed's learner batch (see the module docstring);
        1 = none (the seeds alone are sharded). With > 1 the learner must reduce over the
        "batch" axis (`BATCH_AXIS`), B must divide by it, and a `MetaConfig` is built with
        `reduce=over_batch_shards()` (pass a `MetaLearner` built so, otherwise).
      hyper: a sweep (see the module docstring): name -> [num_seeds] numbers, one per lane;
        `learner` is then `build(hyper) -> (Learner, MetaLearner)` and `meta_learner` is
        ignored (pass None). num_seeds counts lanes.
      lane_group: lanes vmapped together on a device, the groups run one after another inside
        the chunk (see the module docstring); None = all of a device's lanes at once. Only
        with batch_devices = 1.
      lane_seeds: the seed of each lane (lane i starts from `jax.random.key(lane_seeds[i])`);
        None = first_seed, first_seed + 1, ...

    Raises:
      ValueError: a count that is not a positive integer (one sentence naming it).
    """

    def __init__(
        self,
        learner: Learner,
        meta_learner: MetaLearner | MetaConfig,
        *,
        num_seeds: int,
        meta_steps_per_chunk: int,
        num_chunks: int,
        first_seed: int = 0,
        metrics: Sequence[str] = (),
        probes: Sequence[str] | None = None,
        checkpointer=None,
        memory_limit: int | None = None,
        devices: Sequence[jax.Device] | None = None,
        batch_devices: int = 1,
        hyper: dict[str, Any] | None = None,
        lane_seeds: Sequence[int] | None = None,
        lane_group: int | None = None,
    ):
        self.num_seeds = check_integer("num_seeds", num_seeds, 1)
        self.first_seed = check_integer("first_seed", first_seed, 0)
        self.meta_steps_per_chunk = check_integer("meta_steps_per_chunk", meta_steps_per_chunk, 1)
        self.num_chunks = check_integer("num_chunks", num_chunks, 1)
        if self.first_seed + self.num_seeds > 2**31:
            raise ValueError(
                f"first_seed + num_seeds must be <= 2**31, got {self.first_seed + self.num_seeds}."
            )
        self.batch_devices = check_integer("batch_devices", batch_devices, 1)
        if lane_seeds is None:
            lane_seeds = range(self.first_seed, self.first_seed + self.num_seeds)
        self.lane_seeds = np.asarray(lane_seeds, np.int64)
        if self.lane_seeds.shape != (self.num_seeds,):
            raise ValueError(
                f"lane_seeds must hold num_seeds = {self.num_seeds} seeds, got "
                f"{self.lane_seeds.shape[0] if self.lane_seeds.ndim else 'a scalar'}."
            )
        self.hyper = None
        if hyper is not None:
            self.hyper = {k: np.asarray(v, np.float32) for k, v in sorted(hyper.items())}
            bad = [k for k, v in self.hyper.items() if v.shape != (self.num_seeds,)]
            if bad:
                raise ValueError(
                    f"hyper values {bad} must have shape [num_seeds = {self.num_seeds}]."
                )
        if isinstance(meta_learner, MetaConfig):
            reduce = over_batch_shards() if self.batch_devices > 1 else None
            meta_learner = make_meta_learner(learner, meta_learner, reduce=reduce)
        self.metrics = tuple(metrics)
        self.checkpointer = checkpointer
        self.memory_limit = memory_limit
        self.lane_group = None if lane_group is None else check_integer("lane_group", lane_group, 1)
        if self.lane_group is not None and self.batch_devices > 1:
            raise ValueError("lane_group needs batch_devices = 1 (one seed's batch is split).")
        if self.hyper is not None:
            init, probe, run_chunk = make_swept_lifetime(
                learner,
                meta_steps_per_chunk=self.meta_steps_per_chunk,
                metrics=self.metrics,
                probes=probes,
            )
        else:
            plain_init, probe, run_chunk = make_lifetime(
                learner,
                meta_learner,
                meta_steps_per_chunk=self.meta_steps_per_chunk,
                metrics=self.metrics,
                probes=probes,
            )
            init = lambda key, hyper: plain_init(key)  # noqa: E731
        if self.batch_devices == 1:
            self.sharding = seed_sharding(self.num_seeds, devices)
            self._init = jax.jit(jax.vmap(init), out_shardings=self.sharding)
            self._probe = jax.jit(jax.vmap(probe))
            self._run_chunk = jax.jit(self._lanes(run_chunk), donate_argnums=0)
        else:
            self._shard_batch(init, probe, run_chunk, devices)
        self._compiled = None
        self._piece_crcs: list[int] = []  # CRC-32 of each chunk's trace file on disk
        self.compile_seconds = float("nan")
        self.memory_bytes: int | None = None

    def _lanes(self, run_chunk):
        """The chunk over every lane: one vmap, or (`lane_group`) each device's lanes in groups
        of `lane_group` vmapped lanes, one group after another."""
        if self.lane_group is None:
            return jax.vmap(run_chunk)
        per_device = self.num_seeds // self.sharding.mesh.size
        if self.lane_group >= per_device:
            return jax.vmap(run_chunk)
        group = self.lane_group
        return jax.shard_map(
            lambda carry: jax.lax.map(run_chunk, carry, batch_size=group),
            mesh=self.sharding.mesh,
            in_specs=PartitionSpec("seed"),
            out_specs=PartitionSpec("seed"),
            check_vma=False,
        )

    def _shard_batch(self, init, probe, run_chunk, devices) -> None:
        """The init, probe and chunk programs on a ("seed", "batch") mesh (`batch_devices` > 1):
        the init makes every seed's whole carry, then places its `extras` split over "batch";
        probes and chunks run inside `jax.shard_map` over the mesh."""
        mesh = seed_batch_mesh(self.num_seeds, self.batch_devices, devices)
        self.sharding = NamedSharding(mesh, PartitionSpec("seed"))
        key = jax.eval_shape(lambda: jax.random.key(0))
        shapes = jax.eval_shape(
            jax.vmap(init),
            jax.ShapeDtypeStruct((self.num_seeds,), key.dtype),
            self._abstract_hyper(sharded=False),
        )
        specs = carry_specs(shapes)
        self._init = jax.jit(
            jax.vmap(init),
            out_shardings=jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs),
        )
        seed = PartitionSpec("seed")
        self._probe = jax.jit(
            jax.shard_map(
                jax.vmap(probe), mesh=mesh, in_specs=(specs,), out_specs=seed, check_vma=False
            )
        )
        self._run_chunk = jax.jit(
            jax.shard_map(
                jax.vmap(run_chunk),
                mesh=mesh,
                in_specs=(specs,),
                out_specs=(specs, seed),
                check_vma=False,
            ),
            donate_argnums=0,
        )

    # set-up ------------------------------------------------------------------------------------

    def _abstract_keys(self) -> jax.ShapeDtypeStruct:
        key_type = jax.eval_shape(lambda: jax.random.key(0)).dtype
        return jax.ShapeDtypeStruct((self.num_seeds,), key_type, sharding=self.sharding)

    def _abstract_hyper(self, sharded: bool = True):
        if self.hyper is None:
            return None
        sharding = self.sharding if sharded else None
        return {
            k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
            for k, v in self.hyper.items()
        }

    def abstract_carry(self) -> Carry:
        """The carry's shapes, dtypes and shardings (`jax.eval_shape` of the init), no work."""
        return jax.eval_shape(self._init, self._abstract_keys(), self._abstract_hyper())

    @property
    def compiled(self) -> bool:
        """Whether `compile` has run (the init and the chunk are compiled)."""
        return self._compiled is not None

    def compile(self) -> float:
        """Compile the init and the chunk from abstract shapes and check their memory.

        Returns the compile seconds (also `self.compile_seconds`); a second call is free.

        Raises:
          ValueError: the programs need more memory per device than is available; the
            sentence says how much, and how many seeds would fit.
        """
        if self._compiled is not None:
            return self.compile_seconds
        start = time.perf_counter()
        init = self._init.lower(self._abstract_keys(), self._abstract_hyper()).compile()
        chunk = self._run_chunk.lower(self.abstract_carry()).compile()
        self.compile_seconds = time.perf_counter() - start
        needs = [program_bytes(init), program_bytes(chunk)]
        self.memory_bytes = needs[1]
        device = self.sharding.mesh.devices.flat[0]
        limit = self.memory_limit if self.memory_limit is not None else available_memory(device)
        need = max((n for n in needs if n is not None), default=None)
        devices = self.sharding.mesh.size
        # CPU devices are one host's cores: they share its memory, which `limit` is
        sharing = devices if device.platform == "cpu" else 1
        if limit is not None and need is not None and need * sharing > limit:
            per_seed = need / (self.num_seeds / devices)
            fits = int(limit // per_seed) * (devices // sharing)
            each = f" on each of {devices} devices sharing the host's memory" if sharing > 1 else ""
            raise OutOfMemoryError(
                f"{self.num_seeds} seeds with {self.meta_steps_per_chunk} meta-steps per chunk "
                f"need about {_gib(need)} per device ({device.platform}){each} but "
                f"{_gib(limit)} is available; about {fits} seeds fit (or use fewer inner or "
                "bootstrap steps, or remat)."
            )
        self._compiled_init, self._compiled = init, chunk
        return self.compile_seconds

    def keys(self) -> jax.Array:
        """Each lane's starting key, `jax.random.key(lane_seeds[i])` (seed first_seed + i
        unless lane_seeds are given), sharded over lanes."""
        seeds = jnp.asarray(self.lane_seeds, jnp.int32)
        return jax.device_put(jax.vmap(jax.random.key)(seeds), self.sharding)

    def start(self) -> State:
        """A fresh lifetime: every seed initialised (after `compile`), its probes recorded.

        Raises:
          CheckpointError: the checkpointer already holds a lifetime's checkpoints (an earlier
            run's, finished or not): a fresh lifetime would overwrite its trace pieces, so
            `restore` it, or give the runner another checkpoint directory.
        """
        self._check_no_checkpoint()
        self.compile()
        hyper = None if self.hyper is None else jax.device_put(self.hyper, self.sharding)
        carry = self._compiled_init(self.keys(), hyper)
        initial = {k: np.asarray(v) for k, v in self._probe(carry).items()}
        self._piece_crcs = []
        return State(carry, initial, (self._empty_trace(),), 0, 0.0, 0.0)

    def _check_no_checkpoint(self, step: int | None = None) -> None:
        """CheckpointError when the checkpointer holds any step (or `step`): they belong to
        another lifetime, whose trace pieces this one must not overwrite."""
        if self.checkpointer is None:
            return
        from bmg.train.checkpoint import CheckpointError

        steps = self.checkpointer.all_steps()
        clash = bool(steps) if step is None else step in steps
        if clash:
            raise CheckpointError(
                f"{self.checkpointer.directory} already holds checkpoints of a lifetime (steps "
                f"{steps}); continue it with restore(), or give this run another checkpoint "
                "directory."
            )

    def _empty_trace(self) -> Trace:
        shapes = jax.eval_shape(self._run_chunk, self.abstract_carry())[1]
        return {name: np.zeros((self.num_seeds, 0), s.dtype) for name, s in sorted(shapes.items())}

    # checkpoints -------------------------------------------------------------------------------

    def _meta(self, state: State) -> dict[str, Any]:
        return {
            "chunks_done": state.chunks_done,
            "trace_crc32": list(self._piece_crcs[: state.chunks_done]),
            "seconds": state.seconds,
            "host_seconds": state.host_seconds,
            "num_seeds": self.num_seeds,
            "first_seed": self.first_seed,
            "meta_steps_per_chunk": self.meta_steps_per_chunk,
        }

    def _template(self, meta: dict[str, Any]) -> dict[str, Any]:
        for name in ("num_seeds", "first_seed", "meta_steps_per_chunk"):
            if meta.get(name) != getattr(self, name):
                raise ValueError(
                    f"the checkpoint was written with {name} = {meta.get(name)}, this run has "
                    f"{getattr(self, name)}; resume with the run's own configuration."
                )
        initial = jax.eval_shape(self._probe, self.abstract_carry())
        return {
            "carry": self.abstract_carry(),
            "initial": {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in initial.items()},
        }

    def _piece_path(self, chunk: int) -> Path:
        return Path(self.checkpointer.directory) / "trace" / f"{chunk:06d}.npz"

    def _write_pieces(self, state: State) -> None:
        """trace/<chunk>.npz for every chunk not yet on disk, and its CRC-32 for the meta."""
        from bmg.train.checkpoint import _crc32
        from bmg.train.rundir import save_npz

        del self._piece_crcs[state.chunks_done :]
        self._piece_path(0).parent.mkdir(parents=True, exist_ok=True)
        for chunk in range(len(self._piece_crcs), state.chunks_done):
            piece = state.pieces[chunk + 1]
            save_npz(self._piece_path(chunk), compress=False, **piece)
            self._piece_crcs.append(_piece_crc(piece, _crc32))

    def _read_pieces(self, crcs: list[int]) -> tuple[Trace, ...]:
        """The pieces of the chunks `crcs` describe (after the empty one), each checked against
        its CRC-32."""
        from bmg.train.checkpoint import CheckpointError, _crc32

        trace = self._empty_trace()
        pieces = []
        for chunk, crc in enumerate(crcs):
            path = self._piece_path(chunk)
            try:
                with np.load(path) as data:
                    piece = {k: data[k] for k in data.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise CheckpointError(
                    f"{path}, the trace of chunk {chunk + 1}, cannot be read "
                    f"({type(error).__name__}); the run cannot be resumed: start it again."
                ) from None
            if sorted(piece) != sorted(trace) or _piece_crc(piece, _crc32) != crc:
                raise CheckpointError(
                    f"{path}, the trace of chunk {chunk + 1}, does not match its checksum in the "
                    "checkpoint (damaged or from another run); the run cannot be resumed: start "
                    "it again."
                )
            pieces.append(piece)
        return (trace, *pieces)

    def save(self, state: State) -> None:
        """Checkpoint `state` as step `state.chunks_done` (no-op without a checkpointer): the
        carry and initial probes through the `Checkpointer`, and the trace as one file per chunk
        (`trace/<chunk>.npz` beside the steps, each written once, its CRC-32 in the step's
        meta), so a save costs the same at the end of a long lifetime as at its start."""
        if self.checkpointer is None:
            return
        self._check_no_checkpoint(state.chunks_done)  # another lifetime's: its pieces stay
        self._write_pieces(state)  # the new chunks' traces first, then the step that names them
        self.checkpointer.save(
            state.chunks_done, {"carry": state.carry, "initial": state.initial}, self._meta(state)
        )

    def restore(self) -> State:
        """The state of the latest checkpoint, its carry on this runner's shardings.

        Raises:
          CheckpointError: no checkpoint, a damaged one, or one of another configuration (the
            seeds, the first seed or the chunk length differ, or the state's shapes).
        """
        from bmg.train.checkpoint import CheckpointError

        if self.checkpointer is None:
            raise ValueError("restore needs a checkpointer; this runner has none.")

        def template(meta):
            try:
                return self._template(meta)
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{self.checkpointer.directory}: {error}") from None

        saved, meta = self.checkpointer.restore(template)
        crcs = [int(c) for c in meta.get("trace_crc32", [])]
        if len(crcs) != int(meta["chunks_done"]):
            raise CheckpointError(
                f"{self.checkpointer.directory}: the checkpoint names {len(crcs)} trace pieces for "
                f"{meta['chunks_done']} chunks (written by an older bmg?); start the run again."
            )
        pieces = self._read_pieces(crcs)
        self._piece_crcs = crcs
        self.compile()
        state = State(
            carry=saved["carry"],
            initial={k: np.asarray(v) for k, v in saved["initial"].items()},
            pieces=pieces,
            chunks_done=int(meta["chunks_done"]),
            seconds=float(meta["seconds"]),
            host_seconds=float(meta["host_seconds"]),
        )
        return state

    # running -----------------------------------------------------------------------------------

    def _check_finite(self, state: State, piece: Trace) -> None:
        """NonFiniteError at the first meta-step of `piece` where a guarded quantity is not
        finite (earliest step, then the order of FINITE, then the lowest seed)."""
        flags = np.stack([piece[f"finite/{name}"] for name in FINITE])  # [3, seeds, steps]
        if flags.all():
            return
        bad = ~flags
        step = int(np.argmax(bad.any(axis=(0, 1))))
        quantity, seed = (int(i) for i in np.argwhere(bad[:, :, step])[0])
        meta_step = state.chunks_done * self.meta_steps_per_chunk + step + 1
        if self.checkpointer is None:
            kept = "this run saves no checkpoints"
        elif state.chunks_done == 0:
            kept = "no chunk finished, so no checkpoint was written"
        else:
            kept = f"the last good checkpoint (after chunk {state.chunks_done}) is kept"
        trace = state._replace(pieces=(*state.pieces, piece)).trace
        raise NonFiniteError(
            f"{_QUANTITY[FINITE[quantity]]} of {self._lane_name(seed)} became NaN or "
            f"infinite at meta-step {meta_step} (chunk {state.chunks_done + 1}); {kept}: lower "
            "the learning rates or check the inputs.",
            state,
            trace,
        )

    def _lane_name(self, lane: int) -> str:
        seed = int(self.lane_seeds[lane])
        if self.hyper is None:
            return f"seed {seed}"
        values = ", ".join(f"{k} = {v[lane]:.6g}" for k, v in self.hyper.items())
        return f"lane {lane} (seed {seed}, {values})"

    def run_chunk(self, state: State) -> tuple[State, float, float]:
        """One chunk from `state` (whose carry is donated): the next state, not yet saved, and
        the chunk's device and host seconds. Raises NonFiniteError (see `_check_finite`)."""
        self.compile()
        start = time.perf_counter()
        carry, piece = self._compiled(state.carry)
        jax.block_until_ready(carry)
        jax.block_until_ready(piece)
        device_seconds = time.perf_counter() - start
        start = time.perf_counter()
        piece = {k: np.asarray(v) for k, v in piece.items()}
        self._check_finite(state, piece)
        host_seconds = time.perf_counter() - start
        new = State(
            carry,
            state.initial,
            (*state.pieces, piece),
            state.chunks_done + 1,
            state.seconds + device_seconds,
            state.host_seconds + host_seconds,
        )
        return new, device_seconds, host_seconds

    def meta_steps_per_second(self, state: State) -> float:
        """Meta-steps of all seeds per device second so far."""
        steps = state.chunks_done * self.meta_steps_per_chunk * self.num_seeds
        return steps / state.seconds if state.seconds > 0 else float("nan")

    def run(
        self, state: State | None = None, on_chunk: Callable[[ChunkInfo], None] | None = None
    ) -> Result:
        """Run the chunks after `state.chunks_done` (a fresh `start()` when None) to the end.

        After each chunk: its trace is appended, the state checkpointed, then `on_chunk` called.
        Raises NonFiniteError (the last good checkpoint kept) or the compile's ValueError.
        """
        state = self.start() if state is None else state
        self.compile()
        while state.chunks_done < self.num_chunks:
            state, device_seconds, host_seconds = self.run_chunk(state)
            start = time.perf_counter()
            self.save(state)
            save_seconds = time.perf_counter() - start
            host_seconds += save_seconds
            state = state._replace(host_seconds=state.host_seconds + save_seconds)
            if on_chunk is not None:
                on_chunk(
                    ChunkInfo(
                        state,
                        self.num_chunks,
                        device_seconds,
                        host_seconds,
                        self.compile_seconds,
                        self.meta_steps_per_second(state),
                    )
                )
        return Result(
            state, self.compile_seconds, self.meta_steps_per_second(state), self.memory_bytes
        )
