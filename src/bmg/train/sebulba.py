"""Sebulba: actor threads stepping host environments, a queue, and a learner sharded over devices.

Hessel, Kroiss, Clark, Kemaev, Quan, Keck, Viola, van Hasselt, "Podracer architectures for
scalable reinforcement learning", 2021: when the environment runs on the host (the Atari
emulator), actor threads step batches of environments with the policy on actor devices and
push fixed-length rollouts into a queue; a learner takes batches of rollouts, splits them along
the batch axis over the learner devices and updates the parameters, which flow back to the
actors. This is the layout of IMPALA (Espeholt et al., ICML 2018) on one machine, the setup of
the Atari experiments of Flennerhag et al., "Bootstrapped Meta-Learning", ICLR 2022 (2 of 8 TPU
cores acting in 48 environments, the learner's batch split over the other 6).

Threads (all in one process; JAX releases the GIL while it computes and ale-py while it emulates):

* actor thread i (``num_actor_threads`` of them) owns a ``VectorEnv`` of ``envs_per_thread``
  environments and acts on actor device ``i mod len(actor_devices)`` with the STACX main head
  (the agent's ``act_fn``, jitted; its inputs are placed on the device). It steps
  ``rollout_length`` T times, then pushes one ``Rollout`` of its E environments ([E, T + 1, ...]
  observations, actions, raw rewards, ``discount_t = 1 - terminated``, truncations,
  ``final_obs``) together with the behaviour logits [E, T, A] and the parameter version that
  acted into a bounded ``queue.Queue(queue_size)``. Before its next rollout it takes the newest
  published parameters; with ``wait_for_params`` it first waits until the learner has learned
  from its rollout before last (cleanba's rule), which bounds the policy lag by 1 for one actor
  thread whose rollouts make whole batches;
* the learner (the calling thread) takes ``rollouts_per_batch`` x N rollouts per meta-step (N =
  K for fixed and MG, K + L - 1 for BMG: ``batches_per_meta_step``), stacks them into N batches
  [N, B, ...] with B = ``rollouts_per_batch`` x E, places them on the learner devices split
  along B (``NamedSharding(Mesh(learner_devices, ("batch",)), P(None, "batch"))``), and runs the
  meta-learner's step of the agent's learner (``MakeAgent``) inside ``jax.shard_map``
  with the reduction of one learner split over devices (``bmg.core.over_batch_shards``):
  each device's gradient of its shard's mean loss, all-reduced in the optimiser; meta-gradients
  averaged; parameters replicated. N learner devices give the numbers of one, to float
  reassociation (tested with 4 forced host devices). It then publishes the new parameters and
  meta-parameters (copied to each actor device) as version v + 1.

Measured (``Stats``): the policy lag of every rollout learned from (the learner's version when
it learns minus the version that acted), frames produced and learned, and where the time goes:
actors' environment stepping, inference (the policy call and its result on the host), waiting
to push (queue full) and for parameters; the learner's waiting for rollouts (queue empty),
stacking and transfer to the learner devices, the meta-step itself (dispatch to
``block_until_ready``) and publishing. Frames are emulator frames (agent steps x
``frames_per_step`` of the environment).

Shutdown: ``stop()`` (from any thread), Ctrl-C (``KeyboardInterrupt`` in the learner's thread)
and any exception in an actor thread set one stop flag; every blocking call (queue put/get,
waiting for parameters) waits in short slices and checks it, so all threads end, are joined
(within ``join_timeout`` seconds each) and their environments closed; an actor's exception is
then raised again in the learner's thread, its message and traceback intact, with a note naming
the thread.

The host vector environment interface (``VectorEnv``, what ``bmg.envs.atari.AtariEnvs``
implements and a test's fake copies): attributes ``num_envs``, ``num_actions``,
``observation_shape`` ([H, W, C]), ``observation_dtype``, ``frames_per_step``; methods
``reset(seed) -> obs [N, H, W, C]`` (env i seeded with seed + i), ``step(actions int[N]) ->
(obs, reward float32[N], terminated bool[N], truncated bool[N], final_obs)`` with episodes
reset in the same step (``obs`` the next episode's first observation, ``final_obs`` the one the
step reached), and ``close()``.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from bmg.checks import check_bool, check_integer, check_real, checks_deferred
from bmg.train.api import NonFiniteError


class VectorEnv(Protocol):
    """N host environments stepped together (see the module docstring)."""

    num_envs: int
    num_actions: int
    observation_shape: tuple[int, ...]
    observation_dtype: Any
    frames_per_step: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]: ...

    def close(self) -> None: ...


Devices = int | tuple[int, ...]


def _check_devices(name: str, value: Any) -> None:
    if isinstance(value, tuple):
        ok = value and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
        if not ok or min(value) < 0 or len(set(value)) != len(value):
            raise ValueError(
                f"{name} must be a device count >= 1 or a tuple of distinct device indices >= 0, "
                f"got {value!r}."
            )
        return
    check_integer(name, value, 1)


@dataclasses.dataclass(frozen=True)
class SebulbaConfig:
    """The actor-learner layout (Hessel et al. 2021; the paper's is ``PAPER_LAYOUT``)."""

    actor_devices: Devices = 1
    """devices the actors' policy runs on: a count (the first devices) or device indices."""
    learner_devices: Devices = 1
    """devices the learner's batch is split over: a count (the devices after the actors', or
    the last ones when too few) or device indices; B must divide evenly."""
    num_actor_threads: int = 1
    """actor threads, each with its own environments; thread i acts on actor device i mod
    len(actor_devices)."""
    envs_per_thread: int = 8
    """E, environments per actor thread (one VectorEnv)."""
    rollout_length: int = 20
    """T, steps per rollout (IMPALA's unroll length)."""
    rollouts_per_batch: int = 1
    """rollouts stacked into one learner batch: B = rollouts_per_batch x E."""
    queue_size: int = 1
    """capacity of the rollout queue (rollouts); a full queue blocks the actors."""
    wait_for_params: bool = True
    """before a rollout an actor waits until the learner has learned from its rollout before
    last (policy lag <= 1 with one actor thread); False: never wait."""
    join_timeout: float = 10.0
    """seconds to wait for each thread at shutdown."""

    def __post_init__(self):
        if checks_deferred():  # the command line checks nested configs after parsing
            return
        _check_devices("actor_devices", self.actor_devices)
        _check_devices("learner_devices", self.learner_devices)
        for name in (
            "num_actor_threads",
            "envs_per_thread",
            "rollout_length",
            "rollouts_per_batch",
            "queue_size",
        ):
            check_integer(name, getattr(self, name), 1)
        check_bool("wait_for_params", self.wait_for_params)
        check_real("join_timeout", self.join_timeout, low=0, low_open=True)

    @property
    def batch_size(self) -> int:
        """B, environment streams in one learner batch."""
        return self.rollouts_per_batch * self.envs_per_thread


PAPER_LAYOUT = SebulbaConfig(
    actor_devices=2,
    learner_devices=6,
    num_actor_threads=4,
    envs_per_thread=12,
    rollout_length=20,
    rollouts_per_batch=2,
    queue_size=4,
)
"""The paper's Atari layout on one 8-core machine: 2 cores act in 48 environments (4 threads x
12), the learner's batch split over the other 6 (Flennerhag et al., ICLR 2022, Atari setup);
the unroll of 20 is IMPALA's [Espeholt et al. 2018]; threads, batch of 24 streams and queue size
are [default]."""


def resolve_devices(config: SebulbaConfig, devices: Sequence[Any] | None = None):
    """(actor devices, learner devices) from the config's counts or indices.

    Raises:
      ValueError: an index or count beyond the devices available.
    """
    import jax

    devices = list(devices or jax.local_devices())

    def pick(name, value, start):
        if isinstance(value, tuple):
            if max(value) >= len(devices):
                raise ValueError(
                    f"{name} indices must be below the {len(devices)} devices available, got "
                    f"{value!r}."
                )
            return [devices[i] for i in value]
        if value > len(devices):
            raise ValueError(
                f"{name} must be at most the {len(devices)} devices available, got {value}."
            )
        start = start if start + value <= len(devices) else len(devices) - value
        return devices[start : start + value]

    actors = pick("actor_devices", config.actor_devices, 0)
    first_free = 0 if isinstance(config.actor_devices, tuple) else len(actors)
    learners = pick("learner_devices", config.learner_devices, first_free)
    return actors, learners


COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
"""Environment variables ``initialize_distributed`` reads when no value is given (the first
is JAX's own)."""


def initialize_distributed(
    coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> bool:
    """Join a multi-process JAX run (``jax.distributed.initialize``) when a coordinator is named,
    by argument or by ``$JAX_COORDINATOR_ADDRESS`` (with ``$JAX_NUM_PROCESSES`` and
    ``$JAX_PROCESS_ID``); call it before any other JAX work. Every process runs the same
    command with its own ``process_id`` in [0, num_processes); process 0's host:port is the
    coordinator. Returns whether it joined one (False: a single process, nothing done); True
    without doing anything when this process has already joined (``jax.distributed.initialize``
    called earlier, e.g. by a launcher script).

    Raises:
      ValueError: a coordinator without the number of processes or this process's id, an id
        outside [0, num_processes), or JAX's backend already started in this process (JAX
        computed something first, so the process cannot join any more).
    """
    import os

    import jax

    address_env, count_env, id_env = (os.environ.get(name, "") for name in COORDINATOR_ENV)
    env = {"address": address_env, "count": count_env, "id": id_env}
    address = coordinator_address or env["address"]
    if not address:
        return False
    if jax.distributed.is_initialized():
        return True
    try:
        count = num_processes or int(env["count"] or 0)
        index = process_id if process_id >= 0 else int(env["id"] or -1)
    except ValueError:
        raise ValueError(
            f"{COORDINATOR_ENV[1]} and {COORDINATOR_ENV[2]} must be integers, got "
            f"{env['count']!r} and {env['id']!r}."
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"a multi-process run (coordinator {address}) needs num_processes >= 1 and a "
            f"process_id in [0, num_processes), got {count} and {index}."
        )
    try:
        jax.distributed.initialize(address, num_processes=count, process_id=index)
    except RuntimeError as error:
        if "must be called before" not in str(error):
            raise
        raise ValueError(
            f"this process cannot join the multi-process run (coordinator {address}) because "
            "JAX already computed something in it, so call initialize_distributed before any "
            "other JAX work."
        ) from None
    return True


def process_devices(process: int) -> list[Any]:
    """The devices of JAX process ``process``, ordered by id (``jax.local_devices()`` of that
    process, as every process sees them)."""
    import jax

    return sorted((d for d in jax.devices() if d.process_index == process), key=lambda d: d.id)


def global_learner_devices(config: SebulbaConfig) -> list[Any]:
    """The learner devices of every JAX process (``jax.distributed``), process 0's first: each
    process picks its own from its local devices with the same config (``resolve_devices``),
    and the learner's mesh spans them all. One process: its learner devices."""
    import jax

    return [
        device
        for process in range(jax.process_count())
        for device in resolve_devices(config, process_devices(process))[1]
    ]


def to_host(tree: Any) -> Any:
    """A pytree of (possibly multi-process) jax arrays as host NumPy arrays: a replicated
    array spanning other processes' devices is read from this process's first shard."""
    import jax

    def host(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_shards[0].data
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return np.asarray(x)

    return jax.tree.map(host, tree)


def local_copy(tree: Any, device: Any) -> Any:
    """``tree`` (replicated, possibly over several processes) on one local ``device``."""
    import jax

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_shards[0].data
        return jax.device_put(x, device)

    return jax.tree.map(local, tree)


def batches_per_meta_step(meta: Any) -> int:
    """N, learner batches one meta-step consumes: K (fixed, MG) or K + L - 1 (BMG)."""
    if meta.algo == "bmg":
        return meta.inner_steps + meta.bootstrap_steps - 1
    return meta.inner_steps


class Stats:
    """Counters and seconds of a run, updated by the threads (read them after ``run``).

    Attributes:
      frames_acted: emulator frames the actors stepped.
      frames_learned: emulator frames in the batches the learner learned from.
      updates: meta-steps done (the learner's parameter version).
      lags: the policy lag of every rollout learned from.
      episode_returns / episode_frames: raw return and emulator frames of every finished
        episode, in the order they finished.
      actor: seconds summed over actor threads: ``env`` (stepping), ``inference`` (the policy
        and its actions on the host), ``put_wait`` (queue full), ``params_wait`` (waiting for
        the learner and copying parameters in).
      learner: seconds of the learner: ``get_wait`` (queue empty), ``stack`` (host
        concatenation), ``transfer`` (to the learner devices), ``step`` (the meta-step),
        ``publish`` (parameters to the actor devices).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.frames_acted = 0
        self.frames_learned = 0
        self.updates = 0
        self.seconds = 0.0
        self.lags: list[int] = []
        self.episode_returns: list[float] = []
        self.episode_frames: list[int] = []
        self.actor = dict.fromkeys(("env", "inference", "put_wait", "params_wait"), 0.0)
        self.learner = dict.fromkeys(("get_wait", "stack", "transfer", "step", "publish"), 0.0)

    def add(self, part: str, name: str, seconds: float) -> None:
        with self.lock:
            getattr(self, part)[name] += seconds

    def summary(self, seconds: float) -> dict[str, float]:
        """Flat numbers for a report: frames/s acted and learned over ``seconds``, lag mean and
        max, and every time share."""
        lags = np.asarray(self.lags) if self.lags else np.zeros(1)
        out = {
            "seconds": seconds,
            "updates": self.updates,
            "frames_acted": self.frames_acted,
            "frames_learned": self.frames_learned,
            "fps_acted": self.frames_acted / seconds,
            "fps_learned": self.frames_learned / seconds,
            "lag_mean": float(lags.mean()),
            "lag_max": int(lags.max()),
            "episodes": len(self.episode_returns),
        }
        out.update({f"actor/{k}": v for k, v in self.actor.items()})
        out.update({f"learner/{k}": v for k, v in self.learner.items()})
        return out


class _Item(NamedTuple):
    """One rollout in the queue (host arrays)."""

    rollout: Any  # bmg.rl.Rollout, leaves [E, T(+1), ...]
    logits: np.ndarray  # [E, T, A]
    version: int  # the parameter version that acted
    thread: int
    learned: threading.Event  # set once an update that used it is published


class _Published(NamedTuple):
    version: int
    params: list[Any]  # one copy per actor device
    meta_params: list[Any]


class ActorLearner(Protocol):
    """An agent as Sebulba drives it (what a ``MakeAgent`` returns; any object with these
    attributes, e.g. ``bmg.agents.stacx.OnBatches``).

    Attributes:
      learner: a ``bmg.core.Learner`` whose ``update_fn`` reads its batch from
        ``LearnerState.extras``; ``init_state(key)`` gives the parameters and optimiser state
        (its extras are replaced by every meta-step's batches).
      act_fn: ``(params, meta_params, obs [E, ...], key) -> (actions int32[E], logits [E, A])``,
        the behaviour policy the actor threads run; no gradients.
      batch_extras: ``(rollouts, actor_logits) -> extras``: the N batches of one meta-step
        (``bmg.rl.Rollout``, leaves [N, B, T(+1), ...]) and the actors' logits [N, B, T, A] as
        the learner state's extras.
    """

    @property
    def learner(self) -> Any: ...

    @property
    def act_fn(self) -> Any: ...

    @property
    def batch_extras(self) -> Any: ...


class MakeAgent(Protocol):
    """``make_agent(spec, *, num_envs, rollout_length, num_batches, axis_name) -> ActorLearner``:
    the agent for environments like ``spec`` (a ``VectorEnv``: ``observation_shape``,
    ``observation_dtype``, ``num_actions``), learning from N = ``num_batches`` batches of B =
    ``num_envs`` streams of T = ``rollout_length`` steps per meta-step, its batch split over
    the ``shard_map`` axis ``axis_name`` (None: one learner device)."""

    def __call__(
        self, spec: Any, *, num_envs: int, rollout_length: int, num_batches: int, axis_name: Any
    ) -> ActorLearner: ...


class LearnerState(NamedTuple):
    """What the learner carries between meta-steps (replicated over the learner devices)."""

    meta_state: Any
    params: Any
    opt_state: Any
    key: Any


def _check_finite(metrics: dict[str, Any], meta_step: int) -> None:
    """NonFiniteError naming the first learner metric (the losses, the meta-loss) that is NaN
    or infinite after ``meta_step``: the same policy as the compiled runner's and the host
    loop's (training stops; the last checkpoint, written before this meta-step, is kept)."""
    for name, value in metrics.items():
        if not np.all(np.isfinite(value)):
            raise NonFiniteError(
                f"the learner's {name} became NaN or infinite at meta-step {meta_step:,}, so "
                "training stopped (the last checkpoint, if any, is kept): lower the learning "
                "rates or check the inputs."
            )


class Sebulba:
    """The actor-learner runner for the STACX learner (module docstring).

    Args:
      config: the layout.
      make_agent: the agent (``MakeAgent``): called once here with the first environment (its
        observation shape, dtype and actions), the learner's batch (P x B streams of P
        processes, B of the layout each), T and the batches of one meta-step; e.g.
        ``bmg.agents.stacx.sebulba_agent(config)``.
      meta: ``bmg.core.MetaConfig`` (fixed, MG or BMG); BMG needs the RMSProp target step
        with more than one learner device.
      make_env: ``thread_index -> VectorEnv`` with ``envs_per_thread`` environments; called
        for every actor thread here, in the constructor (errors surface at once).
      seed: the seed of the parameters, the acting noise and the environments (thread i's
        environments reset with seeds seed + i E ...).
      devices: the devices to choose from (default: ``jax.local_devices()``).

    Raises:
      ValueError: an environment with another number of environments, B not divisible by the
        learner devices, or devices beyond those available.
    """

    def __init__(
        self,
        config: SebulbaConfig,
        make_agent: MakeAgent,
        meta: Any,
        make_env: Callable[[int], VectorEnv],
        *,
        seed: int = 0,
        devices: Sequence[Any] | None = None,
    ):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        from bmg.core import LearnerState as CoreState
        from bmg.core import make_meta_learner, over_batch_shards
        from bmg.train.anakin import BATCH_AXIS

        self.config, self.seed = config, int(seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.actor_devices, local_learners = resolve_devices(config, devices)
        batch = config.batch_size
        if batch % len(local_learners):
            raise ValueError(
                f"learner_devices ({len(local_learners)}) must divide the learner batch "
                f"B = rollouts_per_batch x envs_per_thread = {batch}."
            )
        # Several JAX processes (jax.distributed): one learner mesh over every process's
        # learner devices; each process feeds its own B streams (the global batch is P x B).
        self.num_processes = jax.process_count() if devices is None else 1
        self.learner_devices = (
            global_learner_devices(config) if self.num_processes > 1 else local_learners
        )
        self.envs: list[VectorEnv] = []
        try:
            for i in range(config.num_actor_threads):
                env = make_env(i)
                self.envs.append(env)
                if env.num_envs != config.envs_per_thread:
                    raise ValueError(
                        f"make_env must give envs_per_thread = {config.envs_per_thread} "
                        f"environments, got {env.num_envs}."
                    )
        except BaseException:
            self.close()
            raise
        spec = self.envs[0]
        self.frames_per_step = int(getattr(spec, "frames_per_step", 1))
        self.num_batches = batches_per_meta_step(meta)
        sharded = len(self.learner_devices) > 1
        axis = BATCH_AXIS if sharded else None
        # The learner's B is the global batch, every process's streams (P x B): its losses are
        # means over them.
        self.agent = make_agent(
            spec,
            num_envs=batch * self.num_processes,
            rollout_length=config.rollout_length,
            num_batches=self.num_batches,
            axis_name=axis,
        )
        batch_extras = self.agent.batch_extras
        meta_learner = make_meta_learner(
            self.agent.learner, meta, reduce=over_batch_shards(axis) if sharded else None
        )
        self.meta_learner = meta_learner

        def step(state: LearnerState, rollouts, actor_logits):
            key, step_key = jax.random.split(state.key)
            learner_state = CoreState(
                state.params, state.opt_state, batch_extras(rollouts, actor_logits)
            )
            meta_state, learner_state, metrics = meta_learner.step(
                state.meta_state, learner_state, step_key
            )
            new = LearnerState(meta_state, learner_state.params, learner_state.opt_state, key)
            return new, metrics

        P = PartitionSpec
        if sharded:
            self.mesh = Mesh(np.array(self.learner_devices), (BATCH_AXIS,))
            self.data_sharding = NamedSharding(self.mesh, P(None, BATCH_AXIS))
            self.replicated = NamedSharding(self.mesh, P())
            step = jax.shard_map(
                step,
                mesh=self.mesh,
                in_specs=(P(), P(None, BATCH_AXIS), P(None, BATCH_AXIS)),
                out_specs=(P(), P()),
                check_vma=False,
            )
        else:
            self.mesh = None
            self.data_sharding = self.replicated = self.learner_devices[0]
        self._step = jax.jit(step)
        act = self.agent.act_fn
        self._act = jax.jit(
            lambda params, meta_params, obs, key, count: act(
                params, meta_params, obs, jax.random.fold_in(key, count)
            )
        )
        self.stats = Stats()
        self._errors: list[tuple[int, BaseException]] = []
        self._published: _Published | None = None
        self._first_version = 0
        self.state: LearnerState | None = None
        self._publish_lock = threading.Lock()

    # the learner ---------------------------------------------------------------------------

    def init_learner(self) -> LearnerState:
        """Parameters, optimiser and meta-state from ``seed``, replicated on the learner
        devices."""
        import jax
        import jax.numpy as jnp

        def init(key):
            params_key, meta_key, run_key = jax.random.split(key, 3)
            learner_state = self.agent.learner.init_state(params_key)
            params, opt_state = learner_state.params, learner_state.opt_state
            meta_state = self.meta_learner.init(self.agent.learner.init_meta_params(meta_key))
            state = LearnerState(meta_state, params, opt_state, run_key)
            # Strongly typed leaves, as the step returns them (else the second step re-traces).
            return jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), state)

        # compiled: op by op, the networks' initialisation compiles hundreds of tiny programs
        return self.replicate(jax.jit(init)(jax.random.key(self.seed)))

    def replicate(self, tree: Any) -> Any:
        """A pytree (host or device arrays, PRNG keys included; the same values on every
        process) replicated on the learner devices, over every process with ``jax.distributed``
        (``jax.make_array_from_process_local_data``)."""
        import jax

        if self.num_processes == 1:
            return jax.device_put(tree, self.replicated)

        def put(x):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                impl = str(x.dtype._impl.name)
                return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=impl)
            return jax.make_array_from_process_local_data(self.replicated, np.asarray(x))

        return jax.tree.map(put, to_host(tree))

    def put_batches(self, rollouts: Any, actor_logits: np.ndarray):
        """Host batches (leaves [N, B, ...]) onto the learner devices, split along B."""
        import jax

        if self.num_processes > 1:  # this process's B streams of the global P x B
            return jax.tree.map(
                lambda x: jax.make_array_from_process_local_data(self.data_sharding, x),
                (rollouts, actor_logits),
            )
        return jax.device_put((rollouts, actor_logits), self.data_sharding)

    def learner_step(self, state: LearnerState, rollouts: Any, actor_logits: Any):
        """One meta-step on N given batches (host or device arrays, leaves [N, B, ...]):
        ``(state, metrics)``; jitted, sharded over the learner devices."""
        rollouts, actor_logits = self.put_batches(rollouts, actor_logits)
        return self._step(state, rollouts, actor_logits)

    def _publish(self, state: LearnerState, version: int) -> None:
        params = [local_copy(state.params, d) for d in self.actor_devices]
        meta = [local_copy(state.meta_state.meta_params, d) for d in self.actor_devices]
        with self._publish_lock:
            self._published = _Published(version, params, meta)

    def _latest(self) -> _Published:
        with self._publish_lock:
            return self._published

    # the actors ----------------------------------------------------------------------------

    def _wait(self, event: threading.Event) -> bool:
        """Wait for ``event`` in slices; False when stopped first."""
        while not event.wait(0.05):
            if self._stop.is_set():
                return False
        return True

    def _actor(self, index: int, rollouts: queue.Queue) -> None:
        """Thread ``index``: act, push rollouts, pull parameters, until stopped."""
        try:
            self._act_loop(index, rollouts)
        except BaseException as error:  # surfaced in the learner's thread
            with self.stats.lock:
                self._errors.append((index, error))
            self._stop.set()

    def _act_loop(self, index: int, rollouts: queue.Queue) -> None:
        import jax

        from bmg import rl

        config, stats = self.config, self.stats
        env = self.envs[index]
        device = self.actor_devices[index % len(self.actor_devices)]
        # A run continued from version v > 0 (a resume) acts with other noise and env seeds.
        key = jax.random.fold_in(jax.random.key(self.seed + 1), index)
        if self._first_version:
            key = jax.random.fold_in(key, self._first_version)
        key = jax.device_put(key, device)
        streams = config.num_actor_threads * config.envs_per_thread
        obs = env.reset(self.seed + index * config.envs_per_thread + self._first_version * streams)
        E, T = config.envs_per_thread, config.rollout_length
        episode_return = np.zeros(E, np.float64)
        episode_frames = np.zeros(E, np.int64)
        outstanding: collections.deque[threading.Event] = collections.deque()
        count = 0
        while not self._stop.is_set():
            start = time.perf_counter()
            if config.wait_for_params and len(outstanding) >= 2:
                if not self._wait(outstanding.popleft()):
                    return
            published = self._latest()
            params = published.params[index % len(self.actor_devices)]
            meta_params = published.meta_params[index % len(self.actor_devices)]
            stats.add("actor", "params_wait", time.perf_counter() - start)
            observations = [obs]
            actions, rewards, terminated, truncated, finals, logits = [], [], [], [], [], []
            for _ in range(T):
                if self._stop.is_set():
                    return
                start = time.perf_counter()
                action, logit = self._act(
                    params, meta_params, jax.device_put(obs, device), key, count
                )
                action, logit = np.asarray(action), np.asarray(logit)
                count += 1
                middle = time.perf_counter()
                obs, reward, term, trunc, final_obs = env.step(action)
                stats.add("actor", "inference", middle - start)
                stats.add("actor", "env", time.perf_counter() - middle)
                episode_return += reward
                episode_frames += self.frames_per_step
                done = np.asarray(term) | np.asarray(trunc)
                if done.any():
                    with stats.lock:
                        stats.episode_returns.extend(episode_return[done].tolist())
                        stats.episode_frames.extend(episode_frames[done].tolist())
                    episode_return[done] = 0.0
                    episode_frames[done] = 0
                observations.append(obs)
                actions.append(action)
                rewards.append(reward)
                terminated.append(term)
                truncated.append(trunc)
                finals.append(final_obs)
                logits.append(logit)
            with stats.lock:
                stats.frames_acted += E * T * self.frames_per_step
            time_major = lambda xs, dtype=None: np.stack(xs, axis=1).astype(dtype or xs[0].dtype)
            rollout = rl.Rollout(
                obs=time_major(observations),
                actions=time_major(actions, np.int32),
                rewards=time_major(rewards, np.float32),
                discount_t=1.0 - time_major(terminated, np.float32),
                truncated=time_major(truncated, np.bool_),
                final_obs=time_major(finals),
            )
            learned = threading.Event()
            item = _Item(rollout, time_major(logits, np.float32), published.version, index, learned)
            start = time.perf_counter()
            while True:
                try:
                    rollouts.put(item, timeout=0.05)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        return
            stats.add("actor", "put_wait", time.perf_counter() - start)
            outstanding.append(learned)

    # running -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask every thread to stop (safe from any thread); ``run`` then returns."""
        self._stop.set()

    def _get(self, rollouts: queue.Queue) -> _Item | None:
        while True:
            try:
                return rollouts.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return None

    def run(
        self,
        num_updates: int,
        *,
        state: LearnerState | None = None,
        learn: bool = True,
        on_update: Callable[[int, dict, Stats], None] | None = None,
    ) -> tuple[LearnerState, Stats]:
        """Start the actor threads and learn for ``num_updates`` meta-steps (or until
        ``stop()``); then stop and join every thread.

        ``learn=False`` measures the actors alone: the learner takes the rollouts and drops
        them. ``on_update(version, metrics, stats)`` is called after each meta-step with the
        metrics on the host; ``self.state`` is then the learner state of that version (e.g. to
        checkpoint). ``state`` and ``stats.updates`` > 0 continue a run (a resume): the
        actors start from fresh environments, with acting noise and environment seeds of
        their own (folded with ``stats.updates``), so a continued run is not the uninterrupted
        one, step for step. Without ``state`` the run is a fresh one: ``self.stats`` starts
        again from zero (a new ``Stats``), whatever an earlier run (finished, stopped or
        failed) left in it.

        Returns ``(learner state, stats)``. Raises an actor thread's exception (with a note
        naming the thread) or ``KeyboardInterrupt``, after every thread has stopped; nothing of
        that run (its errors, queue or threads) reaches the next ``run``.

        Raises:
          ValueError: the runner is closed, or an actor thread of an earlier run is still
            running (it did not stop within ``join_timeout``).
        """
        import jax

        check_integer("num_updates", num_updates, 0)
        if len(self.envs) != self.config.num_actor_threads:
            raise ValueError("this Sebulba runner is closed (its environments too); make another.")
        alive = self.alive_threads()
        if alive:
            raise ValueError(
                f"actor thread(s) {', '.join(alive)} of an earlier run are still running (they "
                f"did not stop within join_timeout = {self.config.join_timeout:g} s), so this "
                "runner cannot start another run; wait for them or make another runner."
            )
        self._errors = []
        if state is None:  # a fresh run: fresh counters
            self.stats = Stats()
        config, stats = self.config, self.stats
        state = self.init_learner() if state is None else state
        self.state = state
        self._first_version = stats.updates
        self._publish(state, stats.updates)
        rollouts: queue.Queue[_Item] = queue.Queue(maxsize=config.queue_size)
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._actor, args=(i, rollouts), name=f"sebulba-actor-{i}", daemon=True
            )
            for i in range(config.num_actor_threads)
        ]
        started = time.perf_counter()
        try:
            for thread in self._threads:
                thread.start()
            per_step = self.num_batches * config.rollouts_per_batch
            while stats.updates < num_updates and not self._stop.is_set():
                start = time.perf_counter()
                items = []
                while len(items) < per_step:
                    item = self._get(rollouts)
                    if item is None:
                        break
                    items.append(item)
                stats.add("learner", "get_wait", time.perf_counter() - start)
                if len(items) < per_step:
                    break
                frames = sum(i.logits.shape[0] * i.logits.shape[1] for i in items)
                if not learn:
                    with stats.lock:
                        stats.updates += 1
                        stats.frames_learned += frames * self.frames_per_step
                    for item in items:
                        item.learned.set()
                    continue
                start = time.perf_counter()
                stack = self._stack
                batch = jax.tree.map(stack, *[i.rollout for i in items])
                logits = stack(*[i.logits for i in items])
                middle = time.perf_counter()
                batch, logits = self.put_batches(batch, logits)
                jax.block_until_ready((batch, logits))
                stats.add("learner", "stack", middle - start)
                stats.add("learner", "transfer", time.perf_counter() - middle)
                start = time.perf_counter()
                state, metrics = self._step(state, batch, logits)
                metrics = to_host(metrics)
                _check_finite(metrics, stats.updates + 1)  # before the actors could see it
                stats.add("learner", "step", time.perf_counter() - start)
                start = time.perf_counter()
                with stats.lock:
                    stats.lags.extend(stats.updates - i.version for i in items)
                    stats.updates += 1
                    stats.frames_learned += frames * self.frames_per_step
                self._publish(state, stats.updates)
                for item in items:
                    item.learned.set()
                stats.add("learner", "publish", time.perf_counter() - start)
                self.state = state
                if on_update is not None:
                    on_update(stats.updates, metrics, stats)
        finally:
            self.stats.seconds = time.perf_counter() - started
            self._shutdown()
        if self._errors:
            index, error = self._errors[0]
            error.add_note(f"(raised in Sebulba actor thread {index})")
            raise error
        return state, stats

    def _stack(self, *xs: np.ndarray) -> np.ndarray:
        """Rollouts' leaves [E, ...] -> N batches [N, B, ...]."""
        shape = (self.num_batches, self.config.batch_size)
        return np.concatenate(xs).reshape(*shape, *xs[0].shape[1:])

    def _shutdown(self) -> None:
        """Stop and join every actor thread (each within ``join_timeout``)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.config.join_timeout)

    def alive_threads(self) -> list[str]:
        """Names of actor threads still running (empty after a clean ``run``)."""
        return [t.name for t in self._threads if t.is_alive()]

    def close(self) -> None:
        """Stop the threads and close every environment."""
        self._shutdown()
        for env in self.envs:
            env.close()
        self.envs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
