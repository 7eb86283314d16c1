"""Checkpoints of any pytree of arrays (PRNG keys included) through one orbax `CheckpointManager`.

A checkpoint at step `s` is orbax's step directory `<directory>/<s>/` holding two items: `state`,
the pytree's non-empty leaves saved by orbax's `StandardCheckpointHandler` (tensorstore / OCDBT;
absent when there are none), and `meta`, one JSON document with the caller's `meta` dict and a
description of every leaf (tree path, shape, dtype, PRNG key implementation, CRC-32 of its
bytes). Orbax writes a step into a temporary directory and renames it when every item is
complete, so a save interrupted at any point (a kill, a full disk) leaves the previous steps as
they were (a failed save removes its temporary directory; a killed one's is removed when the
directory is next opened); the latest two steps are kept.

Restoring checks, before handing anything back, that the saved tree fits the template (paths,
shapes, dtypes) and that every leaf's bytes and the JSON document are those that were written;
any damage (a missing, truncated, empty or corrupt file, or a checkpoint of another
configuration) raises `CheckpointError` with one sentence naming the directory and what to do.

Several JAX processes (`jax.distributed`, `jax.process_count()` > 1): every process makes a
`Checkpointer` on the SAME directory, on a filesystem every process reaches, and calls `save`,
`restore`, `read_meta` and `clear` together, with the same steps (they are collectives: orbax
synchronises the processes in barriers, and the meta dicts are exchanged through JAX). The
state's leaves are then global `jax.Array`s (e.g. parameters replicated over every process's
devices); orbax writes each process's own shards (a replicated array once), process 0 the JSON.
Each process's `meta` is its own: the JSON holds all of them in process order, and `restore`
hands each process back its own. A checkpoint is restored by as many processes as wrote it.

Orbax is imported only when a `Checkpointer` is made (it takes about a second), so modules that
merely mention checkpoints stay quick to import.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bmg.train.rundir import to_json

PyTree = Any

FORMAT = 1
"""Version of the `meta` item's layout; bumped when it changes."""

STATE, META = "state", "meta"

ORBAX_JOIN_SECONDS = 60.0
"""How long a failed save waits for orbax's threads still writing its step before removing it."""


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read back; the message is one sentence for a person."""


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(leaf: Any) -> str:
    """The name of a PRNG key array's implementation, e.g. "threefry2x32"."""
    return str(leaf.dtype._impl.name)


PYTHON_SCALARS = (bool, int, float, complex)
"""Python scalar leaves a checkpoint holds (as NumPy's bool, int64, float64, complex128)."""


def _is_python_scalar(leaf: Any) -> bool:
    return type(leaf) in PYTHON_SCALARS


def _is_numpy(leaf: Any) -> bool:
    return isinstance(leaf, np.ndarray | np.generic)


def _host_leaf(path: tuple, leaf: Any) -> Any:
    """The array to write for one state leaf (a key array's key data); CheckpointError with one
    sentence for a leaf that cannot come back exactly."""
    where = jax.tree_util.keystr(path) or "the state"
    if _is_key(leaf):
        return jax.random.key_data(leaf)
    if isinstance(leaf, int) and not isinstance(leaf, bool) and not -(2**63) <= leaf < 2**63:
        raise CheckpointError(
            f"state leaf {where} is the Python int {leaf}, beyond int64; a checkpoint's arrays "
            "hold at most 64-bit integers (put such numbers in meta)."
        )
    if not (isinstance(leaf, jax.Array) or _is_numpy(leaf) or _is_python_scalar(leaf)):
        raise CheckpointError(
            f"state leaf {where} is a {type(leaf).__name__}; a checkpoint's state holds jax and "
            "NumPy arrays, NumPy scalars and Python bool, int, float or complex (put other "
            "values in meta)."
        )
    array = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
    if not (jax.numpy.issubdtype(array.dtype, jax.numpy.number) or array.dtype == np.bool_):
        raise CheckpointError(
            f"state leaf {where} has dtype {array.dtype}; a checkpoint's arrays hold booleans "
            "and numbers only (put other values in meta)."
        )
    return array


def _describe(path: tuple, leaf: Any) -> dict[str, Any]:
    """Path, shape and dtype of one leaf (keys by their implementation), as JSON values."""
    shape = [int(n) for n in np.shape(leaf)]
    if _is_key(leaf):
        return {
            "path": jax.tree_util.keystr(path),
            "shape": shape,
            "dtype": "key<" + _key_impl(leaf) + ">",
        }
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return {"path": jax.tree_util.keystr(path), "shape": shape, "dtype": str(np.dtype(dtype))}


def _check_step(step: Any) -> int:
    """`step` as an int if it is an integer >= 0 (Python or NumPy, not a bool), else
    CheckpointError with one sentence."""
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise CheckpointError(f"checkpoint step must be an integer >= 0, got {step!r}.")
    return int(step)


def _leaf_name(index: int) -> str:
    return f"leaf_{index:05d}"


def _digest(document: dict[str, Any]) -> str:
    """SHA-256 of a JSON document's canonical form (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1))


def _processes() -> tuple[int, int]:
    """(JAX processes, this process's index): (1, 0) without `jax.distributed`."""
    return jax.process_count(), jax.process_index()


def _host_value(leaf: Any) -> np.ndarray:
    """A leaf's whole value on this host: a global array spanning other processes' devices is
    read from this process's first shard when it is replicated, else gathered from every
    process (`process_allgather`, a collective)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if leaf.sharding.is_fully_replicated:
            return np.asarray(leaf.addressable_shards[0].data)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(leaf)


def _gather_meta(meta: Any) -> list[Any]:
    """Every process's JSON value `meta`, in process order (a collective: every process calls
    it): its UTF-8 bytes padded to the longest and gathered with `process_allgather`."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(meta, allow_nan=False).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    everyone = np.asarray(multihost_utils.process_allgather(padded))  # [processes, longest]
    return [json.loads(bytes(row[:size])) for row, size in zip(everyone, sizes, strict=True)]


@contextlib.contextmanager
def _ctrl_c_after():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it: a checkpoint being written is
    finished first, so an interrupted run keeps it whole and orbax's threads end cleanly (an
    interrupt inside orbax's save left tracebacks at exit and a temporary directory). Outside the
    main thread (no signal handlers there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _quiet():
    """Silence orbax while it runs: its absl log lines, and the abandoned coroutines and
    threads of a failed restore (Python would print their tracebacks when collecting them);
    every failure reaches the caller as one CheckpointError instead."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels, unraisable = [logger.level for logger in loggers], sys.unraisablehook
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda _: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                yield
            except BaseException:
                gc.collect()  # collect abandoned coroutines now, while their reports are muted
                raise
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        sys.unraisablehook = unraisable


def _default_sharding() -> jax.sharding.Sharding:
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


class Checkpointer:
    """Save and restore `(state, meta)` at integer steps in `directory`, keeping the latest two.

    `state` is any pytree (None and empty containers included) whose leaves are jax arrays, NumPy
    arrays or scalars, or Python bool, int, float or complex, of any boolean or numeric dtype
    (float64 and int64 included, with or without ``jax_enable_x64``; bfloat16, float8, int4;
    empty arrays), and new-style PRNG key arrays (`jax.random.key`, any implementation), which are
    saved as their key data and re-wrapped on restore. Each comes back bit-identical, of the
    template's kind (see `restore`). A leaf of another type or dtype (a string, an object array)
    or a Python int beyond int64 is refused by `save` with one sentence.
    `meta` is a dict of JSON values (numbers, strings, lists, nested dicts); Python integers of
    any size round-trip exactly (e.g. a NumPy `PCG64` bit generator's state), NaN and inf are
    written as null.

    Usage:
      checkpointer = Checkpointer(run_dir / "checkpoints")
      checkpointer.save(step, state, {"seconds": 12.5})
      state, meta = checkpointer.restore(jax.eval_shape(init, keys))  # onto init's shardings

    With several JAX processes every process makes its `Checkpointer` on the same (shared)
    directory and calls `save` / `restore` / `read_meta` / `clear` together (module docstring);
    each passes and gets back its own `meta`.

    Errors: every failure to write or read raises `CheckpointError` (a `ValueError`) with one
    sentence naming the directory or step directory and what to do.
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(
                f"{self.directory} is a file, not a checkpoint directory; choose another path."
            )
        self.max_to_keep = max_to_keep
        self._manager = None

    # orbax ---------------------------------------------------------------------------------

    def _orbax(self):
        """The orbax `CheckpointManager`, made on first use (imports orbax)."""
        if self._manager is None:
            import orbax.checkpoint as ocp

            self._ocp = ocp
            options = ocp.CheckpointManagerOptions(
                preservation_policy=ocp.checkpoint_managers.LatestN(self.max_to_keep),
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
                create=True,
            )
            try:
                with _quiet():
                    self._manager = ocp.CheckpointManager(
                        self.directory, options=options, item_names=(STATE, META)
                    )
            except OSError as error:
                raise CheckpointError(
                    f"cannot use {self.directory} for checkpoints ({error.strerror or error}); "
                    "choose a writable directory."
                ) from None
        return self._manager

    def close(self) -> None:
        """Release orbax's resources (threads); the checkpointer can be used again afterwards."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def clear(self) -> None:
        """Delete every step, then the directory if nothing else is left in it (a finished run's
        checkpoints). With several processes every process calls it: process 0 deletes, orbax
        synchronises them after each step."""
        for step in self.all_steps():
            with _quiet():
                self._orbax().delete(step)
        self.close()
        if _processes()[1] == 0:
            with contextlib.suppress(OSError):  # not empty, or already gone
                self.directory.rmdir()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # steps -----------------------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        """Steps with a complete checkpoint, oldest first (none if the directory does not exist)."""
        if not self.directory.is_dir():
            return []
        manager = self._orbax()
        with _quiet():
            manager.reload()
            return sorted(manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> Path:
        """The directory orbax keeps step `step` in."""
        return self.directory / str(step)

    def _discard_partial(self, step: int, threads_before: set[threading.Thread]) -> None:
        """Remove what a failed save of `step` left behind (orbax's temporary step directory),
        so a full disk is not kept full by it and the directory holds complete steps only.
        Orbax's threads still writing other items of the step are waited for first (else they
        recreate the directory as they finish)."""
        deadline = time.monotonic() + ORBAX_JOIN_SECONDS
        with _quiet():
            for thread in threading.enumerate():
                if thread not in threads_before and type(thread).__module__.startswith("orbax"):
                    thread.join(max(0.0, deadline - time.monotonic()))
        if _processes()[1] != 0:
            return
        for path in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(path, ignore_errors=True)

    # save ------------------------------------------------------------------------------------

    def save(self, step: int, state: PyTree, meta: dict[str, Any] | None = None) -> None:
        """Write `state` and `meta` as step `step`, atomically; drop all but the latest two.

        Blocks until the checkpoint is complete on disk; a Ctrl-C meanwhile is held until then
        (KeyboardInterrupt after the save). Raises CheckpointError when it cannot be written
        (e.g. a full disk): the previous steps stay intact and restorable, and orbax's temporary
        directory of the step is removed (the same step can be saved again once there is room);
        or when a leaf cannot be checkpointed (the class docstring says which can), before
        anything is written.

        Several processes: every process calls it with the same step and a state of the same
        global arrays (a sharded, not replicated leaf is gathered for its checksum); `meta` is
        this process's own.
        """
        step = _check_step(step)
        flat, _ = jax.tree_util.tree_flatten_with_path(state)
        leaves, described = {}, []
        for index, (path, leaf) in enumerate(flat):
            description = _describe(path, leaf)
            leaf = _host_leaf(path, leaf)
            description["crc32"] = _crc32(_host_value(leaf))
            if leaf.size:  # orbax writes no empty array: its shape and dtype (described) suffice
                leaves[_leaf_name(index)] = leaf
            described.append(description)
        meta = to_json(meta or {})
        processes = _processes()[0]
        document = {"format": FORMAT, "leaves": described, "meta": meta}
        if processes > 1:  # every process's meta, in process order (process 0 writes the JSON)
            document.update(processes=processes, meta=_gather_meta(meta))
        document["digest"] = _digest(document)
        manager, ocp = self._orbax(), self._ocp
        if step in self.all_steps():
            raise CheckpointError(
                f"checkpoint step {step} already exists in {self.directory}; steps are written "
                "once (save the next step, or use a new directory)."
            )
        items = {META: ocp.args.JsonSave(document)}
        if leaves:  # orbax refuses an empty item
            items[STATE] = ocp.args.StandardSave(leaves)
        threads_before = set(threading.enumerate())
        try:
            with _ctrl_c_after(), _quiet():
                manager.save(step, args=ocp.args.Composite(**items))
                manager.wait_until_finished()
        except BaseException as error:  # a full disk reaches us as OSError or via tensorstore
            self._discard_partial(step, threads_before)
            if not isinstance(error, Exception):
                raise
            reason = error.strerror if isinstance(error, OSError) and error.strerror else None
            earlier = [s for s in self.all_steps() if s < step]
            if earlier:
                what_now = (
                    f"the previous checkpoints (steps {', '.join(map(str, earlier))}) are intact: "
                    "free space or fix the directory, then resume"
                )
            else:
                what_now = (
                    "no checkpoint was saved before it, so there is nothing to resume: free space "
                    "or fix the directory, then start the run again"
                )
            raise CheckpointError(
                f"cannot write checkpoint step {step} to {self.directory} "
                f"({reason or _short(error)}); {what_now}."
            ) from None

    # restore ---------------------------------------------------------------------------------

    def read_meta(self, step: int | None = None) -> dict[str, Any]:
        """The `meta` dict this process saved at `step` (default: the latest), checked against
        its digest."""
        step = self._step(step)
        return self._own_meta(step, self._document(step))

    def _own_meta(self, step: int, document: dict[str, Any]) -> dict[str, Any]:
        """This process's meta of a checked document; CheckpointError when it was written by
        another number of processes."""
        written = int(document.get("processes", 1))
        processes, index = _processes()
        if written != processes:
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} was written by {written} process(es), not "
                f"{processes}; restore it with {written} process(es), each resuming its own run."
            )
        return document["meta"][index] if written > 1 else document["meta"]

    def _step(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(
                f"{self.directory} holds no complete checkpoint (the run stopped before its first "
                "save, or the directory is not a run's checkpoints); start the run again in a new "
                "directory."
            )
        if step is None:
            return steps[-1]
        step = _check_step(step)
        if step not in steps:
            raise CheckpointError(
                f"{self.directory} holds no checkpoint at step {step} (it has {steps})."
            )
        return step

    def _damaged(self, step: int, what: str) -> CheckpointError:
        older = [s for s in self.all_steps() if s < step]
        hint = (
            f"delete {self.step_dir(step)} to resume from step {older[-1]}, or start again"
            if older
            else "start the run again in a new directory"
        )
        return CheckpointError(f"checkpoint {self.step_dir(step)} is damaged ({what}); {hint}.")

    def _document(self, step: int) -> dict[str, Any]:
        manager, ocp = self._orbax(), self._ocp
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()})
            )
            document = dict(restored[META])
            digest = document.pop("digest")
            valid = digest == _digest(document) and document.get("format") == FORMAT
        except Exception as error:  # orbax raises many kinds for damaged files
            raise self._damaged(step, f"{META}/ unreadable: {_short(error)}") from None
        if not valid:
            raise self._damaged(step, f"{META}/ does not match its checksum")
        return document

    def restore(
        self,
        template: PyTree | Callable[[dict[str, Any]], PyTree],
        step: int | None = None,
    ) -> tuple[PyTree, dict[str, Any]]:
        """The state and meta saved at `step` (default: the latest), onto `template`'s layout.

        Args:
          template: a pytree like the saved state whose leaves have `shape`, `dtype` and,
            optionally, `sharding` (e.g. `jax.eval_shape` of a jitted, sharded init, or concrete
            arrays); the state is restored onto those shardings (one local device where a leaf
            has none). May be a function of the saved meta returning the template, for states
            whose shapes depend on it (e.g. a trace that grows by chunk).
          step: which step; None = the latest.

        Returns:
          `(state, meta)`: the state with the template's tree structure, and the saved meta dict.
          A leaf comes back as its template leaf's kind: a Python bool, int, float or complex as
          that Python scalar; a NumPy array or scalar as a NumPy array or scalar (any dtype, x64
          or not); anything else (a jax array, a `jax.ShapeDtypeStruct`) as a jax array on the
          template leaf's sharding, PRNG key leaves as key arrays.

        Raises:
          CheckpointError: no checkpoint; a damaged step (missing, truncated, empty or altered
            files: orbax cannot read it, or a leaf's CRC-32 or the meta's SHA-256 differs); a
            saved tree whose paths, shapes or dtypes differ from the template's; a 64-bit jax
            template leaf without ``jax_enable_x64``; a checkpoint written by another number of
            processes.

        Several processes: every process calls it with a template of global arrays (or shape
        structs with their global shardings); each restores its own shards and gets its own
        meta.
        """
        step = self._step(step)
        document = self._document(step)
        meta = self._own_meta(step, document)
        if callable(template):
            template = template(meta)
        flat, treedef = jax.tree_util.tree_flatten_with_path(template)
        expected = [_describe(path, leaf) for path, leaf in flat]
        saved = [{k: v for k, v in leaf.items() if k != "crc32"} for leaf in document["leaves"]]
        if saved != expected:
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} does not fit this configuration "
                f"({_first_difference(saved, expected)}); resume with the configuration that "
                "wrote it, or start a new run."
            )
        targets, empty = {}, {}
        for index, (path, leaf) in enumerate(flat):
            on_host = _is_numpy(leaf) or _is_python_scalar(leaf)
            dtype = np.asarray(leaf).dtype if on_host else leaf.dtype
            if _is_key(leaf):
                shape = jax.eval_shape(
                    jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
                )
                shape, dtype = shape.shape, shape.dtype
            else:
                shape = np.shape(leaf)
            if not on_host and jax.dtypes.canonicalize_dtype(dtype) != dtype:
                raise CheckpointError(
                    f"the template's leaf {jax.tree_util.keystr(path) or 'the state'} is "
                    f"{np.dtype(dtype)}, which a jax array holds only with jax_enable_x64; give "
                    "a NumPy array as its template leaf, or enable x64."
                )
            sharding = getattr(leaf, "sharding", None) or _default_sharding()
            if math.prod(shape) == 0:  # not written (see save): rebuilt from its description
                zeros = np.zeros(shape, dtype)
                empty[index] = zeros if on_host else jax.device_put(zeros, sharding)
            elif on_host:
                targets[_leaf_name(index)] = np.empty(shape, dtype)  # restored as NumPy
            else:
                targets[_leaf_name(index)] = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
        manager, ocp = self._orbax(), self._ocp
        try:
            restored = {}
            if targets:
                with _quiet():
                    restored = manager.restore(
                        step,
                        args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(targets)}),
                    )[STATE]
            arrays = [
                empty[index] if index in empty else restored[_leaf_name(index)]
                for index in range(len(flat))
            ]
        except Exception as error:  # orbax / tensorstore raise many kinds for damaged files
            raise self._damaged(step, f"{STATE}/ unreadable: {_short(error)}") from None
        leaves = []
        for array, (path, leaf), record in zip(arrays, flat, document["leaves"], strict=True):
            if _crc32(_host_value(array)) != record["crc32"]:
                raise self._damaged(
                    step,
                    f"the bytes of {jax.tree_util.keystr(path) or 'the state'} differ from "
                    "those written",
                )
            if _is_key(leaf):
                array = jax.random.wrap_key_data(array, impl=_key_impl(leaf))
            elif _is_python_scalar(leaf):
                array = type(leaf)(np.asarray(array).item())
            elif isinstance(leaf, np.generic):
                array = np.asarray(array)[()]
            leaves.append(array)
        return jax.tree.unflatten(treedef, leaves), meta


def _first_difference(saved: list[dict], expected: list[dict]) -> str:
    """'saved <path> float32[3], expected float32[4]' for the first leaf that differs."""

    def show(leaf: dict) -> str:
        return f"{leaf['path'] or 'the state'} {leaf['dtype']}{leaf['shape']}"

    for a, b in zip(saved, expected, strict=False):
        if a != b:
            return f"saved {show(a)}, expected {show(b)}"
    return f"saved {len(saved)} arrays, expected {len(expected)}"


def _short(error: BaseException) -> str:
    """An exception as one short line (its type and the start of its message)."""
    text = " ".join(str(error).split())
    return type(error).__name__ + (f": {text[:160]}" if text else "")
